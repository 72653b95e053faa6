"""The ``rtl`` backend: a hardware program and activations through the Verilated accelerator.

:func:`run_rtl` gathers and converts the features on the host (emulator.golden, as for every
backend), packs them into input beats, programs the thresholds once and the LUT one tile of
``params.M`` columns at a time, streams every row per tile, unpacks the raw accumulators and
dequantizes them on the host. Every step is counted (emulator/cycles.py): configuration
writes, accepted beats, stalls and drain, per tile and in total.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from emulator import golden
from emulator.build import BuildResult, build_harness, build_pyverilator, resolve_sources
from emulator.cycles import CycleReport
from emulator.harness import BatchSim, Handshake, StreamCounts, rng_state
from emulator.hwif import lut_writes, threshold_writes
from emulator.params import RtlParams
from emulator.run import RunResult
from learning.atomic import check_writable
from learning.errors import HalutError
from learning.program import HardwareProgram

DRIVERS: tuple[str, ...] = ("batch", "cycle")


class Sim(Protocol):
    def reset(self, cycles: int = ...) -> None: ...
    def config(self, addr: np.ndarray, data: np.ndarray) -> int: ...
    def stream(self, beats: np.ndarray, n_out: int, out_words: int, *, valid: Handshake = ...,
               ready: Handshake = ..., rng: np.ndarray | None = ..., max_idle: int = ...
               ) -> tuple[np.ndarray, StreamCounts]: ...
    def close(self, *, keep: bool = ...) -> None: ...


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


def _check_inputs(program: object, driver: str) -> None:
    if not isinstance(program, HardwareProgram):
        raise HalutError(f"program must be a HardwareProgram, got {type(program).__name__}")
    if driver not in DRIVERS:
        raise HalutError(f"driver must be one of {', '.join(DRIVERS)}, got {driver!r}")


def build_for(params: RtlParams, driver: str, *, trace: bool | str = False,
              sources: Sequence[str | os.PathLike[str]] | None = None) -> BuildResult:
    """The cached build a driver needs (the cycle driver's build always has VCD tracing)."""
    if driver == "batch":
        return build_harness(params, sources=sources, trace=trace)
    return build_pyverilator(params, sources=sources, trace_fst=trace == "fst")


def open_sim(build: BuildResult, driver: str, trace: str | os.PathLike[str] | None) -> Sim:
    if driver == "batch":
        return BatchSim(build.path, trace=trace)
    from emulator.driver import CycleSim

    return CycleSim(build.path, trace=trace)


def run_rtl(program: HardwareProgram, A: np.ndarray, *, params: RtlParams | None = None,
            driver: str = "batch", vcd: str | os.PathLike[str] | None = None,
            bubbles: object = None, backpressure: object = None, seed: int | None = None,
            progress: bool = False, sources: Sequence[str | os.PathLike[str]] | None = None
            ) -> RunResult:
    """Run ``program`` on activations ``A`` on the Verilated accelerator.

    Parameters
    ----------
    program : the quantized hardware program
    A : (N, D) float activations, finite
    params : RTL parameter set; default ``RtlParams.for_program(program)``. A program
        with more columns than ``params.M`` runs as ``ceil(M_prog / params.M)`` column tiles,
        reprogramming the LUT per tile (counted as configuration cycles)
    driver : "batch" (C++ loop through ctypes) or "cycle" (pyverilator, one cycle per call)
    vcd : write a waveform of the whole run here (``.fst`` suffix: FST, else VCD); checked
        for writability before the build, written beside it and renamed over it when the run
        has finished (a failed run leaves an existing file as it was)
    bubbles : input valid low: None, a probability per cycle, or a cyclic 0/1 valid pattern
    backpressure : output ready low: None, a probability per cycle, or a cyclic 0/1 pattern
    seed : seed of the random bubbles / back-pressure
    progress : show a tqdm bar over tiles
    sources : RTL files replacing rtl/halut.f (a gate-level netlist plus cell models)

    Returns
    -------
    RunResult with ``y`` (N, M) float32, ``acc`` (N, M) int32 | float32, ``cycles`` (the sum)
    and ``tiles`` (one CycleReport per column tile); ``info["build"]`` describes the build.
    """
    _check_inputs(program, driver)
    if params is None:
        params = RtlParams.for_program(program)
    elif not isinstance(params, RtlParams):
        raise HalutError(f"params must be an RtlParams, got {type(params).__name__}")
    params.check_program(program)
    valid = Handshake.make(bubbles, "bubbles")
    ready = Handshake.make(backpressure, "backpressure")
    features = golden.gather_features(program, A)  # shape, dtype, NaN/inf checks
    resolve_sources(sources)  # missing files fail before any Verilation
    N = features.shape[0]
    beats = pack_beats(features, params)
    trace_kind: bool | str = False
    if vcd is not None:
        check_writable(vcd, "waveform")  # before any Verilation or simulation
        trace_kind = "fst" if Path(vcd).suffix == ".fst" else "vcd"
    build = build_for(params, driver, trace=trace_kind, sources=sources)

    amap = params.address_map
    n_tiles = -(-program.M // params.M)
    beats_per_row = params.M // params.out_lanes
    max_idle = 10_000 + 4 * max(
        0 if h.pattern is None else h.pattern.size for h in (valid, ready))
    state = rng_state(seed)
    tiles: list[CycleReport] = []
    accs: list[np.ndarray] = []
    sim = open_sim(build, driver, vcd)
    finished = False
    try:
        sim.reset()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n_tiles, desc=f"rtl ({driver})", unit="tile")
        for t in range(n_tiles):
            lo, hi = t * params.M, min((t + 1) * params.M, program.M)
            addr, data = lut_writes(program, amap, lo, hi)
            if t == 0:
                t_addr, t_data = threshold_writes(program, amap)
                addr, data = np.concatenate([t_addr, addr]), np.concatenate([t_data, data])
            config = sim.config(addr, data)
            out, counts = sim.stream(beats, N * beats_per_row, params.out_lanes, valid=valid,
                                     ready=ready, rng=state, max_idle=max_idle)
            accs.append(unpack_results(out, N, params, hi - lo, program.acc_dtype))
            tiles.append(CycleReport(config=config, stream=counts.stream, stall=counts.stall,
                                     drain=counts.drain))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        finished = True
    finally:
        sim.close(keep=finished)  # the waveform replaces the old one only after a whole run
    acc = np.concatenate(accs, axis=1)
    y = golden.dequantize(program, acc)
    total = sum(tiles[1:], tiles[0])
    info = {"build": build.to_dict(), "driver": driver, "params": params.verilog_parameters(),
            "tiles": n_tiles}
    return RunResult(y=y, acc=acc, backend="rtl", cycles=total, tiles=tiles, info=info)
