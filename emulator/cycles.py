"""Cycle accounting, identical for every driver of the accelerator.

* ``config``: cycles with a configuration write (thresholds, LUTs; once per tile reload)
* ``stream``: cycles in which an input beat was accepted (N*C for N rows)
* ``stall``:  cycles up to the last accepted beat with no beat accepted (input bubbles and
  output back-pressure; cycles before the first beat count too)
* ``drain``:  cycles after the last accepted beat until the last result is taken
* ``total``:  the sum
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class CycleReport:
    config: int = 0
    stream: int = 0
    stall: int = 0
    drain: int = 0

    @property
    def total(self) -> int:
        return self.config + self.stream + self.stall + self.drain

    def __add__(self, other: CycleReport) -> CycleReport:
        return CycleReport(self.config + other.config, self.stream + other.stream,
                           self.stall + other.stall, self.drain + other.drain)

    def to_dict(self) -> dict[str, int]:
        d = asdict(self)
        d["total"] = self.total
        return d

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> CycleReport:
        return cls(int(d["config"]), int(d["stream"]), int(d["stall"]), int(d["drain"]))
