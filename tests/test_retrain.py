"""Retraining (emulator/retrain.py): the trainable twins compute golden's value exactly and
pass gradients to the LUTs, thresholds, inputs and float layers; retraining lowers the loss,
resumes bit-identically after an interruption, and its bundle runs bit-exactly on gpu and rtl."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from emulator.modules import HALUT_MODULES, HalutConv1d, HalutConv2d, HalutLinear
from emulator.network import (
    NetConfig,
    apply_network,
    evaluate_network,
    halutize,
    model_checksum,
    save_network,
)
from emulator.replace import _set_submodule
from emulator.retrain import (
    CHECKPOINT_NAME,
    HalutUnit,
    RetrainConfig,
    TrainableHalut,
    float_state,
    retrain,
)
from learning.errors import HalutError


class _Net(nn.Module):
    """A conv (grouped, reflect-padded), BatchNorm kept in float, a Linear on tokens, and a
    float head: every kind of parameter retraining touches."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1, padding_mode="reflect")
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
        self.tok = nn.Linear(8, 8)
        self.head = nn.Linear(8 * 9, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.relu(self.dw(x))  # (N, 8, 3, 3)
        x = torch.relu(self.tok(x.flatten(2).transpose(1, 2)))  # (N, 9, 8): rank-3 Linear
        return self.head(x.flatten(1))


def _data(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes that differ in where the bright blob is."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(0, 0.3, (n, 2, 6, 6)).astype(np.float32)
    for i, c in enumerate(y):
        X[i, :, 2 * c:2 * c + 2, :] += 1.0
    return X, y.astype(np.int64)


def _halut_net(**cfg: object) -> nn.Module:
    torch.manual_seed(0)
    net = _Net().eval()
    X, _ = _data()
    batches = [torch.from_numpy(X[i:i + 32]) for i in range(0, len(X), 32)]
    conf = NetConfig(**{"C": 4, "K": 4, "fold_bn": False, **cfg})  # type: ignore[arg-type]
    return halutize(net, batches, conf, filter_fn=lambda m, n: n != "head")


def _twins(net: nn.Module) -> list[TrainableHalut]:
    out = []
    for name, m in [(n, m) for n, m in net.named_modules() if isinstance(m, HALUT_MODULES)]:
        t = TrainableHalut(m)
        _set_submodule(net, name, t)
        out.append(t)
    return out


@pytest.mark.parametrize("formats", [("fp16", "int8"), ("int8", "fp16")])
def test_the_trainable_forward_is_golden_bit_for_bit(formats: tuple[str, str]) -> None:
    net = _halut_net(threshold_format=formats[0], lut_format=formats[1])
    X = torch.from_numpy(_data(16, seed=3)[0])
    with torch.no_grad():
        ref = net(X).numpy()
        inner = {n: m for n, m in net.named_modules() if isinstance(m, HALUT_MODULES)}
        seen: dict[str, np.ndarray] = {}
        hooks = [m.register_forward_hook(
            lambda mod, a, o, n=n: seen.__setitem__(n, o.numpy().copy()))
            for n, m in inner.items()]
        net(X)
        for h in hooks:
            h.remove()
    twins = _twins(net)
    net.train()
    net.get_submodule("bn").eval()  # the same BatchNorm statistics as the reference pass
    got: dict[str, np.ndarray] = {}
    hooks = [t.register_forward_hook(
        lambda mod, a, o, n=n: got.__setitem__(n, o.detach().numpy().copy()))
        for n, t in zip(inner, twins, strict=True)]
    out = net(X)  # with gradients: the training forward
    assert out.requires_grad
    for n in inner:  # every layer's value equals golden's on every element
        assert np.array_equal(got[n].view(np.uint32), seen[n].view(np.uint32)), n
    # the program each unit quantizes to is the one the Halut module holds
    for t in twins:
        mod = t.module
        assert isinstance(mod, (HalutLinear, HalutConv2d))
        progs = [mod.program] if isinstance(mod, HalutLinear) else mod.programs
        for u, p in zip(t.units, progs, strict=True):
            assert isinstance(u, HalutUnit)
            q = u.program()
            assert np.array_equal(q.lut, p.lut) and np.array_equal(q.bias, p.bias)
            assert np.array_equal(q.thresholds.view(np.uint8), p.thresholds.view(np.uint8))
    net.eval()
    with torch.no_grad():
        bn_eval = net(X).numpy()
    assert np.array_equal(bn_eval.view(np.uint32), ref.view(np.uint32))


def test_gradients_reach_luts_thresholds_inputs_and_float_layers() -> None:
    net = _halut_net()
    twins = _twins(net)
    net.train()
    X, y = _data(32)
    x = torch.from_numpy(X).requires_grad_(True)
    for t in twins:
        t.set_temperature(1.0)
    loss = nn.functional.cross_entropy(net(x), torch.from_numpy(y))
    loss.backward()
    named = dict(net.named_parameters())
    for name in ("bn.weight", "bn.bias", "head.weight", "head.bias"):
        g = named[name].grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name
    for t in twins:
        for u in t.units:
            assert isinstance(u, HalutUnit)
            for p in (u.lut, u.bias, u.thresholds):
                assert p.grad is not None and torch.isfinite(p.grad).all(), type(t.module)
                assert p.grad.abs().sum() > 0, type(t.module)
    assert x.grad is not None and x.grad.abs().sum() > 0  # through the first layer's encoder


def test_conv1d_twin_matches_golden() -> None:
    torch.manual_seed(1)
    conv = nn.Conv1d(4, 6, 3, padding="same", padding_mode="circular", groups=2)
    xs = [torch.randn(8, 4, 10) for _ in range(2)]
    net = halutize(nn.Sequential(conv).eval(), xs, NetConfig(C=2, K=4, fold_bn=False))
    assert isinstance(net.get_submodule("0"), HalutConv1d)
    with torch.no_grad():
        ref = net(xs[0]).numpy()
    _twins(net)
    net.train()
    got = net(xs[0]).detach().numpy()
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_retraining_lowers_the_loss_and_exports_what_it_trained() -> None:
    net = _halut_net()
    X, y = _data()
    hist: list[dict] = []
    out = retrain(net, (X, y), RetrainConfig(epochs=3, batch_size=32, lr=0.02), val=(X, y),
                  history=hist, progress=False)
    assert out is net and [h["epoch"] for h in hist] == [0, 1, 2]
    assert hist[-1]["loss"] < hist[0]["loss"]
    mods = [m for m in net.modules() if isinstance(m, HALUT_MODULES)]
    assert len(mods) == 3 and not any(isinstance(m, TrainableHalut) for m in net.modules())
    assert all(m.model.stats.get("retrained") for m in mods if isinstance(m, HalutLinear))
    # the last epoch's validation accuracy is the exported network's on golden
    ev = evaluate_network(net, X, y, backends=("golden",), batch_size=96)
    assert ev["totals"]["accuracy"]["golden"] == pytest.approx(hist[-1]["val_accuracy"])


def test_layerwise_trains_one_layer_per_stage_the_rest_float_or_frozen() -> None:
    net = _halut_net()
    before = {n: m.program.lut.copy() for n, m in net.named_modules()
              if isinstance(m, HalutLinear)}
    X, y = _data(64)
    hist: list[dict] = []
    retrain(net, (X, y), RetrainConfig(epochs=1, batch_size=32, schedule="layerwise"),
            history=hist, progress=False)
    assert [h["layer"] for h in hist] == ["conv", "dw", "tok"]
    after = dict(net.named_modules())["tok"]
    assert isinstance(after, HalutLinear) and not np.array_equal(after.program.lut,
                                                                  before["tok"])


def test_resume_after_an_interruption_ends_bit_identical(tmp_path: Path) -> None:
    X, y = _data()
    cfg = RetrainConfig(epochs=3, batch_size=32)
    whole = retrain(_halut_net(), (X, y), cfg, checkpoint_dir=tmp_path / "a", progress=False)

    class Stop(Exception):
        pass

    def stop_after_first(rec: dict) -> None:
        if rec["epoch"] == 0:
            raise Stop

    net = _halut_net()
    with pytest.raises(Stop):
        retrain(net, (X, y), cfg, checkpoint_dir=tmp_path / "b", on_epoch=stop_after_first,
                progress=False)
    assert (tmp_path / "b" / CHECKPOINT_NAME).exists()
    assert not any(isinstance(m, TrainableHalut) for m in net.modules())  # swapped back
    hist: list[dict] = []
    resumed = retrain(_halut_net(), (X, y), cfg, checkpoint_dir=tmp_path / "b", history=hist,
                      progress=False)
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    sa, sb = whole.state_dict(), resumed.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:  # every buffer (the extra states differ in the learning's wall time only)
        if not k.endswith("_extra_state"):
            assert torch.equal(sa[k], sb[k]), k
    with pytest.raises(HalutError, match="another retraining configuration"):
        retrain(_halut_net(), (X, y), RetrainConfig(epochs=4), checkpoint_dir=tmp_path / "b",
                progress=False)
    (tmp_path / "b" / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(HalutError, match="not a retraining checkpoint"):
        retrain(_halut_net(), (X, y), cfg, checkpoint_dir=tmp_path / "b", progress=False)


def test_the_retrained_bundle_runs_bit_exactly_on_gpu_and_rtl(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = _Net().eval()
    src = model_checksum(source)
    X, y = _data()
    net = halutize(copy.deepcopy(source), [torch.from_numpy(X)],
                   NetConfig(C=4, K=4, fold_bn=False), filter_fn=lambda m, n: n != "head")
    retrain(net, (X, y), RetrainConfig(epochs=1, batch_size=32), progress=False)
    floats = float_state(net)
    assert "bn.running_mean" in floats and "head.weight" in floats
    assert not any(k.startswith(("conv.", "dw.", "tok.")) for k in floats)
    path = tmp_path / "net.halutnet"
    save_network(path, net, source=src, config=NetConfig(C=4, K=4, fold_bn=False),
                 floats=floats)
    applied = apply_network(copy.deepcopy(source), path)
    with torch.no_grad():
        a = net.eval()(torch.from_numpy(X[:8])).numpy()
        b = applied.eval()(torch.from_numpy(X[:8])).numpy()
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    ev = evaluate_network(applied, X[:4], y[:4], backends=("golden", "gpu", "rtl"),
                          batch_size=4)
    for r in ev["layers"]:
        assert r["gpu_bit_exact"] and r["rtl_bit_exact"], r["layer"]


def test_bad_configurations_and_inputs_are_one_line() -> None:
    with pytest.raises(HalutError, match="schedule must be one of"):
        RetrainConfig(schedule="sometimes")  # type: ignore[arg-type]
    with pytest.raises(HalutError, match="epochs must be an integer >= 1"):
        RetrainConfig(epochs=0)
    with pytest.raises(HalutError, match="lr must be a finite number > 0"):
        RetrainConfig(lr=float("nan"))
    X, y = _data(8)
    with pytest.raises(HalutError, match="no Halut layers"):
        retrain(_Net(), (X, y), progress=False)
    with pytest.raises(HalutError, match="training labels"):
        retrain(_halut_net(), (X, y[:4]), progress=False)
    X[0, 0, 0, 0] = np.nan
    with pytest.raises(HalutError, match="NaN"):
        retrain(_halut_net(), (X, y), progress=False)
    net = _halut_net()
    conv = net.conv
    assert isinstance(conv, HalutConv2d)
    conv.load_learned(conv.programs)  # a program only: no float model to train
    with pytest.raises(HalutError, match="layer 'conv': retraining needs the layers' float"):
        retrain(net, _data(8), progress=False)
