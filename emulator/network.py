"""Learning a whole network, torchao ``quantize_(model, config, filter_fn)`` style, and its
network bundle.

:func:`halutize` takes a PyTorch model, calibration batches, a small frozen
:class:`NetConfig` and a ``filter_fn(module, fqn)``, and returns the model with the chosen
layers (Linear, Conv2d, Conv1d) swapped for Halut modules (``emulator.modules``), which
print, ``state_dict()`` and move like any ``nn.Module``. Two schedules:

* ``parallel``: every layer learned from the float network's own activations, all recorded
  in one pass over the batches (:func:`emulator.replace.replace_layers`);
* ``sequential``: layer i learned on the inputs produced by the network whose earlier
  layers are already replaced (running on golden), one pass over the batches per layer, as
  halutmatmul does.

Either way each layer keeps a seeded reservoir sample of at most ``config.rows`` rows while
the data streams, so memory stays bounded. With ``config.fold_bn`` the BatchNorms are first
folded into the layers before them (``emulator.fold``; the returned model is then the folded
``torch.fx.GraphModule``, a copy: the original is left as it was).

:func:`save_network` writes the Halut layers of a model to a ``.halutnet`` bundle
(:mod:`learning.bundle`); :func:`apply_network` puts them back into a fresh copy of the
source model, checking that the bundle was learned from that model (its parameter
checksum), that every layer exists there with the same type and shape.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from emulator.modules import HALUT_MODULES, HalutConv1d, HalutConv2d, HalutLinear
from learning.bundle import BundleLayer, NetworkBundle, load_bundle, save_bundle, source_checksum
from learning.conv import Conv1dGeometry, Conv2dGeometry, geometry_from_dict
from learning.errors import HalutError
from learning.modelfile import SavedModel

Schedule = Literal["parallel", "sequential"]
SCHEDULES: tuple[str, ...] = ("parallel", "sequential")
FilterFn = Callable[[nn.Module, str], bool]


@dataclass(frozen=True)
class NetConfig:
    """How to learn a network's layers.

    C, K : codebooks per layer and prototypes per codebook (per group of a grouped conv)
    threshold_format, lut_format : the hardware formats
    overrides : layer name -> its own C (``--set LAYER:C=8``)
    rows : calibration rows kept per layer (a seeded reservoir sample)
    schedule : ``parallel`` or ``sequential`` (see the module)
    fold_bn : fold BatchNorm into the layer before it first
    seed : seeds the reservoirs and the learning
    """

    C: int = 16
    K: int = 16
    threshold_format: str = "fp16"
    lut_format: str = "int8"
    overrides: Mapping[str, int] = field(default_factory=dict)
    rows: int = 20000
    schedule: Schedule = "parallel"
    fold_bn: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise HalutError(f"schedule must be one of {', '.join(SCHEDULES)}, "
                             f"got {self.schedule!r}")
        for name in ("C", "K", "rows"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise HalutError(f"{name} must be a positive int, got {v!r}")
        for layer, c in self.overrides.items():
            if not isinstance(c, int) or isinstance(c, bool) or c < 1:
                raise HalutError(f"override C for layer {layer!r} must be a positive int, "
                                 f"got {c!r}")
        object.__setattr__(self, "overrides", dict(self.overrides))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def model_checksum(model: nn.Module) -> str:
    """sha256 of a model's parameters and buffers (what a bundle records of its source)."""
    return source_checksum({k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})


def _batches_again(batches: Iterable[Any] | Callable[[], Iterable[Any]]
                   ) -> Callable[[], Iterable[Any]]:
    if callable(batches):
        return batches
    if isinstance(batches, (Sequence, np.ndarray)) or hasattr(batches, "__len__"):
        return lambda: batches
    raise HalutError("the sequential schedule runs over the batches once per layer: pass a "
                     "sequence or a function returning a fresh iterable, not a one-shot "
                     "iterator")


def halutize(model: nn.Module, batches: Iterable[Any] | Callable[[], Iterable[Any]],
             config: NetConfig | None = None, filter_fn: FilterFn | None = None, *,
             backend: str = "golden", report: dict[str, Any] | None = None) -> nn.Module:
    """Learn and swap the chosen layers of ``model`` (see the module).

    Parameters
    ----------
    model : the float network (eval mode is set)
    batches : input tensors (or tuples whose first item is the input), a sequence or a
        function returning a fresh iterable (the sequential schedule iterates once per layer)
    config : :class:`NetConfig` (default: its defaults)
    filter_fn : ``filter_fn(module, fqn) -> bool`` chooses the layers (default: every
        Linear/Conv2d/Conv1d)
    backend : the Halut modules' backend afterwards
    report : filled with ``layer -> {kind, D, M, C, K, rows, nmse_train, ...}`` and, with
        BatchNorm folding, ``"_fold"`` (what was folded into what, what was kept and why)

    Returns
    -------
    The model with the layers swapped: ``model`` itself, or with ``fold_bn`` the folded copy.
    """
    from emulator.fold import fold_batchnorm
    from emulator.replace import replace_layers

    cfg = config or NetConfig()
    model.eval()
    fold_info: dict[str, Any] | None = None
    if cfg.fold_bn and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                           for m in model.modules()):
        model, fold = fold_batchnorm(model)
        fold_info = fold.to_dict()
    chosen = [n for n, m in model.named_modules()
              if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d))
              and (filter_fn is None or filter_fn(m, n))]
    if not chosen:
        raise HalutError("no layer was chosen: the model has no Linear/Conv2d/Conv1d the "
                         "filter accepts")
    unknown = sorted(set(cfg.overrides) - set(chosen))
    if unknown:
        raise HalutError(f"C overrides name layers that are not chosen: {', '.join(unknown)}")

    def C_of(name: str, module: nn.Module) -> int:
        return int(cfg.overrides.get(name, cfg.C))

    common: dict[str, Any] = {"C": C_of, "K": cfg.K, "threshold_format": cfg.threshold_format,
                              "lut_format": cfg.lut_format, "max_rows": cfg.rows,
                              "seed": cfg.seed, "backend": "golden"}
    layer_report: dict[str, Any] = {}
    if cfg.schedule == "parallel":
        replace_layers(model, batches, chosen, report=layer_report, **common)  # type: ignore[arg-type]
    else:
        again = _batches_again(batches)
        for name in chosen:  # module order: the network's order for the usual models
            replace_layers(model, again(), [name], report=layer_report, **common)
    for m in model.modules():
        if isinstance(m, HALUT_MODULES):
            m.backend = backend
    if report is not None:
        report.update(layer_report)
        if fold_info is not None:
            report["_fold"] = fold_info
    return model


def _units(module: nn.Module) -> tuple[str, tuple[SavedModel, ...], dict[str, Any]]:
    if isinstance(module, HalutLinear):
        return "linear", (SavedModel(model=module.model, program=module.program),), {}
    if isinstance(module, (HalutConv2d, HalutConv1d)):
        units = tuple(SavedModel(model=m, program=p)
                      for m, p in zip(module.models, module.programs, strict=True))
        kind = "conv2d" if isinstance(module, HalutConv2d) else "conv1d"
        return kind, units, module.geometry.to_dict()
    raise HalutError(f"{type(module).__name__} is not a Halut layer")


def save_network(path: str | os.PathLike[str], model: nn.Module, *, source: str,
                 config: NetConfig | None = None) -> Path:
    """Write every Halut layer of ``model`` to the ``.halutnet`` bundle ``path`` (atomic);
    ``source``: :func:`model_checksum` of the float model they were learned from."""
    layers = []
    for name, m in model.named_modules():
        if isinstance(m, HALUT_MODULES):
            kind, units, geometry = _units(m)
            if any(u.model is None for u in units):
                raise HalutError(f"layer {name!r} holds no float model (it was loaded from a "
                                 "program only); a bundle needs both")
            layers.append(BundleLayer(name=name, kind=kind, units=units, geometry=geometry))
    if not layers:
        raise HalutError("the model has no Halut layers to save")
    cfg = (config or NetConfig()).to_dict()
    return save_bundle(path, NetworkBundle(layers=tuple(layers), source=source, config=cfg))


def apply_network(model: nn.Module, bundle: str | os.PathLike[str] | NetworkBundle, *,
                  backend: str = "golden") -> nn.Module:
    """Put the layers of ``bundle`` into ``model`` (the float source model, freshly made):
    checks its parameter checksum against the bundle's, folds BatchNorm as the bundle's
    config says, and swaps each named layer for its Halut module (one line naming what does
    not fit). Returns the model (with folding, the folded copy)."""
    from emulator.fold import fold_batchnorm

    src = model_checksum(model)
    b = bundle if isinstance(bundle, NetworkBundle) else load_bundle(bundle, source=src)
    if b.source != src:
        raise HalutError("the bundle was learned from another model (its source checksum "
                         "differs from this model's parameters)")
    cfg = NetConfig.from_dict(b.config)
    model.eval()
    if cfg.fold_bn and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                           for m in model.modules()):
        model, _ = fold_batchnorm(model)
    modules = dict(model.named_modules())
    for layer in b.layers:
        old = modules.get(layer.name)
        if old is None:
            raise HalutError(f"the bundle's layer {layer.name!r} is not in the model")
        new = _module_for(layer, old, backend)
        parent_name, _, child = layer.name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, child, new)
    return model


def _module_for(layer: BundleLayer, old: nn.Module, backend: str) -> nn.Module:
    programs = [u.program for u in layer.units]
    models = [u.model for u in layer.units]
    want = {"linear": nn.Linear, "conv2d": nn.Conv2d, "conv1d": nn.Conv1d}[layer.kind]
    if not isinstance(old, want):
        raise HalutError(f"layer {layer.name!r} is a {type(old).__name__} in the model, a "
                         f"{layer.kind} in the bundle")
    if layer.kind == "linear":
        assert isinstance(old, nn.Linear)
        p = programs[0]
        assert p is not None
        if (old.in_features, old.out_features) != (p.D, p.M):
            raise HalutError(f"layer {layer.name!r}: the bundle's {p.D} -> {p.M} does not match "
                             f"the model's {old.in_features} -> {old.out_features}")
        return HalutLinear.from_learned(p, models[0], backend=backend)
    geometry = geometry_from_dict(layer.geometry)
    assert isinstance(old, (nn.Conv2d, nn.Conv1d))
    mine = Conv2dGeometry.from_conv(old) if layer.kind == "conv2d" else \
        Conv1dGeometry.from_conv(old)
    if mine.to_dict() != geometry.to_dict() or sum(p.M for p in programs if p) != old.out_channels:
        raise HalutError(f"layer {layer.name!r}: the bundle's geometry does not match the "
                         "model's convolution")
    cls = HalutConv2d if layer.kind == "conv2d" else HalutConv1d
    return cls.from_learned(geometry, programs, models, backend=backend)  # type: ignore[arg-type]
