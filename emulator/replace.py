"""Layer replacement, torchao ``quantize_`` style: :func:`replace_layers` swaps chosen
``nn.Linear``/``nn.Conv2d``/``nn.Conv1d`` layers of a model for
:class:`~emulator.modules.HalutLinear` / :class:`~emulator.modules.HalutConv2d` /
:class:`~emulator.modules.HalutConv1d`, learning each from the float network's own
activations (recorded with forward hooks over a few batches). A grouped convolution learns
one MADDNESS problem per group, each on its own input channels' im2col columns."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from emulator.backends import check_backend_name
from emulator.modules import HalutConv1d, HalutConv2d, HalutLinear
from learning.conv import Conv1dGeometry, Conv2dGeometry, ConvGeometry, im2col
from learning.errors import HalutError
from learning.modelfile import jsonable

LayerFilter = Callable[[str, nn.Module], bool]
PerLayer = int | Mapping[str, int] | Callable[[str, nn.Module], int]

#: the module types replace_layers can swap (subclasses included)
SUPPORTED: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d, nn.Conv1d)
_SUPPORTED_NAMES = "Linear and Conv2d/Conv1d"


def _per_layer(value: PerLayer, name: str, module: nn.Module, what: str) -> int:
    if isinstance(value, Mapping):
        if name not in value:
            raise HalutError(f"{what} has no entry for layer {name!r}")
        v = value[name]
    elif callable(value):
        v = value(name, module)
    else:
        v = value
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise HalutError(f"{what} for layer {name!r} must be a positive int, got {v!r}")
    return int(v)


class _Reservoir:
    """Seeded reservoir sample (algorithm R, vectorised) of at most ``capacity`` rows."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity, self.rng = capacity, rng
        self.rows: np.ndarray | None = None
        self.filled = 0
        self.seen = 0

    def add(self, batch: np.ndarray) -> None:
        if self.rows is None:
            self.rows = np.empty((self.capacity, batch.shape[1]), dtype=np.float32)
        take = min(self.capacity - self.filled, batch.shape[0])
        if take:
            self.rows[self.filled:self.filled + take] = batch[:take]
            self.filled += take
        rest = batch[take:]
        if rest.shape[0]:
            idx = self.seen + take + np.arange(rest.shape[0])
            j = self.rng.integers(0, idx + 1)
            keep = j < self.capacity
            self.rows[j[keep]] = rest[keep]  # a later row wins a slot, as in sequential R
        self.seen += batch.shape[0]

    def sample(self) -> np.ndarray:
        if self.rows is None or self.filled == 0:
            raise HalutError("no inputs were recorded")
        return self.rows[:self.filled]


def _select(model: nn.Module, layers: None | Sequence[str] | LayerFilter
            ) -> list[tuple[str, nn.Module]]:
    named = dict(model.named_modules())
    chosen: list[tuple[str, nn.Module]]
    if layers is None:
        chosen = [(n, m) for n, m in named.items() if isinstance(m, SUPPORTED)]
    elif callable(layers):
        chosen = [(n, m) for n, m in named.items() if isinstance(m, SUPPORTED) and layers(n, m)]
    else:
        if isinstance(layers, str):
            layers = [layers]
        chosen = []
        for n in layers:
            if n not in named or n == "":
                raise HalutError(f"the model has no layer named {n!r}")
            if not isinstance(named[n], SUPPORTED):
                raise HalutError(f"layer {n!r} is a {type(named[n]).__name__}, which cannot be "
                                 f"replaced: only {_SUPPORTED_NAMES} layers can (leave it out "
                                 "of `layers`)")
            chosen.append((n, named[n]))
    if not chosen:
        raise HalutError(f"no {_SUPPORTED_NAMES} layer was selected for replacement")
    for n, _m in chosen:
        why = _never_called(model, n)
        if why:
            raise HalutError(f"layer {n!r} cannot be replaced: {why}; leave it out of `layers`")
    return chosen


def _never_called(model: nn.Module, name: str) -> str | None:
    """Why torch never calls the module ``name``'s forward, where that is known from the
    model's structure; None otherwise."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.MultiheadAttention) and child == "out_proj":
        return (f"it is the output projection of the nn.MultiheadAttention "
                f"{parent_name or '(the model)'!r}, which calls it through its functional path "
                "(F.multi_head_attention_forward reads out_proj.weight), never through "
                "forward, so its inputs can be neither recorded nor sent to a halut layer")
    return None


def conv_geometry(module: nn.Module) -> ConvGeometry | None:
    """The convolution's geometry (None for a Linear)."""
    if isinstance(module, nn.Conv2d):
        return Conv2dGeometry.from_conv(module)
    if isinstance(module, nn.Conv1d):
        return Conv1dGeometry.from_conv(module)
    return None


def _first_tensor(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, np.ndarray):
        return torch.from_numpy(batch)
    raise HalutError(f"batches must yield tensors or (inputs, ...) tuples, got "
                     f"{type(batch).__name__}")


def _layer_rows(module: nn.Module, geometry: ConvGeometry | None, x: torch.Tensor
                ) -> np.ndarray:
    """The layer's matrix rows for input ``x``: im2col patches (all groups' columns side by
    side) for a convolution, ``x.reshape(-1, D)`` for a Linear of any rank."""
    a = x.detach().to("cpu", torch.float32).numpy()
    if geometry is not None:
        return im2col(a, geometry)
    return a.reshape(-1, a.shape[-1])


def _layer_weights(module: nn.Module) -> tuple[np.ndarray, np.ndarray | None]:
    """(B (D, M) float32, bias (M,) float32 | None) of a Linear or convolution; a grouped
    convolution's M is all its output channels, group g's are ``[g*M/G, (g+1)*M/G)``."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    w = weight.detach().to("cpu", torch.float32).numpy()
    B = np.ascontiguousarray(w.reshape(w.shape[0], -1).T)
    b = module.bias
    return B, (None if not isinstance(b, torch.Tensor)
               else b.detach().to("cpu", torch.float32).numpy().copy())


def _no_inputs(name: str, module: nn.Module) -> HalutError:
    return HalutError(
        f"layer {name!r} recorded no inputs: its forward was never called while the model ran "
        f"over the batches (the model does not use this {type(module).__name__} on these "
        "inputs, or torch code computes with its .weight directly, as a functional or fused "
        "path does); leave it out of `layers`")


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def replace_layers(model: nn.Module, batches: Iterable[Any],
                   layers: None | Sequence[str] | LayerFilter = None, *,
                   C: PerLayer = 16, K: PerLayer = 16, threshold_format: str = "fp16",
                   lut_format: str = "int8", max_rows: int = 20000, seed: int = 0,
                   backend: str = "golden", learn_options: Mapping[str, Any] | None = None,
                   report: dict[str, Any] | None = None) -> nn.Module:
    """Swap chosen ``nn.Linear``/``nn.Conv2d``/``nn.Conv1d`` layers of ``model`` for Halut
    layers, in place.

    The layers' inputs are recorded with forward hooks while ``model`` (in eval mode, no
    grad) runs over ``batches``; each layer keeps a seeded reservoir sample of at most
    ``max_rows`` rows (im2col patches for convolutions, ``x.reshape(-1, D)`` for a Linear on
    inputs of any rank), so memory stays bounded. Every layer is then learned from the float
    network's own activations (``learning.learn`` with the layer's weight as ``B`` and its
    bias) and quantized (``learning.quantize``); a convolution with ``groups = G`` learns G
    problems, group g on its own im2col columns with output channels ``[g*M, (g+1)*M)``
    (``C`` and ``K`` apply to each group).

    A selected layer whose forward torch never calls (``nn.MultiheadAttention``'s
    ``out_proj``, found from the model's structure before any work, or any layer that records
    no inputs over ``batches``) and a selected module of another type are one HalutError
    naming it.

    Parameters
    ----------
    model : the network; modified in place and returned
    batches : iterable of input tensors, or of tuples whose first item is the input
    layers : None (every Linear/Conv2d/Conv1d), a list of module names, or
        ``filter(name, module)``
    C, K : an int, a dict ``name -> int``, or ``fn(name, module) -> int`` (per layer)
    threshold_format, lut_format : hardware formats (see learning.program)
    max_rows : rows kept per layer for learning
    seed : seeds the reservoir and ``learning.learn``
    backend : the replaced modules' initial backend
    learn_options : extra keyword options for ``learning.learn``
    report : if given, filled with ``name -> {kind, D, M, C, K, rows, nmse_train, ...}``
        (D and M per group; convolutions add ``geometry`` and ``groups``)

    Returns
    -------
    The same ``model`` object with the layers swapped.
    """
    from learning import learn, quantize

    check_backend_name(backend)
    if int(max_rows) < 1:
        raise HalutError(f"max_rows must be >= 1, got {max_rows}")
    chosen = _select(model, layers)
    # the geometry is checked before the capture (padding and groups torch allows but this
    # layout cannot take fail here, naming the layer)
    geometries: dict[str, ConvGeometry | None] = {}
    for n, m in chosen:
        try:
            geometries[n] = conv_geometry(m)
        except HalutError as exc:
            raise HalutError(f"layer {n!r} ({type(m).__name__}): {exc}") from None
    rng = np.random.default_rng(seed)
    reservoirs = {n: _Reservoir(int(max_rows), np.random.default_rng(rng.integers(2**63)))
                  for n, _ in chosen}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                raise HalutError(f"layer {name!r} was called without a tensor input")
            try:
                rows = _layer_rows(module, geometries[name], args[0])
            except HalutError as exc:
                raise HalutError(f"layer {name!r}: {exc}") from None
            reservoirs[name].add(rows)
        return hook

    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in chosen]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                model(_first_tensor(batch))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for n, m in chosen:
        if reservoirs[n].filled == 0:
            raise _no_inputs(n, m)

    for n, m in chosen:
        A = reservoirs[n].sample()
        B, bias = _layer_weights(m)
        geom = geometries[n]
        G = 1 if geom is None else geom.groups
        D, M = B.shape[0], B.shape[1] // G  # per group
        c, k = _per_layer(C, n, m, "C"), _per_layer(K, n, m, "K")
        if c > D:
            cg = geom.group_channels if geom is not None else 0
            each = "" if G == 1 else (f" (each of its groups={G} groups is its own problem on "
                                      f"{cg} input channel{'s' if cg != 1 else ''})")
            raise HalutError(f"layer {n!r}: C={c} exceeds its input dimension D={D}{each}")
        models, programs = [], []
        for g in range(G):
            cols = slice(0, D) if geom is None else geom.group_columns(g)
            outs = slice(g * M, (g + 1) * M)
            A_g = A if G == 1 else np.ascontiguousarray(A[:, cols])
            B_g = B if G == 1 else np.ascontiguousarray(B[:, outs])
            hm = learn(A_g, B_g, c, k, seed=seed, bias=None if bias is None else bias[outs],
                       **dict(learn_options or {}))
            models.append(hm)
            programs.append(quantize(hm, threshold_format=threshold_format,
                                     lut_format=lut_format))
        new: nn.Module
        if isinstance(geom, Conv2dGeometry):
            new = HalutConv2d.from_learned(geom, programs, models, backend)
        elif isinstance(geom, Conv1dGeometry):
            new = HalutConv1d.from_learned(geom, programs, models, backend)
        else:
            new = HalutLinear.from_learned(programs[0], models[0], backend)
        _set_submodule(model, n, new)
        if report is not None:
            report[n] = _report(m, geom, models, D, M, c, k, A.shape[0], reservoirs[n].seen,
                                threshold_format, lut_format)
    return model


def _stats(hm: Any) -> dict[str, Any]:
    return {key: jsonable(v) for key, v in dict(hm.stats).items()
            if isinstance(v, (int, float, str, np.generic))}


def _report(module: nn.Module, geom: ConvGeometry | None, models: list[Any], D: int, M: int,
            C: int, K: int, rows: int, seen: int, threshold_format: str,
            lut_format: str) -> dict[str, Any]:
    kind = ("linear" if geom is None else "conv1d" if isinstance(geom, Conv1dGeometry)
            else "conv2d")
    entry: dict[str, Any] = {"kind": kind, "D": int(D), "M": int(M), "C": C, "K": K,
                             "rows": int(rows), "rows_seen": int(seen),
                             "threshold_format": threshold_format, "lut_format": lut_format}
    if geom is not None:
        entry["geometry"] = jsonable(geom.to_dict())
        entry["groups"] = geom.groups
    if len(models) == 1:
        entry.update(_stats(models[0]))
    else:  # D and M are per group; nmse_train the groups' mean, seconds their sum
        per = [_stats(hm) for hm in models]
        entry["group_stats"] = per
        nmses = [p["nmse_train"] for p in per if isinstance(p.get("nmse_train"), (int, float))]
        if nmses:
            entry["nmse_train"] = float(np.mean(nmses))
        entry["seconds"] = float(sum(p.get("seconds", 0.0) for p in per))
    return entry


__all__ = ["replace_layers"]
