"""Layer inference on every backend: Linear and Conv2d (im2col), tiled over rows, resumable.

A layer is a :class:`LayerModel`: the quantized hardware program plus, when known, the float
weights it was learned from. A run turns the layer's input into matrix rows (Linear: the
input itself; Conv2d: :func:`learning.torch_modules.im2col` patches in the order of torch's
``weight.reshape(Cout, -1)``), splits them into row tiles, runs each tile on the backend and
puts the outputs back into the layer's shape.

Backends: ``float`` (exact ``rows @ weights + bias`` in float32 by torch: the accuracy
reference), ``golden``, ``rtl`` and ``gpu`` (through :func:`emulator.run.run_program`; the rtl
backend tiles over output columns itself, reloading LUTs per column tile). Per row tile and
per layer the accelerator's :class:`~emulator.cycles.CycleReport` is summed.

Long runs show a tqdm bar over row tiles and, with ``resume_dir``, write each finished tile
atomically (:mod:`emulator.checkpoint`); running the same command again skips them.

Importing this module registers ``golden``, ``rtl`` and ``gpu`` in
:mod:`learning.backends`, so :class:`learning.torch_modules.HalutLinear` can use them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emulator.checkpoint import TileRecord, TileStore, run_key
from emulator.cycles import CycleReport
from emulator.params import RtlParams
from emulator.run import RunResult, run_program
from learning.backends import register_backend
from learning.errors import HalutError
from learning.program import HardwareProgram
from learning.torch_modules import Conv2dGeometry, check_conv_input, im2col, rows_to_nchw
from learning.validate import as_float_matrix

LAYER_BACKENDS: tuple[str, ...] = ("float", "golden", "rtl", "gpu")
LAYER_KINDS: tuple[str, ...] = ("linear", "conv2d")
DEFAULT_ROW_TILE = 4096
#: output columns of the accelerator the torch modules' ``rtl`` backend runs on
RTL_COLUMNS = 16
# options that change what is written but not the numbers (left out of the run key)
_NON_NUMERIC_OPTIONS = ("progress", "vcd")


@dataclass(frozen=True)
class LayerModel:
    """What a layer needs on every backend.

    program : the quantized HardwareProgram (golden, rtl, gpu), or None (float only)
    weights : (D, M) float32, the exact weights (float backend), or None
    bias : (M,) float32 added by the float backend (the program's bias already holds it)
    """

    program: HardwareProgram | None
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.program is None and self.weights is None:
            raise HalutError("a layer needs a hardware program or float weights")
        if self.weights is not None:
            W = as_float_matrix(self.weights, "weights")
            if self.program is not None and W.shape != (self.program.D, self.program.M):
                raise HalutError(f"float weights have shape {W.shape}, the program is "
                                 f"D={self.program.D} -> M={self.program.M}")
            object.__setattr__(self, "weights", np.array(W))  # a private, writable copy
            b = (np.zeros(W.shape[1], np.float32) if self.bias is None
                 else np.array(self.bias, dtype=np.float32))
            if b.shape != (W.shape[1],) or not np.all(np.isfinite(b)):
                raise HalutError(f"bias must be finite with shape ({W.shape[1]},), got {b.shape}")
            object.__setattr__(self, "bias", b)

    @property
    def D(self) -> int:
        return self.program.D if self.program is not None else int(self.weights.shape[0])  # type: ignore[union-attr]

    @property
    def M(self) -> int:
        return self.program.M if self.program is not None else int(self.weights.shape[1])  # type: ignore[union-attr]

    @classmethod
    def from_model(cls, model: Any, program: HardwareProgram | None) -> LayerModel:
        """From a learning.HalutModel (its ``weights`` and ``bias``) and its program."""
        weights = getattr(model, "weights", None) if model is not None else None
        bias = getattr(model, "bias", None) if model is not None else None
        return cls(program=program, weights=weights, bias=bias if weights is not None else None)

    @classmethod
    def from_saved(cls, saved: Any) -> LayerModel:
        """From ``learning.load_model(path)`` (fields ``.model`` and ``.program``)."""
        program = getattr(saved, "program", None)
        model = getattr(saved, "model", None)
        return cls.from_model(model, program)


@dataclass
class RowTileReport:
    """One row tile: rows ``[lo, hi)``, its cycles (summed over column tiles), and whether it
    came from a tile file of an earlier run."""

    lo: int
    hi: int
    cycles: CycleReport | None
    column_tiles: list[CycleReport]
    resumed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "resumed": self.resumed,
                "cycles": self.cycles.to_dict() if self.cycles else None,
                "column_tiles": [c.to_dict() for c in self.column_tiles]}


@dataclass
class LayerResult:
    """Outputs of one layer run.

    y : linear (N, M) / conv2d (N, M, Hout, Wout) float32
    rows_y : (R, M) float32, the matrix outputs (R = N for linear, N*Hout*Wout for conv2d)
    acc : (R, M) raw accumulators (int32 | float32), None for the float backend
    cycles : accelerator cycles summed over every tile (rtl only)
    """

    y: np.ndarray
    rows_y: np.ndarray
    acc: np.ndarray | None
    backend: str
    tiles: list[RowTileReport] = field(default_factory=list)
    cycles: CycleReport | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def computed(self) -> int:
        return sum(not t.resumed for t in self.tiles)

    @property
    def resumed(self) -> int:
        return sum(t.resumed for t in self.tiles)

    def summary(self) -> dict[str, Any]:
        return {"backend": self.backend, "shape": list(self.y.shape), **self.info,
                "row_tiles": len(self.tiles), "tiles_computed": self.computed,
                "tiles_resumed": self.resumed,
                "cycles": self.cycles.to_dict() if self.cycles else None}


TileHook = Callable[[int, TileRecord], None]


def _float_rows(layer: LayerModel, A: np.ndarray) -> np.ndarray:
    if layer.weights is None:
        raise HalutError("the float backend needs the layer's float weights; this model file "
                         "holds none")
    with torch.no_grad():
        y = torch.nn.functional.linear(torch.from_numpy(np.array(A)),
                                       torch.from_numpy(np.ascontiguousarray(layer.weights.T)),
                                       torch.from_numpy(np.array(layer.bias)))
    return y.numpy()


def _run_tile(layer: LayerModel, A: np.ndarray, backend: str, lo: int, hi: int,
              options: dict[str, Any]) -> TileRecord:
    if backend == "float":
        return TileRecord(lo=lo, hi=hi, y=_float_rows(layer, A), acc=None)
    if layer.program is None:
        raise HalutError(f"backend {backend!r} needs a hardware program; the model holds none "
                         "(quantize it first)")
    res: RunResult = run_program(layer.program, A, backend, **options)
    return TileRecord(lo=lo, hi=hi, y=np.asarray(res.y, np.float32), acc=np.asarray(res.acc),
                      cycles=res.cycles, column_tiles=list(res.tiles))


def _tile_options(options: dict[str, Any], index: int, n_tiles: int) -> dict[str, Any]:
    vcd = options.get("vcd")
    if vcd is None or n_tiles == 1:
        return options
    p = Path(vcd)
    return {**options, "vcd": p.with_name(f"{p.stem}.tile{index:04d}{p.suffix}")}


def run_rows(layer: LayerModel, A: np.ndarray, backend: str = "golden", *,
             row_tile: int | None = None, resume_dir: str | Path | None = None,
             progress: bool = False, on_tile: TileHook | None = None,
             key_extra: dict[str, Any] | None = None, **options: Any) -> LayerResult:
    """Run the layer's matrix product on rows ``A`` (R, D), tiled over rows.

    Parameters
    ----------
    layer : the layer (program and/or float weights)
    A : (R, D) float array, finite
    backend : float | golden | rtl | gpu
    row_tile : rows per tile (default :data:`DEFAULT_ROW_TILE`)
    resume_dir : directory of finished tile files; finished tiles of the same run are skipped
    progress : show a tqdm bar over row tiles
    on_tile : called as ``on_tile(index, record)`` after each computed tile is stored
    options : passed to the backend (rtl: params, driver, vcd, bubbles, backpressure, seed;
        gpu: impl); a ``vcd`` file gets a ``.tileNNNN`` suffix when there are several tiles

    Returns
    -------
    LayerResult with ``y`` = ``rows_y`` (R, M)
    """
    if backend not in LAYER_BACKENDS:
        raise HalutError(f"unknown backend {backend!r}; choose one of {', '.join(LAYER_BACKENDS)}")
    if backend in ("float", "golden") and options:
        raise HalutError(f"the {backend} backend takes no options, got {sorted(options)}")
    A = as_float_matrix(A, "activations", cols=layer.D)
    R, M = A.shape[0], layer.M
    tile = DEFAULT_ROW_TILE if row_tile is None else int(row_tile)
    if tile < 1:
        raise HalutError(f"row tile must be >= 1 rows, got {row_tile}")
    bounds = [(lo, min(lo + tile, R)) for lo in range(0, R, tile)]
    store = None
    if resume_dir is not None:
        numeric = {k: v for k, v in options.items() if k not in _NON_NUMERIC_OPTIONS}
        key = run_key(program=layer.program if backend != "float" else None, A=A,
                      backend=backend, options=numeric, row_tile=tile,
                      extra={**(key_extra or {}),
                             "weights": None if backend != "float" else _float_digest(layer)})
        store = TileStore(Path(resume_dir), key)
    records: list[TileRecord] = []
    bar = tqdm(total=len(bounds), desc=f"{backend} row tiles", unit="tile",
               disable=not progress, leave=False)
    try:
        for i, (lo, hi) in enumerate(bounds):
            rec = store.load(lo, hi, M) if store is not None else None
            if rec is None:
                rec = _run_tile(layer, A[lo:hi], backend, lo, hi,
                                _tile_options(options, i, len(bounds)))
                if store is not None:
                    store.save(rec)
                if on_tile is not None:
                    on_tile(i, rec)
            records.append(rec)
            bar.update(1)
    finally:
        bar.close()
    y = np.concatenate([r.y for r in records], axis=0).astype(np.float32, copy=False)
    acc = (None if any(r.acc is None for r in records)
           else np.concatenate([r.acc for r in records if r.acc is not None], axis=0))
    tiles = [RowTileReport(r.lo, r.hi, r.cycles, r.column_tiles, r.resumed) for r in records]
    cyc = [t.cycles for t in tiles if t.cycles is not None]
    total = sum(cyc[1:], cyc[0]) if cyc else None
    info: dict[str, Any] = {"rows": R, "D": layer.D, "M": M, "row_tile": tile}
    if store is not None and store.rejected:
        info["rejected_tile_files"] = [f"{n}: {why}" for n, why in store.rejected]
    return LayerResult(y=y, rows_y=y, acc=acc, backend=backend, tiles=tiles, cycles=total,
                       info=info)


def _float_digest(layer: LayerModel) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in (layer.weights, layer.bias):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def run_linear(layer: LayerModel, X: np.ndarray, backend: str = "golden",
               **kwargs: Any) -> LayerResult:
    """A Linear layer: ``X`` (N, D) -> ``y`` (N, M). See :func:`run_rows` for the options."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise HalutError(f"linear activations must have shape (N, D={layer.D}), got {arr.shape}")
    if arr.shape[1] != layer.D:
        raise HalutError(f"linear activations have {arr.shape[1]} features; the model was "
                         f"learned for D={layer.D}")
    res = run_rows(layer, arr, backend, key_extra={"layer": "linear"}, **kwargs)
    res.info["layer"] = "linear"
    return res


def run_conv2d(layer: LayerModel, X: np.ndarray, geometry: Conv2dGeometry,
               backend: str = "golden", **kwargs: Any) -> LayerResult:
    """A Conv2d layer (groups = 1, zero padding): ``X`` (N, Cin, H, W) -> im2col rows
    (N*Hout*Wout, Cin*kh*kw) -> run -> ``y`` (N, M, Hout, Wout). See :func:`run_rows`."""
    if geometry.patch_size != layer.D:
        raise HalutError(f"the model was learned for D={layer.D} inputs, but a conv2d with "
                         f"{geometry.in_channels} channels and a {geometry.kernel_size} kernel "
                         f"gives D={geometry.patch_size}")
    X = check_conv_input(X, geometry)
    N, _, H, W = X.shape
    Hout, Wout = geometry.output_size(H, W)
    rows = im2col(X, geometry)
    res = run_rows(layer, rows, backend,
                   key_extra={"layer": "conv2d", "geometry": geometry.to_dict(),
                              "input": list(X.shape)}, **kwargs)
    res.y = rows_to_nchw(res.rows_y, N, Hout, Wout)
    res.info.update({"layer": "conv2d", "input_shape": list(X.shape),
                     "output_shape": list(res.y.shape), **geometry.to_dict()})
    return res


# ---- learning.backends registration (the torch modules' hardware backends) ----------------

def _rtl_params(program: HardwareProgram) -> RtlParams:
    """The torch modules' accelerator: the program's C, K and formats with RTL_COLUMNS
    output columns (programs with fewer columns leave some unused; more run as tiles)."""
    return RtlParams(C=program.C, K=program.K, M=RTL_COLUMNS,
                     threshold_format=program.threshold_format, lut_format=program.lut_format)


def _registered(backend: str) -> Callable[[HardwareProgram, np.ndarray], RunResult]:
    def fn(program: HardwareProgram, A: np.ndarray) -> RunResult:
        if backend == "rtl":
            return run_program(program, A, "rtl", params=_rtl_params(program))
        return run_program(program, A, backend)

    fn.__name__ = f"run_{backend}"
    return fn


for _name in ("golden", "rtl", "gpu"):
    register_backend(_name, _registered(_name))
