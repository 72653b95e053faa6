"""Cycle accounting, identical for every driver of the accelerator, and the analytic cycle
model of a mapped layer.

Every cycle of a run is exactly one of:

* ``config``: beats were waiting for configuration writes (a job's writes not yet all
  taken, its SWAP, or writes held back while the pipeline still used the bank): the
  configuration time that streaming did not hide
* ``stream``: an input beat was accepted (N*C for N rows of C codebooks)
* ``stall``:  up to the last accepted beat, no beat accepted for any other reason (input
  bubbles, output back-pressure, a preload that has not arrived; cycles before the first
  beat count too)
* ``drain``:  after the last accepted beat until the last result is taken
* ``total``:  the sum

Beside them, traffic on the other ports (not cycles of their own): ``writes``, the
configuration writes taken (hidden or not), and ``preload``, the preload beats taken (the
partial sums a codebook pass hands to the next).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class CycleReport:
    config: int = 0
    stream: int = 0
    stall: int = 0
    drain: int = 0
    writes: int = 0
    preload: int = 0

    @property
    def total(self) -> int:
        return self.config + self.stream + self.stall + self.drain

    def __add__(self, other: CycleReport) -> CycleReport:
        return CycleReport(*(getattr(self, f.name) + getattr(other, f.name)
                             for f in fields(self)))

    def to_dict(self) -> dict[str, int]:
        d = asdict(self)
        d["total"] = self.total
        return d

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> CycleReport:
        return cls(**{f.name: int(d.get(f.name, 0)) for f in fields(cls)})


@dataclass(frozen=True)
class JobShape:
    """What the cycle model needs of one job: its configuration writes, the rows it streams
    and their codebooks (the job's CNUM), and whether its rows take a preload."""

    writes: int
    rows: int
    codebooks: int
    preload: bool = False


def model_cycles(jobs: Sequence[JobShape], *, L: int, out_beats: int, banks: int
                 ) -> CycleReport:
    """The cycles the accelerator takes for ``jobs`` streamed back to back as the layer
    runner schedules them (emulator/rtl.py), with every input beat offered and every result
    taken at once (no bubbles, no back-pressure), ``out_beats <= codebooks`` for every job and
    every preload on time (a pass's row's partial sums leave before the next pass needs them;
    true unless a pass has very few rows).

    Schedule: job 0's writes, then its SWAP (one cycle), then its beats. With two banks the
    next job's writes start the cycle after the previous SWAP, or once the bank they overwrite
    has no beat left in the L tree stages, and run beside the beats; its SWAP comes after
    both its writes and the current job's last beat. With one bank a job's writes wait until
    the previous job's last beat has left the tree. The last beat's results drain in
    ``L + 1 + out_beats`` cycles.
    """
    if banks not in (1, 2):
        raise ValueError(f"banks must be 1 or 2, got {banks}")
    config = stream = 0
    ends: list[int] = []  # the cycle of each job's last beat
    swap = -1             # cycle of the previous SWAP
    for j, job in enumerate(jobs):
        beats = job.rows * job.codebooks
        last_beat = ends[-1] if ends else -1
        if j == 0:
            start = 0
        elif banks == 1:  # the only bank: wait until the last beat has left the tree
            start = last_beat + L + 1
        else:  # the bank of job j-2, once its beats have left the tree
            start = swap + 1 if j == 1 else max(swap + 1, ends[-2] + L + 1)
        done = start + job.writes  # the SWAP's cycle at the earliest
        swap = max(done, last_beat + 1)
        config += swap - last_beat  # the cycles between the previous beat and this one
        stream += beats
        ends.append(swap + beats)
    drain = L + 1 + out_beats if jobs else 0
    return CycleReport(config=config, stream=stream, stall=0, drain=drain,
                       writes=sum(j.writes + 1 for j in jobs),
                       preload=sum(j.rows * out_beats for j in jobs if j.preload))
