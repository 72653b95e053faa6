"""One self-contained HTML page for a run directory: every result JSON a flow wrote there
(lint, synth, sta, pnr, gls, sweep; sweep points too) as tables, the per-module area as a bar
chart, and every PNG in the folder, inlined as base64 (no external files, no scripts)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from flows.hw.common import read_record
from learning.atomic import atomic_write_text, check_writable
from learning.errors import HalutError
from learning.strict import clip

KINDS = ("lint", "synth", "sta", "post_route_sta", "pnr", "gls", "sweep")
_CSS = """body{font-family:sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:2px 8px;text-align:left;font-size:90%}
th{background:#eee} .ok{color:#070} .bad{color:#b00} img{max-width:48%;margin:4px}
code{background:#f4f4f4}"""


def _esc(v: Any) -> str:
    if isinstance(v, float):
        return html.escape(f"{v:.6g}")
    if isinstance(v, dict):
        return html.escape(", ".join(f"{k}={_flat(x)}" for k, x in v.items()))
    if isinstance(v, list):
        return html.escape(f"[{len(v)} items]") if len(v) > 6 else html.escape(
            ", ".join(_flat(x) for x in v))
    return html.escape(str(v))


def _flat(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def kv_table(d: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_esc(v)}</td></tr>"
                   for k, v in d.items() if k not in skip)
    return f"<table>{rows}</table>"


def list_table(rows: list[dict[str, Any]], cols: list[str] | None = None) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = cols or list(rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_esc(r.get(c))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: bytes, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def module_chart(modules: list[dict[str, Any]]) -> bytes:
    """Bar chart of each module's own area (all instances)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m["module"] for m in modules]
    vals = [m["local_area_total"] for m in modules]
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2))
    ax.barh(names[::-1], vals[::-1])
    ax.set_xlabel("area (all instances, um$^2$)")
    ax.set_title("area by module")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


# the fields each result kind must hold with a given JSON type, when present
_LISTS = {"lint": ("warnings", "errors"), "synth": ("modules",), "gls": ("cases",),
          "sweep": ("rows",)}
_DICTS = {"synth": ("cell_types", "extra"), "sta": ("critical_path", "power_w", "extra"),
          "post_route_sta": ("critical_path", "power_w", "extra")}


def _check_fields(kind: str, data: dict[str, Any], where: str) -> None:
    """A one-line error naming the first field of ``data`` with the wrong JSON type."""
    for key in _LISTS.get(kind, ()):
        v = data.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise HalutError(f"{where} is not a valid {kind} result: {key!r} must be a list "
                             f"of objects, got {type(v).__name__}")
    for key in _DICTS.get(kind, ()):
        v = data.get(key, {})
        if not isinstance(v, dict):
            raise HalutError(f"{where} is not a valid {kind} result: {key!r} must be an "
                             f"object, got {type(v).__name__}")
    if kind == "synth":
        for m in data.get("modules", []):
            if not isinstance(m.get("module"), str) or not _is_number(
                    m.get("local_area_total")):
                raise HalutError(f"{where} is not a valid synth result: each module needs a "
                                 "'module' name and a numeric 'local_area_total'")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _section(kind: str, data: dict[str, Any], where: str, path: Path | None = None) -> str:
    _check_fields(kind, data, str(path or where))
    out = [f"<h2>{html.escape(kind)} <small><code>{html.escape(where)}</code></small></h2>"]
    if kind == "lint":
        cls = "ok" if data.get("passed") else "bad"
        out.append(f'<p class="{cls}">lint {"passed" if data.get("passed") else "FAILED"}: '
                   f'{len(data.get("warnings", []))} warnings, '
                   f'{len(data.get("errors", []))} errors</p>')
        out.append(list_table(data.get("warnings", []) + data.get("errors", [])))
    elif kind == "synth":
        out.append(kv_table(data, skip=("modules", "cell_types", "extra")))
        out.append("<h3>modules</h3>" + list_table(data.get("modules", [])))
        if data.get("modules"):
            out.append(_img(module_chart(data["modules"]), "area by module"))
        out.append("<h3>cells by type</h3>" + kv_table(data.get("cell_types", {})))
    elif kind in ("sta", "post_route_sta"):
        out.append(kv_table(data, skip=("critical_path", "power_w", "extra")))
        out.append("<h3>critical path</h3>" + kv_table(data.get("critical_path", {})))
        out.append("<h3>power (W)</h3>" + kv_table(data.get("power_w", {})))
    elif kind == "gls":
        cls = "ok" if data.get("passed") else "bad"
        out.append(f'<p class="{cls}">gate-level check '
                   f'{"passed" if data.get("passed") else "FAILED"} '
                   f'{html.escape(str(data.get("first_failure", "")))}</p>')
        out.append(kv_table(data, skip=("cases",)))
        out.append(list_table(data.get("cases", [])))
    elif kind == "sweep":
        rows = [{k: v for k, v in r.items() if k != "params"} for r in data.get("rows", [])]
        out.append(kv_table(data, skip=("rows", "plots")))
        out.append(list_table(rows))
    else:
        out.append(kv_table(data))
    return "\n".join(out)


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


def render(run_dir: Path) -> str:
    """The HTML page for ``run_dir``. A result file that is not valid JSON or whose fields
    have the wrong types is a one-line error naming it (a report must not hide it)."""
    if not run_dir.exists():
        raise HalutError(f"run directory {run_dir} not found")
    if not run_dir.is_dir():
        raise HalutError(f"{run_dir} is not a directory (give the run directory)")
    parts: list[str] = []
    files = sorted(run_dir.rglob("*.json"), key=lambda p: (len(p.parts), str(p)))
    found = 0
    for f in files:
        kind = f.stem if f.stem in KINDS else ("sweep point" if f.stem == "point" else None)
        if kind is None or "stat_" in f.name:
            continue
        data = _read_result(f, str(f))
        found += 1
        try:
            parts.append(_section(kind, data, str(f.relative_to(run_dir)), f))
        except HalutError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise HalutError(clip(f"{f} is not a valid {kind} result "
                                  f"({type(exc).__name__}: {exc})")) from None
    pngs = sorted(run_dir.rglob("*.png"))
    if pngs:
        parts.append("<h2>plots</h2>" + "".join(_img(p.read_bytes(), p.name) for p in pngs))
    if not found and not pngs:
        raise HalutError(f"{run_dir} holds no halut hardware results (lint.json, synth.json, "
                         "sta.json, pnr.json, gls.json, sweep.json)")
    title = f"halut hardware report: {run_dir.name}"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            + "\n".join(parts) + "</body></html>\n")


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Render ``run_dir`` into ``out`` (default ``run_dir/report.html``), atomically."""
    if run_dir.is_dir():  # (render names a missing or wrong run directory first)
        check_writable(out or run_dir / "report.html", "report")
    page = render(run_dir)
    path = out or run_dir / "report.html"
    atomic_write_text(path, page)
    return path
