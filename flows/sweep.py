"""Accuracy studies (``halut sweep``, docs/sweep.md): how much each layer of a network can take.

For every grid point (encoder, C, K, threshold format, LUT format) and every selected layer
(Linear/Conv in the order the network calls them):

* **learn**: ``maddness`` through :func:`emulator.network.halutize` with a ``filter_fn``
  choosing that layer alone (mode ``single``) or every selected layer up to and including it
  (mode ``cumulative``), all learned from the float network's activations on the
  calibration images; ``pq`` (:mod:`learning.pq`, float only) the same layers swapped for
  :class:`PQLinear` / :class:`PQConv`. C larger than a layer's D is capped to D (recorded:
  ``C_requested`` and ``C``).
* **measure** on the held-out images: the layer's NMSE against the float layer on the inputs
  it saw (:func:`emulator.network.evaluate_network`'s trace, golden backend; pq: the same
  formula), the network's accuracy (golden; pq: float PQ), the LUT bytes and accelerator
  cycles per image from the cycle model (:func:`emulator.rtl.model_layer_cycles` on the
  layer's program(s) for the rows of one image, on the default chip for the program,
  :meth:`emulator.params.RtlParams.for_program`). PQ does not run on the accelerator: its
  LUT bytes and cycles are null and ``runs_on_accelerator`` is false.

Once per run the cycle model is checked against the RTL on the first maddness point's first
layer (rtl backend, one image per run, as the model counts). Every finished (point, layer)
is one record file in the run folder (atomic JSON bound to the run's fingerprint, with its
own checksum; a record that does not verify is computed again), so a killed sweep goes on
where it stopped. At the end: ``sweep.csv`` (one row per point x layer) and ``sweep.json``.

The records are independent tasks (:func:`sweep_task`): with an executor off this process
(``--jobs N``, ``--scheduler tcp://HOST:8786``, :mod:`flows.distributed`) each one rebuilds
the model, the images and the split from a :class:`SweepSource` (files) on its worker, checks
the run's fingerprint, and returns its record, which this process checks and writes; the
CSV is the same bytes whichever way the records ran (docs/distributed.md).
"""

from __future__ import annotations

import copy
import csv
import fnmatch
import hashlib
import io
import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emulator.replace import conv_geometry
from flows.distributed import Executor, ModelSource
from learning.atomic import atomic_write_text, check_writable
from learning.conv import (
    Conv2dGeometry,
    ConvGeometry,
    check_conv_input,
    im2col,
    output_spatial,
    rows_to_channels_first,
)
from learning.errors import HalutError, one_line
from learning.pq import PQModel, learn_pq
from learning.program import LUT_FORMATS, THRESHOLD_FORMATS, log2_exact
from learning.strict import canonical_json, is_int, is_number, parse_json, read_file

SWEEP_VERSION = 1
RECORD_FORMAT = "halut-sweep-record"
ENCODERS: tuple[str, ...] = ("maddness", "pq")
MODES: tuple[str, ...] = ("single", "cumulative")
#: grid keys as the user may write them -> the field (C and K also in lower case)
GRID_KEYS: dict[str, str] = {"C": "C", "c": "C", "K": "K", "k": "K",
                             "lut": "lut_format", "lut_format": "lut_format",
                             "threshold": "threshold_format", "thr": "threshold_format",
                             "threshold_format": "threshold_format"}
GRID_FIELDS: tuple[str, ...] = ("C", "K", "threshold_format", "lut_format")
DEFAULT_GRID: dict[str, tuple[Any, ...]] = {"C": (16,), "K": (16,),
                                            "threshold_format": ("fp16",),
                                            "lut_format": ("int8",)}
#: the columns of sweep.csv, in order (docs/sweep.md says what each means)
CSV_COLUMNS: tuple[str, ...] = (
    "mode", "encoder", "C_requested", "C", "K", "threshold_format", "lut_format",
    "layer_index", "layer", "kind", "D", "M", "groups", "rows_per_image", "layers_replaced",
    "nmse", "accuracy", "accuracy_drop", "lut_bytes", "cycles_per_image",
    "runs_on_accelerator")
_MAX_RECORD = 1 << 20  # bytes of one record file
_SUPPORTED = (nn.Linear, nn.Conv2d, nn.Conv1d)


# ---- the grid --------------------------------------------------------------------------------

def parse_grid(items: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """``["C=8,16", "K=4,16", "lut=int8,fp16"]`` -> ``{C: (8, 16), K: (4, 16), threshold_format:
    ("fp16",), lut_format: ("int8", "fp16")}`` (keys not given take :data:`DEFAULT_GRID`).
    One HalutError line for an unknown key, a key given twice, no values, C < 1, K not a
    power of two in [2, 256] or an unknown format."""
    grid: dict[str, tuple[Any, ...]] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise HalutError(f"--grid {item!r} must look like KEY=V1,V2 (keys: C, K, lut, "
                             "threshold)")
        key = key.strip()
        name = GRID_KEYS.get(key, GRID_KEYS.get(key.lower()))
        if name is None:
            raise HalutError(f"unknown grid key {key!r}; known: C, K, lut, threshold")
        if name in grid:
            raise HalutError(f"grid key {key!r} is given twice: list its values once, "
                             "comma-separated")
        raw = [v.strip() for v in text.split(",")]
        if not raw or any(not v for v in raw):
            raise HalutError(f"--grid {item!r}: the values must be comma-separated and "
                             "non-empty")
        values: list[Any] = []
        for v in raw:
            if name in ("C", "K"):
                try:
                    n = int(v)
                except ValueError:
                    raise HalutError(f"grid {name}={v!r} is not an integer") from None
                if name == "C" and n < 1:
                    raise HalutError(f"grid C={n}: C must be >= 1")
                if name == "K":
                    try:
                        log2_exact(n)
                    except HalutError as exc:
                        raise HalutError(f"grid K={n}: {exc}") from None
                values.append(n)
            else:
                allowed = THRESHOLD_FORMATS if name == "threshold_format" else LUT_FORMATS
                if v not in allowed:
                    raise HalutError(f"grid {key}={v!r}: must be one of {', '.join(allowed)}")
                values.append(v)
        grid[name] = tuple(dict.fromkeys(values))
    return {f: grid.get(f, DEFAULT_GRID[f]) for f in GRID_FIELDS}


def parse_encoders(text: str) -> tuple[str, ...]:
    """``"maddness,pq"`` -> ``("maddness", "pq")`` (one line for an unknown name)."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise HalutError("--encoder needs at least one of maddness, pq")
    for n in names:
        if n not in ENCODERS:
            raise HalutError(f"unknown encoder {n!r}; known: {', '.join(ENCODERS)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Point:
    """One grid point. ``pq`` has no hardware formats (None)."""

    encoder: str
    C: int
    K: int
    threshold_format: str | None
    lut_format: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        fmt = "" if self.encoder == "pq" else f" {self.threshold_format}/{self.lut_format}"
        return f"{self.encoder} C={self.C} K={self.K}{fmt}"


def grid_points(grid: Mapping[str, Sequence[Any]], encoders: Sequence[str]) -> list[Point]:
    """Every point of the grid, encoders outermost; pq once per (C, K) (formats do not apply)."""
    points: list[Point] = []
    for enc in encoders:
        for C in grid["C"]:
            for K in grid["K"]:
                if enc == "pq":
                    points.append(Point("pq", int(C), int(K), None, None))
                    continue
                for thr in grid["threshold_format"]:
                    for lut in grid["lut_format"]:
                        points.append(Point(enc, int(C), int(K), str(thr), str(lut)))
    return points


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs (all but ``rtl_check``/``rtl_images`` bind its records).

    mode : ``single`` (the layer alone replaced) or ``cumulative`` (every selected layer up
        to and including it)
    holdout : fraction of the images held out for evaluation (the rest calibrate)
    rows : calibration rows kept per layer (seeded reservoir sample)
    batch_size : images per forward
    seed : seeds the split, the reservoirs, MADDNESS and k-means
    layers : fnmatch globs choosing the layers (empty: every Linear/Conv)
    fold_bn : fold BatchNorm into the layer before it first (as ``halut net learn``)
    rtl_check : check the cycle model against the RTL on the first maddness point
    rtl_images : images of that check (one run each)
    pq_iters : Lloyd iterations of the PQ baseline
    """

    mode: str = "single"
    holdout: float = 0.25
    rows: int = 20000
    batch_size: int = 64
    seed: int = 0
    layers: tuple[str, ...] = ()
    fold_bn: bool = True
    rtl_check: bool = True
    rtl_images: int = 2
    pq_iters: int = 10

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise HalutError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not (isinstance(self.holdout, (int, float)) and 0.0 < float(self.holdout) < 1.0):
            raise HalutError(f"holdout must be a fraction strictly between 0 and 1, got "
                             f"{self.holdout!r}")
        object.__setattr__(self, "holdout", float(self.holdout))
        for name in ("rows", "batch_size", "rtl_images"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise HalutError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("seed", "pq_iters"):
            v = getattr(self, name)
            if not is_int(v) or v < 0:
                raise HalutError(f"{name} must be an integer >= 0, got {v!r}")
        object.__setattr__(self, "layers", tuple(self.layers))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = list(self.layers)
        return d

    def record_key(self) -> dict[str, Any]:
        """What the records depend on (the RTL check's options do not)."""
        d = self.to_dict()
        d.pop("rtl_check")
        d.pop("rtl_images")
        return d


# ---- data and layers -------------------------------------------------------------------------

def split_indices(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, held-out) image indices, each sorted: a seeded permutation, the first
    ``max(1, round(n * holdout))`` held out. One line when either part would be empty."""
    n_hold = max(1, int(round(n * holdout)))
    if n_hold >= n:
        raise HalutError(f"{n} image{'s' if n != 1 else ''} cannot be split into calibration "
                         f"and held-out images with holdout={holdout}: need more images")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


@dataclass(frozen=True)
class LayerInfo:
    """A selected layer: its position in call order, name, kind, D (per group), M (all
    groups), groups, and the matrix rows one image gives it (conv: output pixels)."""

    index: int
    name: str
    kind: str
    D: int
    M: int
    groups: int
    rows_per_image: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_layers(model: nn.Module, sample: np.ndarray, globs: Sequence[str] = ()
                ) -> tuple[list[LayerInfo], list[dict[str, str]]]:
    """The Linear/Conv2d/Conv1d layers of ``model`` whose names match a glob (all without
    globs), in the order a forward of ``sample`` (one or a few images) calls them, and those
    it never calls (skipped, with the reason). One line when none matches."""
    matched = [(n, m) for n, m in model.named_modules()
               if isinstance(m, _SUPPORTED) and n
               and (not globs or any(fnmatch.fnmatchcase(n, g) for g in globs))]
    if not matched:
        known = [n for n, m in model.named_modules() if isinstance(m, _SUPPORTED) and n]
        what = f"--layers {', '.join(globs)}" if globs else "the model"
        raise HalutError(f"no Linear/Conv layer matches {what} (layers: "
                         f"{', '.join(known[:12]) or 'none'}{', ...' if len(known) > 12 else ''})")
    for n, m in matched:
        try:
            conv_geometry(m)
        except HalutError as exc:
            raise HalutError(f"layer {n!r} ({type(m).__name__}): {exc}") from None
    order: list[str] = []
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def hook(name: str) -> Callable[..., None]:
        def run(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if name not in shapes and args and isinstance(args[0], torch.Tensor) \
                    and isinstance(out, torch.Tensor):
                order.append(name)
                shapes[name] = (tuple(args[0].shape), tuple(out.shape))
        return run

    handles = [m.register_forward_hook(hook(n)) for n, m in matched]
    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(np.ascontiguousarray(sample)))
    finally:
        for h in handles:
            h.remove()
    mods = dict(matched)
    layers: list[LayerInfo] = []
    for name in order:
        m = mods[name]
        _, out = shapes[name]
        g = conv_geometry(m)
        if g is None:
            assert isinstance(m, nn.Linear)
            rows = int(np.prod(out[1:-1])) if len(out) > 2 else 1
            layers.append(LayerInfo(len(layers), name, "linear", int(m.in_features),
                                    int(m.out_features), 1, rows))
        else:
            assert isinstance(m, (nn.Conv1d, nn.Conv2d))
            kind = "conv2d" if isinstance(g, Conv2dGeometry) else "conv1d"
            layers.append(LayerInfo(len(layers), name, kind, int(g.group_patch_size),
                                    int(m.out_channels), int(g.groups),
                                    int(np.prod(out[2:]))))
    skipped = [{"layer": n, "reason": "never called by the model's forward on the data"}
               for n, _ in matched if n not in shapes]
    if not layers:
        raise HalutError("none of the matching layers is called by the model's forward "
                         f"({', '.join(n for n, _ in matched[:12])})")
    return layers, skipped


def fold(model: nn.Module, fold_bn: bool) -> tuple[nn.Module, dict[str, Any] | None]:
    """The model in eval mode, its BatchNorms folded (a copy) when asked and present."""
    from emulator.fold import fold_batchnorm

    model.eval()
    if fold_bn and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        folded, report = fold_batchnorm(model)
        return folded.eval(), report.to_dict()
    return model, None


def fingerprint(model: nn.Module, X: np.ndarray, y: np.ndarray, points: Sequence[Point],
                options: SweepOptions, layers: Sequence[LayerInfo]) -> str:
    """What a sweep's records depend on: every tensor of the model, the images and labels,
    the grid points, the options that change numbers, and the selected layers."""
    h = hashlib.sha256(f"{RECORD_FORMAT} {SWEEP_VERSION}\0".encode())
    for k, v in model.state_dict().items():
        if isinstance(v, torch.Tensor):
            h.update(k.encode() + b"\0" + str(v.dtype).encode() + str(tuple(v.shape)).encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    for a in (X, y):
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(canonical_json({"points": [p.to_dict() for p in points],
                             "options": options.record_key(),
                             "layers": [layer.to_dict() for layer in layers]}))
    return h.hexdigest()


# ---- records ---------------------------------------------------------------------------------

def nonneg_or_none(v: Any) -> bool:
    return v is None or (is_number(v) and v >= 0)


#: the fields a sweep record and a convergence record share, and what their values must be
LAYER_RECORD_FIELDS: dict[str, Callable[[Any], bool]] = {
    "mode": lambda v: v in MODES,
    "C_requested": lambda v: is_int(v) and v >= 1,
    "C": lambda v: is_int(v) and v >= 1,
    "K": lambda v: is_int(v) and v >= 1,
    "layer_index": lambda v: is_int(v) and v >= 0,
    "layer": lambda v: isinstance(v, str),
    "kind": lambda v: v in ("linear", "conv1d", "conv2d"),
    "D": lambda v: is_int(v) and v >= 1,
    "M": lambda v: is_int(v) and v >= 1,
    "groups": lambda v: is_int(v) and v >= 1,
    "rows_per_image": lambda v: is_int(v) and v >= 1,
    "layers_replaced": lambda v: is_int(v) and v >= 1,
    "nmse": nonneg_or_none,
    "accuracy": lambda v: is_number(v) and 0 <= v <= 1,
    "accuracy_drop": lambda v: is_number(v) and -1 <= v <= 1,
    "learn_seconds": lambda v: is_number(v) and v >= 0,
    "eval_seconds": lambda v: is_number(v) and v >= 0,
}

#: every field of a record and what its value must be
RECORD_FIELDS: dict[str, Callable[[Any], bool]] = {
    **LAYER_RECORD_FIELDS,
    "encoder": lambda v: v in ENCODERS,
    "threshold_format": lambda v: v is None or v in THRESHOLD_FORMATS,
    "lut_format": lambda v: v is None or v in LUT_FORMATS,
    "lut_bytes": lambda v: v is None or (is_int(v) and v >= 1),
    "cycles_per_image": lambda v: v is None or (is_int(v) and v >= 1),
    "runs_on_accelerator": lambda v: isinstance(v, bool),
    "nmse_calibration": lambda v: v is None or is_number(v),
}
_CHECK_FIELDS: dict[str, Callable[[Any], bool]] = {
    "checked": lambda v: v is True,
    "point": lambda v: isinstance(v, dict),
    "layer": lambda v: isinstance(v, str),
    "images": lambda v: is_int(v) and v >= 1,
    "rows_per_image": lambda v: is_int(v) and v >= 1,
    "rtl_cycles_per_image": lambda v: is_number(v) and v > 0,
    "model_cycles_per_image": lambda v: is_int(v) and v > 0,
    "agrees": lambda v: isinstance(v, bool),
    "rtl_bit_exact": lambda v: v is None or isinstance(v, bool),
    "rtl_accuracy": lambda v: is_number(v) and 0 <= v <= 1,
    "seconds": lambda v: is_number(v) and v >= 0,
}


class RecordStore:
    """The run folder's record files: ``record_p<point>_l<layer>.json`` per (point, layer)
    and ``check.json``, each ``{format, version, fingerprint, key, checksum, record}`` with
    the checksum over fingerprint, key and record. :meth:`load` returns None (compute it
    again) for anything that does not verify: missing, damaged, of another run (fingerprint),
    another key, a field missing, extra or of the wrong type."""

    def __init__(self, root: Path, fp: str) -> None:
        self.root, self.fingerprint = Path(root), fp

    def path(self, name: str) -> Path:
        return self.root / name

    @staticmethod
    def record_name(point_index: int, layer_index: int) -> str:
        return f"record_p{point_index:04d}_l{layer_index:04d}.json"

    def _sum(self, key: Any, record: Any) -> str:
        return hashlib.sha256(canonical_json({"fingerprint": self.fingerprint, "key": key,
                                              "record": record})).hexdigest()

    def load(self, name: str, key: Mapping[str, Any],
             fields: Mapping[str, Callable[[Any], bool]]) -> dict[str, Any] | None:
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            doc = parse_json(read_file(path, f"record {path}", _MAX_RECORD), f"record {path}",
                             what="the record")
        except HalutError:
            return None
        if not isinstance(doc, dict) or sorted(doc) != sorted(
                ("format", "version", "fingerprint", "key", "checksum", "record")):
            return None
        if (doc["format"] != RECORD_FORMAT or not is_int(doc["version"])
                or doc["version"] != SWEEP_VERSION or doc["fingerprint"] != self.fingerprint
                or doc["key"] != dict(key) or not isinstance(doc["checksum"], str)):
            return None
        rec = doc["record"]
        if not isinstance(rec, dict) or doc["checksum"] != self._sum(doc["key"], rec):
            return None
        if sorted(rec) != sorted(fields) or not all(ok(rec[f]) for f, ok in fields.items()):
            return None
        return rec

    def save(self, name: str, key: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        body = {"format": RECORD_FORMAT, "version": SWEEP_VERSION,
                "fingerprint": self.fingerprint, "key": dict(key),
                "checksum": self._sum(dict(key), dict(record)), "record": dict(record)}
        atomic_write_text(self.path(name), json.dumps(body, indent=1, sort_keys=True) + "\n")


def _finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _record_key(point: Point, layer: LayerInfo, mode: str) -> dict[str, Any]:
    return {"point": point.to_dict(), "layer": layer.name, "layer_index": layer.index,
            "mode": mode}


def _record_ok(rec: Mapping[str, Any], point: Point, layer: LayerInfo, mode: str) -> bool:
    """The record's identity fields say what its key says."""
    pq = point.encoder == "pq"
    return (rec["encoder"] == point.encoder and rec["C_requested"] == point.C
            and rec["K"] == point.K and rec["threshold_format"] == point.threshold_format
            and rec["lut_format"] == point.lut_format and rec["layer"] == layer.name
            and rec["layer_index"] == layer.index and rec["mode"] == mode
            and rec["runs_on_accelerator"] is (not pq)
            and (rec["cycles_per_image"] is None) is pq and (rec["lut_bytes"] is None) is pq)


# ---- the PQ baseline as torch modules ------------------------------------------------------

class _PQLayer(nn.Module):
    """A layer computed by product quantization (float, host only). The float layer it
    replaces is kept outside the module tree (``float_forward``), for the NMSE."""

    def __init__(self, float_layer: nn.Module, models: Sequence[PQModel]) -> None:
        super().__init__()
        self._float = (float_layer,)
        self.models = list(models)

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._float[0](x)

    def extra_repr(self) -> str:
        m = self.models[0]
        return (f"D={m.D}, M={sum(p.M for p in self.models)}, C={m.C}, K={m.K}, "
                f"groups={len(self.models)}, product quantization (float)")


class PQLinear(_PQLayer):
    """``nn.Linear`` on inputs of any rank, through a :class:`learning.pq.PQModel`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.detach().to("cpu", torch.float32).numpy()
        y = self.models[0].predict(a.reshape(-1, a.shape[-1]))
        return torch.from_numpy(y.reshape(*a.shape[:-1], y.shape[1])).to(x.device, x.dtype)


class PQConv(_PQLayer):
    """A Conv2d/Conv1d through im2col (:func:`learning.conv.im2col`), one PQ model per group,
    the rows folded back to channels-first as the Halut modules do."""

    def __init__(self, float_layer: nn.Module, models: Sequence[PQModel],
                 geometry: ConvGeometry) -> None:
        super().__init__(float_layer, models)
        self.geometry = geometry

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        X = check_conv_input(x.detach().to("cpu", torch.float32).numpy(), g)
        rows = im2col(X, g)
        ys = [m.predict(rows if g.groups == 1 else np.ascontiguousarray(
            rows[:, g.group_columns(i)])) for i, m in enumerate(self.models)]
        Y = ys[0] if len(ys) == 1 else np.concatenate(ys, axis=1)
        out = rows_to_channels_first(Y, X.shape[0], output_spatial(g, X.shape))
        return torch.from_numpy(out).to(x.device, x.dtype)


class _Reservoir:
    """A seeded uniform sample (algorithm R) of at most ``capacity`` rows."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity, self.rng = capacity, np.random.default_rng(seed)
        self.rows: np.ndarray | None = None
        self.filled = self.seen = 0

    def add(self, batch: np.ndarray) -> None:
        if self.rows is None:
            self.rows = np.empty((self.capacity, batch.shape[1]), dtype=np.float32)
        take = min(self.capacity - self.filled, batch.shape[0])
        self.rows[self.filled:self.filled + take] = batch[:take]
        self.filled += take
        rest = batch[take:]
        if rest.shape[0]:
            j = self.rng.integers(0, self.seen + take + np.arange(rest.shape[0]) + 1)
            keep = j < self.capacity
            self.rows[j[keep]] = rest[keep]
        self.seen += batch.shape[0]

    def sample(self) -> np.ndarray:
        assert self.rows is not None
        return self.rows[:self.filled]


def _weights(module: nn.Module) -> tuple[np.ndarray, np.ndarray | None]:
    w = module.weight
    assert isinstance(w, torch.Tensor)
    W = w.detach().to("cpu", torch.float32).numpy()
    b = module.bias
    return (np.ascontiguousarray(W.reshape(W.shape[0], -1).T),
            b.detach().to("cpu", torch.float32).numpy().copy()
            if isinstance(b, torch.Tensor) else None)


def pq_network(model: nn.Module, batches: Sequence[torch.Tensor], layers: Sequence[str], *,
               C: int, K: int, rows: int, seed: int = 0, iters: int = 10,
               report: dict[str, Any] | None = None) -> nn.Module:
    """``model`` (changed in place) with ``layers`` swapped for :class:`PQLinear` /
    :class:`PQConv`, each learned (:func:`learning.pq.learn_pq`, C capped to the layer's D)
    from a reservoir of at most ``rows`` of the float network's own input rows over
    ``batches`` (one pass, as halutize's parallel schedule)."""
    mods = dict(model.named_modules())
    geoms = {n: conv_geometry(mods[n]) for n in layers}
    res = {n: _Reservoir(rows, seed + 7919 * (i + 1)) for i, n in enumerate(layers)}

    def hook(name: str) -> Callable[..., None]:
        def run(mod: nn.Module, args: tuple[Any, ...]) -> None:
            a = args[0].detach().to("cpu", torch.float32).numpy()
            g = geoms[name]
            res[name].add(im2col(a, g) if g is not None else a.reshape(-1, a.shape[-1]))
        return run

    handles = [mods[n].register_forward_pre_hook(hook(n)) for n in layers]
    try:
        with torch.no_grad():
            model.eval()
            for xb in batches:
                model(xb)
    finally:
        for h in handles:
            h.remove()
    for n in layers:
        m, g = mods[n], geoms[n]
        A = res[n].sample()
        B, bias = _weights(m)
        G = 1 if g is None else g.groups
        Mg = B.shape[1] // G
        D = A.shape[1] // G
        c = min(C, D)
        models = []
        for gi in range(G):
            cols = slice(None) if g is None or G == 1 else g.group_columns(gi)
            outs = slice(gi * Mg, (gi + 1) * Mg)
            models.append(learn_pq(np.ascontiguousarray(A[:, cols]),
                                   np.ascontiguousarray(B[:, outs]), c, K,
                                   bias=None if bias is None else bias[outs], seed=seed,
                                   iters=iters))
        new: nn.Module = PQLinear(m, models) if g is None else PQConv(m, models, g)
        parent, _, child = n.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
        if report is not None:
            nm = [p.stats["nmse_train"] for p in models]
            report[n] = {"C": c, "K": K, "rows": int(A.shape[0]),
                         "nmse_train": float(np.mean(nm))}
    return model


def evaluate_pq(net: nn.Module, target: str, X: np.ndarray, y: np.ndarray,
                batch_size: int) -> tuple[float, float | None]:
    """Accuracy of ``net`` on ``X``, ``y`` and the NMSE of its PQ layer ``target`` against
    the float layer on the inputs it saw (the trace's formula: squared errors over the
    variance of the float output around each batch's mean)."""
    mod = net.get_submodule(target)
    assert isinstance(mod, _PQLayer)
    err = [0.0, 0.0]

    def hook(m: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        ref = mod.float_forward(args[0]).detach().numpy().astype(np.float64)
        o = out.detach().numpy().astype(np.float64)
        err[0] += float(((o - ref) ** 2).sum())
        err[1] += float(((ref - ref.mean()) ** 2).sum())

    handle = mod.register_forward_hook(hook)
    try:
        pred = predict(net, X, batch_size)
    finally:
        handle.remove()
    return float((pred == y).mean()), (err[0] / err[1] if err[1] > 0 else None)


def predict(net: nn.Module, X: np.ndarray, batch_size: int) -> np.ndarray:
    """argmax of ``net`` on ``X`` in batches (eval mode, no grad)."""
    out = []
    net.eval()
    with torch.no_grad():
        for i in range(0, X.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(X[i:i + batch_size]))
            out.append(net(xb).numpy().argmax(axis=-1))
    return np.concatenate(out).astype(np.int64)


# ---- one (point, layer) ---------------------------------------------------------------------

def _chosen(layers: Sequence[LayerInfo], layer: LayerInfo, mode: str) -> list[LayerInfo]:
    return [layer] if mode == "single" else list(layers[:layer.index + 1])


def learn_maddness(folded: nn.Module, batches: Sequence[torch.Tensor], point: Point,
                   chosen: Sequence[LayerInfo], options: SweepOptions,
                   report: dict[str, Any] | None = None) -> nn.Module:
    """A copy of ``folded`` with the ``chosen`` layers learned and swapped by
    :func:`emulator.network.halutize` (C capped to each layer's D; golden backend)."""
    from emulator.network import NetConfig, halutize

    names = {layer.name for layer in chosen}
    assert point.threshold_format is not None and point.lut_format is not None
    cfg = NetConfig(C=point.C, K=point.K, threshold_format=point.threshold_format,
                    lut_format=point.lut_format,
                    overrides={la.name: la.D for la in chosen if la.D < point.C},
                    rows=options.rows, schedule="parallel", fold_bn=False, seed=options.seed)
    return halutize(copy.deepcopy(folded), batches, cfg,
                    lambda m, fqn: fqn in names, backend="golden", report=report)


def model_cycles_per_image(module: nn.Module, rows_per_image: int) -> int:
    """The cycle model's total for one image of a Halut layer run alone on its default chip
    (configuration, streaming and drain; a grouped conv's groups one after another)."""
    from emulator.modules import HalutConv1d, HalutConv2d, HalutLinear
    from emulator.params import RtlParams
    from emulator.rtl import model_layer_cycles

    if isinstance(module, HalutLinear):
        programs = [module.program]
    elif isinstance(module, (HalutConv2d, HalutConv1d)):
        programs = list(module.programs)
    else:
        raise HalutError(f"{type(module).__name__} is not a Halut layer")
    params = RtlParams.for_program(programs[0])
    return int(sum(model_layer_cycles(p, params, rows_per_image).total for p in programs))


def compute_record(folded: nn.Module, layers: Sequence[LayerInfo], layer: LayerInfo,
                   point: Point, options: SweepOptions, batches: Sequence[torch.Tensor],
                   Xh: np.ndarray, yh: np.ndarray, float_accuracy: float) -> dict[str, Any]:
    """Learn and measure one (point, layer): the record (see :data:`CSV_COLUMNS`)."""
    from emulator.network import evaluate_network

    chosen = _chosen(layers, layer, options.mode)
    report: dict[str, Any] = {}
    t0 = time.perf_counter()
    if point.encoder == "maddness":
        net = learn_maddness(folded, batches, point, chosen, options, report)
        t1 = time.perf_counter()
        ev = evaluate_network(net, Xh, yh, backends=("golden",), batch_size=options.batch_size)
        row = next(r for r in ev["layers"] if r["layer"] == layer.name)
        accuracy = float(ev["totals"]["accuracy"]["golden"])
        nmse = row.get("nmse")
        lut_bytes: int | None = int(row["lut_bytes"])
        cycles: int | None = model_cycles_per_image(net.get_submodule(layer.name),
                                                    layer.rows_per_image)
    else:
        net = pq_network(copy.deepcopy(folded), batches, [la.name for la in chosen],
                         C=point.C, K=point.K, rows=options.rows, seed=options.seed,
                         iters=options.pq_iters, report=report)
        t1 = time.perf_counter()
        accuracy, nmse = evaluate_pq(net, layer.name, Xh, yh, options.batch_size)
        lut_bytes = cycles = None
    t2 = time.perf_counter()
    return {
        "mode": options.mode, "encoder": point.encoder, "C_requested": point.C,
        "C": min(point.C, layer.D), "K": point.K, "threshold_format": point.threshold_format,
        "lut_format": point.lut_format, "layer_index": layer.index, "layer": layer.name,
        "kind": layer.kind, "D": layer.D, "M": layer.M, "groups": layer.groups,
        "rows_per_image": layer.rows_per_image, "layers_replaced": len(chosen),
        "nmse": _finite_or_none(nmse), "accuracy": accuracy,
        "accuracy_drop": float_accuracy - accuracy, "lut_bytes": lut_bytes,
        "cycles_per_image": cycles, "runs_on_accelerator": point.encoder != "pq",
        "nmse_calibration": _finite_or_none(report.get(layer.name, {}).get("nmse_train")),
        "learn_seconds": t1 - t0, "eval_seconds": t2 - t1,
    }


def check_cycle_model(folded: nn.Module, layer: LayerInfo, point: Point,
                      options: SweepOptions, batches: Sequence[torch.Tensor], Xh: np.ndarray,
                      yh: np.ndarray) -> dict[str, Any]:
    """The layer alone (learned at ``point``) on the rtl backend, one image per run, for
    ``options.rtl_images`` held-out images: its cycles per image against the cycle model's
    (which counts one image per run too)."""
    from emulator.network import evaluate_network

    t0 = time.perf_counter()
    net = learn_maddness(folded, batches, point, [layer], options)
    n = min(options.rtl_images, Xh.shape[0])
    ev = evaluate_network(net, Xh[:n], yh[:n], backends=("golden", "rtl"), rtl_images=n,
                          batch_size=1)
    row = next(r for r in ev["layers"] if r["layer"] == layer.name)
    cyc = row.get("cycles_per_image") or {}
    if not cyc.get("total"):
        raise HalutError("the rtl run reported no cycles")
    rtl = float(cyc["total"])
    model = model_cycles_per_image(net.get_submodule(layer.name), layer.rows_per_image)
    return {"checked": True, "point": point.to_dict(), "layer": layer.name, "images": n,
            "rows_per_image": layer.rows_per_image, "rtl_cycles_per_image": rtl,
            "model_cycles_per_image": model, "agrees": rtl == model,
            "rtl_bit_exact": row.get("rtl_bit_exact"),
            "rtl_accuracy": float(ev["totals"]["accuracy"]["rtl"]),
            "seconds": time.perf_counter() - t0}


# ---- the sweep -----------------------------------------------------------------------------

def check_calibration_rows(layers: Sequence[LayerInfo], n_cal: int, points: Sequence[Point],
                           rows: int) -> None:
    """One line when a layer would see fewer calibration rows than the largest K (MADDNESS
    needs N >= K, and k-means more rows than centroids to be of use)."""
    k = max(p.K for p in points)
    for layer in layers:
        have = min(rows, n_cal * layer.rows_per_image)
        if have < k:
            raise HalutError(
                f"layer {layer.name!r} gets only {have} calibration rows ({n_cal} images x "
                f"{layer.rows_per_image} rows per image, --rows {rows}), fewer than K={k}: "
                "give more images, a smaller --holdout or smaller K")


def csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def csv_text(rows: Sequence[Mapping[str, Any]],
             columns: Sequence[str] = CSV_COLUMNS) -> str:
    """The tidy table: ``columns`` (default :data:`CSV_COLUMNS`), one line per record."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([csv_value(r[c]) for c in columns])
    return buf.getvalue()


# ---- the inputs as files, and one record as a task -------------------------------------------

def load_labelled(model: nn.Module, data: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels, checked: the model takes the images and returns (N, classes)
    scores, and every label is one of its classes."""
    from emulator.datasets import check_labels, load_npy
    from emulator.network import check_model_input

    X, y = load_npy(data, labels)
    assert y is not None
    check_model_input(model, X)
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(np.ascontiguousarray(X[:1])))
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise HalutError(f"a sweep measures accuracy: it needs a classifier with (N, classes) "
                         f"outputs; the model returns {shape}")
    return X, check_labels(y, str(labels), n=X.shape[0], num_classes=int(out.shape[1]))


@dataclass(frozen=True)
class SweepSource:
    """A sweep's model and labelled images as files (``--model``, ``--model-arg``,
    ``--state-dict``, ``--data``, ``--labels``): what a worker rebuilds them from. The paths
    should be absolute (:meth:`absolute`); a worker on another machine needs the same files
    at the same paths."""

    model: ModelSource
    data: str
    labels: str

    def absolute(self) -> SweepSource:
        return SweepSource(self.model.absolute(), os.path.abspath(self.data),
                           os.path.abspath(self.labels))

    def load(self) -> tuple[nn.Module, np.ndarray, np.ndarray]:
        model = self.model.load()
        X, y = load_labelled(model, Path(self.data), Path(self.labels))
        return model, X, y


@dataclass
class _Prepared:
    """What every record of a sweep starts from (the same in every process that prepares
    it from the same model, images, points and options)."""

    cal: np.ndarray
    hold: np.ndarray
    folded: nn.Module
    fold_info: dict[str, Any] | None
    layers: list[LayerInfo]
    skipped: list[dict[str, str]]
    fingerprint: str
    batches: list[torch.Tensor]
    Xh: np.ndarray
    yh: np.ndarray


def _prepare(model: nn.Module, X: np.ndarray, y: np.ndarray, points: Sequence[Point],
             options: SweepOptions) -> _Prepared:
    """The split, the folded model, the selected layers, the fingerprint and the
    calibration batches; every check of the inputs (one line each)."""
    cal, hold = split_indices(X.shape[0], options.holdout, options.seed)
    folded, fold_info = fold(model, options.fold_bn)
    layers, skipped = find_layers(folded, X[cal[:1]], options.layers)
    check_calibration_rows(layers, len(cal), points, options.rows)
    fp = fingerprint(model, X, y, points, options, layers)
    Xc = X[cal]
    batches = [torch.from_numpy(np.ascontiguousarray(Xc[i:i + options.batch_size]))
               for i in range(0, Xc.shape[0], options.batch_size)]
    return _Prepared(cal, hold, folded, fold_info, layers, skipped, fp, batches, X[hold],
                     y[hold])


#: the last sweep prepared in this (worker) process, by its inputs: its tasks reuse it
_PREPARED: dict[Any, _Prepared] = {}
_PREPARED_LOCK = threading.Lock()


def _prepared_for(source: SweepSource, points: Sequence[Point], options: SweepOptions,
                  fp: str) -> _Prepared:
    """The sweep prepared from ``source`` on this worker (kept for the next task), checked
    to have the client's fingerprint ``fp`` (prepared again once when not: the files may
    have changed since)."""
    key = (source, tuple(points), options)
    with _PREPARED_LOCK:
        for fresh in (False, True):
            prep = None if fresh else _PREPARED.get(key)
            if prep is None:
                _PREPARED.clear()
                model, X, y = source.load()
                prep = _prepare(model, X, y, points, options)
                _PREPARED[key] = prep
            if prep.fingerprint == fp:
                return prep
    raise HalutError(f"a worker read another model or other images from {source.model.spec}, "
                     f"{source.data} and {source.labels} than the client (the sweep's "
                     "fingerprint differs): every worker needs the same files at the same "
                     "paths")


def sweep_task(kind: str, source: SweepSource, points: Sequence[Point], options: SweepOptions,
               fp: str, float_accuracy: float, point_index: int,
               layer_index: int) -> dict[str, Any]:
    """One task of a sweep, on a worker: ``kind == "record"``, the record of (point, layer)
    (:func:`compute_record`); ``"check"``, the cycle model's check on that point and layer
    (:func:`run_cycle_check`). Pure: the same inputs give the same result anywhere."""
    prep = _prepared_for(source, points, options, fp)
    point, layer = points[point_index], prep.layers[layer_index]
    if kind == "check":
        return run_cycle_check(prep.folded, layer, point, options, prep.batches, prep.Xh,
                               prep.yh)
    if kind != "record":
        raise HalutError(f"unknown sweep task {kind!r}")
    return compute_record(prep.folded, prep.layers, layer, point, options, prep.batches,
                          prep.Xh, prep.yh, float_accuracy)


def run_sweep(model: nn.Module, X: np.ndarray, y: np.ndarray, points: Sequence[Point],
              options: SweepOptions, run_dir: str | os.PathLike[str], *,
              grid: Mapping[str, Sequence[Any]] | None = None,
              inputs: Mapping[str, Any] | None = None, progress: bool = False,
              source: SweepSource | None = None, executor: Executor | None = None
              ) -> dict[str, Any]:
    """The sweep (see the module): records in ``run_dir``, then ``sweep.csv`` and
    ``sweep.json`` there (atomic). Returns what sweep.json holds. ``inputs`` (the model
    SPEC, data paths) is recorded as given. Every check of the inputs runs before any
    learning: run folder writable, split, layers, calibration rows.

    ``executor`` (:mod:`flows.distributed`; default: this process) runs the missing records
    and the cycle check; one off this process needs ``source``, the files ``model``, ``X``
    and ``y`` came from, which its workers rebuild them from. This process writes each
    record as it comes back, so the run folder need only be here."""
    from tqdm import tqdm

    t_start = time.perf_counter()
    if not points:
        raise HalutError("the grid has no points")
    remote = executor is not None and not executor.in_process
    if remote and source is None:
        raise HalutError("a sweep on worker processes needs its model and images as files "
                         "(source=SweepSource(...)): a worker rebuilds them")
    root = Path(run_dir)
    check_writable(root / "sweep.json", "run folder")
    check_writable(root / "sweep.csv", "run folder")
    prep = _prepare(model, X, y, points, options)
    layers, fp = prep.layers, prep.fingerprint
    store = RecordStore(root, fp)
    float_accuracy = float((predict(model, prep.Xh, options.batch_size) == prep.yh).mean())

    found: dict[tuple[int, int], dict[str, Any]] = {}
    todo: list[tuple[int, int]] = []
    for pi, point in enumerate(points):
        for layer in layers:
            rec = store.load(RecordStore.record_name(pi, layer.index),
                             _record_key(point, layer, options.mode), RECORD_FIELDS)
            if rec is not None and _record_ok(rec, point, layer, options.mode):
                found[pi, layer.index] = rec
            else:
                todo.append((pi, layer.index))
    reused = len(found)
    check_plan = _check_plan(layers, points, options, store)

    def keep(pi: int, li: int, rec: dict[str, Any]) -> None:
        point, layer = points[pi], layers[li]
        if remote and (sorted(rec) != sorted(RECORD_FIELDS) or not all(
                ok(rec[f]) for f, ok in RECORD_FIELDS.items()) or not _record_ok(
                rec, point, layer, options.mode)):
            raise HalutError(f"a worker returned a malformed record for {point.label()} "
                             f"{layer.name}: does it run the same halut version?")
        store.save(RecordStore.record_name(pi, li), _record_key(point, layer, options.mode),
                   rec)
        found[pi, li] = rec

    total = len(points) * len(layers)
    check: dict[str, Any]
    with tqdm(total=total, initial=reused, desc="sweep", unit="layer",
              disable=not progress) as bar:
        if not remote:
            for pi, li in todo:
                bar.set_postfix_str(f"{points[pi].label()} {layers[li].name}")
                keep(pi, li, compute_record(prep.folded, layers, layers[li], points[pi],
                                            options, prep.batches, prep.Xh, prep.yh,
                                            float_accuracy))
                bar.update(1)
            check = check_plan[1] if check_plan[0] is None else _checked(
                store, check_plan[0], run_cycle_check(
                    prep.folded, layers[0], points[check_plan[0][0]], options, prep.batches,
                    prep.Xh, prep.yh), False)
        else:
            assert executor is not None and source is not None
            src = source.absolute()
            common = (src, tuple(points), options, fp, float_accuracy)
            tasks: list[tuple[Any, ...]] = []
            if check_plan[0] is not None:  # first: it may take the longest (the RTL)
                tasks.append(("check", *common, check_plan[0][0], 0))
            tasks += [("record", *common, pi, li) for pi, li in todo]
            check = check_plan[1]
            for i, result in executor.map(sweep_task, tasks, name="sweep"):
                kind, pi, li = tasks[i][0], tasks[i][-2], tasks[i][-1]
                if kind == "check":
                    assert check_plan[0] is not None
                    check = _checked(store, check_plan[0], result, True)
                    continue
                keep(pi, li, result)
                bar.set_postfix_str(f"{points[pi].label()} {layers[li].name}")
                bar.update(1)

    rows = [found[pi, layer.index] for pi in range(len(points)) for layer in layers]
    summary: dict[str, Any] = {
        "format": "halut-sweep", "version": SWEEP_VERSION,
        "inputs": dict(inputs or {}),
        "grid": ({k: list(v) for k, v in grid.items()} if grid is not None else
                 {f: list(dict.fromkeys(getattr(p, f) for p in points
                                        if getattr(p, f) is not None)) for f in GRID_FIELDS}),
        "encoders": list(dict.fromkeys(p.encoder for p in points)),
        "points": [p.to_dict() for p in points],
        "options": options.to_dict(),
        "data": {"images": int(X.shape[0]), "calibration_images": int(len(prep.cal)),
                 "holdout_images": int(len(prep.hold))},
        "layers": [la.to_dict() for la in layers], "skipped_layers": prep.skipped,
        "fold": prep.fold_info, "float_accuracy": float_accuracy,
        "cycle_model_checked": bool(check.get("checked")),
        "cycle_model_agrees": check.get("agrees") if check.get("checked") else None,
        "cycle_model_check": check,
        "csv_columns": list(CSV_COLUMNS), "rows": rows,
        "records": {"computed": len(todo), "reused": reused}, "fingerprint": fp,
        "seconds": time.perf_counter() - t_start,
    }
    atomic_write_text(root / "sweep.csv", csv_text(rows))
    atomic_write_text(root / "sweep.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _check_plan(layers: Sequence[LayerInfo], points: Sequence[Point], options: SweepOptions,
                store: RecordStore
                ) -> tuple[tuple[int, dict[str, Any]] | None, dict[str, Any]]:
    """The cycle model's check: ``(None, outcome)`` when it is not to run (disabled, no
    maddness point) or ``check.json`` holds it already; else ``((point index, key), the
    outcome until it runs)``."""
    first = next((i for i, p in enumerate(points) if p.encoder == "maddness"), None)
    if not options.rtl_check:
        return None, {"checked": False, "reason": "disabled (--no-rtl-check)"}
    if first is None:
        return None, {"checked": False, "reason": "no maddness point in the grid"}
    layer = layers[0]
    key = {"check": points[first].to_dict(), "layer": layer.name,
           "rtl_images": options.rtl_images}
    rec = store.load("check.json", key, _CHECK_FIELDS)
    if rec is not None:
        return None, rec
    return (first, key), {"checked": False, "point": points[first].to_dict(),
                          "layer": layer.name, "reason": "the rtl check did not finish"}


def run_cycle_check(folded: nn.Module, layer: LayerInfo, point: Point, options: SweepOptions,
                    batches: Sequence[torch.Tensor], Xh: np.ndarray, yh: np.ndarray
                    ) -> dict[str, Any]:
    """:func:`check_cycle_model`, or its outcome unchecked (with the reason) when the RTL
    cannot run here (no Verilator, a failed build): reported, not fatal."""
    try:
        return check_cycle_model(folded, layer, point, options, batches, Xh, yh)
    except (HalutError, OSError) as exc:
        return {"checked": False, "point": point.to_dict(), "layer": layer.name,
                "reason": f"the rtl run failed: {one_line(exc)}"}


def _checked(store: RecordStore, plan: tuple[int, dict[str, Any]], rec: dict[str, Any],
             strict: bool) -> dict[str, Any]:
    """The check's outcome, written to ``check.json`` when it ran (``strict``, from a
    worker: only with exactly its fields, valid)."""
    if rec.get("checked"):
        if strict and (sorted(rec) != sorted(_CHECK_FIELDS) or not all(
                ok(rec[f]) for f, ok in _CHECK_FIELDS.items())):
            raise HalutError("a worker returned a malformed cycle check: does it run the "
                             "same halut version?")
        store.save("check.json", plan[1], rec)
    return rec


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(summary: Mapping[str, Any]) -> list[str]:
    """A short table of a sweep's rows, the float accuracy and the cycle check, as lines."""
    lines = [f"{'encoder':<8} {'C':>4} {'K':>4} {'thr/lut':<10} {'layer':<22} {'NMSE':>8} "
             f"{'acc %':>7} {'LUT B':>8} {'cycles/img':>11}"]
    for r in summary["rows"]:
        fmt = "-" if r["threshold_format"] is None else \
            f"{r['threshold_format']}/{r['lut_format']}"
        c = f"{r['C']}" if r["C"] == r["C_requested"] else f"{r['C']}*"
        lines.append(f"{r['encoder']:<8} {c:>4} {r['K']:>4} {fmt:<10} {r['layer'][:22]:<22} "
                     f"{_fmt(r['nmse'], '.4f'):>8} {100 * r['accuracy']:7.2f} "
                     f"{_fmt(r['lut_bytes'], 'd'):>8} {_fmt(r['cycles_per_image'], 'd'):>11}")
    if any(r["C"] != r["C_requested"] for r in summary["rows"]):
        lines.append("* C capped to the layer's D")
    lines.append(f"float accuracy {100 * summary['float_accuracy']:.2f} % on "
                 f"{summary['data']['holdout_images']} held-out images "
                 f"(mode {summary['options']['mode']})")
    ch = summary["cycle_model_check"]
    if ch.get("checked"):
        lines.append(f"cycle model vs rtl ({ch['layer']}, {ch['images']} images): model "
                     f"{ch['model_cycles_per_image']}, rtl {ch['rtl_cycles_per_image']:.0f} "
                     f"cycles per image: {'agree' if ch['agrees'] else 'DIFFER'}")
    else:
        lines.append(f"cycle model not checked against the rtl: {ch.get('reason')}")
    rec = summary["records"]
    lines.append(f"{rec['computed']} computed, {rec['reused']} reused")
    return lines


__all__ = ["CSV_COLUMNS", "ENCODERS", "MODES", "LayerInfo", "PQConv", "PQLinear", "Point",
           "RecordStore", "SweepOptions", "SweepSource", "compute_record", "csv_text",
           "evaluate_pq", "find_layers", "fingerprint", "format_table", "grid_points",
           "learn_maddness", "load_labelled", "parse_encoders", "parse_grid", "pq_network",
           "predict", "run_cycle_check", "run_sweep", "split_indices", "sweep_task"]
