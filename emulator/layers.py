"""Layer inference on every backend: Linear and Conv2d (im2col) through the layer runner.

A layer is a :class:`~emulator.runner.LayerModel`: the quantized hardware program plus, when
known, the float weights it was learned from. A run turns the layer's input into matrix rows
(Linear: the input itself; Conv2d: :func:`learning.conv.im2col` patches in the order of
torch's ``weight.reshape(Cout, -1)``), runs them through :func:`emulator.runner.run_matrix`
(row tiles x column tiles, resumable, cycles per cell) and puts the outputs back into the
layer's shape.

Backends are named here only for convenience (``backend="rtl"`` with the backend's options
as keywords); a backend object from :func:`emulator.backends.make_backend` works as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emulator.backends import BACKENDS, make_backend
from emulator.cycles import CycleReport
from emulator.runner import (
    DEFAULT_ROW_TILE,
    Backend,
    LayerModel,
    ResumeCounts,
    RowTileReport,
    TileHook,
    run_matrix,
)
from learning.conv import Conv2dGeometry, check_conv_input, im2col, rows_to_nchw
from learning.errors import HalutError

LAYER_BACKENDS: tuple[str, ...] = tuple(b for b in BACKENDS if b != "maddness")
LAYER_KINDS: tuple[str, ...] = ("linear", "conv2d")

__all__ = ["DEFAULT_ROW_TILE", "LAYER_BACKENDS", "LAYER_KINDS", "LayerModel", "LayerResult",
           "run_conv2d", "run_linear", "run_rows"]


@dataclass
class LayerResult(ResumeCounts):
    """Outputs of one layer run.

    y : linear (N, M) / conv2d (N, M, Hout, Wout) float32
    rows_y : (R, M) float32, the matrix outputs (R = N for linear, N*Hout*Wout for conv2d)
    acc : (R, M) raw accumulators (int32 | float32), None for the float backend
    tiles : one report per row tile (cycles summed over its column tiles)
    column_tiles : one cycle report per column tile (summed over row tiles)
    cycles : accelerator cycles summed over every cell (rtl only)
    """

    y: np.ndarray
    rows_y: np.ndarray
    acc: np.ndarray | None
    backend: str
    tiles: list[RowTileReport] = field(default_factory=list)
    column_tiles: list[CycleReport] = field(default_factory=list)
    cycles: CycleReport | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def row_reports(self) -> list[RowTileReport]:
        return self.tiles

    def summary(self) -> dict[str, Any]:
        return {"backend": self.backend, "shape": list(self.y.shape), **self.info,
                "row_tiles": len(self.tiles), "tiles_computed": self.computed,
                "tiles_resumed": self.resumed,
                "cycles": self.cycles.to_dict() if self.cycles else None}


def _backend_object(backend: Backend | str, options: dict[str, Any]) -> Backend:
    if isinstance(backend, str):
        if backend not in LAYER_BACKENDS:
            raise HalutError(f"unknown backend {backend!r}; choose one of "
                             f"{', '.join(LAYER_BACKENDS)}")
        return make_backend(backend, **options)
    if options:
        raise HalutError("backend options go to make_backend when a backend object is given")
    return backend


def run_rows(layer: LayerModel, A: np.ndarray, backend: Backend | str = "golden", *,
             row_tile: int | None = None, resume_dir: str | Path | None = None,
             progress: bool = False, on_tile: TileHook | None = None,
             key_extra: dict[str, Any] | None = None, **options: Any) -> LayerResult:
    """Run the layer's matrix product on rows ``A`` (R, D), tiled over rows and columns.

    Parameters
    ----------
    layer : the layer (program and/or float weights)
    A : (R, D) float array, finite
    backend : float | golden | rtl | gpu, or a backend object
    row_tile : rows per tile (default :data:`~emulator.runner.DEFAULT_ROW_TILE`)
    resume_dir : directory of finished tile files; finished tiles of the same run are skipped
    progress : show a tqdm bar over tiles
    on_tile : called as ``on_tile(index, record)`` after each computed tile is stored
    options : the named backend's options (rtl: params, driver, vcd, bubbles, backpressure,
        seed; gpu: impl, ...); one simulator serves the whole run, so a ``vcd`` holds it all

    Returns
    -------
    LayerResult with ``y`` = ``rows_y`` (R, M)
    """
    bk = _backend_object(backend, options)
    res = run_matrix(bk, layer, A, row_tile=row_tile, resume_dir=resume_dir,
                     progress=progress, on_tile=on_tile, key_extra=key_extra)
    return LayerResult(y=res.y, rows_y=res.y, acc=res.acc, backend=res.backend,
                       tiles=res.row_tiles, column_tiles=res.tiles, cycles=res.cycles,
                       info=res.info)


def run_linear(layer: LayerModel, X: np.ndarray, backend: Backend | str = "golden",
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
               backend: Backend | str = "golden", **kwargs: Any) -> LayerResult:
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
