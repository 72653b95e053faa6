"""RTL parameter sets: one frozen, validated dataclass shared by the build, the drivers and
the hardware flows (``-p NAME=VALUE`` on the CLI)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from emulator.hwif import (
    DATA_INPUTS,
    DATA_OUTPUTS,
    FEATURE_BITS,
    LUT_FORMAT_CODE,
    THRESHOLD_FORMAT_CODE,
    TOP,
    AddressMap,
    default_lanes,
)
from learning.errors import HalutError
from learning.program import LUT_FORMATS, THRESHOLD_FORMATS, HardwareProgram

MAX_C = 1024
MAX_M = 1024


@dataclass(frozen=True)
class RtlParams:
    """Top-level parameters of ``halut_accel``, fixed at Verilation time (``-G``).

    ``out_lanes`` results leave per output beat; a row's M results take ``M / out_lanes``
    beats, which must fit in the C cycles a row streams for (``M <= out_lanes * C``) so
    the accelerator sustains one codebook per clock. ``cfg_lanes`` entries go in per
    configuration write (0: ``min(16, K)``); ``banks`` 2 double-buffers the memories so that
    the next job loads while rows stream (1: loading waits for an idle pipeline).
    """

    C: int = 32
    K: int = 16
    M: int = 16
    threshold_format: str = "fp16"
    lut_format: str = "int8"
    out_lanes: int = 0  # 0: M (a whole row per beat)
    cfg_lanes: int = 0  # 0: min(16, K)
    banks: int = 2

    #: the design's top module, and its data ports (the SDC's input / output delay groups):
    #: what the hardware flows need to know of a design (flows.hw.common.HwDesign)
    top: ClassVar[str] = TOP
    data_inputs: ClassVar[tuple[str, ...]] = DATA_INPUTS
    data_outputs: ClassVar[tuple[str, ...]] = DATA_OUTPUTS

    @staticmethod
    def default_sources() -> list[Path]:
        """The design's RTL file list: ``rtl/halut.f``."""
        return [Path(__file__).resolve().parent.parent / "rtl" / "halut.f"]

    def __post_init__(self) -> None:
        if self.cfg_lanes == 0:
            object.__setattr__(self, "cfg_lanes", default_lanes(self.K))
        AddressMap(self.C, self.K, self.M, self.cfg_lanes)  # K power of two in [2, 256], ...
        if self.banks not in (1, 2):
            raise HalutError(f"banks must be 1 or 2, got {self.banks}")
        if self.C > MAX_C:
            raise HalutError(f"C={self.C} is larger than the supported {MAX_C}")
        if self.M > MAX_M:
            raise HalutError(f"M={self.M} is larger than the supported {MAX_M}")
        if self.threshold_format not in THRESHOLD_FORMATS:
            raise HalutError(f"threshold_format must be one of {THRESHOLD_FORMATS}, "
                             f"got {self.threshold_format!r}")
        if self.lut_format not in LUT_FORMATS:
            raise HalutError(f"lut_format must be one of {LUT_FORMATS}, got {self.lut_format!r}")
        lanes = self.M if self.out_lanes == 0 else self.out_lanes
        if lanes < 1 or self.M % lanes != 0:
            raise HalutError(f"out_lanes={self.out_lanes} must divide M={self.M}")
        if lanes * self.C < self.M:
            raise HalutError(f"out_lanes={lanes} is too few for M={self.M}, C={self.C}: a row's "
                             f"{self.M // lanes} output beats must fit in its C={self.C} cycles "
                             f"(need out_lanes >= {-(-self.M // self.C)})")
        object.__setattr__(self, "out_lanes", lanes)

    @property
    def L(self) -> int:
        return self.address_map.L

    @property
    def address_map(self) -> AddressMap:
        return AddressMap(self.C, self.K, self.M, self.cfg_lanes)

    @property
    def out_beats(self) -> int:
        """Output (and preload) beats per row: ``M / out_lanes``."""
        return self.M // self.out_lanes

    @property
    def feature_bits(self) -> int:
        return FEATURE_BITS[self.threshold_format]

    def verilog_parameters(self) -> dict[str, int]:
        """The ``-G`` values of the top module ``halut_accel``."""
        return {"C": self.C, "K": self.K, "M": self.M,
                "ThrFmt": THRESHOLD_FORMAT_CODE[self.threshold_format],
                "LutFmt": LUT_FORMAT_CODE[self.lut_format], "OutLanes": self.out_lanes,
                "CfgLanes": self.cfg_lanes, "Banks": self.banks}

    def tag(self) -> str:
        return (f"C{self.C}_K{self.K}_M{self.M}_{self.threshold_format}_{self.lut_format}"
                f"_L{self.out_lanes}_W{self.cfg_lanes}_B{self.banks}")

    def check_program(self, program: HardwareProgram) -> None:
        """Raise if ``program`` cannot be mapped onto this accelerator: its K and formats must
        be the chip's (any C maps as codebook passes, any M as column tiles)."""
        if program.K != self.K:
            raise HalutError(f"the layer has K={program.K} prototypes per codebook; the "
                             f"accelerator is built for K={self.K}")
        if (program.threshold_format, program.lut_format) != (self.threshold_format,
                                                              self.lut_format):
            raise HalutError(
                f"the layer uses {program.threshold_format} thresholds and "
                f"{program.lut_format} LUTs; the accelerator is built for "
                f"{self.threshold_format} thresholds and {self.lut_format} LUTs")

    @classmethod
    def for_program(cls, program: HardwareProgram, **overrides: object) -> RtlParams:
        """The default chip for ``program``: the default parameters (C, M, lanes, banks) with
        the program's K and formats, which every layer of a run must share; ``overrides``
        replace any field."""
        kw: dict[str, object] = {"K": program.K, "threshold_format": program.threshold_format,
                                 "lut_format": program.lut_format}
        kw.update(overrides)
        return cls(**kw)  # type: ignore[arg-type]


_FIELDS = {f.name: f for f in dataclasses.fields(RtlParams)}
_ALIASES = {"thr": "threshold_format", "threshold": "threshold_format",
            "lut": "lut_format", "lanes": "out_lanes"}


def parse_assignments(items: tuple[str, ...] | list[str], base: RtlParams | None = None
                      ) -> RtlParams:
    """``["M=16", "K=4", "lut_format=fp16"]`` -> RtlParams (names case-insensitive for C/K/M)."""
    kw: dict[str, object] = dataclasses.asdict(base) if base else {}
    if base is not None and base.out_lanes == base.M:
        kw["out_lanes"] = 0  # "a whole row per beat" follows a changed M
    if base is not None and base.cfg_lanes == default_lanes(base.K):
        kw["cfg_lanes"] = 0  # the default lanes follow a changed K
    for item in items:
        if "=" not in item:
            raise HalutError(f"parameter {item!r} must look like NAME=VALUE")
        name, value = (s.strip() for s in item.split("=", 1))
        key = name if name in _FIELDS else _ALIASES.get(name.lower(), name.upper())
        if key not in _FIELDS:
            raise HalutError(f"unknown RTL parameter {name!r}; known: {', '.join(_FIELDS)}")
        if _FIELDS[key].type in ("int", int):
            try:
                kw[key] = int(value)
            except ValueError:
                raise HalutError(f"parameter {name} must be an integer, got {value!r}") from None
        else:
            kw[key] = value
    return RtlParams(**kw)  # type: ignore[arg-type]
