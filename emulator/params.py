"""RTL parameter sets: one frozen, validated dataclass shared by the build, the drivers and
the hardware flows (``-p NAME=VALUE`` on the CLI)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from emulator.hwif import FEATURE_BITS, LUT_FORMAT_CODE, THRESHOLD_FORMAT_CODE, AddressMap
from learning.errors import HalutError
from learning.program import LUT_FORMATS, THRESHOLD_FORMATS, HardwareProgram

MAX_C = 1024
MAX_M = 1024
DEFAULT_TILE_M = 16  # output columns per tile when none is given (the default configuration)


@dataclass(frozen=True)
class RtlParams:
    """Top-level parameters of ``halut_accel``, fixed at Verilation time (``-G``).

    ``out_lanes`` results leave per output beat; a row's M results take ``M / out_lanes``
    beats, which must fit in the C cycles a row streams for (``M <= out_lanes * C``) so
    the accelerator sustains one codebook per clock.
    """

    C: int = 32
    K: int = 16
    M: int = 16
    threshold_format: str = "fp16"
    lut_format: str = "int8"
    out_lanes: int = 0  # 0: M (a whole row per beat)

    def __post_init__(self) -> None:
        AddressMap(self.C, self.K, self.M)  # K power of two in [2, 256], C, M >= 1
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
        return AddressMap(self.C, self.K, self.M).L

    @property
    def address_map(self) -> AddressMap:
        return AddressMap(self.C, self.K, self.M)

    @property
    def feature_bits(self) -> int:
        return FEATURE_BITS[self.threshold_format]

    def verilog_parameters(self) -> dict[str, int]:
        """The ``-G`` values of the top module ``halut_accel``."""
        return {"C": self.C, "K": self.K, "M": self.M,
                "ThrFmt": THRESHOLD_FORMAT_CODE[self.threshold_format],
                "LutFmt": LUT_FORMAT_CODE[self.lut_format], "OutLanes": self.out_lanes}

    def tag(self) -> str:
        return (f"C{self.C}_K{self.K}_M{self.M}_{self.threshold_format}_{self.lut_format}"
                f"_L{self.out_lanes}")

    def check_program(self, program: HardwareProgram) -> None:
        """Raise if ``program`` cannot run on this accelerator (tiles handle M > self.M)."""
        if (program.C, program.K) != (self.C, self.K):
            raise HalutError(f"the program has C={program.C}, K={program.K}; the accelerator "
                             f"is built for C={self.C}, K={self.K}")
        if (program.threshold_format, program.lut_format) != (self.threshold_format,
                                                              self.lut_format):
            raise HalutError(
                f"the program uses {program.threshold_format} thresholds and "
                f"{program.lut_format} LUTs; the accelerator is built for "
                f"{self.threshold_format} and {self.lut_format}")

    @classmethod
    def for_program(cls, program: HardwareProgram, M: int | None = None, **overrides: object
                    ) -> RtlParams:
        """Parameters matching ``program`` (C, K, formats) with ``M`` columns per tile.

        ``M`` defaults to ``min(DEFAULT_TILE_M, program.M)``; an explicit ``M`` is kept as is
        (a tile wider than the program leaves the extra columns unused)."""
        kw: dict[str, object] = {"C": program.C, "K": program.K,
                                 "M": min(DEFAULT_TILE_M, program.M) if M is None else M,
                                 "threshold_format": program.threshold_format,
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
