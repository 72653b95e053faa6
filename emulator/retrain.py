"""Retraining a network whose layers were replaced by Halut modules: win its accuracy back,
and keep what runs on the hardware exactly what was trained.

:func:`retrain` swaps every Halut module of a network (:mod:`emulator.modules`) for a
trainable twin (:class:`TrainableHalut`), trains the network on labelled data, re-quantizes
each twin into a hardware program and swaps the Halut modules back with their new programs
and float models. The network is then what :func:`emulator.network.save_network` writes.

**The forward pass is the hardware's.** A twin's output is the golden model's
(:func:`emulator.golden.run`) on the program its current parameters quantize to
(:func:`learning.quantize.quantize`, the same function that makes the bundle's programs): the
hard codes, the int8 (or fp16) LUT with its per-column scale, the fp16 (or int8) thresholds.
Its value is therefore bit-identical to golden, rtl and gpu on the exported program.

**The backward pass** (the gradient of that forward is zero almost everywhere) goes through
a surrogate with the same value (straight-through estimation, both parts below):

* LUT entries and the bias: the exact gradient of ``sum_c lut[m, c, code_c] + bias`` at the
  hard codes, passed straight through the LUT's quantization;
* thresholds and the layer's inputs (so the layers before it, Halut or float, learn too):
  the encoder relaxed into leaf probabilities, a product of sigmoids along each tree path,
  ``P(bit = 1) = sigmoid((x - t) / (T * s))`` with ``s`` the spread (standard deviation) of
  the split feature on the first training batch and ``T`` the temperature, annealed
  geometrically from ``temperature`` to ``temperature_end`` over the epochs. The relaxed
  output ``sum_k P(k) lut[m, c, k]`` lends its gradient, never its value.

Both parts together are ``y = y_hw + (y_s - y_s.detach())`` with
``y_s = sum_c sum_k (onehot + P - P.detach())[n, c, k] lut[m, c, k] + bias``. Why both: the
hard codes give the LUT its exact gradient, which a relaxed forward would blur; the
relaxation gives the thresholds and the inputs a gradient that the hard codes do not have.

Schedules: ``all`` trains every Halut layer and the float parameters at once; ``layerwise``
(halutmatmul's) runs the network with layer i on its Halut twin, the layers before it frozen
on theirs and the layers after it on their frozen float weights, trains for ``epochs``,
freezes it and goes on to layer i + 1.

A checkpoint (``checkpoint_dir/retrain.pt``, written atomically after every epoch, read with
``torch.load(weights_only=True)``) lets an interrupted run resume where it stopped and end
bit-identical to an uninterrupted one: the batches' order is seeded per stage and epoch.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emulator import golden
from emulator.modules import HALUT_MODULES, HalutLinear, _HalutConv, _HalutLayer
from emulator.replace import _set_submodule
from learning.atomic import atomic_write_bytes
from learning.conv import Conv1dGeometry, Conv2dGeometry
from learning.errors import HalutError, one_line
from learning.model import HalutModel
from learning.program import HardwareProgram
from learning.quantize import quantize

RetrainSchedule = Literal["all", "layerwise"]
RETRAIN_SCHEDULES: tuple[str, ...] = ("all", "layerwise")
CHECKPOINT_NAME = "retrain.pt"
CHECKPOINT_VERSION = 1
_TORCH_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
              "circular": "circular"}


@dataclass(frozen=True)
class RetrainConfig:
    """How to retrain (defaults: what works on the demo, docs/retrain.md).

    epochs : passes over the training data (``layerwise``: per layer)
    lr : Adam's step, relative: each Halut layer's LUT and bias move by about ``lr`` times
        the spread of its initial LUT, its thresholds by ``lr`` times its split features'
        spread; the float parameters by ``lr`` itself
    batch_size : training batch
    schedule : ``all`` or ``layerwise`` (see the module)
    temperature, temperature_end : the relaxation's temperature, annealed geometrically over
        the epochs (in units of each split feature's spread)
    train_float : train the parameters that stay in float (BatchNorm, unreplaced layers)
    seed : the batches' order
    """

    epochs: int = 4
    lr: float = 0.01
    batch_size: int = 64
    schedule: RetrainSchedule = "all"
    temperature: float = 1.0
    temperature_end: float = 0.1
    train_float: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in RETRAIN_SCHEDULES:
            raise HalutError(f"schedule must be one of {', '.join(RETRAIN_SCHEDULES)}, "
                             f"got {self.schedule!r}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise HalutError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("lr", "temperature", "temperature_end"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    np.isfinite(v) and v > 0):
                raise HalutError(f"{name} must be a finite number > 0, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def temperature_at(self, epoch: int) -> float:
        """The temperature of epoch ``epoch`` (0-based) of a stage."""
        if self.epochs == 1:
            return float(self.temperature)
        r = float(self.temperature_end) / float(self.temperature)
        return float(self.temperature) * r ** (epoch / (self.epochs - 1))


class HalutUnit(nn.Module):
    """One trainable MADDNESS problem (a HalutLinear, or one group of a convolution): the
    float thresholds, LUT and bias as parameters, its hardware formats, and the float
    weights it was learned from (for the float mode of the layerwise schedule)."""

    dims: torch.Tensor
    spread: torch.Tensor
    weights: torch.Tensor | None
    float_bias: torch.Tensor

    def __init__(self, layer: _HalutLayer) -> None:
        super().__init__()
        model, program = layer.model, layer.program
        if model is None:
            raise HalutError("retraining needs the layers' float models (a module loaded from "
                             "a program only has none; load the network bundle instead)")
        self.source: HalutModel = model
        self.threshold_format, self.lut_format = program.threshold_format, program.lut_format
        self.input_scale = program.input_scale  # int8 thresholds: kept while they move
        self.register_buffer("dims", torch.from_numpy(model.dims.astype(np.int64)))
        self.thresholds = nn.Parameter(torch.from_numpy(model.thresholds.copy()))
        self.lut = nn.Parameter(torch.from_numpy(model.lut.copy()))
        self.bias = nn.Parameter(torch.from_numpy(model.bias.copy()))
        w = model.weights
        self.register_buffer("weights", None if w is None else torch.from_numpy(w.copy()))
        self.register_buffer("float_bias", torch.from_numpy(model.bias.copy()))
        self.register_buffer("spread", torch.zeros(model.dims.shape, dtype=torch.float32))
        #: the relaxation's temperature (in units of the split features' spread)
        self.temperature = 1.0
        #: ``"halut"``: the hardware forward; ``"float"``: rows @ weights + bias (frozen)
        self.mode = "halut"

    @property
    def lut_spread(self) -> float:
        return float(self.source.lut.std()) or 1.0

    def float_model(self) -> HalutModel:
        """The float model of the current parameters (what the program is quantized from)."""
        return replace(self.source, thresholds=self.thresholds.detach().numpy().copy(),
                       lut=self.lut.detach().numpy().copy(),
                       bias=self.bias.detach().numpy().copy())

    def program(self, model: HalutModel | None = None) -> HardwareProgram:
        """The hardware program of the current parameters."""
        m = self.float_model() if model is None else model
        scale = self.input_scale if self.threshold_format == "int8" else None
        return quantize(m, self.threshold_format, self.lut_format, input_scale=scale)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows (N, D) float32 -> (N, M) float32 (see the module for the gradients)."""
        if self.mode == "float":
            if self.weights is None:
                raise HalutError("the layerwise schedule needs the layers' float weights, "
                                 "which this layer's float model does not keep")
            return rows @ self.weights + self.float_bias
        prog = self.program()
        A = rows.detach().cpu().numpy()
        codes = golden.encode(prog, golden.gather_features(prog, A))
        N = rows.shape[0]
        C, L = self.dims.shape
        K = self.lut.shape[2]
        idx = torch.from_numpy(codes.astype(np.int64))
        onehot = torch.zeros(N, C, K, dtype=torch.float32).scatter_(2, idx[:, :, None], 1.0)
        if prog.lut_format == "int8":  # the int32 sum, exact in float64; dequantized as golden
            lut_q = torch.from_numpy(prog.lut.reshape(prog.M, C * K).T.astype(np.float64))
            acc = onehot.reshape(N, C * K).to(torch.float64) @ lut_q
            y_hw = acc.to(torch.float32) * torch.tensor(prog.scale) + torch.tensor(prog.bias)
        else:  # fp16: the sequential fp32 sum of the contract
            y_hw = torch.from_numpy(golden.dequantize(prog, golden.accumulate(prog, codes)))
        if not (self.training and torch.is_grad_enabled()):
            return y_hw
        f = rows.index_select(1, self.dims.reshape(-1)).reshape(N, C, L)
        if not bool(self.spread.any()):  # the split features' spread, on the first batch
            s = f.detach().std(dim=0) if N > 1 else f.detach().abs()[0]
            self.spread.copy_(torch.where(s > 0, s, torch.ones_like(s)))
        tau = (self.temperature * self.spread)[None]  # (1, C, L)
        p = torch.ones(N, C, 1, dtype=rows.dtype)
        for level in range(L):
            t = self.thresholds[:, (1 << level) - 1:(2 << level) - 1]  # (C, 2^level)
            r = torch.sigmoid((f[:, :, level:level + 1] - t[None]) / tau[:, :, level:level + 1])
            p = torch.stack([p * (1 - r), p * r], dim=-1).reshape(N, C, 2 << level)
        q = onehot + (p - p.detach())
        y_s = q.reshape(N, C * K) @ self.lut.reshape(-1, C * K).T + self.bias
        return y_hw + (y_s - y_s.detach())


class TrainableHalut(nn.Module):
    """The trainable twin of a Halut module (HalutLinear, HalutConv2d, HalutConv1d): the same
    rows (im2col in torch, so gradients reach the input), one :class:`HalutUnit` per group.
    :meth:`export` writes the trained programs and float models back into the Halut module."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        if not isinstance(inner, HALUT_MODULES):
            raise HalutError(f"{type(inner).__name__} is not a Halut module")
        self.inner = [inner]  # a list: not a submodule (its buffers are not trained)
        layers: list[_HalutLayer] = (
            [inner] if isinstance(inner, HalutLinear)
            else list(inner._groups()) if isinstance(inner, _HalutConv) else [])
        self.units = nn.ModuleList(HalutUnit(layer) for layer in layers)

    @property
    def module(self) -> nn.Module:
        """The Halut module this twin trains."""
        return self.inner[0]

    def set_mode(self, mode: str) -> None:
        for u in self.units:
            assert isinstance(u, HalutUnit)
            u.mode = mode

    def set_temperature(self, temperature: float) -> None:
        for u in self.units:
            assert isinstance(u, HalutUnit)
            u.temperature = temperature

    def _conv_rows(self, x: torch.Tensor, inner: _HalutConv
                   ) -> tuple[torch.Tensor, tuple[int, ...]]:
        g = inner.geometry
        g2 = g.as_2d if isinstance(g, Conv1dGeometry) else g
        assert isinstance(g2, Conv2dGeometry)
        want = 3 if isinstance(g, Conv1dGeometry) else 4
        if x.dim() != want or x.shape[1] != g.in_channels:
            raise HalutError(f"{type(inner).__name__} takes (N, {g.in_channels}, ...) inputs "
                             f"of rank {want}, got {tuple(x.shape)}")
        x4 = x[:, :, None, :] if want == 3 else x
        (pt, pb), (pl, pr) = g2.pads
        if pt or pb or pl or pr:
            x4 = F.pad(x4, (pl, pr, pt, pb), mode=_TORCH_PAD[g.padding_mode])
        Hout, Wout = g2.output_size(x4.shape[2] - pt - pb, x4.shape[3] - pl - pr)
        cols = F.unfold(x4, g2.kernel_size, dilation=g2.dilation, stride=g2.stride)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        spatial = (Wout,) if want == 3 else (Hout, Wout)
        return rows, spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = self.module
        x = x.to(torch.float32)
        if isinstance(inner, HalutLinear):
            lead = x.shape[:-1]
            if x.dim() < 1 or x.shape[-1] != inner.in_features:
                raise HalutError(f"HalutLinear takes (..., {inner.in_features}) inputs, got "
                                 f"{tuple(x.shape)}")
            return self.units[0](x.reshape(-1, inner.in_features)).reshape(
                *lead, inner.out_features)
        assert isinstance(inner, _HalutConv)
        rows, spatial = self._conv_rows(x, inner)
        G = inner.groups
        if G == 1:
            y = self.units[0](rows)
        else:
            g = inner.geometry
            y = torch.cat([u(rows[:, g.group_columns(i)]) for i, u in enumerate(self.units)],
                          dim=1)
        N = x.shape[0]
        k = len(spatial)
        return y.reshape(N, *spatial, -1).permute(0, k + 1, *range(1, k + 1))

    def export(self) -> nn.Module:
        """Write the trained programs and float models into the Halut module; returns it."""
        pairs = []
        for u in self.units:
            assert isinstance(u, HalutUnit)
            m = u.float_model()
            m = replace(m, stats={**m.stats, "retrained": True})
            pairs.append((u.program(m), m))
        inner = self.module
        if isinstance(inner, HalutLinear):
            inner.load_learned(*pairs[0])
        else:
            assert isinstance(inner, _HalutConv)
            inner.load_learned([p for p, _ in pairs], [m for _, m in pairs])
        return inner


def _as_tensors(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, y)`` arrays or tensors: float32 inputs, int64 labels."""
    from emulator.datasets import check_inputs, check_labels

    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise HalutError(f"{what} must be a pair (X, y), got {type(data).__name__}")
    X, y = (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            for v in data)
    X = check_inputs(X, f"{what} inputs")
    y = check_labels(y, f"{what} labels", n=X.shape[0])
    return torch.from_numpy(X), torch.from_numpy(y)


def _twins(net: nn.Module) -> list[tuple[str, TrainableHalut]]:
    return [(n, m) for n, m in net.named_modules() if isinstance(m, TrainableHalut)]


def _param_groups(net: nn.Module, twins: Sequence[TrainableHalut], lr: float,
                  train_float: bool) -> list[dict[str, Any]]:
    """Adam's parameter groups: per Halut unit its LUT and bias, its thresholds; the float
    parameters outside the twins. ``unit`` indexes the unit whose spreads scale the step
    (:func:`_set_lr`)."""
    groups: list[dict[str, Any]] = []
    inside: set[int] = set()
    units = [u for t in twins for u in t.units]
    for i, u in enumerate(units):
        inside.update(id(p) for p in u.parameters())
        groups.append({"params": [u.lut, u.bias], "lr": lr, "unit": i, "of": "lut"})
        groups.append({"params": [u.thresholds], "lr": lr, "unit": i, "of": "thresholds"})
    floats = [p for p in net.parameters() if id(p) not in inside and p.requires_grad]
    if train_float and floats:
        groups.append({"params": floats, "lr": lr, "unit": -1, "of": "float"})
    return groups


def _set_lr(opt: torch.optim.Optimizer, twins: Sequence[TrainableHalut], lr: float) -> None:
    """Every group's step: ``lr`` times the spread of what it moves (a unit's initial LUT, its
    split features (known from its first batch)), the float parameters ``lr`` itself."""
    units = [u for t in twins for u in t.units]
    for g in opt.param_groups:
        u = units[g["unit"]] if g["unit"] >= 0 else None
        if u is None:
            g["lr"] = lr
        elif g["of"] == "lut":
            assert isinstance(u, HalutUnit)
            g["lr"] = lr * u.lut_spread
        else:
            assert isinstance(u, HalutUnit)
            g["lr"] = lr * (float(u.spread.mean()) if bool(u.spread.any()) else 1.0)


def float_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters and buffers of ``net`` outside its Halut modules: what retraining may
    change besides the Halut layers (the bundle's ``floats``)."""
    halut = [n for n, m in net.named_modules() if isinstance(m, HALUT_MODULES)]
    return {k: v for k, v in net.state_dict().items()
            if not any(k == h or k.startswith(h + ".") for h in halut)
            and v.is_floating_point()}


def _stages(cfg: RetrainConfig, names: Sequence[str]) -> list[str | None]:
    """``None``: everything at once; else the layer each stage trains."""
    return [None] if cfg.schedule == "all" else list(names)


def _prepare_stage(net: nn.Module, twins: list[tuple[str, TrainableHalut]],
                   stage: str | None, cfg: RetrainConfig) -> list[TrainableHalut]:
    """Modes and trainability for a stage; the twins it trains."""
    names = [n for n, _ in twins]
    at = None if stage is None else names.index(stage)
    train: list[TrainableHalut] = []
    for i, (_, t) in enumerate(twins):
        t.set_mode("float" if at is not None and i > at else "halut")
        on = at is None or i == at
        for p in t.parameters():
            p.requires_grad_(on)
        if on:
            train.append(t)
    inside = {id(p) for _, t in twins for p in t.parameters()}
    for p in net.parameters():
        if id(p) not in inside:
            p.requires_grad_(cfg.train_float)
    return train


def _accuracy(net: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    net.eval()
    hits = 0
    with torch.no_grad():
        for lo in range(0, X.shape[0], batch_size):
            hits += int((net(X[lo:lo + batch_size]).argmax(-1) == y[lo:lo + batch_size]).sum())
    return hits / max(1, X.shape[0])


def _checkpoint_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _load_checkpoint(path: Path, cfg: RetrainConfig, names: Sequence[str]) -> dict[str, Any]:
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:
        raise HalutError(f"{path}: not a retraining checkpoint ({one_line(exc)})") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise HalutError(f"{path}: not a retraining checkpoint of version "
                         f"{CHECKPOINT_VERSION}")
    if state.get("config") != cfg.to_dict():
        raise HalutError(f"{path}: the checkpoint was written with another retraining "
                         f"configuration ({state.get('config')}); resume with the same one or "
                         "use another folder")
    if state.get("layers") != list(names):
        raise HalutError(f"{path}: the checkpoint is for other layers than this network's")
    return state


def retrain(model: nn.Module, train: Any, config: RetrainConfig | None = None, *,
            val: Any = None, checkpoint_dir: str | Path | None = None,
            history: list[dict[str, Any]] | None = None, progress: bool = True,
            on_epoch: Callable[[dict[str, Any]], None] | None = None) -> nn.Module:
    """Retrain the Halut layers of ``model`` (and its float parameters) on labelled data.

    Parameters
    ----------
    model : a network with Halut modules holding their float models (from
        :func:`emulator.network.halutize` or :func:`emulator.network.apply_network`); it is
        changed in place and returned
    train : ``(X, y)``: float inputs (N, ...) and int labels (N,), arrays or tensors
    config : :class:`RetrainConfig`
    val : ``(X, y)`` to report accuracy on after every epoch, or None
    checkpoint_dir : write ``retrain.pt`` there after every epoch, and resume from it when it
        is there (the same configuration and layers, or one clear error)
    history : filled with one dict per epoch: stage, epoch, loss, train_accuracy,
        val_accuracy, temperature, seconds
    progress : a tqdm bar per epoch (loss, accuracy)
    on_epoch : called with each epoch's record after its checkpoint is written

    Returns
    -------
    ``model`` with every Halut module holding its retrained program and float model.
    """
    from tqdm import tqdm

    cfg = config or RetrainConfig()
    Xt, yt = _as_tensors(train, "training")
    val_t = None if val is None else _as_tensors(val, "validation")
    halut = [(n, m) for n, m in model.named_modules() if isinstance(m, HALUT_MODULES)]
    if not halut:
        raise HalutError("the network has no Halut layers to retrain")
    twins: list[tuple[str, TrainableHalut]] = []
    for name, m in halut:
        try:
            twins.append((name, TrainableHalut(m)))
        except HalutError as exc:
            raise HalutError(f"layer {name!r}: {exc}") from None
    for name, t in twins:
        _set_submodule(model, name, t)
    names = [n for n, _ in twins]
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_NAME
    records: list[dict[str, Any]] = []
    start_stage, start_epoch, resumed = 0, 0, None
    if ckpt is not None and ckpt.exists():
        resumed = _load_checkpoint(ckpt, cfg, names)
        start_stage, start_epoch = int(resumed["stage"]), int(resumed["epoch"]) + 1
        records = list(resumed["history"])
    try:
        stages = _stages(cfg, names)
        for si in range(start_stage, len(stages)):
            trained = _prepare_stage(model, twins, stages[si], cfg)
            opt = torch.optim.Adam(_param_groups(model, trained, cfg.lr, cfg.train_float))
            first = si == start_stage and resumed is not None
            if first:
                assert resumed is not None
                model.load_state_dict(resumed["model"])
                opt.load_state_dict(resumed["optimizer"])
            e0 = start_epoch if first else 0
            if e0 >= cfg.epochs:
                continue
            for epoch in range(e0, cfg.epochs):
                rec = _train_epoch(model, trained, opt, Xt, yt, cfg, si, epoch, stages[si],
                                   tqdm, progress)
                if val_t is not None:
                    rec["val_accuracy"] = _accuracy(model, *val_t, cfg.batch_size)
                records.append(rec)
                if ckpt is not None:
                    ckpt.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_bytes(ckpt, _checkpoint_bytes({
                        "version": CHECKPOINT_VERSION, "config": cfg.to_dict(),
                        "layers": names, "stage": si, "epoch": epoch,
                        "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "history": records}))
                if on_epoch is not None:
                    on_epoch(rec)
    finally:
        for name, t in twins:  # the Halut modules back, trained or not
            _set_submodule(model, name, t.module)
    for _, t in twins:
        t.export()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    if history is not None:
        history.extend(records)
    return model


def _train_epoch(net: nn.Module, trained: list[TrainableHalut], opt: torch.optim.Optimizer,
                 X: torch.Tensor, y: torch.Tensor, cfg: RetrainConfig, stage: int, epoch: int,
                 layer: str | None, tqdm: Any, progress: bool) -> dict[str, Any]:
    """One epoch: shuffled (seeded by stage and epoch) batches, cross-entropy, Adam."""
    t0 = time.perf_counter()
    temp = cfg.temperature_at(epoch)
    for t in trained:
        t.set_temperature(temp)
    net.train()
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + stage * 1009 + epoch)
    order = torch.randperm(X.shape[0], generator=gen)
    steps = -(-X.shape[0] // cfg.batch_size)
    loss_sum, hits, seen = 0.0, 0, 0
    bar = tqdm(range(0, X.shape[0], cfg.batch_size), disable=not progress, leave=False,
               desc=f"{layer or 'all'} epoch {epoch + 1}/{cfg.epochs}", unit="batch")
    for lo in bar:
        idx = order[lo:lo + cfg.batch_size]
        xb, yb = X[idx], y[idx]
        out = net(xb)
        loss = F.cross_entropy(out, yb)
        if not torch.isfinite(loss):
            raise HalutError(f"retraining diverged: the loss is {float(loss)} in epoch "
                             f"{epoch + 1} (lower the learning rate)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        step = epoch * steps + lo // cfg.batch_size  # cosine decay over the stage
        _set_lr(opt, trained, cfg.lr * 0.5 * (1 + math.cos(math.pi * step / (cfg.epochs * steps))))
        opt.step()
        n = int(yb.shape[0])
        loss_sum += float(loss.detach()) * n
        hits += int((out.detach().argmax(-1) == yb).sum())
        seen += n
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{hits / seen:.4f}")
    return {"stage": stage, "layer": layer, "epoch": epoch, "loss": loss_sum / seen,
            "train_accuracy": hits / seen, "temperature": temp,
            "seconds": time.perf_counter() - t0}
