"""The ``rtl`` backend: a hardware program and activations through the Verilated accelerator.

:class:`RtlBackend` is the backend object; the layer runner (emulator/runner.py) drives its
:class:`RtlSession`: one simulator per run, the thresholds loaded once and the LUT one tile of
``params.M`` columns at a time, every row tile streamed through each tile. On the host, the
session gathers and converts the features (emulator.golden, as for every backend), packs
them into input beats, unpacks the raw accumulators and dequantizes them. Every step is
counted (emulator/cycles.py): configuration writes, accepted beats, stalls and drain, per
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
from emulator.cycles import CycleReport
from emulator.harness import (
    BatchSim,
    Handshake,
    SimStream,
    StreamCounts,
    StreamDriver,
    rng_state,
)
from emulator.hwif import lut_writes, threshold_writes
from emulator.params import RtlParams
from emulator.runner import BackendBase, Cell, LayerModel, RunResult
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
              sources: Sequence[str | os.PathLike[str]] | None = None) -> BuildResult:
    """The cached build a driver needs (the cycle driver's build always has VCD tracing)."""
    if driver == "batch":
        return build_harness(params, sources=sources, trace=trace)
    return build_pyverilator(params, sources=sources, trace_fst=trace == "fst")


def open_sim(build: BuildResult, driver: str, trace: str | os.PathLike[str] | None) -> StreamDriver:
    if driver == "batch":
        return BatchSim(build.path, trace=trace)
    from emulator.driver import CycleSim

    return CycleSim(build.path, trace=trace)


class _ColumnStream:
    """The rows of one column tile as one stream cut into row tiles (harness.SimStream): a row
    tile's last results may leave during the next one, and only the last row tile drains, so
    the cycles do not depend on the row tiling."""

    def __init__(self, session: RtlSession) -> None:
        self.session = session
        p = session.params
        self.bpr = p.M // p.out_lanes  # output beats per row
        self.stream = SimStream(session.sim, 0, p.out_lanes, valid=session.valid,
                                ready=session.ready, rng=session.state,
                                max_idle=session.max_idle)
        self.rows = 0  # rows streamed so far
        self.done = 0  # rows handed back so far
        self.pending: list[tuple[int, StreamCounts]] = []  # (end row, counts) per row tile

    def add(self, beats: np.ndarray, last: bool) -> list[tuple[np.ndarray, CycleReport]]:
        p = self.session.params
        self.rows += beats.shape[0] // p.C
        self.stream.reserve(self.rows * self.bpr)
        counts = self.stream.add(beats, final=last)
        self.pending.append((self.rows, counts))
        out: list[tuple[np.ndarray, CycleReport]] = []
        while self.pending and self.pending[0][0] * self.bpr <= self.stream.taken:
            end, c = self.pending.pop(0)
            raw = self.stream.out[self.done * self.bpr:end * self.bpr]
            acc = unpack_results(raw, end - self.done, p, p.M, self.session.program.acc_dtype)
            out.append((acc, CycleReport(stream=c.stream, stall=c.stall, drain=c.drain)))
            self.done = end
        return out


class RtlSession:
    """One simulator for one layer: thresholds loaded once, each LUT tile once."""

    def __init__(self, backend: RtlBackend, program: HardwareProgram) -> None:
        self.program = program
        self.params = backend.params_for(program)
        self.params.check_program(program)
        self.driver = backend.driver
        self.valid, self.ready = backend.valid, backend.ready
        self.max_idle = 10_000 + 4 * max(
            0 if h.pattern is None else h.pattern.size for h in (self.valid, self.ready))
        self.state = rng_state(backend.seed)
        self.build = build_for(self.params, self.driver, trace=backend.trace_kind,
                               sources=backend.sources)
        self.amap = self.params.address_map
        self.thresholds_loaded = False
        self.stream_: _ColumnStream | None = None
        self.sim = open_sim(self.build, self.driver, backend.vcd)
        try:
            self.sim.reset()
        except BaseException:
            self.sim.close(keep=False)
            raise

    def prepare(self, A: np.ndarray) -> np.ndarray:
        if isinstance(self.sim, BatchSim):  # the same beats in C++, beside the stream
            return self.sim.pack(A, self.program.dims, self.program.threshold_format,
                                 self.program.input_scale, in_words(self.params))
        return pack_beats(golden.gather(self.program, A), self.params)

    def load(self, lo: int, hi: int) -> CycleReport:
        addr, data = lut_writes(self.program, self.amap, lo, hi)
        if not self.thresholds_loaded:
            t_addr, t_data = threshold_writes(self.program, self.amap)
            addr, data = np.concatenate([t_addr, addr]), np.concatenate([t_data, data])
            self.thresholds_loaded = True
        self.stream_ = _ColumnStream(self)
        return CycleReport(config=self.sim.config(addr, data))

    def stream(self, beats: np.ndarray, lo: int, hi: int, *, last: bool) -> list[Cell]:
        assert self.stream_ is not None, "load() comes first"
        return [Cell(y=golden.dequantize(self.program, acc[:, :hi - lo], lo),
                     acc=acc[:, :hi - lo], cycles=cyc)
                for acc, cyc in self.stream_.add(beats, last)]

    def close(self, *, keep: bool) -> None:
        self.sim.close(keep=keep)  # the waveform replaces an old one only after a whole run

    def info(self) -> dict[str, Any]:
        return {"build": self.build.to_dict(), "driver": self.driver,
                "params": self.params.verilog_parameters()}


class RtlBackend(BackendBase):
    """The Verilated accelerator as a backend object.

    Parameters
    ----------
    params : RTL parameter set; default ``RtlParams.for_program(program)`` (the program's C,
        K and formats, ``DEFAULT_TILE_M`` columns). A program with more columns than
        ``params.M`` runs as ``ceil(M_prog / params.M)`` column tiles, each LUT tile loaded
        once (counted as configuration cycles)
    driver : "batch" (C++ loop through ctypes) or "cycle" (pyverilator, one cycle per call)
    vcd : write a waveform of the whole run here (``.fst`` suffix: FST, else VCD); checked
        for writability before the build, written beside it and renamed over it when the run
        has finished (a failed run leaves an existing file as it was)
    bubbles : input valid low: None, a probability per cycle, or a cyclic 0/1 valid pattern
    backpressure : output ready low: None, a probability per cycle, or a cyclic 0/1 pattern
    seed : seed of the random bubbles / back-pressure
    progress : show a tqdm bar over tiles (when the backend runs a matrix by itself)
    sources : RTL files replacing rtl/halut.f (a gate-level netlist plus cell models)
    """

    name = "rtl"
    counts_cycles = True

    def __init__(self, *, params: RtlParams | None = None, driver: str = "batch",
                 vcd: str | os.PathLike[str] | None = None, bubbles: object = None,
                 backpressure: object = None, seed: int | None = None, progress: bool = False,
                 sources: Sequence[str | os.PathLike[str]] | None = None) -> None:
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
        self.vcd = vcd
        self.trace_kind: bool | str = False
        if vcd is not None:
            check_writable(vcd, "waveform")  # before any Verilation or simulation
            self.trace_kind = "fst" if Path(vcd).suffix == ".fst" else "vcd"

    def params_for(self, program: HardwareProgram) -> RtlParams:
        return RtlParams.for_program(program) if self.params is None else self.params

    def column_tile(self, layer: LayerModel) -> int:
        return self.params_for(layer.need_program(self.name)).M

    def options_key(self) -> dict[str, Any]:
        return {"params": None if self.params is None else self.params.verilog_parameters(),
                "driver": self.driver, "bubbles": self.bubbles,
                "backpressure": self.backpressure, "seed": self.seed,
                "sources": None if self.sources is None else [str(p) for p in self.sources]}

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
