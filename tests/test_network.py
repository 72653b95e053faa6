"""Learning a whole network (emulator/network.py): halutize with both schedules, BatchNorm
folded first, the bundle round trip onto a fresh copy of the source model, and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from emulator.modules import HALUT_MODULES, HalutConv2d, HalutLinear
from emulator.network import (
    NetConfig,
    apply_network,
    evaluate_network,
    halutize,
    model_checksum,
    save_network,
)
from learning.errors import HalutError


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding="same", groups=4)
        self.fc = nn.Linear(8 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.relu(self.dw(x))
        return self.fc(x.flatten(1))


def _fresh() -> nn.Module:
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():  # statistics that make folding matter
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(32, 2, 6, 6, generator=g) for _ in range(4)]


CFG = NetConfig(C=9, K=16, rows=4000, overrides={"fc": 96})


@pytest.mark.parametrize("schedule", ["parallel", "sequential"])
def test_halutize_swaps_every_layer_and_folds_batchnorm(schedule: str) -> None:
    report: dict = {}
    cfg = NetConfig(**{**CFG.to_dict(), "schedule": schedule})
    net = halutize(_fresh(), _batches(), cfg, backend="golden", report=report)
    kinds = {n: type(m) for n, m in net.named_modules() if isinstance(m, HALUT_MODULES)}
    assert kinds == {"conv": HalutConv2d, "dw": HalutConv2d, "fc": HalutLinear}
    assert report["_fold"]["folded"] and not any(isinstance(m, nn.BatchNorm2d)
                                                 for m in net.modules())
    assert report["fc"]["C"] == 96 and report["dw"]["groups"] == 4
    x = _batches()[0]
    with torch.no_grad():
        y = net(x)
        y_float = _fresh()(x)
    assert y.shape == y_float.shape and torch.isfinite(y).all()
    err = float(((y - y_float) ** 2).mean() / y_float.var())
    assert err < 0.5  # a real approximation, not noise


def test_the_bundle_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    src = model_checksum(_fresh())
    net = halutize(_fresh(), _batches(), CFG, backend="golden")
    path = save_network(tmp_path / "net.halutnet", net, source=src, config=CFG)
    again = apply_network(_fresh(), path, backend="golden")
    x = _batches()[1]
    with torch.no_grad():
        np.testing.assert_array_equal(net(x).numpy(), again(x).numpy())
    other = _fresh()
    with torch.no_grad():
        other.fc.weight.add_(1.0)
    with pytest.raises(HalutError, match="learned from another model"):
        apply_network(other, path)


def test_bad_configs_and_inputs_are_one_line() -> None:
    with pytest.raises(HalutError, match="schedule must be one of"):
        NetConfig(schedule="zigzag")  # type: ignore[arg-type]
    with pytest.raises(HalutError, match="C must be a positive int"):
        NetConfig(C=0)
    with pytest.raises(HalutError, match="not chosen: nope"):
        halutize(_fresh(), _batches(), NetConfig(C=4, K=4, overrides={"nope": 2}))
    with pytest.raises(HalutError, match="no layer was chosen"):
        halutize(_fresh(), _batches(), CFG, filter_fn=lambda m, n: False)
    with pytest.raises(HalutError, match="one-shot iterator"):
        halutize(_fresh(), iter(_batches()), NetConfig(C=9, K=16, schedule="sequential",
                                                       overrides={"fc": 96}))


def test_evaluate_gives_accuracy_per_backend_and_a_per_layer_trace() -> None:
    net = halutize(_fresh(), _batches(), CFG, backend="golden")
    X = _batches()[2][:6].numpy()
    y = np.arange(6) % 5
    ev = evaluate_network(net, X, y, backends=("float", "golden", "gpu", "rtl"), rtl_images=3,
                          batch_size=4)
    t = ev["totals"]
    assert set(t["accuracy"]) == {"float", "golden", "gpu", "rtl"}
    assert t["images"]["rtl"] == 3 and t["images"]["golden"] == 6
    rows = {r["layer"]: r for r in ev["layers"]}
    assert list(rows) == ["conv", "dw", "fc"]
    assert rows["dw"]["groups"] == 4 and rows["fc"]["C"] == 96
    assert rows["conv"]["input_shape"] == [2, 6, 6] and rows["fc"]["output_shape"] == [5]
    for r in rows.values():  # every element of every image run, on one chip
        assert r["gpu_bit_exact"] and r["rtl_bit_exact"], r["layer"]
        assert 0.0 <= r["nmse"] < 1.0
        assert r["cycles_per_image"]["stream"] > 0
    total = sum(r["cycles_per_image"]["total"] for r in rows.values())
    assert t["cycles_per_image"] == pytest.approx(total)
    assert t["seconds_per_image"] == pytest.approx(total / (t["clock_mhz"] * 1e6))
    assert any("relu" in h for h in t["host"]) and any("flatten" in h for h in t["host"])
    with pytest.raises(HalutError, match="backend must be among"):
        evaluate_network(net, X, y, backends=("tpu",))


def test_jobs_shard_the_rtl_and_gpu_passes_over_processes() -> None:
    net = halutize(_fresh(), _batches(), CFG, backend="golden")
    X = _batches()[2][:7].numpy()
    y = np.arange(7) % 5
    one = evaluate_network(net, X, y, backends=("golden", "rtl"), batch_size=7)
    threads = torch.get_num_threads()
    two = evaluate_network(net, X, y, backends=("golden", "gpu", "rtl"), batch_size=7, jobs=2,
                           gpu_images=3)
    assert torch.get_num_threads() == threads  # the rtl shard run here gave torch back
    assert two["totals"]["accuracy"]["rtl"] == one["totals"]["accuracy"]["rtl"]
    assert two["totals"]["images"] == {"golden": 7, "gpu": 3, "rtl": 7}
    for a, b in zip(one["layers"], two["layers"], strict=True):
        assert b["rtl_bit_exact"] and b["gpu_bit_exact"], b["layer"]
        assert b["input_shape"] == a["input_shape"]
        # two chips side by side: the same rows streamed, each shard loads its configuration
        assert b["cycles_per_image"]["stream"] == pytest.approx(a["cycles_per_image"]["stream"])
        assert b["cycles_per_image"]["writes"] == pytest.approx(
            2 * a["cycles_per_image"]["writes"])
    with pytest.raises(HalutError, match="jobs must be an integer >= 1"):
        evaluate_network(net, X, y, backends=("rtl",), jobs=0)


ZOO_SMALL: dict[str, dict] = {
    "lenet": {"in_channels": 1, "image_size": 8},
    "resnet8": {"in_channels": 3, "image_size": 8, "width": 8},
    "resnet20": {"in_channels": 3, "image_size": 8, "width": 8},
    "resnet9": {"in_channels": 3, "image_size": 8, "width": 8},
    "dscnn": {"in_channels": 1, "image_size": (12, 6), "width": 16, "blocks": 2},
    "vit": {"in_channels": 3, "image_size": 8, "patch_size": 4, "dim": 16, "depth": 1,
            "heads": 2},
}


@pytest.mark.parametrize("name", list(ZOO_SMALL))
def test_every_zoo_model_is_bit_exact_on_gpu_and_rtl_on_every_layer(name: str) -> None:
    """Each zoo model, small, every replaceable layer swapped (attention's out_proj left:
    nn.MultiheadAttention calls it through its functional path): gpu and rtl outputs equal
    golden's on every element of every layer, on one chip."""
    from emulator.zoo import load_model

    kw = ZOO_SMALL[name]
    torch.manual_seed(0)
    model = load_model(f"zoo:{name}", **kw)
    size = kw["image_size"]
    hw = (size, size) if isinstance(size, int) else size
    X = torch.randn(32, kw["in_channels"], *hw)
    net = halutize(model, [X], NetConfig(C=4, K=16, rows=500),
                   filter_fn=lambda m, fqn: not fqn.endswith("out_proj"))
    ev = evaluate_network(net, X.numpy(), np.zeros(32, np.int64),
                          backends=("golden", "gpu", "rtl"), rtl_images=2, gpu_images=1)
    assert ev["layers"]
    for row in ev["layers"]:
        assert row["rtl_bit_exact"] and row["gpu_bit_exact"], (name, row["layer"])
