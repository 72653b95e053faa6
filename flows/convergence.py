"""Offline-learning convergence (``halut convergence``, docs/convergence.md): how many
calibration rows a layer needs.

halutmatmul's convergence study. For every selected layer (Linear/Conv in the order the
network calls them) and every number of training rows R (the rows kept per layer,
:attr:`emulator.network.NetConfig.rows`):

* **learn** the layer alone (mode ``single``) or every selected layer up to and including it
  (mode ``cumulative``) with MADDNESS at one (C, K, formats) point, from a seeded reservoir
  of at most R of the float network's rows on the calibration images. R beyond the rows the
  calibration images give the layer is capped to them (``rows_capped``);
* **measure** on the held-out images the layer's NMSE against the float layer on the inputs
  it saw and the network's golden accuracy; the float network's accuracy once.

The work per (R, layer) is :func:`flows.sweep.compute_record` (the sweep's, with
``rows=R``); the split, layer discovery, BatchNorm folding, the fingerprint and the record
files are the sweep's too (:mod:`flows.sweep`). Every finished (R, layer) is one record file
in the run folder (atomic JSON bound to the run's fingerprint, with its own checksum, loaded
strictly; one that does not verify is computed again), so a killed study goes on where it
stopped. The row counts are in each record's key, not in the fingerprint: adding a count to
``--rows`` reuses the records already there. At the end: ``convergence.csv`` (one row per
layer x R), ``convergence.json`` and ``convergence.png`` (NMSE and accuracy against rows),
each written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flows.sweep import (
    LAYER_RECORD_FIELDS,
    LayerInfo,
    Point,
    RecordStore,
    SweepOptions,
    compute_record,
    find_layers,
    fold,
    nonneg_or_none,
    predict,
    split_indices,
)
from flows.sweep import csv_text as sweep_csv_text
from flows.sweep import fingerprint as sweep_fingerprint
from learning.atomic import atomic_write_bytes, atomic_write_text, check_writable
from learning.errors import HalutError
from learning.program import LUT_FORMATS, THRESHOLD_FORMATS, log2_exact
from learning.strict import is_int, is_number

CONVERGENCE_VERSION = 1
#: the default row counts (--rows)
DEFAULT_ROWS: tuple[int, ...] = (250, 500, 1000, 2000, 4000, 8000, 16000)
#: the files a study writes in its run folder
OUTPUTS: tuple[str, ...] = ("convergence.csv", "convergence.json", "convergence.png")
#: the columns of convergence.csv, in order (docs/convergence.md says what each means)
CSV_COLUMNS: tuple[str, ...] = (
    "mode", "layer_index", "layer", "kind", "D", "M", "groups", "rows_per_image",
    "layers_replaced", "C_requested", "C", "K", "threshold_format", "lut_format",
    "rows_requested", "rows_available", "rows", "rows_capped",
    "nmse", "nmse_calibration", "accuracy", "float_accuracy", "accuracy_drop")
#: what a record holds beyond the CSV's columns (timings: the CSV has none)
_EXTRA_FIELDS: tuple[str, ...] = ("learn_seconds", "eval_seconds")
_MAX_ROW_COUNT = 1 << 40


# ---- options -----------------------------------------------------------------------------------

def parse_rows(text: str) -> tuple[int, ...]:
    """``"250,500,1000"`` -> ``(250, 500, 1000)``, sorted, each once. One HalutError line for
    an empty list, a count that is not an integer, or one below 1."""
    raw = [v.strip() for v in str(text).split(",")]
    if not raw or any(not v for v in raw):
        raise HalutError(f"--rows {text!r}: the row counts must be comma-separated and "
                         "non-empty, e.g. 250,500,1000")
    counts: list[int] = []
    for v in raw:
        try:
            n = int(v, 10)
        except ValueError:
            raise HalutError(f"--rows {text!r}: {v!r} is not an integer (row counts are "
                             "whole numbers of rows)") from None
        if n < 1:
            raise HalutError(f"--rows {text!r}: {n} is not a positive row count")
        if n > _MAX_ROW_COUNT:
            raise HalutError(f"--rows {text!r}: {n} rows is more than any layer can hold")
        counts.append(n)
    return tuple(sorted(set(counts)))


@dataclass(frozen=True)
class ConvergenceOptions:
    """How a convergence study runs (all of it binds the records but ``row_counts``, which
    each record's key holds).

    row_counts : the numbers of training rows R (ascending, each once)
    C, K, threshold_format, lut_format : the MADDNESS point (C capped to a layer's D)
    mode : ``single`` (the layer alone replaced) or ``cumulative`` (every selected layer up
        to and including it, each learned from R rows)
    holdout, batch_size, seed, layers, fold_bn : as :class:`flows.sweep.SweepOptions`
    """

    row_counts: tuple[int, ...] = DEFAULT_ROWS
    C: int = 16
    K: int = 16
    threshold_format: str = "fp16"
    lut_format: str = "int8"
    mode: str = "single"
    holdout: float = 0.25
    batch_size: int = 64
    seed: int = 0
    layers: tuple[str, ...] = ()
    fold_bn: bool = True

    def __post_init__(self) -> None:
        counts = tuple(self.row_counts)
        if not counts:
            raise HalutError("at least one row count is needed")
        for n in counts:
            if not is_int(n) or n < 1:
                raise HalutError(f"row counts must be positive integers, got {n!r}")
        object.__setattr__(self, "row_counts", tuple(sorted(set(counts))))
        if not is_int(self.C) or self.C < 1:
            raise HalutError(f"C must be an integer >= 1, got {self.C!r}")
        try:
            log2_exact(self.K)
        except HalutError as exc:
            raise HalutError(f"-K {self.K!r}: {exc}") from None
        if self.threshold_format not in THRESHOLD_FORMATS:
            raise HalutError(f"threshold format must be one of {', '.join(THRESHOLD_FORMATS)}"
                             f", got {self.threshold_format!r}")
        if self.lut_format not in LUT_FORMATS:
            raise HalutError(f"LUT format must be one of {', '.join(LUT_FORMATS)}, got "
                             f"{self.lut_format!r}")
        object.__setattr__(self, "layers", tuple(self.layers))
        self.sweep_options(self.row_counts[0])  # mode, holdout, batch size, seed: checked

    def point(self) -> Point:
        return Point("maddness", int(self.C), int(self.K), self.threshold_format,
                     self.lut_format)

    def sweep_options(self, rows: int) -> SweepOptions:
        """The sweep's options for one row count (no RTL check)."""
        return SweepOptions(mode=self.mode, holdout=self.holdout, rows=int(rows),
                            batch_size=self.batch_size, seed=self.seed, layers=self.layers,
                            fold_bn=self.fold_bn, rtl_check=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["row_counts"] = list(self.row_counts)
        d["layers"] = list(self.layers)
        return d


def fingerprint(model: nn.Module, X: np.ndarray, y: np.ndarray, options: ConvergenceOptions,
                layers: Sequence[LayerInfo]) -> str:
    """What a study's records depend on: the sweep's fingerprint (every tensor of the model,
    the images and labels, the point, the options that change numbers, the selected layers)
    with the row count left out (each record's key holds it), tagged as a convergence
    study's."""
    base = sweep_fingerprint(model, X, y, [options.point()], options.sweep_options(1), layers)
    return hashlib.sha256(f"halut-convergence {CONVERGENCE_VERSION}\0{base}".encode()
                          ).hexdigest()


# ---- records -------------------------------------------------------------------------------

#: every field of a record and what its value must be, in the CSV's column order
_RECORD_FIELDS: dict[str, Callable[[Any], bool]] = {k: {
    **LAYER_RECORD_FIELDS,
    "threshold_format": lambda v: v in THRESHOLD_FORMATS,
    "lut_format": lambda v: v in LUT_FORMATS,
    "rows_requested": lambda v: is_int(v) and v >= 1,
    "rows_available": lambda v: is_int(v) and v >= 1,
    "rows": lambda v: is_int(v) and v >= 1,
    "rows_capped": lambda v: isinstance(v, bool),
    "nmse_calibration": nonneg_or_none,
    "float_accuracy": lambda v: is_number(v) and 0 <= v <= 1,
}[k] for k in CSV_COLUMNS + _EXTRA_FIELDS}
assert tuple(_RECORD_FIELDS) == CSV_COLUMNS + _EXTRA_FIELDS


def record_name(rows: int, layer_index: int) -> str:
    """The record file of (R, layer): ``record_r<R>_l<layer>.json``."""
    return f"record_r{rows:010d}_l{layer_index:04d}.json"


def _record_key(point: Point, layer: LayerInfo, mode: str, rows: int) -> dict[str, Any]:
    return {"study": "convergence", "rows": rows, "point": point.to_dict(),
            "layer": layer.name, "layer_index": layer.index, "mode": mode}


def _record_ok(rec: Mapping[str, Any], point: Point, layer: LayerInfo, mode: str, rows: int,
               available: int, float_accuracy: float) -> bool:
    """The record's identity fields say what its key and the run say."""
    return (rec["rows_requested"] == rows and rec["rows_available"] == available
            and rec["rows"] == min(rows, available) and rec["rows_capped"] is (rows > available)
            and rec["layer"] == layer.name and rec["layer_index"] == layer.index
            and rec["kind"] == layer.kind and rec["D"] == layer.D and rec["M"] == layer.M
            and rec["mode"] == mode and rec["C_requested"] == point.C
            and rec["C"] == min(point.C, layer.D) and rec["K"] == point.K
            and rec["threshold_format"] == point.threshold_format
            and rec["lut_format"] == point.lut_format
            and rec["float_accuracy"] == float_accuracy)


def measure(folded: nn.Module, layers: Sequence[LayerInfo], layer: LayerInfo, rows: int,
            options: ConvergenceOptions, batches: Sequence[torch.Tensor], n_calibration: int,
            Xh: np.ndarray, yh: np.ndarray, float_accuracy: float) -> dict[str, Any]:
    """Learn and measure one (R, layer) (:func:`flows.sweep.compute_record` with
    ``rows=R``): the record (see :data:`CSV_COLUMNS`)."""
    rec = compute_record(folded, layers, layer, options.point(), options.sweep_options(rows),
                         batches, Xh, yh, float_accuracy)
    available = n_calibration * layer.rows_per_image
    out = {k: rec[k] for k in CSV_COLUMNS if k in rec}
    out.update({"rows_requested": int(rows), "rows_available": int(available),
                "rows": int(min(rows, available)), "rows_capped": bool(rows > available),
                "float_accuracy": float_accuracy,
                "learn_seconds": rec["learn_seconds"], "eval_seconds": rec["eval_seconds"]})
    return {k: out[k] for k in _RECORD_FIELDS}


# ---- outputs -------------------------------------------------------------------------------

def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """The tidy table: :data:`CSV_COLUMNS`, one line per (layer, R)."""
    return sweep_csv_text(rows, CSV_COLUMNS)


def plot_convergence(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """NMSE (log y; held-out solid, calibration dotted) and golden accuracy against the
    training rows used (log x), one line per layer, the float accuracy dashed; capped row
    counts are open markers. A PNG, written atomically (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_n, ax_a) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    results = summary["results"]
    for i, layer in enumerate(summary["layers"]):
        color = colors[i % len(colors)]
        mine = [r for r in results if r["layer_index"] == layer["index"]]
        for key, style, label in (("nmse", "-", layer["name"]),
                                  ("nmse_calibration", ":", None)):
            pts = [(r["rows"], r[key], r["rows_capped"]) for r in mine
                   if r[key] is not None and r[key] > 0]
            if not pts:
                continue
            ax_n.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color,
                      label=label, alpha=1.0 if key == "nmse" else 0.6)
            if key == "nmse":
                _markers(ax_n, pts, color)
        pts = [(r["rows"], 100 * r["accuracy"], r["rows_capped"]) for r in mine]
        ax_a.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=color,
                  label=layer["name"])
        _markers(ax_a, pts, color)
    ax_a.axhline(100 * summary["float_accuracy"], color="black", linestyle="--",
                 linewidth=1, label="float")
    opts = summary["options"]
    what = (f"C={opts['C']} K={opts['K']} {opts['threshold_format']}/{opts['lut_format']}, "
            f"mode {opts['mode']}")
    ax_n.set_yscale("log")
    ax_n.set_ylabel("NMSE vs the float layer")
    ax_n.set_title(f"held-out NMSE (solid), calibration NMSE (dotted); {what}", fontsize=9)
    ax_a.set_ylabel("accuracy (%), golden")
    ax_a.set_title(f"held-out accuracy ({summary['data']['holdout_images']} images); open "
                   "marker: rows capped", fontsize=9)
    for ax in (ax_n, ax_a):
        ax.set_xscale("log")
        ax.set_xlabel("training rows per layer")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _markers(ax: Any, pts: Sequence[tuple[float, float, bool]], color: str) -> None:
    for capped in (False, True):
        sel = [p for p in pts if p[2] is capped]
        if sel:
            ax.plot([p[0] for p in sel], [p[1] for p in sel], "o", color=color,
                    markerfacecolor="white" if capped else color, markersize=5)


# ---- the study ------------------------------------------------------------------------------

def check_outputs(run_dir: str | os.PathLike[str]) -> None:
    """One line when the run folder (or a file of it) cannot be written."""
    for name in OUTPUTS:
        check_writable(Path(run_dir) / name, "run folder")


def run_convergence(model: nn.Module, X: np.ndarray, y: np.ndarray,
                    options: ConvergenceOptions, run_dir: str | os.PathLike[str], *,
                    inputs: Mapping[str, Any] | None = None, progress: bool = False
                    ) -> dict[str, Any]:
    """The study (see the module): records in ``run_dir``, then ``convergence.csv``,
    ``convergence.json`` and ``convergence.png`` there (atomic). Returns what
    convergence.json holds. ``inputs`` (the model SPEC, data paths) is recorded as given.
    Every check runs before any learning: run folder writable, split, layers, calibration
    rows (the smallest R must give every layer at least K rows)."""
    from tqdm import tqdm

    from flows.sweep import check_calibration_rows

    t_start = time.perf_counter()
    root = Path(run_dir)
    check_outputs(root)
    cal, hold = split_indices(X.shape[0], options.holdout, options.seed)
    folded, fold_info = fold(model, options.fold_bn)
    layers, skipped = find_layers(folded, X[cal[:1]], options.layers)
    point = options.point()
    check_calibration_rows(layers, len(cal), [point], options.row_counts[0])
    store = RecordStore(root, fingerprint(model, X, y, options, layers))
    Xc, Xh, yh = X[cal], X[hold], y[hold]
    batches = [torch.from_numpy(np.ascontiguousarray(Xc[i:i + options.batch_size]))
               for i in range(0, Xc.shape[0], options.batch_size)]
    float_accuracy = float((predict(model, Xh, options.batch_size) == yh).mean())

    results: list[dict[str, Any]] = []
    computed = reused = 0
    total = len(layers) * len(options.row_counts)
    with tqdm(total=total, desc="convergence", unit="fit", disable=not progress) as bar:
        for layer in layers:
            available = len(cal) * layer.rows_per_image
            for rows in options.row_counts:
                name = record_name(rows, layer.index)
                key = _record_key(point, layer, options.mode, rows)
                rec = store.load(name, key, _RECORD_FIELDS)
                if rec is not None and not _record_ok(rec, point, layer, options.mode, rows,
                                                      available, float_accuracy):
                    rec = None
                if rec is None:
                    bar.set_postfix_str(f"{layer.name} R={rows}")
                    rec = measure(folded, layers, layer, rows, options, batches, len(cal),
                                  Xh, yh, float_accuracy)
                    store.save(name, key, rec)
                    computed += 1
                else:
                    reused += 1
                results.append(rec)
                bar.update(1)

    summary: dict[str, Any] = {
        "format": "halut-convergence", "version": CONVERGENCE_VERSION,
        "inputs": dict(inputs or {}), "options": options.to_dict(),
        "point": point.to_dict(), "row_counts": list(options.row_counts),
        "data": {"images": int(X.shape[0]), "calibration_images": int(len(cal)),
                 "holdout_images": int(len(hold))},
        "layers": [la.to_dict() for la in layers], "skipped_layers": skipped,
        "fold": fold_info, "float_accuracy": float_accuracy,
        "csv_columns": list(CSV_COLUMNS), "results": results,
        "records": {"computed": computed, "reused": reused},
        "fingerprint": store.fingerprint,
        "files": {n.split(".")[-1]: str(root / n) for n in OUTPUTS},
        "seconds": time.perf_counter() - t_start,
    }
    atomic_write_text(root / "convergence.csv", csv_text(results))
    plot_convergence(summary, root / "convergence.png")
    summary["seconds"] = time.perf_counter() - t_start
    atomic_write_text(root / "convergence.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(summary: Mapping[str, Any]) -> list[str]:
    """A study's results as lines: per layer and R the rows used, NMSE (held-out and
    calibration), accuracy and its drop; the float accuracy and the record counts."""
    lines = [f"{'layer':<22} {'R':>8} {'rows':>9} {'NMSE':>8} {'NMSE cal':>9} {'acc %':>7} "
             f"{'drop':>6}"]
    for r in summary["results"]:
        used = f"{r['rows']}{'*' if r['rows_capped'] else ''}"
        lines.append(f"{r['layer'][:22]:<22} {r['rows_requested']:>8} {used:>9} "
                     f"{_fmt(r['nmse'], '.4f'):>8} {_fmt(r['nmse_calibration'], '.4f'):>9} "
                     f"{100 * r['accuracy']:7.2f} {100 * r['accuracy_drop']:6.2f}")
    if any(r["rows_capped"] for r in summary["results"]):
        lines.append("* capped: the calibration images give the layer no more rows")
    o = summary["options"]
    lines.append(f"float accuracy {100 * summary['float_accuracy']:.2f} % on "
                 f"{summary['data']['holdout_images']} held-out images (C={o['C']} K={o['K']} "
                 f"{o['threshold_format']}/{o['lut_format']}, mode {o['mode']})")
    rec = summary["records"]
    lines.append(f"{rec['computed']} computed, {rec['reused']} reused in "
                 f"{summary['seconds']:.1f} s")
    return lines


__all__ = ["CONVERGENCE_VERSION", "CSV_COLUMNS", "DEFAULT_ROWS", "OUTPUTS",
           "ConvergenceOptions", "check_outputs", "csv_text", "fingerprint", "format_table",
           "measure", "parse_rows", "plot_convergence", "record_name", "run_convergence"]
