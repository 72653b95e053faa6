"""Gate-level check: the synthesized netlist must simulate exactly like the RTL.

Yosys silently miscompiles some SystemVerilog (TOOLCHAIN.md), so the netlist of
:mod:`flows.hw.synth` (cells of the Liberty library, top renamed back to
:data:`emulator.hwif.TOP` with the agreed ports) is Verilated together with the library's
Verilog cell models (osu018_stdcells.v: gate primitives and a ``udp_dff`` UDP, which
Verilator 5.048 simulates; the build passes ``-Wno-fatal`` so the models' style warnings do
not stop it) and driven by the same batch harness as the RTL (:func:`emulator.rtl.run_rtl`
with ``sources=``).

For each random program (:func:`emulator.vectors.random_program`, shapes from
:func:`layer_shape`: one job, several codebook passes and column tiles loading beside the
streaming, fewer codebooks than the chip) and activations
(:func:`emulator.vectors.random_activations`, with ties on thresholds) the check requires:

* accumulators and outputs of the netlist bit-identical to the golden model, and
* its cycle report (configuration, stream, stall, drain) identical to the RTL run's,

first with a free-flowing stream, then with random input bubbles and output back-pressure
(the same seed for the RTL and the netlist).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emulator import golden
from emulator.cycles import CycleReport
from emulator.hwif import TOP, port_names
from emulator.params import RtlParams
from emulator.rtl import run_rtl
from emulator.vectors import random_activations, random_program
from flows import tools
from flows.hw.common import JsonRecord, check_period, params_dict, write_json
from flows.hw.synth import synthesize
from learning.errors import HalutError

_PORT = re.compile(r"^\s*(?:input|output)\s+(?:(?:wire|reg)\s+)?(?:\[[^\]]*\]\s*)?(\w+)\s*;",
                   re.MULTILINE)


def check_netlist_ports(netlist: Path) -> None:
    """A one-line error when the synthesized ``netlist`` lacks a port the batch harness
    drives (every port of :func:`emulator.hwif.port_names`: RTL whose top is not the
    accelerator's interface), before any Verilator build."""
    ports = set(_PORT.findall(netlist.read_text(errors="replace")))
    missing = [p for p in port_names() if p not in ports]
    if missing:
        raise HalutError(f"the netlist {netlist.name} lacks the harness ports "
                         f"{', '.join(missing)}: the gate-level check needs {TOP}'s "
                         "interface")


@dataclass(frozen=True, kw_only=True)
class GlsCase(JsonRecord):
    """One run of one program on the netlist: its cycles, the RTL's, and whether both agree
    (values with golden, cycles with the RTL)."""

    program: int
    mode: Literal["free", "stalls"]
    rows: int
    # the program's codebooks and columns: a layer of the chip's size, one of several
    # codebook passes x column tiles (loaded beside the streaming), one with fewer codebooks
    C: int
    M: int
    ok: bool
    gate_cycles: CycleReport | None
    rtl_cycles: CycleReport | None
    # the first row whose accumulators (else outputs) differ from golden; None when none
    first_bad_row: int | None
    rtl_matches_golden: bool


@dataclass(frozen=True, kw_only=True)
class GlsResult(JsonRecord):
    """The gate-level check (``gls.json``): ``passed`` when every case is ok; otherwise
    ``first_failure`` names the first bad program and row (or cycle report)."""

    params: dict[str, Any]
    passed: bool
    first_failure: str
    cases: list[GlsCase]
    programs: int
    rows: int
    seed: int
    netlist: str
    cells: int
    cell_models: str
    seconds: float
    run_dir: str


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.uint32) if a.dtype.itemsize == 4 else a


def first_difference(got: np.ndarray, want: np.ndarray) -> int | None:
    """Index of the first row whose bits differ, or None."""
    g, w = _bits(got), _bits(want)
    if g.shape != w.shape:
        return 0
    rows = np.nonzero(np.any(g.reshape(g.shape[0], -1) != w.reshape(w.shape[0], -1), axis=1))[0]
    return int(rows[0]) if rows.size else None


def layer_shape(params: RtlParams, i: int) -> tuple[int, int]:
    """(C, M) of the gate-level check's program ``i``: in turn the chip's own size, 2.5 times
    its codebooks (three passes, the partial sums through the preload port) over two and a
    bit column tiles (each job loading into the shadow bank while the previous one streams),
    and one codebook fewer than the chip (the CNUM register)."""
    C, M = params.C, params.M
    return [(C, M), (C * 2 + max(1, C // 2), 2 * M + 1), (max(1, C - 1), M)][i % 3]


def gate_level_check(params: RtlParams, run_dir: Path, *,
                     sources: Sequence[str | os.PathLike[str]] | None = None,
                     programs: int = 3, rows: int = 6, seed: int = 0,
                     stalls: float = 0.25, period_ns: float = 10.0) -> GlsResult:
    """Synthesize (reusing a finished synthesis in ``run_dir``), then compare the netlist
    against golden (values) and the RTL (cycles). Writes ``gls.json``
    (:meth:`GlsResult.to_dict`); ``passed`` says it."""
    if programs < 1 or rows < 1:
        raise HalutError(f"programs and rows must be >= 1, got {programs} and {rows}")
    if seed < 0:
        raise HalutError(f"the seed must be >= 0, got {seed}")
    check_period(period_ns)
    synth = synthesize(params, run_dir, sources=sources, period_ns=period_ns, reuse=True,
                       breakdown=False)
    check_netlist_ports(Path(synth.netlist))
    cells = tools.find_osu018("cells")
    gate_sources = [Path(synth.netlist), cells]
    rng = np.random.default_rng(seed)
    cases: list[GlsCase] = []
    passed = True
    first_failure = ""
    t0 = time.monotonic()
    modes: tuple[tuple[Literal["free", "stalls"], float | None], ...] = (
        ("free", None), ("stalls", stalls if stalls > 0 else None))
    for i in range(programs):
        C, M = layer_shape(params, i)
        program = random_program(rng, C, params.K, M, 2 * C + 1, params.threshold_format,
                                 params.lut_format)
        A = random_activations(rng, program, rows)
        want = golden.run(program, A)
        for mode, stall in modes:
            if mode == "stalls" and stall is None:
                continue
            run_seed = int(rng.integers(0, 2**31 - 1))
            opts: dict[str, Any] = {"params": params, "bubbles": stall, "backpressure": stall,
                                    "seed": run_seed}
            rtl = run_rtl(program, A, sources=sources, **opts)
            gate = run_rtl(program, A, sources=gate_sources, **opts)
            if gate.acc is None or rtl.acc is None:  # the RTL backend always returns them
                raise HalutError("the RTL simulation returned no accumulators")
            row_acc = first_difference(gate.acc, want.acc)
            row_y = first_difference(gate.y, want.y)
            rtl_row = first_difference(rtl.acc, want.acc)
            same_cycles = gate.cycles == rtl.cycles
            ok = row_acc is None and row_y is None and same_cycles
            case = GlsCase(program=i, mode=mode, rows=rows, C=C, M=M, ok=ok,
                           gate_cycles=gate.cycles,
                           rtl_cycles=rtl.cycles,
                           first_bad_row=row_acc if row_acc is not None else row_y,
                           rtl_matches_golden=rtl_row is None)
            if not ok and passed:
                passed = False
                if row_acc is not None or row_y is not None:
                    r = row_acc if row_acc is not None else row_y
                    assert r is not None
                    first_failure = (f"program {i} ({mode}): netlist row {r} differs from "
                                     f"golden: acc {_bits(gate.acc[r]).tolist()} != "
                                     f"{_bits(want.acc[r]).tolist()}")
                else:
                    d = case.to_dict()
                    first_failure = (f"program {i} ({mode}): netlist cycles "
                                     f"{d['gate_cycles']} != RTL cycles {d['rtl_cycles']}")
            cases.append(case)
    result = GlsResult(
        params=params_dict(params), passed=passed, first_failure=first_failure, cases=cases,
        programs=programs, rows=rows, seed=seed, netlist=synth.netlist, cells=synth.cells,
        cell_models=str(cells), seconds=round(time.monotonic() - t0, 1), run_dir=str(run_dir))
    write_json(run_dir / "gls.json", result.to_dict())
    return result
