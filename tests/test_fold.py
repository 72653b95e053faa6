"""BatchNorm folding: exact in float on every zoo model, and the report of what stayed."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from emulator.fold import FoldedBN, FoldReport, fold_batchnorm
from emulator.zoo import ZOO
from learning.errors import HalutError

#: (zoo name, small kwargs, input shape, BatchNorms in the model)
SMALL: tuple[tuple[str, dict, tuple[int, ...], int], ...] = (
    ("lenet", {"image_size": 8}, (3, 1, 8, 8), 0),
    ("resnet8", {"in_channels": 1, "width": 8}, (3, 1, 8, 8), 9),
    ("resnet20", {"width": 4}, (3, 3, 16, 16), 21),
    ("dscnn", {"width": 16, "blocks": 2}, (3, 1, 49, 10), 5),
    ("vit", {"image_size": 16, "dim": 32, "heads": 2}, (3, 3, 16, 16), 0),
)
#: float32 rounding of a fold computed in float64 (outputs of magnitude ~1)
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so a fold that forgets any
    of them shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def _same_params(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(("name", "kwargs", "shape", "n_bn"), SMALL,
                         ids=[s[0] for s in SMALL])
def test_folding_every_zoo_model_is_exact_in_float(
        name: str, kwargs: dict, shape: tuple[int, ...], n_bn: int) -> None:
    torch.manual_seed(0)
    model = _randomise_bn(ZOO[name](**kwargs)).eval()
    before = copy.deepcopy(model)
    x = torch.randn(*shape)
    folded, report = fold_batchnorm(model)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), **TOL)
    assert len(report.folded) == n_bn and report.kept == ()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert _same_params(model, before) and not model.training  # the original is untouched
    assert not folded.training


def test_the_report_names_each_bn_and_its_layer() -> None:
    _, report = fold_batchnorm(ZOO["resnet8"](width=4))
    assert report.folded[0] == FoldedBN("bn1", "conv1")
    assert FoldedBN("layer2.0.shortcut.1", "layer2.0.shortcut.0") in report.folded
    assert report.to_dict()["folded"][1] == {"bn": "layer1.0.bn1", "into": "layer1.0.conv1"}
    assert str(report).splitlines()[0] == "9 BatchNorm folded, 0 kept"


def test_folded_models_keep_qualified_names_for_layer_replacement() -> None:
    folded, _ = fold_batchnorm(ZOO["dscnn"](width=8, blocks=1))
    names = {n for n, m in folded.named_modules() if isinstance(m, nn.Conv2d)}
    assert names == {"conv1", "blocks.0.dw", "blocks.0.pw"}
    assert folded.get_submodule("blocks.0.dw").bias is not None  # a bias-free conv got one


class _Mixed(nn.Module):
    """Every case the fold must tell apart."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(4, 6, 3, padding=1, groups=2)  # grouped, with bias
        self.bn_a = nn.BatchNorm2d(6)  # folds
        self.relu = nn.ReLU()
        self.bn_after_relu = nn.BatchNorm2d(6)  # input is a ReLU: kept
        self.conv_b = nn.Conv2d(6, 6, 1, bias=False)
        self.bn_b = nn.BatchNorm2d(6)  # conv_b's output also feeds the add: kept
        self.conv_c = nn.Conv1d(6, 5, 3, padding=1, padding_mode="reflect", bias=False)
        self.bn_c = nn.BatchNorm1d(5)  # Conv1d with reflect padding: folds
        self.bn_stats = nn.BatchNorm1d(5, track_running_stats=False)  # kept
        self.fc = nn.Linear(5, 3)
        self.bn_fc = nn.BatchNorm1d(3, affine=False)  # Linear: folds only with shapes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.bn_after_relu(self.relu(self.bn_a(self.conv_a(x))))
        b = self.conv_b(a)
        a = self.bn_b(b) + b
        c = self.bn_c(self.conv_c(a.flatten(2)))
        c = self.bn_stats(c.relu()).mean(dim=2)
        return self.bn_fc(self.fc(c))


def _mixed() -> nn.Module:
    torch.manual_seed(1)
    return _randomise_bn(_Mixed(), seed=2).eval()


def test_foldable_and_unfoldable_batchnorms_are_told_apart() -> None:
    model = _mixed()
    x = torch.randn(4, 4, 3, 3)
    folded, report = fold_batchnorm(model)
    assert [(f.bn, f.into) for f in report.folded] == [("bn_a", "conv_a"), ("bn_c", "conv_c")]
    kept = {k.bn: k.reason for k in report.kept}
    assert set(kept) == {"bn_after_relu", "bn_b", "bn_stats", "bn_fc"}
    assert kept["bn_after_relu"] == "its input is relu (ReLU), not a conv or linear output"
    assert "also used by add()" in kept["bn_b"]
    assert "track_running_stats=False" in kept["bn_stats"]
    assert "pass example_input" in kept["bn_fc"]
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), **TOL)


def test_a_linear_then_batchnorm1d_folds_when_the_example_shows_2d_outputs() -> None:
    model = _mixed()
    x = torch.randn(4, 4, 3, 3)
    folded, report = fold_batchnorm(model, example_input=x)
    assert ("bn_fc", "fc") in [(f.bn, f.into) for f in report.folded]
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), **TOL)


def test_a_linear_on_tokens_keeps_its_batchnorm1d() -> None:
    # BatchNorm1d over (N, T, F) normalises dim 1 (tokens), not the Linear's features
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    _, report = fold_batchnorm(model, example_input=torch.randn(2, 4, 4))
    assert report.folded == () and "has 3 dims" in report.kept[0].reason


def test_a_depthwise_conv_without_bias_folds_exactly() -> None:
    model = _randomise_bn(nn.Sequential(
        nn.Conv2d(8, 8, 3, padding="same", groups=8, bias=False), nn.BatchNorm2d(8),
        nn.Conv2d(8, 16, 3, stride=2, dilation=2, groups=4), nn.BatchNorm2d(16))).eval()
    x = torch.randn(2, 8, 9, 9)
    folded, report = fold_batchnorm(model)
    assert [(f.bn, f.into) for f in report.folded] == [("1", "0"), ("3", "2")]
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), **TOL)


def test_a_shared_layer_or_batchnorm_is_kept() -> None:
    conv, bn = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.bn2 = conv, bn, nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(x)) + self.bn2(self.conv(x))

    _, report = fold_batchnorm(Twice())
    reasons = {k.bn: k.reason for k in report.kept}
    assert reasons == {"bn": "conv is called 2 times (folding would change every call)",
                       "bn2": "conv is called 2 times (folding would change every call)"}


def test_a_training_mode_model_folds_its_running_statistics() -> None:
    model = _randomise_bn(ZOO["resnet8"](in_channels=1, width=4))
    model.train()
    folded, _ = fold_batchnorm(model)
    assert model.training and not folded.training
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model.eval()(x), **TOL)


def test_an_untraceable_model_is_one_clear_error() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:
                return self.bn(self.conv(x))
            return x

    with pytest.raises(HalutError) as exc:
        fold_batchnorm(Branchy())
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("cannot fold BatchNorm in Branchy: torch.fx cannot trace it (")
    assert "control flow" in msg


def test_bad_arguments_are_one_line() -> None:
    with pytest.raises(HalutError, match="needs an nn.Module, got str"):
        fold_batchnorm("resnet8")  # type: ignore[arg-type]
    with pytest.raises(HalutError) as exc:
        fold_batchnorm(ZOO["resnet8"](width=4), example_input=torch.randn(2, 5, 8, 8))
    assert "the example input does not run through it (RuntimeError" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_an_empty_report_prints() -> None:
    assert str(FoldReport((), ())) == "0 BatchNorm folded, 0 kept"
