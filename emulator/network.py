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

import functools
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from emulator.cycles import CycleReport
from emulator.modules import HALUT_MODULES, HalutConv1d, HalutConv2d, HalutLinear
from emulator.params import RtlParams
from learning.atomic import atomic_write_bytes, atomic_write_text
from learning.bundle import BundleLayer, NetworkBundle, load_bundle, save_bundle, source_checksum
from learning.conv import Conv1dGeometry, Conv2dGeometry, geometry_from_dict
from learning.errors import HalutError, one_line
from learning.modelfile import SavedModel
from learning.program import HardwareProgram

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


def check_model_input(model: nn.Module, X: np.ndarray) -> None:
    """One line when ``model`` does not take samples shaped like ``X[0]`` (tried on one)."""
    import torch

    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(np.ascontiguousarray(X[:1])))
    except Exception as exc:  # whatever the model's own code raises
        raise HalutError(f"the model does not take inputs of shape {tuple(X.shape[1:])} "
                         f"({one_line(exc)})") from None


def model_checksum(model: nn.Module) -> str:
    """sha256 of a model's parameters and buffers (what a bundle records of its source)."""
    return source_checksum({k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})


def _batches_again(batches: Iterable[Any] | Callable[[], Iterable[Any]]
                   ) -> Callable[[], Iterable[Any]]:
    if callable(batches):
        return batches
    if hasattr(batches, "__len__"):  # a sequence, an array: iterable again
        return lambda: batches
    raise HalutError("the sequential schedule runs over the batches once per layer: pass a "
                     "sequence or a function returning a fresh iterable, not a one-shot "
                     "iterator")


def _fold(model: nn.Module, cfg: NetConfig) -> tuple[nn.Module, dict[str, Any] | None]:
    """The model in eval mode, with its BatchNorms folded when ``cfg.fold_bn`` says so and it
    has any (the folded copy, and the fold's report)."""
    from emulator.fold import fold_batchnorm

    model.eval()
    if cfg.fold_bn and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                           for m in model.modules()):
        folded, report = fold_batchnorm(model)
        return folded, report.to_dict()
    return model, None


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
    from emulator.replace import replace_layers

    cfg = config or NetConfig()
    model, fold_info = _fold(model, cfg)
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


def _tensors(model: nn.Module) -> dict[str, Any]:
    """Every parameter and buffer of ``model`` by qualified name (what bundle floats name)."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _float_target(tensors: Mapping[str, Any], name: str, shape: Sequence[int]) -> Any:
    """The model's parameter/buffer ``name``, checked to have ``shape`` (one line if not)."""
    t = tensors.get(name)
    if t is None:
        raise HalutError(f"the bundle's float {name!r} is not a parameter or buffer of the "
                         "model")
    if tuple(t.shape) != tuple(shape):
        raise HalutError(f"the bundle's float {name!r} has shape {tuple(shape)}, the model's "
                         f"{tuple(t.shape)}")
    return t


def save_network(path: str | os.PathLike[str], model: nn.Module, *, source: str,
                 config: NetConfig | None = None,
                 floats: Mapping[str, Any] | None = None) -> Path:
    """Write every Halut layer of ``model`` to the ``.halutnet`` bundle ``path`` (atomic);
    ``source``: :func:`model_checksum` of the float model they were learned from.
    ``floats``: name -> torch.Tensor (or numpy array) of trained parameters/buffers that stay
    in float (named as in ``model``, which must have them with the same shape), which
    :func:`apply_network` loads back."""
    import torch

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
    arrays: dict[str, np.ndarray] = {}
    tensors = _tensors(model)
    for name, value in (floats or {}).items():
        try:
            a = (value.detach().cpu().numpy() if isinstance(value, torch.Tensor)
                 else np.asarray(value))
        except (TypeError, RuntimeError) as exc:  # bfloat16 and the like
            raise HalutError(f"float {name!r}: {one_line(exc)}") from None
        _float_target(tensors, name, a.shape)
        arrays[name] = a
    cfg = (config or NetConfig()).to_dict()
    return save_bundle(path, NetworkBundle(layers=tuple(layers), source=source, config=cfg,
                                           floats=arrays))


def apply_network(model: nn.Module, bundle: str | os.PathLike[str] | NetworkBundle, *,
                  backend: str = "golden") -> nn.Module:
    """Put the layers of ``bundle`` into ``model`` (the float source model, freshly made):
    checks its parameter checksum against the bundle's, folds BatchNorm as the bundle's
    config says, swaps each named layer for its Halut module, then copies the bundle's floats
    into the parameters/buffers they name (one line naming what does not fit). Returns the
    model (with folding, the folded copy)."""
    import torch

    src = model_checksum(model)
    b = bundle if isinstance(bundle, NetworkBundle) else load_bundle(bundle, source=src)
    if b.source != src:  # a bundle object passed in: load_bundle did not check it
        raise HalutError("the bundle was learned from another model (its source checksum "
                         "differs from this model's parameters)")
    model, _ = _fold(model, NetConfig.from_dict(b.config))
    modules = dict(model.named_modules())
    for layer in b.layers:
        old = modules.get(layer.name)
        if old is None:
            raise HalutError(f"the bundle's layer {layer.name!r} is not in the model")
        new = _module_for(layer, old, backend)
        parent_name, _, child = layer.name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, child, new)
    tensors = _tensors(model)
    targets = [(_float_target(tensors, name, a.shape), a) for name, a in b.floats.items()]
    with torch.no_grad():
        for t, a in targets:
            t.copy_(torch.from_numpy(np.ascontiguousarray(a)).to(t.dtype))
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


# ---- evaluating a network: accuracy per backend and the per-layer trace ------------------------

#: the default clock for times and throughput: fmax of the default chip (C=32, K=16, M=16,
#: fp16/int8, two banks), docs/hardware.md "One chip for a whole network"
DEFAULT_CLOCK_MHZ = 271.26
NET_BACKENDS: tuple[str, ...] = ("float", "golden", "gpu", "rtl")


def host_ops(model: nn.Module) -> list[str]:
    """What stays on the host in float: every call in the traced graph that is not a Halut
    layer (activations, pooling, residual adds, norms, attention's own matmuls), the Halut
    layers traced as leaves; the leaf modules outside Halut layers when torch.fx cannot
    trace the model."""
    import torch.fx as fx

    class _Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return isinstance(m, HALUT_MODULES) or super().is_leaf_module(m, qualname)

    try:
        graph = _Tracer().trace(model)
    except Exception:  # an untraceable model: name its leaf modules
        inside = {id(c) for m in model.modules() if isinstance(m, HALUT_MODULES)
                  for c in m.modules()}
        return sorted({type(m).__name__ for m in model.modules()
                       if not list(m.children()) and id(m) not in inside})
    mods = dict(model.named_modules())
    out: list[str] = []
    for node in graph.nodes:
        if node.op == "call_module" and not isinstance(mods.get(str(node.target)),
                                                       HALUT_MODULES):
            out.append(f"{node.target} ({type(mods[str(node.target)]).__name__})")
        elif node.op in ("call_function", "call_method"):
            out.append(getattr(node.target, "__name__", str(node.target)))
    return out


def _halut_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in net.named_modules() if isinstance(m, HALUT_MODULES)]


def halut_layer_names(net: nn.Module) -> list[str]:
    """The qualified names of the network's Halut layers, in order."""
    return [n for n, _ in _halut_layers(net)]


def first_program(net: nn.Module) -> HardwareProgram | None:
    """The program of the network's first Halut layer (its K and formats are the chip's)."""
    for _, m in _halut_layers(net):
        for u in _units(m)[1]:
            if u.program is not None:
                return u.program
    return None


def _layer_meta(name: str, m: nn.Module) -> dict[str, Any]:
    kind, units, _ = _units(m)
    programs = [u.program for u in units if u.program is not None]
    p0 = programs[0]
    lut_bytes = sum(p.lut.nbytes for p in programs)
    return {"layer": name, "kind": kind, "groups": len(programs), "D": p0.D,
            "M": sum(p.M for p in programs), "C": p0.C, "K": p0.K,
            "threshold_format": p0.threshold_format, "lut_format": p0.lut_format,
            "lut_bytes": int(lut_bytes)}


#: images per batch record: an image's output of a layer is known by its digest
_DIGEST_BYTES = 16
EVAL_RECORD_VERSION = 1


def _digest(a: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=_DIGEST_BYTES
                           ).hexdigest()


@dataclass
class _Batch:
    """What one batch of one backend's pass leaves behind (all a resumed run needs): the
    predictions, every Halut layer's per-image output digests, its input/output shapes, its
    rtl cycles, and (golden) the squared error against the float layer and the variance."""

    lo: int
    hi: int
    pred: list[int]
    digests: dict[str, list[str]]
    shapes: dict[str, list[list[int]]]
    cycles: dict[str, dict[str, int] | None]
    err: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _EvalStore:
    """Batch records of an evaluation in a resume folder, one JSON file per backend and image
    range, each with the run's fingerprint and its own checksum: a record that does not
    verify (damaged, of another network, data or batch size) is computed again."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.root, self.fingerprint = root, fingerprint
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, backend: str, lo: int, hi: int) -> Path:
        return self.root / f"{backend}_{lo:09d}_{hi:09d}.json"

    @staticmethod
    def _sum(body: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def load(self, backend: str, lo: int, hi: int, names: Sequence[str]) -> _Batch | None:
        path = self._path(backend, lo, hi)
        try:
            if not path.is_file() or path.stat().st_size > 64 << 20:
                return None
            doc = json.loads(path.read_text())
            body = doc["record"]
            if (doc.get("version") != EVAL_RECORD_VERSION
                    or doc.get("fingerprint") != self.fingerprint
                    or doc.get("checksum") != self._sum(body)):
                return None
            rec = _Batch(**body)
            if (rec.lo, rec.hi) != (lo, hi) or len(rec.pred) != hi - lo or sorted(
                    rec.digests) != sorted(names):
                return None
            return rec
        except (OSError, ValueError, KeyError, TypeError, RecursionError, AttributeError):
            return None  # damaged: computed again

    def save(self, backend: str, rec: _Batch) -> None:
        body = rec.to_dict()
        atomic_write_text(self._path(backend, rec.lo, rec.hi), json.dumps(
            {"version": EVAL_RECORD_VERSION, "fingerprint": self.fingerprint,
             "checksum": self._sum(body), "record": body}))


def _fingerprint(net: nn.Module, X: np.ndarray, batch_size: int) -> str:
    """What an evaluation's batch records depend on: every tensor of the network (programs
    included), the images and the batch size."""
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        if hasattr(v, "detach"):
            h.update(k.encode() + b"\0" + str(v.dtype).encode() + str(tuple(v.shape)).encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    h.update(np.ascontiguousarray(X).tobytes())
    h.update(str((X.shape, batch_size)).encode())
    return h.hexdigest()


def _run_batches(net: nn.Module, layers: list[tuple[str, nn.Module]], backend: str,
                 X: np.ndarray, lo: int, hi: int, batch_size: int, store: _EvalStore | None,
                 progress: bool, desc: str | None = None) -> list[_Batch]:
    """Images ``[lo, hi)`` of ``X`` through one backend in batches starting at ``lo``: a
    record per batch, taken from ``store`` where it has one, else computed (and stored);
    ``progress``: a bar over the batches, named ``desc`` (default: the backend)."""
    import torch
    from tqdm import tqdm

    names = [n for n, _ in layers]
    cur: dict[str, Any] = {}
    guard = [False]

    def hook(name: str, mod: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        if guard[0]:
            return
        cur["shapes"].setdefault(name, [list(args[0].shape[1:]), list(out.shape[1:])])
        o = out.detach().numpy()
        cur["digests"][name] += [_digest(o[i]) for i in range(o.shape[0])]
        if backend == "golden":  # NMSE against the float layer on these very inputs
            guard[0] = True
            try:
                mod.backend = "float"  # type: ignore[assignment]
                ref = mod(args[0]).detach().numpy()
            finally:
                mod.backend = "golden"  # type: ignore[assignment]
                guard[0] = False
            e = cur["err"][name]
            e[0] += float(((o - ref) ** 2).sum())
            e[1] += float(((ref - ref.mean()) ** 2).sum())
        if backend == "rtl":
            c = getattr(getattr(mod, "last_result", None), "cycles", None)
            if c is not None:
                prev = cur["cycles"][name]
                cur["cycles"][name] = c if prev is None else prev + c

    handles = []
    for name, m in layers:
        m.backend = backend  # type: ignore[assignment]
        handles.append(m.register_forward_hook(functools.partial(hook, name)))
    out: list[_Batch] = []
    try:
        with torch.no_grad():
            for b0 in tqdm(range(lo, hi, batch_size), desc=desc or backend, unit="batch",
                           disable=not progress, leave=False):
                b1 = min(hi, b0 + batch_size)
                rec = None if store is None else store.load(backend, b0, b1, names)
                if rec is None:
                    cur.update(shapes={}, digests={n: [] for n in names},
                               cycles={n: None for n in names},
                               err={n: [0.0, 0.0] for n in names})
                    xb = torch.from_numpy(np.ascontiguousarray(X[b0:b1]))
                    pred = net(xb).numpy().argmax(axis=-1)
                    rec = _Batch(lo=b0, hi=b1, pred=[int(p) for p in pred],
                                 digests=cur["digests"], shapes=cur["shapes"],
                                 cycles={n: None if c is None else c.to_dict()
                                         for n, c in cur["cycles"].items()},
                                 err=cur["err"])
                    if store is not None:
                        store.save(backend, rec)
                out.append(rec)
    finally:
        for h in handles:
            h.remove()
    return out


#: the backends whose pass ``jobs > 1`` shards over processes (golden, which the others are
#: compared with, and float stay in this process)
SHARDED_BACKENDS: tuple[str, ...] = ("gpu", "rtl")

#: what the forked shard workers run: set just before the pool forks, cleared after (the
#: network is inherited through fork, not pickled: a torch.fx GraphModule does not pickle)
_SHARD_STATE: dict[str, Any] = {}


def _shard_pass(lo: int, hi: int) -> list[_Batch]:
    """Images ``[lo, hi)`` of a backend's pass, in a forked worker process."""
    st = _SHARD_STATE
    return _run_batches_one_thread(st["net"], st["layers"], st["backend"], st["X"], lo, hi,
                                   st["batch_size"], st["store"], False, st["backend"])


def _run_pass(net: nn.Module, layers: list[tuple[str, nn.Module]], backend: str,
              X: np.ndarray, n_img: int, batch_size: int, jobs: int,
              store: _EvalStore | None, progress: bool,
              shard_runner: Callable[[str, Sequence[tuple[int, int]], int, Any],
                                     list[list[Any]]] | None = None) -> list[_Batch]:
    """A backend's pass over the first ``n_img`` images: in this process, or (``jobs > 1``,
    gpu and rtl) over ``jobs`` contiguous image shards, each running its own accelerator
    (its configuration loaded once per layer and shard, so the cycle totals are those of
    ``jobs`` chips side by side). rtl runs the first shard in this process (one thread of
    torch meanwhile) and the others in forked workers: one fork fewer, and a warm process
    whose memory is already its own (a forked worker's first touch of each page faults).
    gpu runs every shard in a worker, so that this process never initializes CUDA before a
    later pass forks (a forked child cannot use CUDA then).

    ``shard_runner(backend, spans, batch_size, store)``, when given, runs the gpu and rtl
    shards instead (``min(jobs, n_img)`` of them, one even for ``jobs == 1``) wherever it
    likes, each on a fresh copy of the network, and returns each span's batch records in
    order (``flows.distributed.shard_runner`` sends them to Dask workers)."""
    sharded = backend in SHARDED_BACKENDS and n_img >= 2 and (
        jobs > 1 or shard_runner is not None)
    if not sharded:
        return _run_batches(net, layers, backend, X, 0, n_img, batch_size, store, progress)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    bounds = np.linspace(0, n_img, min(jobs, n_img) + 1).round().astype(int)
    spans = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
             if hi > lo]
    if shard_runner is not None:
        got = shard_runner(backend, spans, batch_size, store)
        recs = [rec for part in got for rec in part]
        edges = [(r.lo, r.hi) for r in recs] if all(isinstance(r, _Batch) for r in recs) \
            else None
        want = [(b0, min(hi, b0 + batch_size)) for lo, hi in spans
                for b0 in range(lo, hi, batch_size)]
        if len(got) != len(spans) or edges != want:
            raise HalutError(f"the shard runner returned other batches than the {backend} "
                             f"pass's {len(want)} over images [0, {n_img})")
        return recs
    here = spans[:1] if backend == "rtl" else []
    forked = spans[len(here):]
    _SHARD_STATE.update(net=net, layers=layers, backend=backend, X=X, batch_size=batch_size,
                        store=store)
    pool = ProcessPoolExecutor(len(forked), mp_context=mp.get_context("fork"))
    done = False
    try:
        futures = [pool.submit(_shard_pass, lo, hi) for lo, hi in forked]  # forks now
        parts = [_run_batches_one_thread(net, layers, backend, X, lo, hi, batch_size, store,
                                         progress, f"{backend} (shard 1 of {len(spans)})")
                 for lo, hi in here]
        parts += [f.result() for f in futures]
        done = True
    finally:
        _SHARD_STATE.clear()
        # the workers have sent their records: their exit need not be waited for (after an
        # error, the others finish first, as they would have without it)
        pool.shutdown(wait=not done)
    return [rec for part in parts for rec in part]


def _run_batches_one_thread(net: nn.Module, layers: list[tuple[str, nn.Module]],
                            backend: str, X: np.ndarray, lo: int, hi: int, batch_size: int,
                            store: _EvalStore | None, progress: bool, desc: str
                            ) -> list[_Batch]:
    """:func:`_run_batches` of one shard with torch on one thread (a core per shard; in a
    forked worker, no OpenMP pool inherited across the fork); torch's thread count is
    restored after. The bar (``progress``) counts this shard's batches: the shards are of
    one size and run side by side."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_batches(net, layers, backend, X, lo, hi, batch_size, store, progress,
                            desc)
    finally:
        torch.set_num_threads(threads)


def evaluate_network(net: nn.Module, X: np.ndarray, y: np.ndarray, *,
                     backends: Sequence[str] = ("float", "golden"), rtl_images: int | None = None,
                     gpu_images: int | None = None, batch_size: int = 64,
                     clock_mhz: float = DEFAULT_CLOCK_MHZ, jobs: int = 1,
                     resume: str | os.PathLike[str] | None = None,
                     progress: bool = False, chip: RtlParams | None = None,
                     shard_runner: Callable[[str, Sequence[tuple[int, int]], int, Any],
                                            list[list[Any]]] | None = None
                     ) -> dict[str, Any]:
    """Accuracy per backend and the per-layer trace of a network with Halut layers.

    Every backend runs the same images (rtl and gpu: the first ``rtl_images`` /
    ``gpu_images``, all by default; the Triton interpreter on CPU is slow) in batches; per
    Halut layer the trace records its shapes, D, M, C, K, formats and LUT bytes,
    its NMSE against the float layer on the inputs it actually saw (golden run), whether its
    gpu and rtl outputs equal golden's on every element of every image run (compared through
    a digest of each image's output), and (rtl) its cycles per image. Totals: accuracy per
    backend, the seconds each backend's pass took (golden's includes the float reference of
    every layer), cycles per image, time per image and MAC-equivalent throughput (2*D*M per
    output row) at ``clock_mhz``; ``host`` names what stays on the host in float.

    ``jobs > 1`` runs the gpu and rtl passes over that many image shards in forked worker
    processes (one accelerator each). ``resume``: a folder where every finished batch of
    every backend is recorded; a run with the same network, images and batch size takes the
    batches recorded there instead of running them again (after a kill, it goes on where the
    killed run stopped, and ends with the same result).

    ``chip``: the accelerator every layer of the rtl pass is mapped onto (default: the
    default chip with the programs' K and formats, ``RtlParams.for_program``); recorded in
    the totals as ``chip``.

    ``shard_runner``: runs the gpu and rtl passes' ``jobs`` image shards elsewhere (one shard
    even for ``jobs == 1``): ``shard_runner(backend, spans, batch_size, store)`` returns each
    span's batch records, computed on a fresh copy of this network, so the trace is the one
    ``jobs`` forked workers give. ``flows.distributed.shard_runner`` makes one that sends the
    shards to Dask workers, which rebuild the network from its files (emulator/ never
    imports dask).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise HalutError(f"jobs must be an integer >= 1, got {jobs!r}")
    for b in backends:
        if b not in NET_BACKENDS:
            raise HalutError(f"backend must be among {', '.join(NET_BACKENDS)}, got {b!r}")
    layers = _halut_layers(net)
    if not layers:
        raise HalutError("the network has no Halut layers")
    if chip is not None and shard_runner is not None:
        raise HalutError("a chip other than the default cannot be sent to a Dask cluster's "
                         "workers yet: run without --scheduler")
    net.eval()
    chip_tag = "" if chip is None else chip.tag()
    store = None if resume is None else _EvalStore(Path(resume),
                                                   _fingerprint(net, X, batch_size) + chip_tag)
    trace = {name: _layer_meta(name, m) for name, m in layers}
    golden_digests: dict[str, list[str]] = {}
    golden_pred = np.zeros(0, np.int64)
    acc: dict[str, float] = {}
    images: dict[str, int] = {}
    seconds: dict[str, float] = {}
    cycles: dict[str, CycleReport | None] = {n: None for n, _ in layers}
    for b in dict.fromkeys(("golden", *backends)):  # golden first: the others compare with it
        limit = {"rtl": rtl_images, "gpu": gpu_images}.get(b)
        n_img = X.shape[0] if limit is None else min(int(limit), X.shape[0])
        if b == "rtl" and chip is not None:
            for _, m in layers:  # the pass keeps a backend's options (workers inherit them)
                m.set_backend("rtl", params=chip)  # type: ignore[operator]
        t0 = time.perf_counter()
        recs = _run_pass(net, layers, b, X, n_img, batch_size, jobs, store, progress,
                         shard_runner)
        seconds[b] = time.perf_counter() - t0
        pred = np.array([p for rec in recs for p in rec.pred], dtype=np.int64)
        acc[b], images[b] = float((pred == y[:n_img]).mean()), n_img
        for name, _ in layers:
            got = [d for rec in recs for d in rec.digests[name]]
            for rec in recs:
                if name in rec.shapes:
                    trace[name].setdefault("input_shape", rec.shapes[name][0])
                    trace[name].setdefault("output_shape", rec.shapes[name][1])
            if b == "golden":
                golden_digests[name] = got
                e = sum(rec.err[name][0] for rec in recs)
                v = sum(rec.err[name][1] for rec in recs)
                trace[name]["nmse"] = e / v if v > 0 else None
            elif b in SHARDED_BACKENDS:
                trace[name][f"{b}_bit_exact"] = got == golden_digests[name][:len(got)]
            if b == "rtl":
                for rec in recs:
                    cd = rec.cycles[name]
                    if cd is not None:
                        prev = cycles[name]
                        rep = CycleReport.from_dict(cd)
                        cycles[name] = rep if prev is None else prev + rep
        if b == "golden":
            golden_pred = pred
    rows = list(trace.values())
    # golden's accuracy on the images a limited backend ran, to compare like with like
    subset = {b: float((golden_pred[:n] == y[:n]).mean())
              for b, n in images.items() if b in backends and n < images["golden"]}
    totals: dict[str, Any] = {"accuracy": {b: acc[b] for b in backends}, "images": images,
                              "golden_on_subset": subset, "seconds": seconds,
                              "clock_mhz": clock_mhz,
                              "host": host_ops(net)}
    if "rtl" in backends:
        first = first_program(net)
        used = chip if chip is not None else (None if first is None
                                              else RtlParams.for_program(first))
        totals["chip"] = None if used is None else asdict(used)
    if "rtl" in backends and images.get("rtl"):
        n = images["rtl"]
        cyc, ops = 0.0, 0
        for r in rows:
            c = cycles[r["layer"]]
            r["cycles_per_image"] = None if c is None else {
                k: v / n for k, v in c.to_dict().items()}
            cyc += 0.0 if c is None else c.total / n
            out = r["output_shape"]
            per_image = int(np.prod(out[1:])) if r["kind"] != "linear" else int(
                np.prod(out[:-1]) if len(out) > 1 else 1)
            ops += 2 * r["D"] * r["M"] * per_image  # D of a group, M of all groups
        per_image_s = cyc / (clock_mhz * 1e6)
        totals.update({"cycles_per_image": cyc, "seconds_per_image": per_image_s,
                       "mac_ops_per_image": ops,
                       "mac_ops_per_s": ops / per_image_s if per_image_s > 0 else None})
    return {"layers": rows, "totals": totals}


def _fmt(x: Any, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def plot_trace(ev: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """The trace as a PNG (accuracy per backend; NMSE and rtl cycles per layer), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ev["layers"]
    names = [r["layer"] for r in rows]
    acc = ev["totals"]["accuracy"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].bar(list(acc), [100 * v for v in acc.values()], color="#4c72b0")
    axes[0].set_ylabel("accuracy (%)")
    axes[0].set_title("accuracy per backend", fontsize=9)
    axes[1].bar(names, [r.get("nmse") or 0.0 for r in rows], color="#55a868")
    axes[1].set_ylabel("NMSE vs the float layer")
    axes[1].set_title("per layer (golden, its own inputs)", fontsize=9)
    cyc = [(r.get("cycles_per_image") or {}).get("total", 0.0) for r in rows]
    axes[2].bar(names, cyc, color="#c44e52")
    axes[2].set_ylabel("rtl cycles per image")
    axes[2].set_title("per layer (rtl)", fontsize=9)
    for ax in axes[1:]:
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def format_trace(ev: dict[str, Any]) -> list[str]:
    """The trace of :func:`evaluate_network` as a table and the network totals, lines."""
    head = (f"{'layer':<24} {'kind':<6} {'D':>5} {'M':>5} {'C':>4} {'K':>4} {'LUT B':>8} "
            f"{'NMSE':>8} {'gpu=':>5} {'rtl=':>5} {'config':>9} {'stream':>9} {'total':>9}")
    lines = [head]
    for r in ev["layers"]:
        c = r.get("cycles_per_image") or {}

        def exact(key: str, row: dict[str, Any] = r) -> str:
            return "-" if key not in row else ("yes" if row[key] else "NO")
        lines.append(f"{r['layer'][:24]:<24} {r['kind']:<6} {r['D']:>5} {r['M']:>5} "
                     f"{r['C']:>4} {r['K']:>4} {r['lut_bytes']:>8} {_fmt(r.get('nmse')):>8} "
                     f"{exact('gpu_bit_exact'):>5} {exact('rtl_bit_exact'):>5} "
                     f"{_fmt(c.get('config'), '.0f'):>9} {_fmt(c.get('stream'), '.0f'):>9} "
                     f"{_fmt(c.get('total'), '.0f'):>9}")
    t = ev["totals"]
    for b, a in t["accuracy"].items():
        same = t.get("golden_on_subset", {}).get(b)
        note = "" if same is None else f"; golden on these {100 * same:.2f} %"
        lines.append(f"accuracy {b:<7} {100 * a:6.2f} % ({t['images'][b]} images{note})")
    if "cycles_per_image" in t:
        lines.append(f"rtl: {t['cycles_per_image']:.0f} cycles per image, "
                     f"{1e6 * t['seconds_per_image']:.1f} us per image at {t['clock_mhz']} MHz, "
                     f"{t['mac_ops_per_s'] / 1e9:.2f} GOp/s MAC-equivalent")
    if t.get("energy_per_image_nj") is not None:
        per_layer = ", ".join(f"{r['layer']} {r['energy_per_image_nj']:.4g}"
                              for r in ev["layers"] if r.get("energy_per_image_nj") is not None)
        lines.append(f"energy: {t['energy_per_image_nj']:.4g} nJ per image "
                     f"({t['energy_tops_per_w']:.4g} TOp/s/W; simulated activity, "
                     f"{t['energy_source']}); per layer (nJ): {per_layer}")
    lines.append(f"on the host in float: {', '.join(t['host']) or '-'}")
    return lines
