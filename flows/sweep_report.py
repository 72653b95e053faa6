"""``halut sweep-report DIR``: one self-contained HTML page to explore a ``halut sweep`` run
(docs/sweep.md, "The explorer").

The page reads nothing at view time: ``DIR/sweep.csv``'s rows and a few fields of
``DIR/sweep.json`` are embedded as JSON, and a short inline script (no library, no network)
draws inline SVG figures for what the user picks (layer, C, K, threshold and LUT formats,
encoders):

* a table of NMSE, accuracy, LUT bytes and cycles per image for the selection;
* accuracy against the layer replaced, one line per encoder and C (the chosen K and formats);
* the NMSE heat map over C x K for the chosen layer, formats and each chosen encoder;
* accuracy against LUT bytes (a scatter of every point of the chosen layer).

Both files are read strictly (:mod:`learning.strict`): every row must have exactly the
sweep's fields with values of the right type and range, agree with the run's layers, and
``sweep.csv`` must hold the same rows as ``sweep.json``. Anything else is one
:class:`~learning.errors.HalutError` line naming the file. The page is written atomically.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flows.hw.report import _CSS as BASE_CSS
from flows.hw.report import kv_table
from flows.sweep import CSV_COLUMNS, MODES, RECORD_FIELDS, SWEEP_VERSION
from learning.atomic import atomic_write_text, check_writable
from learning.errors import HalutError
from learning.strict import clip, is_int, is_number, parse_json, read_file, same_json, shown

MAX_FILE = 64 << 20  # bytes of sweep.json or sweep.csv
SUMMARY_FORMAT = "halut-sweep"
_INT_COLUMNS = frozenset({"C_requested", "C", "K", "layer_index", "D", "M", "groups",
                          "rows_per_image", "layers_replaced", "lut_bytes",
                          "cycles_per_image"})
_FLOAT_COLUMNS = frozenset({"nmse", "accuracy", "accuracy_drop"})
_NULLABLE = frozenset({"threshold_format", "lut_format", "nmse", "lut_bytes",
                       "cycles_per_image"})
_INT_TEXT = re.compile(r"-?[0-9]{1,18}")
_LAYER_FIELDS = ("kind", "D", "M", "groups", "rows_per_image")


def _error(where: str, message: str) -> HalutError:
    return HalutError(clip(f"{where}: {message}"))


def _finite(v: Any) -> bool:
    return not is_number(v) or math.isfinite(v)


def _check_row(row: Any, where: str, what: str, fields: Mapping[str, Any]) -> None:
    """``row`` is an object with exactly ``fields``, each value valid (and finite)."""
    if not isinstance(row, dict):
        raise _error(where, f"{what} is not an object ({shown(row)})")
    missing = [f for f in fields if f not in row]
    extra = [f for f in row if f not in fields]
    if missing or extra:
        raise _error(where, f"{what} " + (f"lacks {', '.join(missing)}" if missing else
                                          f"has unknown fields {', '.join(extra)}"))
    for f, ok in fields.items():
        if not ok(row[f]) or not _finite(row[f]):
            raise _error(where, f"{what}: {f}={shown(row[f])} is not a valid value")


def _check_identity(rows: list[dict[str, Any]], layers: list[dict[str, Any]], mode: str,
                    where: str, what: str) -> None:
    """The rows agree with the run's mode and layers, pq rows have no hardware numbers, and
    no (point, layer) appears twice."""
    seen: set[tuple[Any, ...]] = set()
    for i, r in enumerate(rows):
        label = f"{what} {i + 1}"
        if r["mode"] != mode:
            raise _error(where, f"{label} is of mode {r['mode']!r}, the run of {mode!r}")
        if r["layer_index"] >= len(layers):
            raise _error(where, f"{label}: layer_index {r['layer_index']} is not one of the "
                                f"run's {len(layers)} layers")
        layer = layers[r["layer_index"]]
        if r["layer"] != layer["name"] or any(r[f] != layer[f] for f in _LAYER_FIELDS):
            raise _error(where, f"{label}: layer {shown(r['layer'])} does not match the "
                                f"run's layer {r['layer_index']} ({shown(layer['name'])})")
        if r["C"] != min(r["C_requested"], r["D"]):
            raise _error(where, f"{label}: C={r['C']} is not min(C_requested, D)")
        pq = r["encoder"] == "pq"
        hw = (r["threshold_format"], r["lut_format"], r["lut_bytes"], r["cycles_per_image"])
        if r["runs_on_accelerator"] is pq or any((v is None) is not pq for v in hw):
            raise _error(where, f"{label}: the hardware fields (formats, lut_bytes, "
                                f"cycles_per_image, runs_on_accelerator) do not fit encoder "
                                f"{r['encoder']!r}")
        key = (r["encoder"], r["C_requested"], r["K"], r["threshold_format"],
               r["lut_format"], r["layer_index"])
        if key in seen:
            raise _error(where, f"{label} repeats a (point, layer) of an earlier row")
        seen.add(key)


def _need(doc: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in doc:
        raise _error(where, f"{key!r} is missing (not a complete halut sweep summary)")
    if not isinstance(doc[key], kind):
        raise _error(where, f"{key!r} must be a JSON {'object' if kind is dict else 'list'}, "
                            f"got {shown(doc[key])}")
    return doc[key]


def read_summary(path: Path) -> dict[str, Any]:
    """``sweep.json`` read strictly: what the page needs, checked (see the module)."""
    where = clip(str(path), 200)
    doc = parse_json(read_file(path, where, MAX_FILE), where, what="", max_bytes=MAX_FILE)
    if not isinstance(doc, dict) or doc.get("format") != SUMMARY_FORMAT:
        got = shown(doc.get("format")) if isinstance(doc, dict) else f"a JSON {shown(doc)}"
        raise _error(where, f"not a halut sweep summary (format {got}, expected "
                            f"{SUMMARY_FORMAT!r}): give the --run-dir of `halut sweep`")
    if not is_int(doc.get("version")) or doc["version"] != SWEEP_VERSION:
        raise _error(where, f"version {shown(doc.get('version'))} is not {SWEEP_VERSION}, the "
                            "one this halut reads")
    rows = _need(doc, "rows", list, where)
    layers = _need(doc, "layers", list, where)
    options = _need(doc, "options", dict, where)
    data = _need(doc, "data", dict, where)
    check = _need(doc, "cycle_model_check", dict, where)
    inputs = _need(doc, "inputs", dict, where)
    acc = doc.get("float_accuracy")
    if not (is_number(acc) and 0 <= acc <= 1):
        raise _error(where, f"float_accuracy={shown(acc)} is not a fraction in [0, 1]")
    mode = options.get("mode")
    if mode not in MODES:
        raise _error(where, f"options.mode={shown(mode)} is not one of {', '.join(MODES)}")
    for key in ("images", "calibration_images", "holdout_images"):
        if not is_int(data.get(key)) or data[key] < 1:
            raise _error(where, f"data.{key}={shown(data.get(key))} is not a count >= 1")
    if not layers:
        raise _error(where, "'layers' is empty: the sweep selected no layer")
    layer_fields = {"index": is_int, "name": lambda v: isinstance(v, str),
                    "kind": lambda v: v in ("linear", "conv1d", "conv2d"),
                    **{f: (lambda v: is_int(v) and v >= 1) for f in _LAYER_FIELDS[1:]}}
    for i, layer in enumerate(layers):
        _check_row(layer, where, f"layers[{i}]", layer_fields)
        if layer["index"] != i:
            raise _error(where, f"layers[{i}] has index {layer['index']}")
    if not rows:
        raise _error(where, "'rows' is empty: the sweep recorded nothing")
    for i, row in enumerate(rows):
        _check_row(row, where, f"row {i + 1}", RECORD_FIELDS)
    _check_identity(rows, layers, mode, where, "row")
    return {"rows": rows, "layers": layers, "mode": mode, "float_accuracy": float(acc),
            "data": data, "cycle_model_check": check, "inputs": inputs,
            "skipped_layers": doc.get("skipped_layers") or [],
            "records": doc.get("records")}


def _cell(column: str, text: str) -> Any:
    """A CSV cell as the JSON value ``halut sweep`` wrote it from (ValueError if it is not
    one of its column's kind)."""
    if text == "" and column in _NULLABLE:
        return None
    if column in _INT_COLUMNS:
        if not _INT_TEXT.fullmatch(text):
            raise ValueError("not an integer")
        return int(text)
    if column in _FLOAT_COLUMNS:
        x = float(text)
        if not math.isfinite(x):
            raise ValueError("not a finite number")
        return x
    if column == "runs_on_accelerator":
        if text not in ("true", "false"):
            raise ValueError("not true/false")
        return text == "true"
    return text


def read_table(path: Path) -> list[dict[str, Any]]:
    """``sweep.csv`` read strictly: the sweep's header, then rows of typed, valid cells."""
    where = clip(str(path), 200)
    raw = read_file(path, where, MAX_FILE)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(where, f"not UTF-8 text (byte {exc.start})") from None
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise _error(where, f"not a valid CSV table ({exc})") from None
    if not lines or lines[0] != list(CSV_COLUMNS):
        head = ",".join(lines[0]) if lines else "nothing"
        raise _error(where, f"the header is {shown(head, 60)}, not halut sweep's columns "
                            f"({','.join(CSV_COLUMNS[:4])},...)")
    rows: list[dict[str, Any]] = []
    for n, cells in enumerate(lines[1:], start=2):
        if len(cells) != len(CSV_COLUMNS):
            raise _error(where, f"line {n} has {len(cells)} cells, not {len(CSV_COLUMNS)}")
        row: dict[str, Any] = {}
        for column, text in zip(CSV_COLUMNS, cells, strict=True):
            try:
                value = _cell(column, text)
            except ValueError as exc:
                raise _error(where, f"line {n}, {column}={shown(text)}: {exc}") from None
            if not RECORD_FIELDS[column](value):
                raise _error(where, f"line {n}, {column}={shown(text)} is not a valid value")
            row[column] = value
        rows.append(row)
    if not rows:
        raise _error(where, "holds no rows")
    return rows


def load_run(run_dir: Path) -> dict[str, Any]:
    """The run's summary with ``table``: sweep.csv's rows, checked against sweep.json's."""
    if not run_dir.exists():
        raise HalutError(clip(f"run directory {run_dir} not found"))
    if not run_dir.is_dir():
        raise HalutError(clip(f"{run_dir} is not a directory (give halut sweep's --run-dir)"))
    for name in ("sweep.json", "sweep.csv"):
        if not (run_dir / name).exists():
            raise HalutError(clip(f"{run_dir / name} does not exist: run `halut sweep "
                                  f"--run-dir {run_dir}` first (or let it finish)"))
    summary = read_summary(run_dir / "sweep.json")
    csv_path = run_dir / "sweep.csv"
    table = read_table(csv_path)
    where = clip(str(csv_path), 200)
    if len(table) != len(summary["rows"]):
        raise _error(where, f"{len(table)} rows, but sweep.json holds {len(summary['rows'])}: "
                            "the files are of different runs; run halut sweep again")
    for n, (a, b) in enumerate(zip(table, summary["rows"], strict=True), start=2):
        bad = next((c for c in CSV_COLUMNS if not same_json(a[c], b[c])), None)
        if bad is not None:
            raise _error(where, f"line {n}, {bad}={shown(a[bad])} disagrees with sweep.json "
                                f"({shown(b[bad])}): the files are of different runs")
    summary["table"] = table
    return summary


# ---- the page --------------------------------------------------------------------------------

_PAGE_CSS = """
form#controls{display:flex;flex-wrap:wrap;gap:0.6em 1.4em;align-items:center;
 background:#f6f6f6;border:1px solid #ddd;padding:0.6em 1em;position:sticky;top:0;z-index:1}
form#controls label{white-space:nowrap} fieldset{border:0;margin:0;padding:0;display:inline}
legend{float:left;margin-right:0.5em;padding:0}
select{font-size:100%} .empty{color:#777;font-style:italic;margin:1em 0}
.fig svg{font-size:11px;font-family:sans-serif;overflow:visible} .note{color:#555;font-size:90%}
#values td.num{text-align:right;font-variant-numeric:tabular-nums}
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("sweep-data").textContent);
  var ROWS = DATA.rows, LAYERS = DATA.layers;
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                 "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  var W = 760, H = 340, M = {l: 64, r: 190, t: 18, b: 78};
  var EMPTY = "no points for this selection";

  function el(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; });
  }
  function uniq(values) {
    var out = [];
    values.forEach(function (v) { if (v !== null && out.indexOf(v) < 0) out.push(v); });
    return out;
  }
  function num(a, b) { return a - b; }
  function pick(key) { return ROWS.map(function (r) { return r[key]; }); }
  var CS = uniq(pick("C_requested")).sort(num), KS = uniq(pick("K")).sort(num);
  var THRS = uniq(pick("threshold_format")), LUTS = uniq(pick("lut_format"));  // grid order
  var ENCS = uniq(pick("encoder"));

  function fmtNmse(v) {
    if (v === null) return "\u2013";
    return v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toPrecision(4);
  }
  function pct(v) { return (100 * v).toFixed(2); }
  function fmtInt(v) { return v === null ? "\u2013" : String(v); }
  function fmtName(r) {
    return r.encoder === "pq" ? "\u2013 (float)" : r.threshold_format + " / " + r.lut_format;
  }
  function cUsed(r) {
    return r.C === r.C_requested ? String(r.C) : r.C + " (capped from " + r.C_requested + ")";
  }

  // ---- controls
  function fill(id, values, label) {
    var s = el(id);
    if (!values.length) {
      s.innerHTML = '<option value="">n/a (pq only)</option>';
      s.disabled = true;
      return;
    }
    s.innerHTML = values.map(function (v) {
      return '<option value="' + esc(v) + '">' + esc(label ? label(v) : v) + "</option>";
    }).join("");
  }
  fill("layer", LAYERS.map(function (l) { return l.index; }), function (i) {
    var l = LAYERS[i];
    return i + ": " + l.name + " (" + l.kind + ", D=" + l.D + ", M=" + l.M + ")";
  });
  fill("C", CS);
  fill("K", KS);
  fill("thr", THRS);
  fill("lut", LUTS);
  el("encoders").insertAdjacentHTML("beforeend", ENCS.map(function (e) {
    return '<label><input type="checkbox" id="enc-' + esc(e) + '" value="' + esc(e) +
      '" checked> ' + esc(e) + "</label>";
  }).join(" "));

  function state() {
    return {
      layer: +el("layer").value, C: +el("C").value, K: +el("K").value,
      thr: el("thr").disabled ? null : el("thr").value,
      lut: el("lut").disabled ? null : el("lut").value,
      enc: ENCS.filter(function (e) { return el("enc-" + e).checked; })
    };
  }
  function fmtOk(r, s) {  // pq has no hardware formats: it fits every format choice
    return r.encoder === "pq" || (r.threshold_format === s.thr && r.lut_format === s.lut);
  }
  function chosen(r, s) { return s.enc.indexOf(r.encoder) >= 0; }

  // ---- the table
  function drawValues(s) {
    var sel = [];
    ROWS.forEach(function (r, i) {
      if (r.layer_index === s.layer && r.C_requested === s.C && r.K === s.K && fmtOk(r, s) &&
          chosen(r, s)) sel.push([i, r]);
    });
    var body = el("values").tBodies[0];
    if (!sel.length) {
      body.innerHTML = '<tr><td colspan="10" class="empty">' + EMPTY + "</td></tr>";
      return;
    }
    body.innerHTML = sel.map(function (p) {
      var r = p[1], drop = 100 * r.accuracy_drop;
      return '<tr data-row="' + p[0] + '"><td>' + esc(r.encoder) + "</td><td>" +
        esc(cUsed(r)) + '</td><td class="num">' + r.K + "</td><td>" + esc(fmtName(r)) +
        '</td><td class="num">' + fmtNmse(r.nmse) + '</td><td class="num">' + pct(r.accuracy) +
        '</td><td class="num">' + (drop >= 0 ? "" : "+") + Math.abs(drop).toFixed(2) +
        '</td><td class="num">' + fmtInt(r.lut_bytes) + '</td><td class="num">' +
        fmtInt(r.cycles_per_image) + "</td><td>" + (r.runs_on_accelerator ? "yes" : "no") +
        "</td></tr>";
    }).join("");
  }

  // ---- chart helpers
  function nice(lo, hi, n, integer) {
    if (!(hi > lo)) { var pad = lo !== 0 ? Math.abs(lo) * 0.05 : 1; lo -= pad; hi += pad; }
    var raw = (hi - lo) / n, step = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / step;
    step *= f >= 7.5 ? 10 : f >= 3.5 ? 5 : f >= 1.5 ? 2 : 1;
    if (integer) step = Math.max(1, Math.round(step));
    var a = Math.floor(lo / step + 1e-9) * step, b = Math.ceil(hi / step - 1e-9) * step;
    var ticks = [];
    for (var i = 0; a + i * step <= b + step * 1e-9; i++) ticks.push(+(a + i * step).toFixed(9));
    return {lo: a, hi: b, ticks: ticks};
  }
  function accAxis(values) {  // accuracy in %, kept within [0, 100]
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    if (hi - lo < 2) { lo = Math.max(0, lo - 2); hi = Math.min(100, hi + 2); }
    var t = nice(lo, hi, 5, false);
    t.ticks = t.ticks.filter(function (v) { return v >= 0 && v <= 100; });
    t.lo = Math.max(0, t.lo); t.hi = Math.min(100, t.hi);
    return t;
  }
  function svg(w, h, label, body) {
    return '<svg width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + " " + h +
      '" role="img" aria-label="' + esc(label) + '">' + body + "</svg>";
  }
  function text(x, y, s, attrs) {
    return '<text x="' + x.toFixed(1) + '" y="' + y.toFixed(1) + '" ' + (attrs || "") + ">" +
      esc(s) + "</text>";
  }
  function line(x1, y1, x2, y2, attrs) {
    return '<line x1="' + x1.toFixed(1) + '" y1="' + y1.toFixed(1) + '" x2="' + x2.toFixed(1) +
      '" y2="' + y2.toFixed(1) + '" ' + attrs + "/>";
  }
  function yAxis(t, Y, x0, x1, label) {
    var out = t.ticks.map(function (v) {
      return line(x0, Y(v), x1, Y(v), 'stroke="#e4e4e4"') +
        text(x0 - 6, Y(v) + 4, String(v), 'text-anchor="end"');
    }).join("");
    var yc = (Y(t.lo) + Y(t.hi)) / 2;
    return out + line(x0, Y(t.lo), x0, Y(t.hi), 'stroke="#444"') +
      text(16, yc, label, 'text-anchor="middle" transform="rotate(-90 16 ' + yc.toFixed(1) +
           ')"');
  }
  function floatLine(Y, x0, x1) {
    var y = Y(100 * DATA.float_accuracy);
    return line(x0, y, x1, y, 'stroke="#000" stroke-dasharray="2 3"') +
      text(x1 - 4, y - 4, "float network " + pct(DATA.float_accuracy) + " %",
           'text-anchor="end"');
  }
  function empty(note) {
    return '<p class="empty">' + EMPTY + (note ? " (" + esc(note) + ")" : "") + "</p>";
  }

  // ---- accuracy against the layer replaced: one line per encoder and C
  function drawLayers(s) {
    var series = [];
    s.enc.forEach(function (e) {
      CS.forEach(function (C, ci) {
        var pts = ROWS.filter(function (r) {
          return r.encoder === e && r.C_requested === C && r.K === s.K && fmtOk(r, s);
        }).sort(function (a, b) { return a.layer_index - b.layer_index; });
        if (pts.length) {
          series.push({name: e + " C=" + C, color: PALETTE[ci % PALETTE.length], pts: pts,
                       dash: e === "pq" ? ' stroke-dasharray="7 4"' : "", sel: C === s.C});
        }
      });
    });
    if (!series.length) return empty();
    var x0 = M.l, x1 = W - M.r, y0 = H - M.b, y1 = M.t, n = LAYERS.length;
    var accs = [100 * DATA.float_accuracy];
    series.forEach(function (sr) {
      sr.pts.forEach(function (r) { accs.push(100 * r.accuracy); });
    });
    var t = accAxis(accs);
    function X(i) { return n === 1 ? (x0 + x1) / 2 : x0 + 24 + (x1 - x0 - 48) * i / (n - 1); }
    function Y(v) { return y0 - (y0 - y1) * (v - t.lo) / (t.hi - t.lo); }
    var out = ['<rect x="' + (X(s.layer) - 12).toFixed(1) + '" y="' + y1 + '" width="24" height="' +
               (y0 - y1) + '" fill="#fff3c4"><title>the chosen layer</title></rect>'];
    out.push(yAxis(t, Y, x0, x1, "accuracy on the held-out images (%)"));
    out.push(line(x0, y0, x1, y0, 'stroke="#444"'));
    LAYERS.forEach(function (l) {
      var x = X(l.index), name = l.index + ": " + (l.name.length > 16 ? l.name.slice(0, 15) +
                                                   "\u2026" : l.name);
      out.push(line(x, y0, x, y0 + 4, 'stroke="#444"'));
      out.push(text(x, y0 + 14, name, 'text-anchor="end" transform="rotate(-30 ' +
                    x.toFixed(1) + " " + (y0 + 14) + ')"'));
    });
    out.push(text((x0 + x1) / 2, H - 6, DATA.mode === "cumulative" ?
      "last layer replaced (every selected layer up to it replaced), call order" :
      "layer replaced (alone), call order", 'text-anchor="middle"'));
    out.push(floatLine(Y, x0, x1));
    series.slice().sort(function (a, b) { return a.sel - b.sel; }).forEach(function (sr) {
      var w = sr.sel ? 3 : 1.5;
      out.push('<polyline fill="none" stroke="' + sr.color + '" stroke-width="' + w + '"' +
               sr.dash + ' points="' + sr.pts.map(function (r) {
                 return X(r.layer_index).toFixed(1) + "," + Y(100 * r.accuracy).toFixed(1);
               }).join(" ") + '"/>');
      sr.pts.forEach(function (r) {
        out.push('<circle cx="' + X(r.layer_index).toFixed(1) + '" cy="' +
                 Y(100 * r.accuracy).toFixed(1) + '" r="' + (sr.sel ? 4 : 3) + '" fill="' +
                 sr.color + '"><title>' + esc(sr.name + ", layer " + r.layer + ": " +
                 pct(r.accuracy) + " %, NMSE " + fmtNmse(r.nmse)) + "</title></circle>");
      });
    });
    series.forEach(function (sr, i) {
      var y = y1 + 8 + 16 * i, x = x1 + 70;
      out.push(line(x, y, x + 24, y, 'stroke="' + sr.color + '" stroke-width="' +
                    (sr.sel ? 3 : 1.5) + '"' + sr.dash));
      out.push(text(x + 30, y + 4, sr.name + (sr.sel ? " (chosen C)" : ""),
                    sr.sel ? 'font-weight="bold"' : ""));
    });
    var fmt = s.thr === null ? "" : ", maddness formats " + s.thr + " / " + s.lut;
    return svg(W, Math.max(H, y1 + 16 * series.length + 20),
               "accuracy against the layer replaced, K=" + s.K + fmt, out.join("")) +
      '<p class="note">K=' + s.K + fmt + '; dashed: pq; dotted: the float network.</p>';
  }

  // ---- NMSE heat map over C x K, per chosen encoder
  function color(t) {
    var x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1), i = Math.min(3, Math.floor(x));
    var f = x - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return "rgb(" + [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * f); })
      .join(",") + ")";
  }
  function drawHeat(s) {
    var maps = s.enc.map(function (e) {
      var cells = [], any = false;
      CS.forEach(function (C, i) {
        KS.forEach(function (K, j) {
          var r = ROWS.filter(function (q) {
            return q.encoder === e && q.layer_index === s.layer && q.C_requested === C &&
              q.K === K && fmtOk(q, s);
          })[0] || null;
          if (r) any = true;
          cells.push({i: i, j: j, C: C, K: K, r: r});
        });
      });
      return {enc: e, cells: cells, any: any};
    }).filter(function (m) { return m.any; });
    if (!maps.length) return empty();
    var logs = [];
    maps.forEach(function (m) {
      m.cells.forEach(function (c) {
        if (c.r && c.r.nmse !== null) logs.push(Math.log10(Math.max(c.r.nmse, 1e-12)));
      });
    });
    var lo = logs.length ? Math.min.apply(null, logs) : 0;
    var hi = logs.length ? Math.max.apply(null, logs) : 1;
    var cw = Math.max(44, Math.min(84, 340 / KS.length));
    var ch = Math.max(26, Math.min(40, 260 / CS.length));
    var left = 70, top = 34, mw = Math.max(250, left + cw * KS.length + 24);
    var mh = top + ch * CS.length + 44;
    var out = [], capped = false;
    maps.forEach(function (m, mi) {
      var ox = mi * mw;
      out.push(text(ox + left + cw * KS.length / 2, 14, m.enc + (m.enc === "pq" ? " (float)" :
               " (" + s.thr + " / " + s.lut + ")"), 'text-anchor="middle" font-weight="bold"'));
      m.cells.forEach(function (c) {
        var x = ox + left + c.j * cw, y = top + c.i * ch, v = c.r ? c.r.nmse : null, t = 0;
        var fillc = "#eee", label = "\u2013";
        if (v !== null) {
          t = hi > lo ? (Math.log10(Math.max(v, 1e-12)) - lo) / (hi - lo) : 0.5;
          fillc = color(t);
          label = fmtNmse(v);
        }
        if (c.r && c.r.C !== c.r.C_requested) { label += "*"; capped = true; }
        var selc = c.C === s.C && c.K === s.K;
        out.push('<rect x="' + x.toFixed(1) + '" y="' + y.toFixed(1) + '" width="' +
                 (cw - 2).toFixed(1) + '" height="' + (ch - 2).toFixed(1) + '" fill="' + fillc +
                 '"' + (selc ? ' stroke="#000" stroke-width="3"' : "") + "><title>" +
                 esc(m.enc + " C=" + c.C + " K=" + c.K + ": NMSE " + label) + "</title></rect>");
        out.push(text(x + (cw - 2) / 2, y + ch / 2 + 3, label, 'text-anchor="middle" fill="' +
                      (v !== null && t < 0.55 ? "#fff" : "#000") + '"' +
                      (selc ? ' font-weight="bold"' : "")));
      });
      CS.forEach(function (C, i) {
        out.push(text(ox + left - 6, top + i * ch + ch / 2 + 3, String(C), 'text-anchor="end"'));
      });
      KS.forEach(function (K, j) {
        out.push(text(ox + left + j * cw + cw / 2, top + ch * CS.length + 12, String(K),
                      'text-anchor="middle"'));
      });
      out.push(text(ox + left + cw * KS.length / 2, top + ch * CS.length + 30,
                    "K (prototypes per codebook)", 'text-anchor="middle"'));
      var yc = top + ch * CS.length / 2;
      out.push(text(ox + 24, yc, "C (codebooks)", 'text-anchor="middle" transform="rotate(-90 ' +
                    (ox + 24) + " " + yc.toFixed(1) + ')"'));
    });
    var bx = maps.length * mw + 10, bh = ch * CS.length;
    for (var k = 0; k < 20; k++) {
      out.push('<rect x="' + bx + '" y="' + (top + bh * (19 - k) / 20).toFixed(1) +
               '" width="14" height="' + (bh / 20 + 0.5).toFixed(1) + '" fill="' +
               color(k / 19) + '"/>');
    }
    out.push(text(bx + 18, top + 8, "NMSE " + fmtNmse(Math.pow(10, hi)), ""));
    out.push(text(bx + 18, top + bh, "NMSE " + fmtNmse(Math.pow(10, lo)), ""));
    out.push(text(bx, top + bh + 30, "(dimensionless, log colour scale)", ""));
    var layer = LAYERS[s.layer];
    return svg(bx + 190, mh, "NMSE over C and K for layer " + layer.name, out.join("")) +
      '<p class="note">layer ' + esc(s.layer + ": " + layer.name) +
      "; the chosen (C, K) is outlined" + (capped ? "; * C capped to the layer's D=" +
      layer.D : "") + ".</p>";
  }

  // ---- accuracy against LUT bytes: every point of the chosen layer
  function drawLut(s) {
    var note = s.enc.indexOf("pq") >= 0 ? "pq has no LUT on the accelerator: not plotted" : "";
    var pts = ROWS.filter(function (r) {
      return r.layer_index === s.layer && chosen(r, s) && r.lut_bytes !== null;
    });
    if (!pts.length) return empty(note);
    var x0 = M.l, x1 = W - M.r, y0 = H - M.b, y1 = M.t;
    var bytes = pts.map(function (r) { return r.lut_bytes; });
    var bmin = Math.min.apply(null, bytes), bmax = Math.max.apply(null, bytes);
    var logx = bmax / bmin >= 8, X, ticks;
    if (logx) {
      var e0 = Math.floor(Math.log2(bmin)), e1 = Math.ceil(Math.log2(bmax));
      var every = Math.max(1, Math.ceil((e1 - e0) / 8));
      ticks = [];
      for (var e = e0; e <= e1; e += every) ticks.push(Math.pow(2, e));
      X = function (v) {
        return x0 + 16 + (x1 - x0 - 32) * (Math.log2(v) - e0) / Math.max(1, e1 - e0);
      };
    } else {
      var t = nice(Math.max(0, bmin - 1), bmax + 1, 6, true);
      ticks = t.ticks;
      X = function (v) { return x0 + 16 + (x1 - x0 - 32) * (v - t.lo) / (t.hi - t.lo); };
    }
    var accs = pts.map(function (r) { return 100 * r.accuracy; });
    accs.push(100 * DATA.float_accuracy);
    var ya = accAxis(accs);
    function Y(v) { return y0 - (y0 - y1) * (v - ya.lo) / (ya.hi - ya.lo); }
    var out = [yAxis(ya, Y, x0, x1, "accuracy on the held-out images (%)"),
               line(x0, y0, x1, y0, 'stroke="#444"')];
    ticks.forEach(function (v) {
      out.push(line(X(v), y0, X(v), y0 + 4, 'stroke="#444"'));
      out.push(text(X(v), y0 + 16, String(v), 'text-anchor="middle"'));
    });
    out.push(text((x0 + x1) / 2, y0 + 36, "LUT size (bytes" + (logx ? ", log scale" : "") + ")",
                  'text-anchor="middle"'));
    out.push(floatLine(Y, x0, x1));
    pts.forEach(function (r) {
      var x = X(r.lut_bytes), y = Y(100 * r.accuracy);
      var c = PALETTE[CS.indexOf(r.C_requested) % PALETTE.length];
      var sel = r.C_requested === s.C && r.K === s.K && fmtOk(r, s);
      var tip = esc(r.encoder + " C=" + cUsed(r) + " K=" + r.K + " " + fmtName(r) + ": " +
                    r.lut_bytes + " bytes, " + pct(r.accuracy) + " %, " + r.cycles_per_image +
                    " cycles/image");
      var shape = r.lut_format === "fp16" ?
        '<rect x="' + (x - 4).toFixed(1) + '" y="' + (y - 4).toFixed(1) +
        '" width="8" height="8" fill="' + c + '" fill-opacity="0.8">' :
        '<circle cx="' + x.toFixed(1) + '" cy="' + y.toFixed(1) + '" r="4.5" fill="' + c +
        '" fill-opacity="0.8">';
      out.push(shape + "<title>" + tip + "</title>" + (shape[1] === "r" ? "</rect>" : "</circle>"));
      if (sel) {
        out.push('<circle cx="' + x.toFixed(1) + '" cy="' + y.toFixed(1) +
                 '" r="9" fill="none" stroke="#000" stroke-width="2"/>');
      }
    });
    var ly = y1 + 8;
    CS.forEach(function (C, i) {
      out.push('<circle cx="' + (x1 + 78) + '" cy="' + ly + '" r="4.5" fill="' +
               PALETTE[i % PALETTE.length] + '"/>' + text(x1 + 90, ly + 4, "C=" + C, ""));
      ly += 16;
    });
    out.push('<circle cx="' + (x1 + 78) + '" cy="' + (ly + 4) + '" r="4.5" fill="#999"/>' +
             text(x1 + 90, ly + 8, "int8 LUT", ""));
    out.push('<rect x="' + (x1 + 74) + '" y="' + (ly + 16) +
             '" width="8" height="8" fill="#999"/>' +
             text(x1 + 90, ly + 24, "fp16 LUT", ""));
    out.push('<circle cx="' + (x1 + 78) + '" cy="' + (ly + 40) + '" r="8" fill="none" ' +
             'stroke="#000" stroke-width="2"/>' +
             text(x1 + 90, ly + 44, "chosen C, K, formats", ""));
    var layer = LAYERS[s.layer];
    return svg(W, Math.max(H, ly + 60), "accuracy against LUT bytes for layer " + layer.name,
               out.join("")) + '<p class="note">layer ' + esc(s.layer + ": " + layer.name) +
      ", every C, K and format" + (note ? "; " + esc(note) : "") + ".</p>";
  }

  function update() {
    var s = state();
    drawValues(s);
    el("fig-layers").innerHTML = drawLayers(s);
    el("fig-heat").innerHTML = drawHeat(s);
    el("fig-lut").innerHTML = drawLut(s);
  }
  el("controls").addEventListener("change", update);
  el("controls").addEventListener("submit", function (ev) { ev.preventDefault(); });
  update();
})();
"""


def _json_for_script(value: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``<``, ``>``, ``&`` (nor U+2028/9) as is."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _run_facts(run: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
    data, check, inputs = run["data"], run["cycle_model_check"], run["inputs"]
    rows = run["table"]
    facts = {
        "run folder": str(run_dir),
        "model": str(inputs.get("model", "?")),
        "images": f"{data['images']} ({data['calibration_images']} calibration, "
                  f"{data['holdout_images']} held out)",
        "mode": str(run["mode"]),
        "float accuracy": f"{100 * run['float_accuracy']:.2f} % on the "
                          f"{data['holdout_images']} held-out images",
        "encoders": ", ".join(dict.fromkeys(r["encoder"] for r in rows)),
        "C (codebooks)": ", ".join(str(c) for c in sorted({r["C_requested"] for r in rows})),
        "K (prototypes)": ", ".join(str(k) for k in sorted({r["K"] for r in rows})),
        "layers": ", ".join(f"{la['index']}: {la['name']}" for la in run["layers"]),
        "points x layers": str(len(rows)),
    }
    if run["skipped_layers"]:
        facts["skipped layers"] = ", ".join(
            str(s.get("layer")) if isinstance(s, dict) else str(s) for s in run["skipped_layers"])
    if check.get("checked") is True:
        agree = "agree" if check.get("agrees") else "DIFFER"
        facts["cycle model vs RTL"] = (
            f"{check.get('layer')}: model {check.get('model_cycles_per_image')}, rtl "
            f"{check.get('rtl_cycles_per_image')} cycles per image ({agree})")
    else:
        facts["cycle model vs RTL"] = f"not checked: {check.get('reason', '?')}"
    return facts


def render(run_dir: Path) -> str:
    """The explorer page for the ``halut sweep`` run in ``run_dir`` (see the module)."""
    run = load_run(run_dir)
    payload = {"rows": run["table"], "float_accuracy": run["float_accuracy"],
               "mode": run["mode"], "holdout_images": run["data"]["holdout_images"],
               "layers": [{"index": la["index"], "name": la["name"], "kind": la["kind"],
                           "D": la["D"], "M": la["M"]} for la in run["layers"]]}
    title = f"halut sweep explorer: {run_dir.resolve().name or run_dir}"
    head = ("<tr><th>encoder</th><th>C (codebooks)</th><th>K (prototypes)</th>"
            "<th>threshold / LUT format</th><th>NMSE</th><th>accuracy (%)</th>"
            "<th>accuracy drop (points)</th><th>LUT (bytes)</th><th>cycles / image</th>"
            "<th>on accelerator</th></tr>")
    csp = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
           "img-src data:")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{csp}\">"
        "<link rel='icon' href='data:,'>"
        f"<title>{html.escape(title)}</title><style>{BASE_CSS}{_PAGE_CSS}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n"
        "<p class='note'>Made by <code>halut sweep-report</code> from this run's "
        "<code>sweep.csv</code> and <code>sweep.json</code> (docs/sweep.md). Pick a layer, C, "
        "K, formats and encoders; the table and the figures follow. pq has no hardware "
        "formats: it is shown whatever formats are picked.</p>\n"
        f"<h2>run</h2>{kv_table(_run_facts(run, run_dir))}\n"
        "<form id='controls'>"
        "<label>layer <select id='layer'></select></label>"
        "<label>C (codebooks) <select id='C'></select></label>"
        "<label>K (prototypes) <select id='K'></select></label>"
        "<label>threshold format <select id='thr'></select></label>"
        "<label>LUT format <select id='lut'></select></label>"
        "<fieldset id='encoders'><legend>encoders</legend></fieldset></form>\n"
        "<h2>values for this selection</h2>"
        f"<table id='values'><thead>{head}</thead><tbody></tbody></table>\n"
        "<h2>accuracy against the layer replaced</h2><div class='fig' id='fig-layers'></div>\n"
        "<h2>NMSE over C &times; K</h2><div class='fig' id='fig-heat'></div>\n"
        "<h2>accuracy against LUT size</h2><div class='fig' id='fig-lut'></div>\n"
        "<noscript><p>The controls and figures need JavaScript; the numbers are in "
        "sweep.csv.</p></noscript>\n"
        "<script id='sweep-data' type='application/json'>"
        f"{_json_for_script(payload)}</script>\n"
        f"<script>{_SCRIPT}</script>\n</body></html>\n")


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Render ``run_dir`` into ``out`` (default ``run_dir/report.html``), atomically. Every
    input is checked before anything is written."""
    path = out or run_dir / "report.html"
    if run_dir.is_dir():  # (load_run names a missing or wrong run directory first)
        check_writable(path, "report")
    page = render(run_dir)
    atomic_write_text(path, page)
    return path


__all__ = ["load_run", "read_summary", "read_table", "render", "write_report"]
