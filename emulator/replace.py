"""Layer replacement, torchao ``quantize_`` style: :func:`replace_layers` swaps chosen
``nn.Linear``/``nn.Conv2d`` layers of a model for :class:`~emulator.modules.HalutLinear` /
:class:`~emulator.modules.HalutConv2d`, learning each from the float network's own
activations (recorded with forward hooks over a few batches)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from emulator.backends import check_backend_name
from emulator.modules import HalutConv2d, HalutLinear, _HalutLayer
from learning.conv import Conv2dGeometry, im2col
from learning.errors import HalutError
from learning.modelfile import jsonable

LayerFilter = Callable[[str, nn.Module], bool]
PerLayer = int | Mapping[str, int] | Callable[[str, nn.Module], int]


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
    supported = (nn.Linear, nn.Conv2d)
    named = dict(model.named_modules())
    chosen: list[tuple[str, nn.Module]]
    if layers is None:
        chosen = [(n, m) for n, m in named.items() if isinstance(m, supported)]
    elif callable(layers):
        chosen = [(n, m) for n, m in named.items() if isinstance(m, supported) and layers(n, m)]
    else:
        if isinstance(layers, str):
            layers = [layers]
        chosen = []
        for n in layers:
            if n not in named or n == "":
                raise HalutError(f"the model has no layer named {n!r}")
            if not isinstance(named[n], supported):
                raise HalutError(f"layer {n!r} is a {type(named[n]).__name__}; only Linear and "
                                 "Conv2d can be replaced")
            chosen.append((n, named[n]))
    if not chosen:
        raise HalutError("no Linear or Conv2d layer was selected for replacement")
    return chosen


def _first_tensor(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, np.ndarray):
        return torch.from_numpy(batch)
    raise HalutError(f"batches must yield tensors or (inputs, ...) tuples, got "
                     f"{type(batch).__name__}")


def _layer_rows(module: nn.Module, x: torch.Tensor) -> np.ndarray:
    a = x.detach().to("cpu", torch.float32).numpy()
    if isinstance(module, nn.Conv2d):
        return im2col(a, Conv2dGeometry.from_conv(module))
    return a.reshape(-1, a.shape[-1])


def _layer_weights(module: nn.Linear | nn.Conv2d) -> tuple[np.ndarray, np.ndarray | None]:
    """(B (D, M) float32, bias (M,) float32 | None) of a Linear or Conv2d."""
    w = module.weight.detach().to("cpu", torch.float32).numpy()
    B = np.ascontiguousarray(w.reshape(w.shape[0], -1).T)
    b = module.bias
    return B, (None if b is None else b.detach().to("cpu", torch.float32).numpy().copy())


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
    """Swap chosen ``nn.Linear``/``nn.Conv2d`` layers of ``model`` for Halut layers, in place.

    The layers' inputs are recorded with forward hooks while ``model`` (in eval mode, no
    grad) runs over ``batches``; each layer keeps a seeded reservoir sample of at most
    ``max_rows`` rows (im2col patches for convolutions), so memory stays bounded. Every layer
    is then learned from the float network's own activations (``learning.learn`` with the
    layer's weight as ``B`` and its bias) and quantized (``learning.quantize``).

    Parameters
    ----------
    model : the network; modified in place and returned
    batches : iterable of input tensors, or of tuples whose first item is the input
    layers : None (every Linear/Conv2d), a list of module names, or ``filter(name, module)``
    C, K : an int, a dict ``name -> int``, or ``fn(name, module) -> int`` (per layer)
    threshold_format, lut_format : hardware formats (see learning.program)
    max_rows : rows kept per layer for learning
    seed : seeds the reservoir and ``learning.learn``
    backend : the replaced modules' initial backend
    learn_options : extra keyword options for ``learning.learn``
    report : if given, filled with ``name -> {D, M, C, K, rows, kind, nmse_train, ...}``

    Returns
    -------
    The same ``model`` object with the layers swapped.
    """
    from learning import learn, quantize

    check_backend_name(backend)
    if int(max_rows) < 1:
        raise HalutError(f"max_rows must be >= 1, got {max_rows}")
    chosen = _select(model, layers)
    rng = np.random.default_rng(seed)
    reservoirs = {n: _Reservoir(int(max_rows), np.random.default_rng(rng.integers(2**63)))
                  for n, _ in chosen}
    for _n, m in chosen:
        if isinstance(m, nn.Conv2d):
            Conv2dGeometry.from_conv(m)  # fail before the capture for unsupported convs

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            reservoirs[name].add(_layer_rows(module, args[0]))
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
        A = reservoirs[n].sample()
        B, bias = _layer_weights(m)  # type: ignore[arg-type]
        c, k = _per_layer(C, n, m, "C"), _per_layer(K, n, m, "K")
        if c > B.shape[0]:
            raise HalutError(f"layer {n!r}: C={c} exceeds its input dimension D={B.shape[0]}")
        hm = learn(A, B, c, k, seed=seed, bias=bias, **dict(learn_options or {}))
        prog = quantize(hm, threshold_format=threshold_format, lut_format=lut_format)
        new: _HalutLayer
        if isinstance(m, nn.Conv2d):
            new = HalutConv2d.from_learned(Conv2dGeometry.from_conv(m), prog, hm, backend)
        else:
            new = HalutLinear.from_learned(prog, hm, backend)
        _set_submodule(model, n, new)
        if report is not None:
            report[n] = {"kind": "conv2d" if isinstance(m, nn.Conv2d) else "linear",
                         "D": int(B.shape[0]), "M": int(B.shape[1]), "C": c, "K": k,
                         "rows": int(A.shape[0]), "rows_seen": int(reservoirs[n].seen),
                         "threshold_format": threshold_format, "lut_format": lut_format,
                         **{key: jsonable(v) for key, v in dict(hm.stats).items()
                            if isinstance(v, (int, float, str, np.generic))}}
    return model


__all__ = ["replace_layers"]
