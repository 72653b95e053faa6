"""``halut hw report RUN_DIR``: one self-contained HTML page for a run directory, written for
an architect (docs/hardware.md, "The hardware report").

The page has three parts, in this order:

1. **Summary**: the configuration in words and the headline figures with their units (area
   in mm^2, cells, flip-flops, fmax in MHz, power and energy, TOp/s/W, the halut/MAC ratios
   of a comparison), each with where it comes from (which tool, at which clock, with which
   activity) and the result file and key it was read from (``data-file`` / ``data-key`` /
   ``data-json`` on its cell). A figure no flow produced says ``not run``.
2. **Plots**, drawn as inline SVG from the JSON (no script, no external file): area, fmax,
   power and energy per cycle against each swept parameter, area by module, the power
   breakdown (simulated activity beside OpenSTA's default activity when ``power.json`` is
   there), the halut/MAC ratios.
3. **Detail**: one table per stage with units in the headers, ``not run`` for a stage that
   did not run and ``not recorded`` for a field an older file lacks; a sweep's points as one
   table.

The result files read (each written by :func:`flows.hw.common.write_json` and read back with
:func:`~flows.hw.common.read_record`): ``lint.json``, ``synth.json``, ``sta.json``,
``post_route_sta.json``, ``pnr.json``, ``gls.json``, ``power.json``, ``compare.json`` and
``sweep.json`` at the top of the folder; ``points/*/point.json`` of a sweep; the same names
in other sub-folders are listed in one table. A file that is not valid JSON, not an object,
or whose fields have the wrong JSON types is a one-line error naming it (no page is
written). The page carries a Content-Security-Policy of ``default-src 'none'`` (images only
from ``data:``): it loads nothing.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.hw.common import read_record
from flows.hw.sweep import COLUMNS, PERIOD, axis_label, period_note, sweep_metrics, sweep_series
from learning.atomic import atomic_write_text, check_writable
from learning.errors import HalutError
from learning.strict import clip

KINDS = ("lint", "synth", "sta", "post_route_sta", "pnr", "gls", "power", "compare", "sweep")
NOT_RUN = "not run"
NOT_RECORDED = "not recorded"
_CSS = """body{font-family:sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:2px 8px;text-align:left;font-size:90%}
th{background:#eee} .ok{color:#070} .bad{color:#b00} img{max-width:48%;margin:4px}
code{background:#f4f4f4}"""
_PAGE_CSS = """
#summary table{width:100%;table-layout:fixed} #summary td.v{font-weight:bold}
td.src{color:#555;font-size:85%}
td.num{text-align:right} .notrun{color:#888;font-style:italic}
.plots{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0}
figure svg{border:1px solid #ddd;background:#fff} figcaption{font-size:85%;color:#444;
max-width:460px}
h2{border-bottom:2px solid #ccc;padding-bottom:2px;margin-top:1.6em}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")
# the sweep's own PNG plots (drawn again here, as SVG, from sweep.json)
_SWEEP_PNG = re.compile(r"(area|fmax|power|energy)_vs_.+\.png")


# ---- plain tables (also used by flows.sweep_report) -------------------------------------------

def _flat(v: Any) -> str:
    if v is None:
        return NOT_RUN
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} = {_flat(x)}" for k, x in v.items())
    if isinstance(v, list):
        return f"{len(v)} items" if len(v) > 6 else ", ".join(_flat(x) for x in v)
    return str(v)


def _esc(v: Any) -> str:
    return html.escape(_flat(v))


def kv_table(d: Mapping[str, Any], skip: tuple[str, ...] = ()) -> str:
    """A two-column table (name, value) of ``d``; None shows as ``not run``."""
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_esc(v)}</td></tr>"
                   for k, v in d.items() if k not in skip)
    return f"<table>{rows}</table>"


def list_table(rows: Sequence[Mapping[str, Any]], cols: Sequence[tuple[str, str]],
               fmt: Mapping[str, Callable[[Any], str]] | None = None) -> str:
    """A table of ``rows`` with columns ``(key, header)``; ``fmt`` formats a column's
    values (default :func:`_flat`); a key a row lacks shows as ``not recorded``."""
    if not rows:
        return "<p class='notrun'>(none)</p>"
    fmt = fmt or {}
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in cols)
    body = []
    for r in rows:
        cells = []
        for key, _ in cols:
            if key not in r:
                cells.append(f"<td class='notrun'>{NOT_RECORDED}</td>")
                continue
            v = r[key]
            text = fmt[key](v) if key in fmt else _flat(v)
            cls = " class='num'" if _is_number(v) else (" class='notrun'" if v is None else "")
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


# ---- numbers --------------------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _g(v: float, digits: int = 4) -> str:
    """``v`` with ``digits`` significant digits, thousands separated, no exponent below
    1e15 (``57,643``, ``0.05764``, ``270.0``)."""
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    if abs(v) >= 1e15:
        return f"{v:.{digits - 1}e}"
    return f"{v:,.{decimals}f}"


_PREFIXES = ((1e0, ""), (1e-3, "m"), (1e-6, "\u00b5"), (1e-9, "n"), (1e-12, "p"))


def si(v: float, unit: str, digits: int = 4) -> str:
    """``v`` (in ``unit``) with an SI prefix that puts it in [1, 1000): ``0.0109 W`` ->
    ``10.90 mW``."""
    if not math.isfinite(v) or v == 0:
        return f"{_g(v, digits)} {unit}"
    for scale, prefix in _PREFIXES:
        if abs(v) >= scale:
            return f"{_g(v / scale, digits)} {prefix}{unit}"
    return f"{v:.{digits - 1}e} {unit}"


def _scale(values: Sequence[float], unit: str) -> tuple[float, str]:
    """A divisor and unit for an axis of ``values`` in ``unit`` (W -> mW ...)."""
    top = max((abs(v) for v in values), default=0.0)
    if unit in ("W", "J") and top > 0:
        for scale, prefix in _PREFIXES:
            if top >= scale:
                return scale, prefix + unit
    if unit == "pJ" and top >= 1000:
        return 1000.0, "nJ"
    return 1.0, unit


def count(v: float) -> str:
    """A count: ``1176`` -> ``1,176``."""
    return f"{round(v):,}" if math.isfinite(v) else str(v)


def mm2(area_um2: float) -> str:
    """An area in um^2 as ``0.05764 mm^2 (57,643 um^2)``."""
    um2 = f"{area_um2:,.0f}" if abs(area_um2) >= 100 else _g(area_um2)
    return f"{_g(area_um2 / 1e6)} mm\u00b2 ({um2} \u00b5m\u00b2)"


# ---- reading and checking the result files ------------------------------------------------------

# what each result kind's fields must be, when present and not null
_SCHEMA: dict[str, dict[str, str]] = {
    "lint": {"warnings": "objlist", "errors": "objlist", "passed": "bool"},
    "synth": {"modules": "objlist", "cell_types": "dict", "extra": "dict", "params": "dict",
              "area": "num", "sequential_area": "num", "cells": "int", "flip_flops": "int",
              "period_ns": "num", "seconds": "num", "liberty": "str"},
    "sta": {"critical_path": "dict", "fmax_path": "dict", "power_w": "numdict",
            "extra": "dict", "params": "dict", "period_ns": "num", "wns_ns": "num",
            "tns_ns": "num", "hold_wns_ns": "num", "fmax_mhz": "num", "min_period_ns": "num",
            "io_fraction": "num", "synthesis_period_ns": "num", "seconds": "num"},
    "pnr": {"params": "dict", "post_route_sta": "dict", "die_area_um2": "num",
            "die_width_um": "num", "die_height_um": "num", "wirelength_um": "num",
            "cells": "int", "components": "int", "failed_routes": "int",
            "vesta_fmax_mhz": "num", "seconds": "num"},
    "gls": {"cases": "objlist", "passed": "bool", "cells": "int", "seconds": "num"},
    "power": {"params": "dict", "workload": "dict", "activity": "dict",
              "power_w": "numdict", "vectorless_power_w": "numdict", "energy_pj": "numdict",
              "vectorless_energy_pj": "numdict", "design": "str", "clock_mhz": "num",
              "period_ns": "num", "clock_source": "str", "ops_per_row": "int",
              "throughput_tops": "num", "efficiency_tops_per_w": "num",
              "vectorless_efficiency_tops_per_w": "num", "seconds": "num"},
    "compare": {"workload": "dict", "designs": "dict", "ratios": "numdict", "depth": "int",
                "clock_mhz": "num", "seconds": "num"},
    "sweep": {"rows": "objlist", "grid": "objlist", "base": "list", "plots": "list",
              "settings": "dict"},
    "point": {"params": "dict", "settings": "dict",
              **{c: "int" if c in ("cells", "flip_flops") else "num" for c in COLUMNS}},
}
_SCHEMA["post_route_sta"] = _SCHEMA["sta"]
_ORDER = ("objlist", "list", "dict", "numdict", "num", "int", "str", "bool")
_WHAT = {"objlist": "a list of objects", "list": "a list", "dict": "an object",
         "numdict": "an object of numbers", "num": "a number", "int": "an integer",
         "str": "a string", "bool": "true or false"}
_DESIGN_FIGURES = ("area_um2", "cells", "flip_flops", "fmax_mhz", "power_w",
                   "energy_per_row_pj", "gops_per_mm2", "tops_per_w")


def _fits(v: Any, spec: str) -> bool:
    if spec == "objlist":
        return isinstance(v, list) and all(isinstance(x, dict) for x in v)
    if spec == "list":
        return isinstance(v, list)
    if spec == "dict":
        return isinstance(v, dict)
    if spec == "numdict":
        return isinstance(v, dict) and all(_is_number(x) or x is None for x in v.values())
    if spec == "num":
        return _is_number(v)
    if spec == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if spec == "str":
        return isinstance(v, str)
    return isinstance(v, bool)


def _bad(where: str, kind: str, message: str) -> HalutError:
    return HalutError(clip(f"{where} is not a valid {kind} result: {message}"))


def check_fields(kind: str, data: Mapping[str, Any], where: str) -> None:
    """A one-line error naming the first field of ``data`` with the wrong JSON type (fields
    that are missing or null are shown as ``not recorded`` / ``not run`` instead)."""
    schema = _SCHEMA.get(kind, {})
    for spec in _ORDER:
        for key, s in schema.items():
            if s == spec and data.get(key) is not None and not _fits(data[key], spec):
                raise _bad(where, kind, f"{key!r} must be {_WHAT[spec]}, got "
                                        f"{type(data[key]).__name__}")
    if kind == "synth":
        for m in data.get("modules") or []:
            if not isinstance(m.get("module"), str) or not _is_number(
                    m.get("local_area_total")):
                raise _bad(where, kind, "each module needs a 'module' name and a numeric "
                                        "'local_area_total'")
    elif kind == "compare":
        for name, d in (data.get("designs") or {}).items():
            if not isinstance(d, dict) or any(
                    d.get(k) is not None and not _is_number(d[k]) for k in _DESIGN_FIGURES):
                raise _bad(where, kind, f"design {name!r} must be an object whose figures "
                                        f"({', '.join(_DESIGN_FIGURES)}) are numbers")
    elif kind == "sweep":
        names = []
        for axis in data.get("grid") or []:
            if not isinstance(axis.get("name"), str) or not _fits(axis.get("values"), "list"):
                raise _bad(where, kind, "each grid entry needs a 'name' and a list of 'values'")
            names.append(axis["name"])
        for i, row in enumerate(data.get("rows") or []):
            for n in names:
                if not isinstance(row.get(n), (str, int, float)) or isinstance(row[n], bool):
                    raise _bad(where, kind, f"row {i + 1} lacks the swept value {n!r}")
            for c in COLUMNS:
                if row.get(c) is not None and not _is_number(row[c]):
                    raise _bad(where, kind, f"row {i + 1}: {c!r} must be a number or null")


def _read_result(f: Path, where: str) -> dict[str, Any]:
    """A result file as a JSON object (:func:`~flows.hw.common.read_record`: strict, size and
    nesting limits); anything else is a one-line error naming it."""
    try:
        return read_record(f, where)
    except HalutError as exc:
        text = str(exc)
        if "is not valid" in text:
            text += "; a damaged result: delete it or run its command again"
        raise HalutError(clip(text)) from None


@dataclass
class RunResults:
    """What a run directory holds: the results at its top (by kind), a sweep's finished
    points, the results in other sub-folders and the other images at its top."""

    run_dir: Path
    top: dict[str, dict[str, Any]] = field(default_factory=dict)
    points: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    nested: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.top or self.points or self.nested or self.images)


def load_results(run_dir: Path) -> RunResults:
    """Every result file under ``run_dir``, read and checked (see the module docstring)."""
    if not run_dir.exists():
        raise HalutError(f"run directory {run_dir} not found")
    if not run_dir.is_dir():
        raise HalutError(f"{run_dir} is not a directory (give the run directory)")
    res = RunResults(run_dir)
    names = {f"{k}.json" for k in KINDS}
    files = sorted((p for p in run_dir.rglob("*.json")
                    if p.name in names or p.name == "point.json"),
                   key=lambda p: (len(p.parts), str(p)))
    for f in files:
        rel = f.relative_to(run_dir)
        kind = "point" if f.name == "point.json" else f.stem
        in_points = rel.parts[0] == "points" and len(rel.parts) > 1
        if in_points and kind != "point":
            continue  # a point's own synth/sta files: its point.json holds its figures
        data = _read_result(f, str(f))
        check_fields(kind, data, str(f))
        if kind == "point":
            res.points.append((str(rel.parent), data))
        elif len(rel.parts) == 1:
            res.top[kind] = data
        else:
            res.nested.append((str(rel), kind, data))
    res.images = sorted(p for p in run_dir.glob("*.png") if not _SWEEP_PNG.fullmatch(p.name))
    if not res.found:
        raise HalutError(f"{run_dir} holds no halut hardware results (lint.json, synth.json, "
                         "sta.json, pnr.json, gls.json, power.json, compare.json, sweep.json)")
    return res


# ---- the configuration in words ---------------------------------------------------------------

def _n(n: Any, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def config_words(params: Mapping[str, Any]) -> str:
    """An RTL parameter set in words (the accelerator's names; any other set as
    ``name = value`` pairs)."""
    if {"C", "K", "M", "threshold_format", "lut_format"} <= set(params):
        p = params
        words = [f"C = {_n(p['C'], 'codebook')}", f"K = {p['K']} prototypes per codebook",
                 f"M = {_n(p['M'], 'output column')}", f"{p['threshold_format']} thresholds",
                 f"{p['lut_format']} LUT entries"]
        if "out_lanes" in p:
            words.append(f"{_n(p['out_lanes'], 'output lane')} per beat")
        if "cfg_lanes" in p:
            words.append(f"{_n(p['cfg_lanes'], 'entry', 'entries')} per configuration write")
        if "banks" in p:
            words.append(_n(p["banks"], "configuration bank"))
        rest = [f"{k} = {_flat(v)}" for k, v in p.items() if k not in {
            "C", "K", "M", "threshold_format", "lut_format", "out_lanes", "cfg_lanes", "banks"}]
        return ", ".join(words + rest)
    return ", ".join(f"{k} = {_flat(v)}" for k, v in params.items()) or NOT_RECORDED


_DESIGNS = {"halut_accel": "halut_accel, the MADDNESS accelerator",
            "mac_accel": "mac_accel, the multiply-accumulate baseline"}


# ---- the summary --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Figure:
    """One summary line: what, the value as shown, where it comes from, and the result
    file and key it was read from (``value``: that JSON value; None for words)."""

    key: str
    label: str
    text: str
    source: str
    file: str = ""
    path: str = ""
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "text": self.text, "source": self.source,
                "file": self.file, "key": self.path, "value": self.value}


def _get(d: Mapping[str, Any] | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def _params(r: RunResults) -> tuple[dict[str, Any], str]:
    for kind in ("synth", "sta", "power", "pnr", "gls", "post_route_sta", "lint"):
        p = _get(r.top.get(kind), "params")
        if isinstance(p, dict) and p:
            return p, f"{kind}.json"
    hal = _get(r.top.get("compare"), "designs", "halut", "params")
    if isinstance(hal, dict) and hal:
        return hal, "compare.json"
    if r.points and isinstance(r.points[0][1].get("params"), dict):
        return r.points[0][1]["params"], f"{r.points[0][0]}/point.json"
    return {}, ""


def _sweep_rows(r: RunResults) -> list[dict[str, Any]]:
    sw = r.top.get("sweep")
    if sw is not None:
        return list(sw.get("rows") or [])
    return [p for _, p in r.points]


def _range(rows: Sequence[Mapping[str, Any]], key: str,
           show: Callable[[float], str]) -> str | None:
    vals = [float(x[key]) for x in rows if _finite(x.get(key))]
    if not vals:
        return None
    lo, hi = min(vals), max(vals)
    return show(lo) if lo == hi else f"{show(lo)} to {show(hi)}"


def _sweep_source(r: RunResults) -> str:
    sw = r.top.get("sweep") or {}
    st = sw.get("settings") or {}
    swept = [a.get("name") for a in sw.get("grid") or []]
    n = len(_sweep_rows(r))
    period = ("each point's period" if PERIOD in swept else
              f"{_flat(st.get('period_ns'))} ns")
    return (f"the sweep's {_n(n, 'point')} (sweep.json): synthesis and OpenSTA at {period}, "
            f"I/O delays {_pct(st.get('io_fraction'))} of the period")


def _pct(v: Any) -> str:
    return f"{100 * v:g} %" if _is_number(v) else NOT_RECORDED


def _clock(period_ns: Any) -> str:
    if _finite(period_ns) and period_ns > 0:
        return f"{period_ns:g} ns ({1000.0 / period_ns:.4g} MHz)"
    return "an unrecorded clock"


def _point_name(path: Mapping[str, Any], end: str) -> str:
    point = str(path.get(end, "?"))
    name = point.split(" (", 1)[0]
    reg = path.get(f"{end}_register")
    if reg:
        return f"{reg} (flip-flop {name})"
    what = point.split(" (", 1)[1].rstrip(")") if " (" in point else ""
    return f"{name} ({what.split(' clocked')[0]})" if what else name


def _path_words(path: Any) -> str:
    if not isinstance(path, dict) or not path:
        return NOT_RECORDED
    parts = [f"{_point_name(path, 'start')} \u2192 {_point_name(path, 'end')}"]
    if _is_number(path.get("arrival_ns")):
        parts.append(f"arrival {path['arrival_ns']:.3f} ns")
    if _is_number(path.get("stages")):
        parts.append(_n(path["stages"], "cell"))
    if _is_number(path.get("slack_ns")):
        parts.append(f"slack {path['slack_ns']:.3f} ns")
    return ", ".join(parts)


def summary(r: RunResults) -> list[Figure]:
    """The summary lines of a run directory (see the module docstring)."""
    out: list[Figure] = []
    top = r.top
    synth, sta, pnr, power, compare = (top.get(k) for k in ("synth", "sta", "pnr", "power",
                                                             "compare"))
    post = top.get("post_route_sta") or _get(pnr, "post_route_sta")
    rows = _sweep_rows(r)
    params, pfile = _params(r)
    design = _get(power, "design") or (next(iter(_DESIGNS)) if params else None)
    if design is not None:
        out.append(Figure("design", "design", _DESIGNS.get(str(design), str(design)),
                          "power.json" if _get(power, "design") else
                          "the RTL's top module (rtl/halut.f)"))
    sw = top.get("sweep")
    if sw is not None or r.points:
        base = sw.get("base") if sw else None
        out.append(Figure("configuration", "configuration",
                          config_words(params) if params else NOT_RECORDED,
                          f"parameters of the sweep's first point ({pfile}); base "
                          f"assignments {' '.join(map(str, base)) if base else 'none'}"))
        grid = "; ".join(f"{a.get('name')} = {', '.join(map(str, a.get('values') or []))}"
                         + (" ns" if a.get("name") == PERIOD else "")
                         for a in (sw.get("grid") or [])) if sw else NOT_RECORDED
        out.append(Figure("sweep", "sweep", f"{_n(len(rows), 'point')} over {grid}",
                          _sweep_source(r), "sweep.json" if sw else ""))
    else:
        out.append(Figure("configuration", "configuration",
                          config_words(params) if params else NOT_RECORDED,
                          f"the parameters in {pfile}" if pfile else "no result holds them"))

    def fig(key: str, label: str, kind: str, data: Any, jkey: str,
            show: Callable[[Any], str], source: str, sweep_key: str | None = None,
            sweep_show: Callable[[float], str] | None = None, how: str = "") -> None:
        v = _get(data, *jkey.split(".")) if data is not None else None
        if _is_number(v):
            out.append(Figure(key, label, show(v), source, f"{kind}.json", jkey, v))
            return
        if sweep_key and rows:
            text = _range(rows, sweep_key, sweep_show or show)
            if text is not None:
                out.append(Figure(key, label, text, _sweep_source(r)))
                return
        if data is not None:
            out.append(Figure(key, label, NOT_RECORDED, f"{kind}.json has no {jkey}"))
        else:
            out.append(Figure(key, label, NOT_RUN, f"run `{how}`" if how else ""))

    lib = Path(str(_get(synth, "liberty") or "the Liberty library")).name
    synth_src = (f"Yosys + abc onto {lib}, synthesis target {_flat(_get(synth, 'period_ns'))}"
                 " ns, flat netlist")
    if synth is None and sta is None and _get(compare, "designs", "halut") is not None:
        # a `hw compare` run directory: the accelerator's own figures are in compare.json
        csrc = ("compare.json (the halut design: Yosys + abc onto osu018, OpenSTA fmax by "
                "bisection)")
        fig("area_mm2", "cell area", "compare", compare, "designs.halut.area_um2", mm2, csrc)
        fig("cells", "cells", "compare", compare, "designs.halut.cells", count, csrc)
        fig("flip_flops", "flip-flops", "compare", compare, "designs.halut.flip_flops", count,
            csrc)
        fig("fmax_mhz", "fmax", "compare", compare, "designs.halut.fmax_mhz",
            lambda v: f"{_g(v)} MHz", csrc)
        fig("power_simulated_w", "power, simulated activity", "compare", compare,
            "designs.halut.power_w", lambda v: si(v, "W"),
            f"compare.json (halut/power.json), {_compare_clock(compare)}")
        fig("energy_per_row_pj", "energy per row", "compare", compare,
            "designs.halut.energy_per_row_pj", lambda v: si(v * 1e-12, "J"),
            "compare.json: simulated activity")
        fig("efficiency_tops_per_w", "efficiency", "compare", compare,
            "designs.halut.tops_per_w", lambda v: f"{_g(v)} TOp/s/W",
            "compare.json: operations per joule with simulated activity")
        synth = sta = power = None
        skip_rest = True
    else:
        skip_rest = False
    if not skip_rest:
        fig("area_mm2", "cell area", "synth", synth, "area", mm2, synth_src, "area",
            how="halut hw synth")
        fig("cells", "cells", "synth", synth, "cells", count, synth_src, "cells",
            how="halut hw synth")
    seq = _get(synth, "sequential_area")
    area = _get(synth, "area")
    ff_note = (f" ({100 * seq / area:.1f} % of the area in flip-flops)"
               if _finite(seq) and _finite(area) and area > 0 else "")
    if not skip_rest:
        fig("flip_flops", "flip-flops", "synth", synth, "flip_flops",
            lambda v: count(v) + ff_note, synth_src, "flip_flops", sweep_show=count,
            how="halut hw synth")
    io = _pct(_get(sta, "io_fraction"))
    sta_src = (f"OpenSTA on the synthesized netlist, bisection on the period, ideal clock, "
               f"I/O delays {io} of the period")
    if _is_number(_get(sta, "synthesis_period_ns")):
        sta_src += f"; netlist synthesized for {_get(sta, 'synthesis_period_ns'):g} ns"
    if not skip_rest:
        fig("fmax_mhz", "fmax", "sta", sta, "fmax_mhz",
            lambda v: f"{_g(v)} MHz (min period {_flat(_get(sta, 'min_period_ns'))} ns)",
            sta_src, "fmax_mhz", lambda v: f"{_g(v)} MHz", how="halut hw sta")
    if sta is not None:
        out.append(Figure("fmax_path", "path limiting fmax", _path_words(sta.get("fmax_path")),
                          "OpenSTA, worst path with the clock at the minimum period "
                          "(register names from the netlist)"))
    if pnr is not None or post is not None:
        fig("die_area_mm2", "die area (placed and routed)", "pnr", pnr, "die_area_um2", mm2,
            "qflow (graywolf, qrouter): the routed DEF's DIEAREA", how="halut hw pnr")
        v = _get(post, "fmax_mhz")
        out.append(Figure("post_route_fmax_mhz", "fmax after routing",
                          f"{_g(v)} MHz" if _is_number(v) else NOT_RUN,
                          "OpenSTA on qflow's routed netlist with its SDF back-annotated",
                          "post_route_sta.json" if top.get("post_route_sta") else "pnr.json",
                          "fmax_mhz" if top.get("post_route_sta") else
                          "post_route_sta.fmax_mhz", v if _is_number(v) else None))
    else:
        out.append(Figure("pnr", "place and route", NOT_RUN, "run `halut hw pnr`"))
    if not skip_rest:
        fig("power_default_w", "power, default activity", "sta", sta, "power_w.total",
            lambda v: si(v, "W") + _breakdown(_get(sta, "power_w")),
            f"OpenSTA report_power, default activity (no simulation), clock "
            f"{_clock(_get(sta, 'period_ns'))}", "power_w",
            lambda v: si(v, "W"), how="halut hw sta")
    if skip_rest:
        pass
    elif power is not None:
        wl = power.get("workload") or {}
        clock = (f"{_g(power['clock_mhz'])} MHz" if _is_number(power.get("clock_mhz"))
                 else "an unrecorded clock")
        src_sim = (f"OpenSTA with simulated activity (gate-level VCD of the "
                   f"{_flat(wl.get('kind'))} workload, {_flat(wl.get('rows'))} rows), "
                   f"{clock} ({_flat(power.get('clock_source'))})")
        src_vec = f"OpenSTA default activity (vectorless), {clock}"
        fig("power_simulated_w", "power, simulated activity", "power", power, "power_w.total",
            lambda v: si(v, "W") + _breakdown(power.get("power_w")), src_sim)
        fig("power_vectorless_w", "power, default activity at the same clock", "power", power,
            "vectorless_power_w.total", lambda v: si(v, "W"), src_vec)
        fig("energy_per_row_pj", "energy per row", "power", power, "energy_pj.per_row",
            lambda v: si(v * 1e-12, "J"), src_sim)
        fig("energy_per_cycle_pj", "energy per cycle", "power", power, "energy_pj.per_cycle",
            lambda v: si(v * 1e-12, "J"), src_sim)
        fig("throughput_tops", "throughput", "power", power, "throughput_tops",
            lambda v: f"{_g(v)} TOp/s ({_flat(power.get('ops_per_row'))} ops per row)",
            f"ops per row x rows per second at {clock}")
        fig("efficiency_tops_per_w", "efficiency", "power", power, "efficiency_tops_per_w",
            lambda v: f"{_g(v)} TOp/s/W", "throughput / power with simulated activity")
        fig("vectorless_efficiency_tops_per_w", "efficiency, default activity", "power", power,
            "vectorless_efficiency_tops_per_w", lambda v: f"{_g(v)} TOp/s/W",
            "throughput / power with OpenSTA's default activity")
    else:
        out.append(Figure("power_simulated_w", "power, simulated activity", NOT_RUN,
                          "run `halut hw power` (gate-level activity)"))
    if compare is not None:
        src = f"compare.json: both designs through the same flow, {_compare_clock(compare)}"
        for key, label in (("area", "halut / MAC area"),
                           ("energy_per_row", "halut / MAC energy per row"),
                           ("gops_per_mm2", "halut / MAC GOp/s per mm\u00b2"),
                           ("tops_per_w", "halut / MAC TOp/s/W"), ("fmax", "halut / MAC fmax")):
            fig(f"ratio_{key}", label, "compare", compare, f"ratios.{key}",
                lambda v: f"{_g(v, 3)}\u00d7", src)
    else:
        out.append(Figure("compare", "halut / MAC", NOT_RUN, "run `halut hw compare`"))
    for kind, label, how in (("gls", "gate-level check", "halut hw gls"),
                             ("lint", "lint", "halut hw lint")):
        d = top.get(kind)
        if d is None:
            out.append(Figure(kind, label, NOT_RUN, f"run `{how}`"))
        else:
            ok = d.get("passed")
            text = ("passed" if ok is True else "FAILED" if ok is False else NOT_RECORDED)
            if kind == "gls" and isinstance(d.get("cases"), list):
                text += f" ({_n(len(d['cases']), 'case')} on {_flat(d.get('cells'))} cells)"
            src = ("Verilator simulation of the netlist against golden and the RTL" if
                   kind == "gls" else "Verilator --lint-only -Wall")
            out.append(Figure(kind, label, text, f"{src} ({kind}.json)", f"{kind}.json",
                              "passed", ok if isinstance(ok, bool) else None))
    return out


def _breakdown(p: Any) -> str:
    if not isinstance(p, dict):
        return ""
    parts = [f"{k} {si(float(p[k]), 'W', 3)}" for k in ("internal", "switching", "leakage")
             if _is_number(p.get(k))]
    return f" ({', '.join(parts)})" if parts else ""


def summary_html(figures: Sequence[Figure]) -> str:
    rows = []
    for f in figures:
        cls = "v notrun" if f.text in (NOT_RUN, NOT_RECORDED) else "v"
        attrs = ""
        if f.file:
            attrs = (f" data-file='{html.escape(f.file)}' data-key='{html.escape(f.path)}' "
                     f"data-json='{html.escape(json.dumps(f.value))}'")
        rows.append(f"<tr data-figure='{html.escape(f.key)}'><th>{html.escape(f.label)}</th>"
                    f"<td class='{cls}'{attrs}>{html.escape(f.text)}</td>"
                    f"<td class='src'>{html.escape(f.source)}</td></tr>")
    return ("<section id='summary'><h2>Summary</h2><table><colgroup><col style='width:13em'>"
            "<col style='width:45%'><col></colgroup><tr><th>figure</th><th>value</th>"
            "<th>where it comes from</th></tr>" + "".join(rows) + "</table></section>")


# ---- SVG plots --------------------------------------------------------------------------------

def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    k = math.floor(lo / step + 1e-9)
    ticks = [round(k * step, 12)]
    while ticks[-1] < hi - step * 1e-9:  # the last tick is at or above hi
        k += 1
        ticks.append(round(k * step, 12))
    return ticks


def _tick(v: float) -> str:
    return f"{v:,.6g}" if abs(v) < 1e6 else f"{v:.3g}"


def _svg_text(x: float, y: float, text: str, anchor: str = "middle", size: int = 11,
              extra: str = "") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' font-size='{size}' "
            f"font-family='sans-serif'{extra}>{html.escape(text)}</text>")


def svg_lines(title: str, xlabel: str, ylabel: str,
              series: Sequence[tuple[str, Sequence[tuple[float | str, float]]]],
              width: int = 460, height: int = 300) -> str:
    """A line chart; x numeric (ticks at the values when there are few, integers for an
    integer axis) or categorical (evenly spaced); y from 0 when all values are positive."""
    left, right, top_, bottom = 64, 16, 30, 44
    if any(name for name, _ in series):
        right = 150
    pw, ph = width - left - right, height - top_ - bottom
    xs_all = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    categorical = any(isinstance(x, str) for x in xs_all)
    cats: list[str] = list(dict.fromkeys(str(x) for x in xs_all)) if categorical else []
    if categorical:
        def fx(x: float | str) -> float:
            return left + pw * (cats.index(str(x)) + 0.5) / len(cats)
        xticks: list[tuple[float, str]] = [(fx(c), c) for c in cats]
    else:
        nums = sorted({float(x) for x in xs_all})
        x0, x1 = nums[0], nums[-1]
        if x0 == x1:
            x0, x1 = x0 - 1, x1 + 1
        pad = (x1 - x0) * 0.05

        def fx(x: float | str) -> float:
            return left + pw * (float(x) - x0 + pad) / (x1 - x0 + 2 * pad)
        if len(nums) <= 12:
            ticks = nums
        else:
            ticks = [t for t in _nice_ticks(x0, x1) if x0 <= t <= x1]
            if all(v.is_integer() for v in nums):
                ticks = [t for t in ticks if float(t).is_integer()]
        xticks = [(fx(t), _tick(t)) for t in ticks]
    y0 = 0.0 if min(ys) >= 0 else min(ys)
    y1 = max(ys) * 1.08 if max(ys) > 0 else 1.0
    yt = _nice_ticks(y0, y1)
    y0, y1 = min(y0, yt[0]), max(y1, yt[-1])

    def fy(y: float) -> float:
        return top_ + ph * (1 - (y - y0) / (y1 - y0))

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' role='img'>",
             f"<title>{html.escape(title)}</title>",
             _svg_text(width / 2, 18, title, size=12, extra=" font-weight='bold'"),
             f"<rect x='{left}' y='{top_}' width='{pw}' height='{ph}' fill='none' "
             "stroke='#999'/>"]
    for t in yt:
        y = fy(t)
        parts.append(f"<line x1='{left}' x2='{left + pw}' y1='{y:.1f}' y2='{y:.1f}' "
                     "stroke='#eee'/>")
        parts.append(_svg_text(left - 4, y + 4, _tick(t), anchor="end", size=10))
    for x, label in xticks:
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top_ + ph}' y2='{top_ + ph + 4}' "
                     "stroke='#999'/>")
        parts.append(_svg_text(x, top_ + ph + 16, label, size=10))
    parts.append(_svg_text(left + pw / 2, height - 8, xlabel))
    parts.append(_svg_text(14, top_ + ph / 2, ylabel,
                           extra=f" transform='rotate(-90 14 {top_ + ph / 2:.1f})'"))
    for i, (name, pts) in enumerate(series):
        color = _PALETTE[i % len(_PALETTE)]
        coords = " ".join(f"{fx(px):.1f},{fy(py):.1f}" for px, py in pts)
        parts.append(f"<polyline points='{coords}' fill='none' stroke='{color}' "
                     "stroke-width='2'/>")
        for px, py in pts:
            tip = html.escape(f"{name} {px}: {_tick(py)}".strip())
            parts.append(f"<circle cx='{fx(px):.1f}' cy='{fy(py):.1f}' r='3.5' fill='{color}'>"
                         f"<title>{tip}</title></circle>")
        if name:
            ly = top_ + 12 + 16 * i
            parts.append(f"<line x1='{left + pw + 10}' x2='{left + pw + 28}' y1='{ly - 4}' "
                         f"y2='{ly - 4}' stroke='{color}' stroke-width='2'/>")
            parts.append(_svg_text(left + pw + 32, ly, name, anchor="start", size=10))
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(title: str, xlabel: str, labels: Sequence[str],
             groups: Sequence[tuple[str, Sequence[float | None]]], width: int = 460,
             reference: float | None = None) -> str:
    """Horizontal bars: one row per label, one bar per group (a legend when there are
    several); ``reference`` draws a dashed line at that value (1 for ratios)."""
    left = min(200, 12 + 7 * max((len(s) for s in labels), default=4))
    right, top_, bottom = 70, 30, 40
    bar = 14
    row_h = bar * len(groups) + 8
    legend = 16 * len(groups) if len(groups) > 1 else 0
    height = top_ + row_h * len(labels) + bottom + legend
    pw = width - left - right
    vals = [v for _, g in groups for v in g if v is not None and math.isfinite(v)]
    vmax = max([*vals, reference or 0.0, 0.0]) or 1.0
    xt = _nice_ticks(0.0, vmax)
    vmax = xt[-1]

    def fx(v: float) -> float:
        return left + pw * max(v, 0.0) / vmax

    ph = row_h * len(labels)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' role='img'>",
             f"<title>{html.escape(title)}</title>",
             _svg_text(width / 2, 18, title, size=12, extra=" font-weight='bold'")]
    for t in xt:
        x = fx(t)
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top_}' y2='{top_ + ph}' "
                     "stroke='#eee'/>")
        parts.append(_svg_text(x, top_ + ph + 14, _tick(t), size=10))
    parts.append(_svg_text(left + pw / 2, top_ + ph + 32, xlabel))
    for i, label in enumerate(labels):
        y = top_ + row_h * i + 4
        parts.append(_svg_text(left - 6, y + row_h / 2, label, anchor="end", size=10))
        for j, (gname, g) in enumerate(groups):
            v = g[i]
            if v is None or not math.isfinite(v):
                continue
            color = _PALETTE[j % len(_PALETTE)]
            w = fx(v) - left
            tip = html.escape(f"{label} {gname}: {_tick(v)}".replace("  ", " "))
            parts.append(f"<rect x='{left}' y='{y + bar * j:.1f}' width='{w:.1f}' "
                         f"height='{bar - 2}' fill='{color}'><title>{tip}</title></rect>")
            parts.append(_svg_text(left + w + 3, y + bar * j + bar - 4, _tick(v),
                                   anchor="start", size=9))
    if reference is not None:
        x = fx(reference)
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top_}' y2='{top_ + ph}' "
                     "stroke='#333' stroke-dasharray='4 3'/>")
    if legend:
        for j, (gname, _) in enumerate(groups):
            ly = top_ + ph + bottom + 12 + 16 * j
            parts.append(f"<rect x='{left}' y='{ly - 9}' width='12' height='10' "
                         f"fill='{_PALETTE[j % len(_PALETTE)]}'/>")
            parts.append(_svg_text(left + 18, ly, gname, anchor="start", size=10))
    parts.append("</svg>")
    return "".join(parts)


def _figure(plot_id: str, svg: str, caption: str) -> str:
    return (f"<figure id='plot-{html.escape(plot_id)}'>{svg}"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _sweep_plots(r: RunResults) -> list[str]:
    sw = r.top.get("sweep")
    if sw is None:
        return []
    swept = [str(a.get("name")) for a in sw.get("grid") or []]
    rows = [{**row, **{n: str(row[n]) for n in swept}} for row in sw.get("rows") or []]
    period = _get(sw, "settings", "period_ns")
    period = float(period) if _finite(period) and period > 0 else 10.0
    note = period_note(swept, period)
    out = []
    for metric in sweep_metrics(note):
        base_unit = {"area": "mm\u00b2", "fmax_mhz": "MHz", "power_w": "W",
                     "energy_pj": "pJ"}[metric.key]
        for p in swept:
            series = sweep_series(rows, swept, p, metric.key, period)
            if not series:
                continue
            ys = [y for _, pts in series for _, y in pts]
            div, unit = (1e6, base_unit) if metric.key == "area" else _scale(ys, base_unit)
            scaled = [(name, [(x, y / div) for x, y in pts]) for name, pts in series]
            what = metric.label.split(" (")[0]
            title = f"{what} vs {p}"
            svg = svg_lines(title, axis_label(p), f"{what} ({unit})", scaled)
            caption = (f"{what} ({unit}) against {axis_label(p)}"
                       + (f", one line per {', '.join(o for o in swept if o != p)}"
                          if len(swept) > 1 else "")
                       + (f"; {metric.label.split(', ', 1)[1]}" if ", " in metric.label
                          else "") + ". From sweep.json.")
            out.append(_figure(f"{metric.stem}-vs-{p}", svg, caption))
    return out


def _module_plot(synth: Mapping[str, Any] | None) -> list[str]:
    mods = [m for m in (_get(synth, "modules") or []) if _finite(m.get("local_area_total"))]
    if not mods:
        return []
    mods = sorted(mods, key=lambda m: -float(m["local_area_total"]))[:20]
    labels = [f"{m['module']} (x{m.get('instances', '?')})" for m in mods]
    svg = svg_bars("area by module", "own area, all instances (mm\u00b2)", labels,
                   [("area", [float(m["local_area_total"]) / 1e6 for m in mods])])
    return [_figure("modules", svg, "Each module's own area over all its instances "
                                    "(submodules excluded), from the hierarchical mapping "
                                    "of synth.json; they sum to a little more than the flat "
                                    "netlist's area.")]


_POWER_PARTS = ("internal", "switching", "leakage")


def _power_plot(r: RunResults) -> list[str]:
    power, sta = r.top.get("power"), r.top.get("sta")
    groups: list[tuple[str, list[float | None]]] = []
    if power is not None:
        clock = _flat(power.get("clock_mhz"))
        for key, name in (("power_w", f"simulated activity, {clock} MHz"),
                          ("vectorless_power_w", f"OpenSTA default activity, {clock} MHz")):
            d = power.get(key)
            if isinstance(d, dict):
                groups.append((name, [d.get(k) for k in _POWER_PARTS]))
        source = "power.json (OpenSTA report_power with the gate-level VCD annotated, and "\
                 "vectorless at the same clock)"
    elif isinstance(_get(sta, "power_w"), dict) and sta is not None:
        groups.append((f"OpenSTA default activity at {_clock(sta.get('period_ns'))}",
                       [sta["power_w"].get(k) for k in _POWER_PARTS]))
        source = "sta.json (OpenSTA report_power, default activity: no simulation annotated)"
    vals = [v for _, g in groups for v in g if _finite(v)]
    if not vals:
        return []
    div, unit = _scale([float(v) for v in vals if v is not None], "W")
    scaled = [(n, [float(v) / div if v is not None and _finite(v) else None for v in g])
              for n, g in groups]
    svg = svg_bars("power breakdown", f"power ({unit})", list(_POWER_PARTS), scaled)
    return [_figure("power", svg, f"Internal, switching and leakage power, from {source}.")]


def _compare_plot(compare: Mapping[str, Any] | None) -> list[str]:
    ratios = _get(compare, "ratios")
    if not isinstance(ratios, dict):
        return []
    items = [(k, float(v)) for k, v in ratios.items() if _finite(v)]
    if not items:
        return []
    svg = svg_bars("halut / MAC", "halut value / MAC value (dashed: equal)",
                   [k.replace("_", " ") for k, _ in items], [("ratio", [v for _, v in items])],
                   reference=1.0)
    return [_figure("compare", svg, "Each figure of the halut design divided by the MAC "
                                    "baseline's (compare.json): below 1 for area and energy, "
                                    "above 1 for throughput per area and per watt favour "
                                    "halut.")]


def _img(png: bytes, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def plots_html(r: RunResults) -> str:
    figs = (_sweep_plots(r) + _module_plot(r.top.get("synth")) + _power_plot(r)
            + _compare_plot(r.top.get("compare")))
    body = ("<div class='plots'>" + "".join(figs) + "</div>" if figs else
            "<p class='notrun'>nothing to plot: no sweep, per-module breakdown, power or "
            "comparison in this folder</p>")
    if r.images:
        body += ("<h3>other images in the folder</h3>"
                 + "".join(_img(p.read_bytes(), p.name) for p in r.images))
    return f"<section id='plots'><h2>Plots</h2>{body}</section>"


# ---- detail tables ----------------------------------------------------------------------------

def _fmt(v: Any, digits: int = 6) -> str:
    """A detail-table value: a number with up to ``digits`` significant digits and no
    trailing zeros (``57,643``, ``1.76``), None as ``not run``."""
    if v is None:
        return NOT_RUN
    if _is_number(v) and not isinstance(v, int):
        if not math.isfinite(v) or v == 0:
            return str(v) if v else "0"
        if abs(v) >= 1e15 or abs(v) < 1e-4:
            return f"{v:.{digits - 1}g}"
        text = _g(float(v), digits)
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return _flat(v)


def _figures_table(data: Mapping[str, Any], rows: Sequence[tuple[str, str, Callable[[Any], str]
                                                              | None]]) -> str:
    """(key, label with unit, format) rows of ``data``: absent keys say ``not recorded``."""
    out = []
    for key, label, f in rows:
        v = _get(data, *key.split("."))
        present = _has(data, key)
        text = (f or _fmt)(v) if present and v is not None else (
            NOT_RUN if present else NOT_RECORDED)
        cls = " class='notrun'" if text in (NOT_RUN, NOT_RECORDED) else ""
        out.append(f"<tr><th>{html.escape(label)}</th><td{cls}>{html.escape(text)}</td></tr>")
    return "<table>" + "".join(out) + "</table>"


def _has(data: Any, key: str) -> bool:
    for k in key.split("."):
        if not isinstance(data, Mapping) or k not in data:
            return False
        data = data[k]
    return True


def _section(title: str, anchor: str, body: str | None, how: str) -> str:
    if body is None:
        body = f"<p class='notrun'>{NOT_RUN} (<code>{html.escape(how)}</code>)</p>"
    return f"<div id='detail-{anchor}'><h3>{html.escape(title)}</h3>{body}</div>"


def _path_table(sta: Mapping[str, Any]) -> str:
    cols = ["start", "start_register", "end", "end_register", "arrival_ns", "logic_delay_ns",
            "stages", "slack_ns"]
    heads = ["start point", "start register (RTL)", "end point", "end register (RTL)",
             "arrival (ns)", "logic delay (ns)", "cells", "slack (ns)"]
    rows = []
    for key, name in (("fmax_path", "limits fmax (clock at the minimum period "
                                    f"{_fmt(sta.get('min_period_ns'))} ns)"),
                      ("critical_path", f"worst at the requested period "
                                        f"{_fmt(sta.get('period_ns'))} ns")):
        p = sta.get(key)
        if isinstance(p, dict) and p:
            rows.append({"path": name, **{c: p.get(c, "") if c.endswith("register") else
                                          p.get(c) for c in cols}})
        else:
            rows.append({"path": name})
    return list_table(rows, [("path", "path"), *zip(cols, heads, strict=True)],
                      {c: (lambda v: "" if v in ("", None) else _flat(v))
                       for c in ("start_register", "end_register")})


def _sta_body(sta: Mapping[str, Any]) -> str:
    body = _figures_table(sta, [
        ("period_ns", "clock period (ns)", None),
        ("synthesis_period_ns", "netlist synthesized for (ns)", None),
        ("wns_ns", "worst negative slack at the period (ns)", None),
        ("tns_ns", "total negative slack (ns)", None),
        ("hold_wns_ns", "worst hold slack (ns)", None),
        ("fmax_mhz", "fmax (MHz)", None), ("min_period_ns", "minimum period (ns)", None),
        ("io_fraction", "I/O delays (fraction of the period)", None),
        ("synthesis_note", "synthesis reused or replaced", None),
        ("seconds", "OpenSTA time (s)", None)])
    body += "<h4>paths</h4>" + _path_table(sta)
    pw = sta.get("power_w")
    body += (f"<h4>power at {_clock(sta.get('period_ns'))}, OpenSTA default activity</h4>"
             + _figures_table({"p": pw} if isinstance(pw, dict) else {}, [
                 (f"p.{k}", f"{k} (W)", None) for k in (*_POWER_PARTS, "total")]))
    return body


_SINGLE = ("lint", "synth", "sta", "pnr", "post_route_sta", "gls", "power", "compare")


def detail_html(r: RunResults) -> str:
    top = r.top
    is_sweep = "sweep" in top or bool(r.points)
    parts = [] if any(k in top for k in _SINGLE) or not is_sweep else [
        "<p class='notrun'>A sweep folder: no single-run stage (lint, synth, sta, pnr, gls, "
        "power, compare) ran at its top; each point's synthesis and timing are in the sweep's "
        "table below.</p>"]
    if parts:
        parts.append(_section("sweep", "sweep", _sweep_body(r), "halut hw sweep"))
        if r.nested:
            parts.append(_section("results in sub-folders", "nested", _nested_body(r), ""))
        return f"<section id='detail'><h2>Detail</h2>{''.join(parts)}</section>"
    lint = top.get("lint")
    lint_body = None
    if lint is not None:
        ok = lint.get("passed")
        issues = [*(lint.get("warnings") or []), *(lint.get("errors") or [])]
        counts = (f"{_n(len(lint.get('warnings') or []), 'warning')}, "
                  f"{_n(len(lint.get('errors') or []), 'error')}")
        lint_body = (f"<p class='{'ok' if ok else 'bad'}'>lint "
                     f"{'passed' if ok else 'FAILED'}: {counts}</p>"
                     + (list_table(issues, [("code", "code"), ("where", "file:line"),
                                            ("message", "message")]) if issues else ""))
    parts.append(_section("lint", "lint", lint_body, "halut hw lint"))
    synth = top.get("synth")
    synth_body = None
    if synth is not None:
        synth_body = _figures_table(synth, [
            ("params", "parameters", config_words),
            ("area", "cell area (\u00b5m\u00b2)", None),
            ("sequential_area", "flip-flop area (\u00b5m\u00b2)", None),
            ("cells", "cells", None), ("flip_flops", "flip-flops", None),
            ("extra.hierarchical_area", "area mapped module by module (\u00b5m\u00b2)", None),
            ("period_ns", "synthesis target period (ns)", None),
            ("liberty", "Liberty library", None), ("seconds", "Yosys time (s)", None),
            ("netlist", "netlist", None), ("log", "log", None)])
        mods = synth.get("modules") or []
        synth_body += "<h4>area by module</h4>" + (list_table(mods, [
            ("module", "module"), ("instances", "instances"),
            ("area_each", "area of one instance, with submodules (\u00b5m\u00b2)"),
            ("local_area_total", "own area, all instances (\u00b5m\u00b2)"),
            ("cells_total", "own cells, all instances"), ("share", "share of the area (%)")],
            {"share": lambda v: f"{100 * v:.1f}" if _is_number(v) else _flat(v),
             "area_each": _fmt, "local_area_total": _fmt}) if mods else
            "<p class='notrun'>not run (synthesized with --no-breakdown)</p>")
        types = synth.get("cell_types") or {}
        if types:
            ordered = sorted(types.items(), key=lambda kv: -kv[1] if _is_number(kv[1]) else 0)
            synth_body += "<h4>cells by type</h4>" + list_table(
                [{"type": k, "count": v} for k, v in ordered],
                [("type", "cell type"), ("count", "instances")])
    parts.append(_section("synthesis", "synth", synth_body, "halut hw synth"))
    sta = top.get("sta")
    parts.append(_section("timing (OpenSTA)", "sta", _sta_body(sta) if sta else None,
                          "halut hw sta"))
    pnr = top.get("pnr")
    pnr_body = None
    if pnr is not None:
        pnr_body = _figures_table(pnr, [
            ("tool", "tool", None), ("die_area_um2", "die area (\u00b5m\u00b2)", None),
            ("die_width_um", "die width (\u00b5m)", None),
            ("die_height_um", "die height (\u00b5m)", None),
            ("wirelength_um", "routed wire length (\u00b5m)", None),
            ("cells", "placed cells", None), ("components", "components with fill", None),
            ("failed_routes", "failed routes", None),
            ("vesta_fmax_mhz", "vesta fmax, routed (MHz)", None),
            ("post_route_sta_skipped", "post-route timing skipped", None),
            ("seconds", "qflow time (s)", None)])
    parts.append(_section("place and route", "pnr", pnr_body, "halut hw pnr"))
    post = top.get("post_route_sta")
    parts.append(_section("post-route timing", "post-route",
                          _sta_body(post) if post else None, "halut hw pnr --tool qflow"))
    gls = top.get("gls")
    gls_body = None
    if gls is not None:
        ok = gls.get("passed")
        first = gls.get("first_failure")
        gls_body = (f"<p class='{'ok' if ok else 'bad'}'>gate-level check "
                    f"{'passed' if ok else 'FAILED'} "
                    f"{html.escape(_flat(first) if first else '')}</p>"
                    + list_table([{**c, "gate": _cycles(c.get("gate_cycles")),
                                   "rtl": _cycles(c.get("rtl_cycles"))}
                                  for c in gls.get("cases") or []],
                                 [("program", "program"), ("mode", "stream"), ("rows", "rows"),
                                  ("C", "C"), ("M", "M"), ("ok", "matches"),
                                  ("gate", "netlist cycles"), ("rtl", "RTL cycles")]))
    parts.append(_section("gate-level check", "gls", gls_body, "halut hw gls"))
    parts.append(_section("power with simulated activity", "power",
                          _power_body(top["power"]) if "power" in top else None,
                          "halut hw power"))
    parts.append(_section("halut against the MAC baseline", "compare",
                          _compare_body(top["compare"]) if "compare" in top else None,
                          "halut hw compare"))
    if is_sweep:
        parts.append(_section("sweep", "sweep", _sweep_body(r), "halut hw sweep"))
    if r.nested:
        parts.append(_section("results in sub-folders", "nested", _nested_body(r), ""))
    return f"<section id='detail'><h2>Detail</h2>{''.join(parts)}</section>"


def _cycles(c: Any) -> str:
    if not isinstance(c, dict):
        return NOT_RUN
    return f"{_flat(c.get('total'))} (stall {_flat(c.get('stall'))})"


def _power_body(power: Mapping[str, Any]) -> str:
    body = _figures_table(power, [
        ("design", "design", None), ("params", "parameters", config_words),
        ("clock_mhz", "clock (MHz)", None), ("period_ns", "clock period (ns)", None),
        ("clock_source", "clock chosen by", None),
        ("workload.kind", "workload", None), ("workload.source", "workload source", None),
        ("workload.rows", "rows simulated", None), ("workload.D", "D (input width)", None),
        ("workload.M", "M (outputs)", None), ("workload.cycles", "cycles simulated", None),
        ("activity.source", "activity from", None),
        ("activity.nets", "nets in the VCD", None),
        ("activity.annotated_nets", "nets annotated", None),
        ("activity.mean_toggle_rate", "mean toggle rate (per cycle)", None),
        ("activity.mean_duty", "mean duty", None),
        ("ops_per_row", "operations per row", None),
        ("throughput_tops", "throughput (TOp/s)", None),
        ("efficiency_tops_per_w", "efficiency, simulated activity (TOp/s/W)", None),
        ("vectorless_efficiency_tops_per_w", "efficiency, default activity (TOp/s/W)", None),
        ("seconds", "time (s)", None)])
    rows = []
    for key, label in (("power_w", "simulated activity"),
                       ("vectorless_power_w", "OpenSTA default activity")):
        d = power.get(key)
        row: dict[str, Any] = {"activity": label}
        if isinstance(d, dict):
            row.update({k: d.get(k) for k in (*_POWER_PARTS, "total") if k in d})
        e = power.get("energy_pj" if key == "power_w" else "vectorless_energy_pj")
        if isinstance(e, dict):
            row.update({f"e_{k}": e.get(k) for k in ("per_cycle", "per_row") if k in e})
        rows.append(row)
    body += "<h4>power and energy</h4>" + list_table(rows, [
        ("activity", "activity"), ("internal", "internal (W)"), ("switching", "switching (W)"),
        ("leakage", "leakage (W)"), ("total", "total (W)"),
        ("e_per_cycle", "energy per cycle (pJ)"), ("e_per_row", "energy per row (pJ)")],
        {k: _fmt for k in ("internal", "switching", "leakage", "total", "e_per_cycle",
                           "e_per_row")})
    return body


def _compare_clock(compare: Mapping[str, Any] | None) -> str:
    """The clock of a ``compare.json``'s power figures, in words."""
    cm = _get(compare, "clock_mhz")
    return f"clock {_g(float(cm))} MHz" if _is_number(cm) else "each design at its own fmax"


def _compare_body(compare: Mapping[str, Any]) -> str:
    designs: dict[str, Any] = compare.get("designs") or {}
    ratios: dict[str, Any] = compare.get("ratios") or {}
    ratio_of = {"area_um2": "area", "energy_per_row_pj": "energy_per_row",
                "gops_per_mm2": "gops_per_mm2", "tops_per_w": "tops_per_w",
                "fmax_mhz": "fmax"}
    labels = {"area_um2": "cell area (\u00b5m\u00b2)", "cells": "cells",
              "flip_flops": "flip-flops", "fmax_mhz": "fmax (MHz)", "power_w": "power (W)",
              "energy_per_row_pj": "energy per row (pJ)", "gops_per_mm2": "GOp/s per mm\u00b2",
              "tops_per_w": "TOp/s/W"}
    hal, mac = designs.get("halut") or {}, designs.get("mac") or {}
    rows = []
    for key, label in labels.items():
        row: dict[str, Any] = {"figure": label}
        for name, d in (("halut", hal), ("mac", mac)):
            if key in d:
                row[name] = d[key]
        rk = ratio_of.get(key)
        if rk is None:
            row["ratio"] = ""  # no ratio recorded for this figure
        elif rk in ratios:
            row["ratio"] = ratios[rk]
        rows.append(row)
    body = f"<p>Power at {html.escape(_compare_clock(compare))}.</p>" + _figures_table(
        compare, [("depth", "layer inputs D", None), ("workload.M", "outputs M", None),
                  ("workload.rows", "rows simulated", None), ("seconds", "time (s)", None)])
    body += list_table(rows, [("figure", "figure"), ("halut", "halut"), ("mac", "MAC"),
                              ("ratio", "halut / MAC")],
                       {k: (lambda v: "" if v == "" else _fmt(v)) for k in
                        ("halut", "mac", "ratio")})
    for name, d in (("halut", hal), ("mac", mac)):
        if isinstance(d.get("params"), dict):
            body += (f"<p><b>{name}</b> parameters: "
                     f"{html.escape(config_words(d['params']))}</p>")
    return body


def _sweep_body(r: RunResults) -> str:
    sw = r.top.get("sweep")
    rows = _sweep_rows(r)
    swept = [str(a.get("name")) for a in (sw.get("grid") or [])] if sw else []
    st = (sw.get("settings") or {}) if sw else {}
    body = ""
    if sw is not None:
        grid = "; ".join(f"{a.get('name')} = {', '.join(map(str, a.get('values') or []))}"
                         for a in sw.get("grid") or [])
        base = " ".join(map(str, sw.get("base") or [])) or "none"
        body += _figures_table({"s": st, "b": base, "g": grid}, [
            ("b", "base parameters", None), ("g", "grid", None),
            ("s.period_ns", "clock period (ns)" + (" (swept: each point's own)"
                                                   if PERIOD in swept else ""), None),
            ("s.io_fraction", "I/O delays (fraction of the period)", None),
            ("s.pnr", "place and route (qflow) per point", None),
            ("s.rtl_digest", "RTL digest (sha256)", None)])
    else:
        body += (f"<p>No sweep.json (an interrupted sweep?): the "
                 f"{_n(len(rows), 'finished point')} in points/.</p>")
    heads = {"area": "area (\u00b5m\u00b2)", "cells": "cells", "flip_flops": "flip-flops",
             "fmax_mhz": "fmax (MHz)", "wns_ns": "WNS at the period (ns)",
             "power_w": "power, default activity (W)", "die_area_um2": "die area (\u00b5m\u00b2)",
             "wirelength_um": "wire length (\u00b5m)", "vesta_fmax_mhz": "vesta fmax (MHz)",
             "seconds": "time (s)"}
    cols = [c for c in COLUMNS if any(x.get(c) is not None for x in rows)]
    skipped = [heads.get(c, c) for c in COLUMNS if c not in cols]
    if sw is None:
        table = [{**{"point": name}, **p} for name, p in r.points]
        key_cols = [("point", "point")]
    else:
        table = [dict(x) for x in rows]
        key_cols = [(n, "period (ns)" if n == PERIOD else n) for n in swept]
    extra = [("reused", "reused from an earlier run")] if sw is not None else []
    body += "<h4>points</h4>" + list_table(
        table, [*key_cols, *((c, heads.get(c, c)) for c in cols), *extra],
        {c: _fmt for c in cols})
    if skipped:
        body += (f"<p class='notrun'>{NOT_RUN} in any point: "
                 f"{html.escape(', '.join(skipped))}</p>")
    return body


def _nested_body(r: RunResults) -> str:
    rows = []
    for rel, kind, d in r.nested:
        pw = d.get("power_w")
        rows.append({"file": rel, "kind": kind,
                     "area": d.get("area", d.get("die_area_um2")) if kind in ("synth", "pnr")
                     else "",
                     "fmax": d.get("fmax_mhz") if kind in ("sta", "post_route_sta") else "",
                     "power": (pw.get("total") if isinstance(pw, dict) else None)
                     if kind in ("sta", "post_route_sta", "power") else "",
                     "passed": d.get("passed") if kind in ("lint", "gls") else ""})
    show = {k: (lambda v: "" if v == "" else _fmt(v)) for k in ("area", "fmax", "power",
                                                                 "passed")}
    return list_table(rows, [("file", "file"), ("kind", "result"),
                             ("area", "area (\u00b5m\u00b2)"), ("fmax", "fmax (MHz)"),
                             ("power", "power (W)"), ("passed", "passed")], show)


# ---- the page ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    """A rendered report: the HTML and its summary figures."""

    html: str
    summary: list[Figure]


def build(run_dir: Path) -> Page:
    """The report of ``run_dir`` (see the module docstring)."""
    r = load_results(run_dir)
    try:
        figures = summary(r)
        body = summary_html(figures) + plots_html(r) + detail_html(r)
    except HalutError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError,
            ZeroDivisionError, OverflowError) as exc:  # a field this reader did not expect
        raise HalutError(clip(f"{run_dir}: a result file holds a field of an unexpected "
                              f"shape ({type(exc).__name__}: {exc})")) from None
    title = f"halut hardware report: {run_dir.resolve().name or run_dir}"
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">"
            "<link rel='icon' href='data:,'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}{_PAGE_CSS}</style></head>\n"
            f"<body><h1>{html.escape(title)}</h1>\n"
            f"<p class='src'>Made by <code>halut hw report</code> from the result files in "
            f"<code>{html.escape(str(run_dir))}</code> (docs/hardware.md).</p>\n"
            f"{body}\n</body></html>\n")
    return Page(page, figures)


def render(run_dir: Path) -> str:
    """The HTML page for ``run_dir``. A result file that is not valid JSON or whose fields
    have the wrong types is a one-line error naming it (a report must not hide it)."""
    return build(run_dir).html


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Render ``run_dir`` into ``out`` (default ``run_dir/report.html``), atomically."""
    return write_page(run_dir, out)[0]


def write_page(run_dir: Path, out: Path | None = None) -> tuple[Path, Page]:
    """:func:`write_report`, also returning the page (its summary figures)."""
    if run_dir.is_dir():  # (render names a missing or wrong run directory first)
        check_writable(out or run_dir / "report.html", "report")
    page = build(run_dir)
    path = out or run_dir / "report.html"
    atomic_write_text(path, page.html)
    return path, page
