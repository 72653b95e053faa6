"""The ``rtl`` backend: a hardware program and activations through the Verilated accelerator.

:class:`RtlBackend` is the backend object: one chip configuration (:class:`RtlParams`) onto
which every layer is mapped. The layer runner (emulator/runner.py) drives its
:class:`RtlSession`: one simulator per run and one stream of *jobs* (column tile of
``params.M`` columns x codebook pass of at most ``params.C`` codebooks), each job's
configuration written once, the next job's writes loading into the shadow bank while the
current job's rows stream (``banks=2``), every row tile streamed through each job. A pass
after the first starts every row from the previous pass's results, which the host sends
back on the preload port. On the host, the session gathers and converts the features
(emulator.golden, as for every backend), packs them into input beats, unpacks the raw
accumulators and dequantizes them. Every cycle is counted (emulator/cycles.py): exposed
configuration, accepted beats, stalls and drain, plus the write and preload traffic, per
cell, per tile and in total. :func:`run_rtl` runs a whole matrix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emulator import golden
from emulator.build import BuildResult, build_harness, build_pyverilator, resolve_sources
from emulator.cycles import CycleReport, JobShape, model_cycles
from emulator.harness import (
    BatchSim,
    Handshake,
    SimStream,
    StreamCounts,
    StreamDriver,
    rng_state,
)
from emulator.hwif import ConfigWrites, job_writes, swap_write
from emulator.params import RtlParams
from emulator.runner import BackendBase, Cell, Job, LayerModel, RunResult
from emulator.verilator import assert_flags
from learning.atomic import check_writable
from learning.errors import HalutError
from learning.program import HardwareProgram

DRIVERS: tuple[str, ...] = ("batch", "cycle")


def in_words(params: RtlParams) -> int:
    """uint32 words per input beat (``L * FeatW`` bits)."""
    return max(1, -(-params.L * params.feature_bits // 32))


def pack_beats(features: np.ndarray, params: RtlParams) -> np.ndarray:
    """Input beats: feature ``l`` of a codebook at bits ``[l*FeatW, (l+1)*FeatW)``.

    Parameters
    ----------
    features : (N, C, L) float16 or int8, in the threshold format

    Returns
    -------
    (N*C, words) uint32, rows in stream order (row-major over n, then c)
    """
    N, C, L = features.shape
    raw = features.view(np.uint16 if features.dtype == np.float16 else np.uint8)
    per_word = 32 // (8 * raw.dtype.itemsize)
    words = in_words(params)
    padded = np.zeros((N * C, words * per_word), dtype=raw.dtype)
    padded[:, :L] = raw.reshape(N * C, L)
    return np.ascontiguousarray(padded).view("<u4").reshape(N * C, words)


def unpack_results(out: np.ndarray, N: int, params: RtlParams, cols: int,
                   acc_dtype: type[np.generic]) -> np.ndarray:
    """(N * M/OutLanes, OutLanes) raw result beats -> (N, cols) int32 or float32 accumulators
    (lane ``j`` of a row's beat ``b`` is column ``b*OutLanes + j``)."""
    lanes = out.reshape(N, params.M)[:, :cols]
    return np.ascontiguousarray(lanes).view(acc_dtype)


def build_for(params: RtlParams, driver: str, *, trace: bool | str = False,
              sources: Sequence[str | os.PathLike[str]] | None = None,
              assertions: bool = False) -> BuildResult:
    """The cached build a driver needs (the cycle driver's build always has VCD tracing);
    ``assertions``: with the RTL's protocol assertions (a separate build, docs/reliability.md)."""
    flags = assert_flags() if assertions else ()
    if driver == "batch":
        return build_harness(params, sources=sources, trace=trace, extra_flags=flags)
    return build_pyverilator(params, sources=sources, trace_fst=trace == "fst", extra_flags=flags)


def open_sim(build: BuildResult, driver: str, trace: str | os.PathLike[str] | None) -> StreamDriver:
    if driver == "batch":
        return BatchSim(build.path, trace=trace)
    from emulator.driver import CycleSim

    return CycleSim(build.path, trace=trace)


def codebook_passes(C_layer: int, C_chip: int) -> list[tuple[int, int]]:
    """The codebook ranges of a layer of ``C_layer`` codebooks on a chip of ``C_chip``:
    ``ceil(C_layer / C_chip)`` consecutive passes."""
    return [(k, min(k + C_chip, C_layer)) for k in range(0, C_layer, C_chip)]


def job_shapes(program: HardwareProgram, params: RtlParams, rows: int) -> list[JobShape]:
    """The jobs of ``program`` on the chip ``params`` for ``rows`` rows, in the layer runner's
    order (column tiles outside, codebook passes inside), for :func:`model_cycles`."""
    amap = params.address_map
    out = []
    for lo in range(0, program.M, params.M):
        hi = min(lo + params.M, program.M)
        for p, (k0, k1) in enumerate(codebook_passes(program.C, params.C)):
            n = len(job_writes(program, amap, (k0, k1), (lo, hi), preload=p > 0))
            out.append(JobShape(writes=n, rows=rows, codebooks=k1 - k0, preload=p > 0))
    return out


def model_layer_cycles(program: HardwareProgram, params: RtlParams, rows: int) -> CycleReport:
    """The analytic cycle count of a layer on the chip (:func:`model_cycles`): what the RTL
    takes with no bubbles and no back-pressure when every job's codebooks are at least the
    output beats per row and no preload comes late."""
    return model_cycles(job_shapes(program, params, rows), L=params.L,
                        out_beats=params.out_beats, banks=params.banks)


def _report(c: StreamCounts) -> CycleReport:
    return CycleReport(config=c.config, stream=c.stream, stall=c.stall, drain=c.drain,
                       writes=c.writes, preload=c.preload)


class RtlSession:
    """One simulator for one layer, and one stream of jobs through it (see the module)."""

    def __init__(self, backend: RtlBackend, program: HardwareProgram) -> None:
        self.program = program
        self.params = backend.params_for(program)
        self.params.check_program(program)
        self.driver = backend.driver
        self.amap = self.params.address_map
        self.bpr = self.params.out_beats  # result (and preload) beats per row
        max_idle = 10_000 + 4 * max(
            0 if h.pattern is None else h.pattern.size for h in (backend.valid, backend.ready))
        self.build = build_for(self.params, self.driver, trace=backend.trace_kind,
                               sources=backend.sources, assertions=backend.assertions)
        self.sim = open_sim(self.build, self.driver, backend.vcd)
        try:
            self.sim.reset()
        except BaseException:
            self.sim.close(keep=False)
            raise
        self.stream_ = SimStream(self.sim, 0, self.params.out_lanes, valid=backend.valid,
                                 ready=backend.ready, rng=rng_state(backend.seed),
                                 max_idle=max_idle, lanes=self.params.cfg_lanes)
        self.queued: Job | None = None  # the job whose writes are queued beside the beats
        self.gate = 0                   # writes the current job's beats wait for
        self.more = False               # another job follows the current one
        self.rows = 0                   # rows streamed so far (all jobs)
        self.part = 0                   # row tiles streamed so far in the current job
        self.starts: dict[tuple[int, int], list[int]] = {}  # (tile, pass) -> first result
        self.cycles: dict[tuple[int, int], CycleReport] = {}  # (tile, row part) -> passes
        self.pending: list[tuple[int, int, int, tuple[int, int]]] = []  # start, rows, lo, key
        self.jobs = 0

    def _writes(self, job: Job) -> ConfigWrites:
        return job_writes(self.program, self.amap, (job.k0, job.k1), (job.lo, job.hi),
                          preload=job.index > 0)

    def prepare(self, A: np.ndarray) -> np.ndarray:
        if isinstance(self.sim, BatchSim):  # the same beats in C++, beside the stream
            return self.sim.pack(A, self.program.dims, self.program.threshold_format,
                                 self.program.input_scale, in_words(self.params))
        return pack_beats(golden.gather(self.program, A), self.params)

    def load(self, job: Job, nxt: Job | None) -> None:
        if self.queued != job:
            self.stream_.queue(self._writes(job))
        self.stream_.queue(swap_write(self.amap))
        self.gate = self.stream_.queued
        self.queued = None
        if nxt is not None and self.params.banks == 2:  # loads into the shadow bank
            self.stream_.queue(self._writes(nxt))
            self.queued = nxt
        self.more = nxt is not None
        self.part = 0
        self.jobs += 1

    def stream(self, beats: np.ndarray, job: Job, *, last: bool) -> list[Cell]:
        C = self.program.C
        rows = beats.shape[0] // C
        if (job.k0, job.k1) != (0, C):
            beats = beats.reshape(rows, C, -1)[:, job.k0:job.k1].reshape(
                rows * (job.k1 - job.k0), -1)
        start = self.rows * self.bpr
        self.rows += rows
        self.stream_.reserve(self.rows * self.bpr)
        pre = None
        if job.index > 0:  # the previous pass's results of the same rows
            src = self.starts[(job.tile, job.index - 1)][self.part]
            pre = np.arange(src, src + rows * self.bpr, dtype=np.int64)
        self.starts.setdefault((job.tile, job.index), []).append(start)
        counts = self.stream_.add(beats, last and not self.more, gate=self.gate, pre=pre)
        key = (job.tile, self.part)
        self.cycles[key] = self.cycles.get(key, CycleReport()) + _report(counts)
        if job.last_pass:
            self.pending.append((start, rows, job.lo, key))
        self.part += 1
        out: list[Cell] = []
        while self.pending and (self.pending[0][0] + self.pending[0][1] * self.bpr
                                <= self.stream_.taken):
            start, n, lo, key = self.pending.pop(0)
            raw = self.stream_.out[start:start + n * self.bpr]
            acc = unpack_results(raw, n, self.params, self.params.M, self.program.acc_dtype)
            acc = acc[:, :min(self.params.M, self.program.M - lo)]
            out.append(Cell(y=golden.dequantize(self.program, acc, lo), acc=acc,
                            cycles=self.cycles.pop(key)))
        return out

    def close(self, *, keep: bool) -> None:
        self.sim.close(keep=keep)  # the waveform replaces an old one only after a whole run

    def info(self) -> dict[str, Any]:
        return {"build": self.build.to_dict(), "driver": self.driver,
                "params": self.params.verilog_parameters(), "jobs": self.jobs}


class RtlBackend(BackendBase):
    """The Verilated accelerator as a backend object.

    Parameters
    ----------
    params : the chip configuration every layer is mapped onto; default
        ``RtlParams.for_program(program)`` (the default parameters with the program's K and
        formats). A layer runs as ``ceil(M_prog / params.M)`` column tiles times
        ``ceil(C_prog / params.C)`` codebook passes (jobs), each job's configuration written
        once, loading beside the previous job's rows; a layer whose K or formats differ from
        the chip's is refused
    driver : "batch" (C++ loop through ctypes) or "cycle" (pyverilator, one cycle per call)
    vcd : write a waveform of the whole run here (``.fst`` suffix: FST, else VCD); checked
        for writability before the build, written beside it and renamed over it when the run
        has finished (a failed run leaves an existing file as it was)
    bubbles : input valid low: None, a probability per cycle, or a cyclic 0/1 valid pattern
    backpressure : output ready low: None, a probability per cycle, or a cyclic 0/1 pattern
    seed : seed of the random bubbles / back-pressure
    progress : show a tqdm bar over tiles (when the backend runs a matrix by itself)
    sources : RTL files replacing rtl/halut.f (a gate-level netlist plus cell models)
    assertions : simulate with the RTL's protocol assertions (a build of its own, about 1.65x
        slower); a violated rule is a HalutError naming the cycle and the rule
    """

    name = "rtl"
    counts_cycles = True

    def __init__(self, *, params: RtlParams | None = None, driver: str = "batch",
                 vcd: str | os.PathLike[str] | None = None, bubbles: object = None,
                 backpressure: object = None, seed: int | None = None, progress: bool = False,
                 sources: Sequence[str | os.PathLike[str]] | None = None,
                 assertions: bool = False) -> None:
        if driver not in DRIVERS:
            raise HalutError(f"driver must be one of {', '.join(DRIVERS)}, got {driver!r}")
        if params is not None and not isinstance(params, RtlParams):
            raise HalutError(f"params must be an RtlParams, got {type(params).__name__}")
        self.params, self.driver, self.seed = params, driver, seed
        self.progress = bool(progress)
        self.valid = Handshake.make(bubbles, "bubbles")
        self.ready = Handshake.make(backpressure, "backpressure")
        self.bubbles, self.backpressure = bubbles, backpressure
        resolve_sources(sources)  # missing files fail before any Verilation
        self.sources = sources
        self.assertions = bool(assertions)
        self.vcd = vcd
        self.trace_kind: bool | str = False
        if vcd is not None:
            check_writable(vcd, "waveform")  # before any Verilation or simulation
            self.trace_kind = "fst" if Path(vcd).suffix == ".fst" else "vcd"

    def params_for(self, program: HardwareProgram) -> RtlParams:
        return RtlParams.for_program(program) if self.params is None else self.params

    def column_tile(self, layer: LayerModel) -> int:
        return self.params_for(layer.need_program(self.name)).M

    def codebook_passes(self, layer: LayerModel) -> list[tuple[int, int]]:
        program = layer.need_program(self.name)
        return codebook_passes(program.C, self.params_for(program).C)

    def options_key(self) -> dict[str, Any]:
        return {"params": None if self.params is None else self.params.verilog_parameters(),
                "driver": self.driver, "bubbles": self.bubbles,
                "backpressure": self.backpressure, "seed": self.seed,
                "sources": None if self.sources is None else [str(p) for p in self.sources],
                "assertions": self.assertions}

    def open(self, layer: LayerModel) -> RtlSession:
        return RtlSession(self, layer.need_program(self.name))

    def run(self, program: HardwareProgram, A: np.ndarray) -> RunResult:
        if isinstance(program, HardwareProgram):
            self.params_for(program).check_program(program)  # before the activations' checks
        res = super().run(program, A)
        res.info["tiles"] = len(res.tiles)
        return res


def run_rtl(program: HardwareProgram, A: np.ndarray, **options: Any) -> RunResult:
    """Run ``program`` on activations ``A`` (N, D) on the Verilated accelerator; ``options``
    are :class:`RtlBackend`'s.

    Returns
    -------
    RunResult with ``y`` (N, M) float32, ``acc`` (N, M) int32 | float32, ``cycles`` (the sum)
    and ``tiles`` (one CycleReport per column tile); ``info["build"]`` describes the build.
    """
    return RtlBackend(**options).run(program, A)
