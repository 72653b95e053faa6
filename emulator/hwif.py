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

Address map of the configuration port (``lanes`` entries of ``CFG_DATA_W`` bits per write)
-------------------------------------------------------------------------------------------
``addr = {kind[2], sel[SW], c[CW], q[QW]}`` (docs/address-map.md): kind 0 writes a word of
thresholds (``sel`` = tree level, ``q`` = word of the level), kind 1 a word of LUT entries
(``sel`` = column, ``q`` = word of ``K / lanes`` prototypes), kind 2 a control register (CNUM,
PRELOAD, SWAP). A program slice (a *job*: codebooks ``[c0, c1)`` and columns ``[lo, hi)``)
is loaded by :func:`job_writes`; :func:`swap_write` makes it active.

Data lanes carry the fp16 bit pattern, or the int8 value sign-extended to 16 bits.
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
#: width of one configuration data lane (fp16 bits, or int8 sign-extended)
CFG_DATA_W = 16
#: entries per configuration write unless a parameter set says otherwise (at most K)
DEFAULT_CFG_LANES = 16
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
#: the address's kind field (its two most significant bits)
CFG_KIND: dict[str, int] = {"thr": 0, "lut": 1, "ctrl": 2}
#: control registers (kind ``ctrl``, register index in the address's low bits): CNUM sets
#: the shadow bank's codebooks per row (1..C), PRELOAD its preload flag (data bit 0), SWAP
#: makes the shadow bank active and starts a job at codebook 0
CTRL_REG: dict[str, int] = {"cnum": 0, "preload": 1, "swap": 2}

PKG_PATH = Path(__file__).resolve().parent.parent / "rtl" / "halut_pkg.sv"


# ---- the address map -------------------------------------------------------------------------

def default_lanes(K: int) -> int:
    """Entries per configuration write of the default build for a given K."""
    return min(DEFAULT_CFG_LANES, K)


@dataclass(frozen=True)
class AddressMap:
    """Field layout of the configuration port for one RTL parameter set (C, K, M, lanes);
    ``lanes`` 0 means :func:`default_lanes`."""

    C: int
    K: int
    M: int
    lanes: int = 0

    def __post_init__(self) -> None:
        log2_exact(self.K)
        if self.C < 1:
            raise HalutError(f"C must be >= 1, got {self.C}")
        if self.M < 1:
            raise HalutError(f"M must be >= 1, got {self.M}")
        if self.lanes == 0:
            object.__setattr__(self, "lanes", default_lanes(self.K))
        if self.lanes < 1 or self.lanes > self.K or self.lanes & (self.lanes - 1):
            raise HalutError(f"cfg_lanes must be a power of two between 1 and K={self.K}, "
                             f"got {self.lanes}")

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
    def sel_bits(self) -> int:
        """The ``sel`` field: a column (LUT) or a tree level (thresholds)."""
        return max(self.m_bits, clog2(self.L))

    @property
    def words(self) -> int:
        """LUT words per (column, codebook): ``K / lanes``."""
        return self.K // self.lanes

    @property
    def q_bits(self) -> int:
        return clog2(self.words)

    @property
    def addr_bits(self) -> int:
        return 2 + self.sel_bits + self.c_bits + self.q_bits

    @property
    def data_bits(self) -> int:
        return self.lanes * CFG_DATA_W

    def level_words(self, level: int) -> tuple[int, int]:
        """(entries per word, words per codebook) of tree level ``level`` (``2**level``
        thresholds per codebook)."""
        per_word = min(2**level, self.lanes)
        return per_word, 2**level // per_word

    def _addr(self, kind: str, sel: np.ndarray | int, c: np.ndarray | int,
              q: np.ndarray | int) -> np.ndarray:
        u = np.uint64
        return ((u(CFG_KIND[kind]) << u(self.addr_bits - 2))
                | (np.asarray(sel, dtype=u) << u(self.c_bits + self.q_bits))
                | (np.asarray(c, dtype=u) << u(self.q_bits)) | np.asarray(q, dtype=u))

    def threshold_addr(self, level: np.ndarray | int, c: np.ndarray | int,
                       q: np.ndarray | int) -> np.ndarray:
        """Word ``q`` of tree level ``level`` of codebook ``c``."""
        return self._addr("thr", level, c, q)

    def lut_addr(self, m: np.ndarray | int, c: np.ndarray | int, q: np.ndarray | int
                 ) -> np.ndarray:
        """Word ``q`` (prototypes ``q*lanes ..``) of column ``m``, codebook ``c``."""
        return self._addr("lut", m, c, q)

    def ctrl_addr(self, reg: str) -> int:
        return int(self._addr("ctrl", 0, 0, CTRL_REG[reg]))


def to_cfg_data(values: np.ndarray) -> np.ndarray:
    """``CFG_DATA_W``-bit configuration data lanes for fp16 or int8 values (int8
    sign-extended)."""
    if values.dtype == np.float16:
        return values.view(np.uint16).copy()
    if values.dtype == np.int8:
        return values.astype(np.int16).view(np.uint16).copy()
    raise HalutError(f"configuration values must be float16 or int8, got {values.dtype}")


@dataclass(frozen=True)
class ConfigWrites:
    """Configuration writes: ``addr`` (n,) uint32 and ``data`` (n, lanes) uint16."""

    addr: np.ndarray
    data: np.ndarray

    def __len__(self) -> int:
        return int(self.addr.size)

    def __add__(self, other: ConfigWrites) -> ConfigWrites:
        return ConfigWrites(np.concatenate([self.addr, other.addr]),
                            np.concatenate([self.data, other.data]))

    def words(self) -> np.ndarray:
        """The data as (n, ceil(lanes*16/32)) uint32 words (lane ``i`` at bits ``16*i``)."""
        n, lanes = self.data.shape
        padded = np.zeros((n, lanes + lanes % 2), dtype=np.uint16)
        padded[:, :lanes] = self.data
        return np.ascontiguousarray(padded).view("<u4")

    @classmethod
    def empty(cls, lanes: int) -> ConfigWrites:
        return cls(np.zeros(0, np.uint32), np.zeros((0, lanes), np.uint16))


def ctrl_write(amap: AddressMap, reg: str, value: int) -> ConfigWrites:
    """One write of ``value`` (lane 0) to control register ``reg`` (:data:`CTRL_REG`)."""
    data = np.zeros((1, amap.lanes), np.uint16)
    data[0, 0] = value
    return ConfigWrites(np.array([amap.ctrl_addr(reg)], np.uint32), data)


def swap_write(amap: AddressMap) -> ConfigWrites:
    """The SWAP command: the loaded (shadow) bank becomes active; the next beat is
    codebook 0 of a row of that job."""
    return ctrl_write(amap, "swap", 0)


def job_writes(program: HardwareProgram, amap: AddressMap, codebooks: tuple[int, int],
               columns: tuple[int, int], *, preload: bool) -> ConfigWrites:
    """The writes that load one job into the shadow bank: the thresholds of codebooks
    ``[c0, c1)`` (``c1 - c0 <= C``) as the RTL's codebooks ``0 ..``, LUT columns ``[lo, hi)``
    (``hi - lo <= M``) of those codebooks into local columns ``0 .. hi-lo-1``, the codebook
    count and the preload flag (rows start from the preload port's values)."""
    c0, c1 = codebooks
    lo, hi = columns
    if program.K != amap.K:
        raise HalutError(f"the program has K={program.K}; the accelerator is built for "
                         f"K={amap.K}")
    if not 0 <= c0 < c1 <= program.C or c1 - c0 > amap.C:
        raise HalutError(f"codebook range [{c0}, {c1}) is not a slice of at most "
                         f"C={amap.C} of the program's {program.C} codebooks")
    if not 0 <= lo < hi <= program.M or hi - lo > amap.M:
        raise HalutError(f"column range [{lo}, {hi}) is not a tile of at most M={amap.M} of "
                         f"the program's {program.M} columns")
    n_c = c1 - c0
    thr = to_cfg_data(program.thresholds[c0:c1])  # (n_c, K-1), heap order
    out = ConfigWrites.empty(amap.lanes)
    for level in range(amap.L):
        per_word, n_q = amap.level_words(level)
        base = 2**level - 1
        tc, tq = np.meshgrid(np.arange(n_c), np.arange(n_q), indexing="ij")
        data = np.zeros((n_c * n_q, amap.lanes), np.uint16)
        data[:, :per_word] = thr[:, base:base + 2**level].reshape(n_c * n_q, per_word)
        addr = amap.threshold_addr(level, tc.ravel(), tq.ravel()).astype(np.uint32)
        out += ConfigWrites(addr, data)
    m, c, q = np.meshgrid(np.arange(hi - lo), np.arange(n_c), np.arange(amap.words),
                          indexing="ij")
    lut = to_cfg_data(program.lut[lo:hi, c0:c1])  # (cols, n_c, K)
    out += ConfigWrites(amap.lut_addr(m.ravel(), c.ravel(), q.ravel()).astype(np.uint32),
                        lut.reshape(-1, amap.lanes))
    return out + ctrl_write(amap, "cnum", n_c) + ctrl_write(amap, "preload", int(preload))


def single_job_writes(program: HardwareProgram, amap: AddressMap) -> ConfigWrites:
    """A program whose codebooks fit the chip (``C <= amap.C``) as one job of its first
    ``amap.M`` columns, followed by its SWAP: the writes that make it the active one (tests,
    benchmarks)."""
    return (job_writes(program, amap, (0, program.C), (0, min(program.M, amap.M)),
                       preload=False) + swap_write(amap))


# ---- the port list ---------------------------------------------------------------------------

PortRole = Literal["clock", "reset", "data"]


@dataclass(frozen=True)
class Port:
    """One top-level port: name, direction, width in bits and role (the SDC groups)."""

    name: str
    direction: Literal["input", "output"]
    width: int
    role: PortRole = "data"


def ports(C: int, K: int, M: int, threshold_format: str, out_lanes: int, cfg_lanes: int = 0
          ) -> tuple[Port, ...]:
    """The top module's ports for one parameter set, in declaration order."""
    amap = AddressMap(C, K, M, cfg_lanes)
    feat = FEATURE_BITS[threshold_format]
    return (
        Port("clk_i", "input", 1, "clock"),
        Port("rst_ni", "input", 1, "reset"),
        Port("cfg_valid_i", "input", 1),
        Port("cfg_ready_o", "output", 1),
        Port("cfg_addr_i", "input", amap.addr_bits),
        Port("cfg_data_i", "input", amap.data_bits),
        Port("in_valid_i", "input", 1),
        Port("in_ready_o", "output", 1),
        Port("in_data_i", "input", amap.L * feat),
        Port("pre_valid_i", "input", 1),
        Port("pre_ready_o", "output", 1),
        Port("pre_data_i", "input", out_lanes * ACC_W),
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
        "  // width of one configuration data lane (fp16 bits, or int8 sign-extended)",
        f"  localparam int unsigned CfgDataW = {CFG_DATA_W};",
        "  // configuration address kinds (the address's two most significant bits)",
        *(f"  localparam logic [1:0] CfgKind{k.capitalize()} = 2'd{v};"
          for k, v in CFG_KIND.items()),
        "  // control registers (kind Ctrl, register index in the address's low bits)",
        *(f"  localparam logic [1:0] Ctrl{k.capitalize()} = 2'd{v};"
          for k, v in CTRL_REG.items()),
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
