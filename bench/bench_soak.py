"""Soak: at least 10^7 simulated clock cycles of the Verilated accelerator with its protocol
assertions on (docs/reliability.md), under random bubbles, random back-pressure and
overlapped configuration, every row compared with the golden model bit for bit.

Two small chips with two banks (so each job's configuration loads beside the previous job's
rows): C=4 K=16 M=8 with fp16 thresholds and fp16 LUT (fp32 accumulation), 2 output beats a
row; and C=3 K=4 M=8 int8/int8 with 2 entries per configuration write; and, for the one-bank
rules, C=3 K=4 M=8 fp16/int8 with one bank (loading waits for an idle tree). Layers cycle through
shapes with more codebooks than the chip (codebook passes, the later ones from the preload
port), more columns than the chip (column tiles), fewer codebooks than the chip, and a last
pass of one codebook (output-bound rows); each layer runs through the layer runner
(emulator.runner.run_matrix on RtlBackend, batch harness) in row tiles, with its own bubble
and back-pressure probabilities and seed. int8 layers alternate full-range LUTs and LUTs at
the extremes (the int32 sums wrap).

Writes bench/results/soak.json: cycles, rows, jobs, layers, mismatches (rows that differ from
golden in any column; must be 0), seconds, and the assertion failures (none: a failure is a
HalutError that ends the run with exit status 1).

Usage: ``python bench/bench_soak.py [--cycles N] [--seed S]`` (default 10^7 cycles).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from common import write_result

import emulator.rtl as rtl
from emulator import golden
from emulator.build import BuildResult, build_harness
from emulator.layers import LayerModel
from emulator.params import RtlParams
from emulator.runner import run_matrix
from emulator.vectors import random_activations, random_program
from emulator.verilator import assert_flags
from learning.errors import HalutError

# (chip, layer shapes as (codebooks, columns)) : the shapes cycle layer after layer
CHIPS: list[tuple[str, RtlParams, list[tuple[int, int]]]] = [
    ("C4K16M8_fp16_fp16", RtlParams(C=4, K=16, M=8, out_lanes=4, lut_format="fp16"),
     [(10, 20), (9, 13), (4, 8), (3, 17)]),
    ("C3K4M8_int8_int8", RtlParams(C=3, K=4, M=8, out_lanes=4, threshold_format="int8",
                                   lut_format="int8", cfg_lanes=2),
     [(8, 20), (7, 11), (2, 8), (10, 5)]),
    ("C3K4M8_fp16_int8_1bank", RtlParams(C=3, K=4, M=8, out_lanes=4, banks=1),
     [(8, 20), (5, 9)]),
]
ROW_TILE = 512  # rows per part of a job's stream (parts join without draining)


@contextlib.contextmanager
def assertion_builds() -> Iterator[None]:
    """RtlBackend's builds with the RTL's assertions (emulator.rtl.build_for has no option
    for them yet: the soak substitutes one that passes assert_flags())."""
    saved = rtl.build_for

    def build_for(params: RtlParams, driver: str, *, trace: bool | str = False,
                  sources: Any = None, assertions: bool = False) -> BuildResult:
        if driver != "batch" or trace:
            raise HalutError("the soak runs the batch harness without a waveform")
        return build_harness(params, sources=sources, extra_flags=assert_flags())

    rtl.build_for = build_for
    try:
        yield
    finally:
        rtl.build_for = saved


def run_layer(rng: np.random.Generator, params: RtlParams, C: int, M: int, rows: int,
              extremes: bool) -> dict[str, Any]:
    program = random_program(rng, C, params.K, M, 3 * C + 2, params.threshold_format,
                             params.lut_format)
    if extremes:
        program = program.replace(lut=np.where(program.lut >= 0, 127, -128).astype(np.int8))
    A = random_activations(rng, program, rows)
    bubbles = float(rng.uniform(0.0, 0.5))
    backpressure = float(rng.uniform(0.0, 0.6))
    seed = int(rng.integers(0, 2**31))
    backend = rtl.RtlBackend(params=params, bubbles=bubbles, backpressure=backpressure,
                             seed=seed)
    t0 = time.perf_counter()
    r = run_matrix(backend, LayerModel(program), A, row_tile=ROW_TILE)
    sim_seconds = time.perf_counter() - t0
    g = golden.run(program, A)
    if r.acc is None or r.cycles is None:
        raise HalutError("the rtl backend reported no accumulators or no cycles")
    bad = np.any(r.acc.view(np.uint32) != g.acc.view(np.uint32), axis=1)
    return {"C": C, "M": M, "rows": rows, "jobs": int(r.info["jobs"]),
            "passes": int(r.info["codebook_passes"]), "column_tiles": int(r.info["column_tiles"]),
            "bubbles": round(bubbles, 3), "backpressure": round(backpressure, 3), "seed": seed,
            "int8_extremes": extremes, "cycles": int(r.cycles.total),
            "preload_beats": int(r.cycles.preload), "writes": int(r.cycles.writes),
            "mismatched_rows": int(bad.sum()), "sim_seconds": round(sim_seconds, 3)}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=float, default=1e7, help="cycles to simulate at least")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    target = int(args.cycles)
    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()
    builds = {}
    layers: list[dict[str, Any]] = []
    totals = {"cycles": 0, "rows": 0, "jobs": 0, "mismatches": 0}
    error = None
    with assertion_builds():
        for name, params, _ in CHIPS:
            b = rtl.build_for(params, "batch")
            builds[name] = {"key": b.key, "seconds": round(b.seconds, 1), "cached": b.cached,
                            "params": params.verilog_parameters()}
        i = 0
        try:
            while totals["cycles"] < target:
                name, params, shapes = CHIPS[i % len(CHIPS)]
                C, M = shapes[(i // len(CHIPS)) % len(shapes)]
                rows = int(rng.integers(1500, 3000))
                extremes = params.lut_format == "int8" and (i // len(CHIPS)) % 2 == 1
                rec = {"chip": name, **run_layer(rng, params, C, M, rows, extremes)}
                layers.append(rec)
                totals["cycles"] += rec["cycles"]
                totals["rows"] += rows
                totals["jobs"] += rec["jobs"]
                totals["mismatches"] += rec["mismatched_rows"]
                i += 1
                print(f"layer {i}: {name} C={C} M={M} rows={rows} jobs={rec['jobs']} "
                      f"cycles={rec['cycles']} mismatched={rec['mismatched_rows']} "
                      f"(total {totals['cycles']:,} cycles)", file=sys.stderr, flush=True)
        except HalutError as exc:  # an RTL assertion (or a hang): the soak fails
            error = str(exc)
    seconds = time.perf_counter() - t_start
    sim = sum(rec["sim_seconds"] for rec in layers)
    passed = error is None and totals["mismatches"] == 0 and totals["cycles"] >= target
    write_result("soak", {
        "target_cycles": target, "seed": args.seed, "assertions": True,
        **totals, "layers": len(layers), "seconds": round(seconds, 1),
        "simulation_seconds": round(sim, 1),
        "cycles_per_s": round(totals["cycles"] / sim) if sim else None,
        "error": error, "passed": passed, "builds": builds,
        "per_layer": layers,
    })
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
