"""The accelerator's interface, defined once: top name, port list, widths, format codes, the
configuration address map and the configuration writes that load a program.

Everything that crosses the boundary between the host (Python) and the RTL lives here and
nowhere else:

* ``rtl/halut_pkg.sv`` is generated from this module (:func:`render_package`;
  ``python -m emulator.hwif`` rewrites it, and a test fails when the file and this module
  drift apart);
* the drivers (emulator/driver.py, emulator/harness.py), the hardware flows (SDC port
  groups in flows/hw/sta.py, the gate-level harness in flows/hw/gls.py) and the build
  (emulator/build.py) take the top name and the port list from :data:`TOP` and
  :func:`ports`, and a test compares :func:`ports` with the Verilated model's own ports;
* :class:`AddressMap` and :func:`threshold_writes` / :func:`lut_writes` are the only place
  that turns a :class:`~learning.program.HardwareProgram` into configuration writes.

Address map of the configuration port (``CFG_DATA_W``-bit data, one entry per write)
-----------------------------------------------------------------------------------
With ``L = log2 K``, ``CW = max(1, ceil(log2 C))``, ``MW = max(1, ceil(log2 M))`` where ``M``
is the RTL's columns per tile, the address is ``AW = 1 + MW + CW + L`` bits wide:

* threshold of node ``j`` (0..K-2) of codebook ``c``: ``addr = (c << L) | j`` (MSB 0)
* LUT entry ``(m, c, k)`` of the tile: ``addr = 1 << (AW-1) | m << (CW+L) | c << L | k``

Data is the fp16 bit pattern, or the int8 value sign-extended to 16 bits.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from learning.errors import HalutError
from learning.program import HardwareProgram, clog2, log2_exact

#: the accelerator's top module
TOP = "halut_accel"
#: width of the configuration data port (fp16 bits, or int8 sign-extended)
CFG_DATA_W = 16
#: width of one accumulator / output lane (int32 two's complement, or fp32 bits)
ACC_W = 32
#: canonical quiet NaN the fp32 adder produces for every NaN result
FP32_QNAN = 0x7FC0_0000
#: the RTL's ``ThrFmt`` parameter: format of the features and thresholds
THRESHOLD_FORMAT_CODE: dict[str, int] = {"fp16": 0, "int8": 1}
#: the RTL's ``LutFmt`` parameter: format of the LUT entries (and with it the accumulator)
LUT_FORMAT_CODE: dict[str, int] = {"int8": 0, "fp16": 1}
#: feature / threshold width in bits per threshold format
FEATURE_BITS: dict[str, int] = {"fp16": 16, "int8": 8}

PKG_PATH = Path(__file__).resolve().parent.parent / "rtl" / "halut_pkg.sv"


# ---- the address map -------------------------------------------------------------------------

@dataclass(frozen=True)
class AddressMap:
    """Field layout of the configuration port for one RTL parameter set (C, K, M)."""

    C: int
    K: int
    M: int

    def __post_init__(self) -> None:
        log2_exact(self.K)
        if self.C < 1:
            raise HalutError(f"C must be >= 1, got {self.C}")
        if self.M < 1:
            raise HalutError(f"M must be >= 1, got {self.M}")

    @property
    def L(self) -> int:
        return log2_exact(self.K)

    @property
    def c_bits(self) -> int:
        return clog2(self.C)

    @property
    def m_bits(self) -> int:
        return clog2(self.M)

    @property
    def addr_bits(self) -> int:
        return 1 + self.m_bits + self.c_bits + self.L

    def threshold_addr(self, c: np.ndarray | int, node: np.ndarray | int) -> np.ndarray:
        c_arr, n_arr = np.asarray(c, dtype=np.uint64), np.asarray(node, dtype=np.uint64)
        return (c_arr << np.uint64(self.L)) | n_arr

    def lut_addr(self, m: np.ndarray | int, c: np.ndarray | int, k: np.ndarray | int
                 ) -> np.ndarray:
        m_arr = np.asarray(m, dtype=np.uint64)
        c_arr = np.asarray(c, dtype=np.uint64)
        k_arr = np.asarray(k, dtype=np.uint64)
        region = np.uint64(1) << np.uint64(self.addr_bits - 1)
        return (region | (m_arr << np.uint64(self.c_bits + self.L))
                | (c_arr << np.uint64(self.L)) | k_arr)


def to_cfg_data(values: np.ndarray) -> np.ndarray:
    """``CFG_DATA_W``-bit configuration data words for fp16 or int8 values (int8
    sign-extended)."""
    if values.dtype == np.float16:
        return values.view(np.uint16).copy()
    if values.dtype == np.int8:
        return values.astype(np.int16).view(np.uint16).copy()
    raise HalutError(f"configuration values must be float16 or int8, got {values.dtype}")


def _check_map(program: HardwareProgram, amap: AddressMap, cols: int) -> None:
    if amap.C != program.C or amap.K != program.K:
        raise HalutError(f"program has C={program.C}, K={program.K} but the accelerator was "
                         f"built for C={amap.C}, K={amap.K}")
    if cols > amap.M:
        raise HalutError(f"tile of {cols} columns exceeds the accelerator's M={amap.M}")


def threshold_writes(program: HardwareProgram, amap: AddressMap
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(addr uint32, data uint16) writes that load every threshold, codebook-major."""
    _check_map(program, amap, min(program.M, amap.M))
    c, j = np.meshgrid(np.arange(program.C), np.arange(program.K - 1), indexing="ij")
    addr = amap.threshold_addr(c.ravel(), j.ravel()).astype(np.uint32)
    return addr, to_cfg_data(program.thresholds.ravel())


def lut_writes(program: HardwareProgram, amap: AddressMap, lo: int, hi: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(addr uint32, data uint16) writes that load columns ``[lo, hi)`` of the LUT into the
    RTL's local columns ``0 .. hi-lo-1`` (``hi - lo <= amap.M``)."""
    _check_map(program, amap, hi - lo)
    if not 0 <= lo < hi <= program.M:
        raise HalutError(f"column range [{lo}, {hi}) is outside [0, {program.M})")
    m, c, k = np.meshgrid(np.arange(hi - lo), np.arange(program.C), np.arange(program.K),
                          indexing="ij")
    addr = amap.lut_addr(m.ravel(), c.ravel(), k.ravel()).astype(np.uint32)
    return addr, to_cfg_data(program.lut[lo:hi].ravel())


# ---- the port list ---------------------------------------------------------------------------

PortRole = Literal["clock", "reset", "data"]


@dataclass(frozen=True)
class Port:
    """One top-level port: name, direction, width in bits and role (the SDC groups)."""

    name: str
    direction: Literal["input", "output"]
    width: int
    role: PortRole = "data"


def ports(C: int, K: int, M: int, threshold_format: str, out_lanes: int) -> tuple[Port, ...]:
    """The top module's ports for one parameter set, in declaration order."""
    amap = AddressMap(C, K, M)
    feat = FEATURE_BITS[threshold_format]
    return (
        Port("clk_i", "input", 1, "clock"),
        Port("rst_ni", "input", 1, "reset"),
        Port("cfg_valid_i", "input", 1),
        Port("cfg_addr_i", "input", amap.addr_bits),
        Port("cfg_data_i", "input", CFG_DATA_W),
        Port("in_valid_i", "input", 1),
        Port("in_ready_o", "output", 1),
        Port("in_data_i", "input", amap.L * feat),
        Port("out_valid_o", "output", 1),
        Port("out_ready_i", "input", 1),
        Port("out_data_o", "output", out_lanes * ACC_W),
    )


def port_names(direction: str | None = None, role: PortRole | None = None) -> tuple[str, ...]:
    """Port names (independent of the parameters), optionally of one direction / role."""
    return tuple(p.name for p in ports(2, 2, 1, "fp16", 1)
                 if (direction is None or p.direction == direction)
                 and (role is None or p.role == role))


#: the clock and the active-low asynchronous reset
CLOCK = port_names(role="clock")[0]
RESET = port_names(role="reset")[0]
#: synchronous data inputs and outputs (the SDC's input/output delay groups)
DATA_INPUTS = port_names("input", "data")
DATA_OUTPUTS = port_names("output", "data")


# ---- the generated SystemVerilog package -----------------------------------------------------

#: IEEE 754 binary16 / binary32 fields (the RTL's fp units: exponent and mantissa widths, bias)
FP_FORMATS: dict[str, tuple[int, int, int]] = {"Fp16": (5, 10, 15), "Fp32": (8, 23, 127)}


def render_package() -> str:
    """The text of ``rtl/halut_pkg.sv``, generated from this module."""
    def enum(name: str, prefix: str, codes: dict[str, int]) -> list[str]:
        items = sorted(codes.items(), key=lambda kv: kv[1])
        body = ",\n".join(f"    {prefix}{fmt.capitalize()} = 32'd{code}" for fmt, code in items)
        return [f"  typedef enum int unsigned {{\n{body}\n  }} {name};"]

    def fp_fields() -> list[str]:
        out = ["  // IEEE 754 formats of the fp units: exponent / mantissa (fraction) widths,",
               "  // bias, total width; a word is {sign, exponent, mantissa}"]
        for name, (exp_w, man_w, bias) in FP_FORMATS.items():
            out += [f"  localparam int unsigned {name}ExpW = {exp_w};",
                    f"  localparam int unsigned {name}ManW = {man_w};",
                    f"  localparam int unsigned {name}Bias = {bias};",
                    f"  localparam int unsigned {name}W = 1 + {name}ExpW + {name}ManW;"]
        return [*out, ""]

    qnan = f"{FP32_QNAN:08X}"
    lines = [
        "// GENERATED by `python -m emulator.hwif` from emulator/hwif.py: do not edit by hand.",
        "// Shared constants of the halut accelerator: format codes, widths and the",
        "// configuration address map's field rule (docs/address-map.md).",
        "package halut_pkg;",
        "",
        "  // ThrFmt: format of the features and thresholds",
        *enum("thr_fmt_e", "ThrFmt", THRESHOLD_FORMAT_CODE),
        "  // LutFmt: format of the LUT entries (and with it the accumulator)",
        *enum("lut_fmt_e", "LutFmt", LUT_FORMAT_CODE),
        "",
        "  // width of the configuration data port (fp16 bits, or int8 sign-extended)",
        f"  localparam int unsigned CfgDataW = {CFG_DATA_W};",
        "  // width of one accumulator / output lane (int32 two's complement, or fp32 bits)",
        f"  localparam int unsigned AccW = {ACC_W};",
        "",
        *fp_fields(),
        "  // canonical quiet NaN produced by the fp32 adder for every NaN result",
        f"  localparam logic [Fp32W-1:0] Fp32QNaN = 32'h{qnan[:4]}_{qnan[4:]};",
        "",
        "endpackage",
        "",
    ]
    return "\n".join(lines)


def write_package(path: Path = PKG_PATH) -> bool:
    """Rewrite ``rtl/halut_pkg.sv`` if it differs; True when it changed."""
    text = render_package()
    if path.is_file() and path.read_text() == text:
        return False
    from learning.atomic import atomic_write_text

    atomic_write_text(path, text)
    return True


if __name__ == "__main__":
    changed = write_package()
    print(f"{PKG_PATH}: {'rewritten' if changed else 'up to date'}")
    sys.exit(0)
