"""Layer inference on every backend: Linear, Conv1d and Conv2d (im2col) through the runner.

A layer is a :class:`~emulator.runner.LayerModel`: the quantized hardware program plus, when
known, the float weights it was learned from. A run turns the layer's input into matrix rows
(Linear: the input's last axis, any leading axes flattened; Conv1d/Conv2d:
:func:`learning.conv.im2col` patches in the order of torch's ``weight.reshape(Cout, -1)``),
runs them through :func:`emulator.runner.run_matrix` (row tiles x column tiles, resumable,
cycles per cell) and puts the outputs back into the layer's shape. A grouped convolution
(``groups = G``) takes G layers, one per group: group g runs on its own im2col columns
(``geometry.group_columns(g)``) and gives output channels ``[g*M, (g+1)*M)``;
:func:`merge_group_results` joins the G runs.

Backends are named here only for convenience (``backend="rtl"`` with the backend's options
as keywords); a backend object from :func:`emulator.backends.make_backend` works as well.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    RunResult,
    TileHook,
    run_matrix,
)
from learning.conv import (
    Conv1dGeometry,
    Conv2dGeometry,
    ConvGeometry,
    check_conv_input,
    im2col,
    output_spatial,
    rows_to_channels_first,
)
from learning.errors import HalutError

LAYER_BACKENDS: tuple[str, ...] = tuple(b for b in BACKENDS if b != "maddness")
LAYER_KINDS: tuple[str, ...] = ("linear", "conv1d", "conv2d")

__all__ = ["DEFAULT_ROW_TILE", "LAYER_BACKENDS", "LAYER_KINDS", "LayerModel", "LayerResult",
           "merge_group_results", "run_conv1d", "run_conv2d", "run_linear", "run_rows"]


@dataclass
class LayerResult(ResumeCounts):
    """Outputs of one layer run.

    y : linear (..., M) / conv1d (N, M, Lout) / conv2d (N, M, Hout, Wout) float32
    rows_y : (R, M) float32, the matrix outputs (R = rows of the input for linear,
        N*Lout or N*Hout*Wout for a convolution; M all output channels, groups side by side)
    acc : (R, M) raw accumulators (int32 | float32), None for the float backend
    tiles : one report per row tile (cycles summed over its column tiles); a grouped
        convolution lists group 0's row tiles, then group 1's, ...
    column_tiles : one cycle report per column tile (summed over row tiles), group by group
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
    """A Linear layer: ``X`` (..., D) -> ``y`` (..., M), any leading axes (batch, tokens) kept
    (rows: ``X.reshape(-1, D)``). See :func:`run_rows` for the options."""
    arr = np.asarray(X)
    if arr.ndim < 1 or arr.shape[-1] != layer.D:
        got = "a scalar" if arr.ndim == 0 else f"{arr.shape[-1]} features (shape {arr.shape})"
        raise HalutError(f"linear activations must have shape (..., D={layer.D}); got {got}; "
                         f"the model was learned for D={layer.D}")
    lead = arr.shape[:-1]
    res = run_rows(layer, arr.reshape(-1, layer.D), backend, key_extra={"layer": "linear"},
                   **kwargs)
    res.y = res.rows_y.reshape(*lead, res.rows_y.shape[1])
    res.info["layer"] = "linear"
    return res


def merge_group_results(results: Sequence[RunResult]) -> RunResult:
    """One RunResult of a grouped layer from its groups' runs (same rows, in group order).

    ``y`` and ``acc`` side by side (group g's columns after group g-1's), the cycles summed,
    the column tiles and row tiles listed group by group, ``info["groups"]`` the count and
    ``info["group_info"]`` each group's info.
    """
    if not results:
        raise HalutError("a grouped layer needs at least one group's result")
    if len(results) == 1:
        return results[0]
    first = results[0]
    accs = [r.acc for r in results]
    cycles = None
    for r in results:
        if r.cycles is not None:
            cycles = r.cycles if cycles is None else cycles + r.cycles
    return RunResult(
        y=np.concatenate([r.y for r in results], axis=1), backend=first.backend,
        acc=None if any(a is None for a in accs) else np.concatenate(accs, axis=1),  # type: ignore[arg-type]
        cycles=cycles, tiles=[t for r in results for t in r.tiles],
        row_tiles=[t for r in results for t in r.row_tiles],
        info={**first.info, "groups": len(results), "group_info": [r.info for r in results]})


def _group_layers(layer: LayerModel | Sequence[LayerModel], geometry: ConvGeometry,
                  kind: str) -> list[LayerModel]:
    layers = [layer] if isinstance(layer, LayerModel) else list(layer)
    G = geometry.groups
    if len(layers) != G:
        raise HalutError(f"a {kind} with groups={G} takes {G} layers (one per group), got "
                         f"{len(layers)}")
    D = geometry.group_patch_size
    for g, lay in enumerate(layers):
        if lay.D != D:
            where = f"group {g}'s model was" if G > 1 else "the model was"
            raise HalutError(f"{where} learned for D={lay.D} inputs, but a {kind} with "
                             f"{geometry.in_channels} channels, groups={G} and a "
                             f"{geometry.kernel_size} kernel gives D={D}"
                             + (" per group" if G > 1 else ""))
    Ms = {lay.M for lay in layers}
    if len(Ms) != 1:
        raise HalutError(f"the groups of a {kind} must have the same outputs each, got "
                         f"{[lay.M for lay in layers]}")
    return layers


def _run_conv(layer: LayerModel | Sequence[LayerModel], X: np.ndarray, geometry: ConvGeometry,
              kind: str, backend: Backend | str, resume_dir: str | Path | None,
              kwargs: dict[str, Any]) -> LayerResult:
    layers = _group_layers(layer, geometry, kind)
    X = check_conv_input(X, geometry)
    N = X.shape[0]
    spatial = output_spatial(geometry, X.shape)
    rows = im2col(X, geometry)
    G = geometry.groups
    parts: list[LayerResult] = []
    for g, lay in enumerate(layers):
        grows = rows if G == 1 else np.ascontiguousarray(rows[:, geometry.group_columns(g)])
        rdir = None if resume_dir is None or G == 1 else Path(resume_dir) / f"group{g}"
        key = {"layer": kind, "geometry": geometry.to_dict(), "input": list(X.shape),
               **({"group": g} if G > 1 else {})}
        parts.append(run_rows(lay, grows, backend, resume_dir=rdir if G > 1 else resume_dir,
                              key_extra=key, **kwargs))
    if G == 1:
        res = parts[0]
    else:
        merged = merge_group_results([RunResult(y=p.rows_y, acc=p.acc, backend=p.backend,
                                                cycles=p.cycles, tiles=p.column_tiles,
                                                row_tiles=p.tiles, info=p.info)
                                      for p in parts])
        res = LayerResult(y=merged.y, rows_y=merged.y, acc=merged.acc, backend=merged.backend,
                          tiles=merged.row_tiles, column_tiles=merged.tiles,
                          cycles=merged.cycles, info=merged.info)
    res.y = rows_to_channels_first(res.rows_y, N, spatial)
    res.info.update({"layer": kind, "input_shape": list(X.shape),
                     "output_shape": list(res.y.shape), **geometry.to_dict()})
    return res


def run_conv2d(layer: LayerModel | Sequence[LayerModel], X: np.ndarray,
               geometry: Conv2dGeometry, backend: Backend | str = "golden", *,
               resume_dir: str | Path | None = None, **kwargs: Any) -> LayerResult:
    """A Conv2d layer: ``X`` (N, Cin, H, W) -> im2col rows (N*Hout*Wout, Cin*kh*kw) -> run ->
    ``y`` (N, Cout, Hout, Wout). With ``geometry.groups = G > 1``, ``layer`` is a sequence of
    G layers (D = Cin/G*kh*kw, M = Cout/G each), every group run on its own columns (with
    ``resume_dir``, group g's tiles go to ``resume_dir/group<g>``). See :func:`run_rows`."""
    if not isinstance(geometry, Conv2dGeometry):
        raise HalutError(f"run_conv2d takes a Conv2dGeometry, got {type(geometry).__name__}")
    return _run_conv(layer, X, geometry, "conv2d", backend, resume_dir, kwargs)


def run_conv1d(layer: LayerModel | Sequence[LayerModel], X: np.ndarray,
               geometry: Conv1dGeometry, backend: Backend | str = "golden", *,
               resume_dir: str | Path | None = None, **kwargs: Any) -> LayerResult:
    """A Conv1d layer: ``X`` (N, Cin, L) -> im2col rows (N*Lout, Cin*k) -> run -> ``y``
    (N, Cout, Lout); groups as in :func:`run_conv2d`. See :func:`run_rows`."""
    if not isinstance(geometry, Conv1dGeometry):
        raise HalutError(f"run_conv1d takes a Conv1dGeometry, got {type(geometry).__name__}")
    return _run_conv(layer, X, geometry, "conv1d", backend, resume_dir, kwargs)
