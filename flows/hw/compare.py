"""``halut hw compare``: the accelerator against the multiply-accumulate baseline
(``rtl/mac_accel.sv``, docs/mac-baseline.md) on the same flow and the same layer shape.

For a layer of D inputs on a chip of C codebooks and M columns, the baseline takes
``V = ceil(D / C)`` int8 activations per beat and keeps M int32 accumulators with int8
weights, so both designs stream a row in C cycles with the same output rate, banks and
output lanes. Both are synthesized (Yosys, osu018), timed (OpenSTA, fmax by bisection) and
power-annotated from a gate-level simulation of the same layer shape
(:mod:`flows.hw.power`): the accelerator runs a random program of the chip's C and M over D
inputs on random activations, the baseline int8 weights and the int8-quantized
activations of the same distribution.

Figures per design: cell area, cells, flip-flops, fmax; power with simulated activity at
the clock (default each design's own fmax); energy per row (the run's energy over its
rows); area efficiency GOp/s/mm^2 at fmax with one row per C cycles (2*D*M operations per
row, MAC-equivalent); energy efficiency TOp/s/W (operations per joule / 1e12). Ratios are
halut / MAC.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.params import RtlParams
from flows.hw.common import JsonRecord, params_dict, write_json
from flows.hw.power import (
    PowerResult,
    check_clock,
    default_clock,
    halut_workload,
    mac_workload,
    measure_power,
)
from flows.hw.sta import DEFAULT_IO_FRACTION
from flows.hw.synth import DEFAULT_PERIOD_NS, SynthResult, synthesis_for_timing
from learning.errors import HalutError

RATIO_KEYS = ("area", "energy_per_row", "gops_per_mm2", "tops_per_w", "fmax")


def mac_for(params: RtlParams, depth: int) -> Any:
    """The baseline of the same shape as the chip ``params`` for layers of ``depth``
    inputs: C beats of ``ceil(depth / C)`` activations, M columns, the same output lanes
    and banks."""
    from emulator.mac import MacParams

    if depth < 1:
        raise HalutError(f"--depth must be >= 1, got {depth}")
    return MacParams(C=params.C, V=-(-depth // params.C), M=params.M,
                     out_lanes=params.out_lanes, banks=params.banks)


def design_figures(synth: SynthResult, power: PowerResult, fmax_mhz: float, C: int
                   ) -> dict[str, Any]:
    """One design's column of the comparison."""
    rows = power.workload["rows"]
    cycles = power.activity["cycles"]
    energy_row_pj = power.energy_pj["per_row"]
    ops = power.ops_per_row
    area_mm2 = synth.area * 1e-6  # osu018's area unit is um^2
    peak_ops_s = ops * fmax_mhz * 1e6 / C  # one row per C cycles at fmax
    return {
        "params": synth.params, "area_um2": synth.area, "cells": synth.cells,
        "flip_flops": synth.flip_flops, "fmax_mhz": fmax_mhz,
        "clock_mhz": power.clock_mhz, "power_w": power.power_w["total"],
        "power_breakdown_w": power.power_w,
        "vectorless_power_w": power.vectorless_power_w["total"],
        "energy_per_row_pj": energy_row_pj,
        "gops_per_mm2": peak_ops_s / 1e9 / area_mm2 if area_mm2 > 0 else 0.0,
        "tops_per_w": ops / (energy_row_pj * 1e-12) / 1e12 if energy_row_pj > 0 else 0.0,
        "rows": rows, "cycles": cycles, "ops_per_row": ops, "run_dir": power.run_dir,
    }


@dataclass(frozen=True, kw_only=True)
class CompareResult(JsonRecord):
    """``compare.json``: both designs side by side and the halut / MAC ratios."""

    depth: int
    clock_mhz: float | None
    workload: dict[str, Any]
    designs: dict[str, dict[str, Any]]
    ratios: dict[str, float]
    seconds: float
    run_dir: str


def ratios(halut: dict[str, Any], mac: dict[str, Any]) -> dict[str, float]:
    """halut / MAC for the compared figures (inf where the MAC's is 0)."""
    pairs = {"area": "area_um2", "energy_per_row": "energy_per_row_pj",
             "gops_per_mm2": "gops_per_mm2", "tops_per_w": "tops_per_w", "fmax": "fmax_mhz"}
    return {k: (halut[f] / mac[f] if mac[f] else math.inf) for k, f in pairs.items()}


def compare(params: RtlParams, depth: int, run_dir: Path, *, rows: int = 64, seed: int = 0,
            clock_mhz: float | None = None, period_ns: float = DEFAULT_PERIOD_NS,
            io_fraction: float = DEFAULT_IO_FRACTION, liberty: Path | None = None,
            sources: Sequence[str | Path] | None = None,
            timeout: float | None = None) -> CompareResult:
    """Synthesize, time and power-annotate the accelerator ``params`` and its MAC baseline
    for layers of ``depth`` inputs (``run_dir/halut``, ``run_dir/mac``); write
    ``compare.json``. ``sources`` replaces the accelerator's RTL only."""
    check_clock(clock_mhz)
    mac = mac_for(params, depth)
    t0 = time.monotonic()
    figures: dict[str, dict[str, Any]] = {}
    workload: dict[str, Any] = {}
    for name, design, wl, srcs in (
            ("halut", params, halut_workload(params, rows=rows, seed=seed, depth=depth),
             sources),
            ("mac", mac, mac_workload(mac, D=depth, rows=rows, seed=seed), None)):
        d = run_dir / name
        d.mkdir(parents=True, exist_ok=True)
        power = measure_power(design, d, wl, sources=srcs, liberty=liberty,
                              clock_mhz=clock_mhz, synth_period_ns=period_ns,
                              io_fraction=io_fraction, timeout=timeout)
        synth = synthesis_for_timing(design, d, sources=srcs, liberty=liberty,
                                     period_ns=period_ns, timeout=timeout).synth
        # hw sta's fmax on this netlist (timed by measure_power unless --clock-mhz was given)
        fmax = default_clock(design, d, synth, liberty=liberty, io_fraction=io_fraction,
                             timeout=timeout)
        figures[name] = design_figures(synth, power, fmax, params.C)
        workload[name] = power.workload
    result = CompareResult(
        depth=depth, clock_mhz=clock_mhz,
        workload={"D": depth, "M": params.M, "rows": rows, "seed": seed, **workload},
        designs=figures, ratios=ratios(figures["halut"], figures["mac"]),
        seconds=round(time.monotonic() - t0, 1), run_dir=str(run_dir))
    write_json(run_dir / "compare.json", {**result.to_dict(),
                                          "params": params_dict(params)})
    return result
