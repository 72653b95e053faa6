"""examples/cifar10_resnet9.py, halutmatmul's ResNet-9 / CIFAR-10 recipe, end to end on its
synthetic stand-in (written in CIFAR-10's python format and read back with load_cifar10)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

from emulator.datasets import load_cifar10
from emulator.zoo import load_model, load_state
from learning.bundle import load_bundle

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "cifar10_resnet9.py"


@pytest.fixture(scope="module")
def recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cifar10_resnet9", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cifar10_resnet9"] = module
    spec.loader.exec_module(module)
    return module


def test_the_synthetic_stand_in_is_read_by_the_cifar10_loader(recipe: ModuleType,
                                                               tmp_path: Path) -> None:
    recipe.write_synthetic_cifar(tmp_path, 23, 7, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
        "data_batch_5", "test_batch"]
    X, y = load_cifar10(tmp_path, "train")
    Xt, _ = load_cifar10(tmp_path, "test")
    assert X.shape == (23, 3, 32, 32) and Xt.shape == (7, 3, 32, 32)
    assert y.dtype == np.int64 and y.min() >= 0 and y.max() < 10


def test_the_synthetic_stand_in_is_learnable(recipe: ModuleType, tmp_path: Path) -> None:
    """Class-dependent patterns: nearest class mean on 8x8 averages beats chance (0.1)."""
    recipe.write_synthetic_cifar(tmp_path, 500, 200, seed=2)
    X, y = load_cifar10(tmp_path, "train")
    Xt, yt = load_cifar10(tmp_path, "test")
    X, Xt = (recipe.downscale(a, 8).reshape(len(a), -1) for a in (X, Xt))
    means = np.stack([X[y == c].mean(0) for c in range(10)])
    pred = ((Xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == yt).mean() > 0.5


def test_codebooks_follow_halutmatmuls_rule_or_a_capped_number(recipe: ModuleType) -> None:
    model = load_model("zoo:resnet9")  # widths 64, 128, 128, 128, 256, 512, 512, 512
    channel = recipe.codebooks(model, "channel", 4)
    assert channel == {"prep.conv": 3, "layer1.conv": 64, "res1.conv1": 128,
                       "res1.conv2": 128, "layer2.conv": 128, "layer3.conv": 256,
                       "res3.conv1": 512, "res3.conv2": 512, "fc": 16}
    capped = recipe.codebooks(model, "32", 4)
    assert capped["prep.conv"] == 6 and set(capped.values()) == {6, 32}
    plan = recipe.codebooks(model, "plan", 4)
    assert plan["layer1.conv"] == 128 and plan["fc"] == 128


def test_the_halutmatmul_variant_keeps_the_last_stage_at_4w(recipe: ModuleType) -> None:
    args = recipe.build_parser().parse_args(["--variant", "halutmatmul", "--width", "8"])
    model = load_model("zoo:resnet9", **recipe.model_kwargs(args))
    assert isinstance(model.fc, nn.Linear) and model.fc.in_features == 32
    assert model.scale == 1.0


def test_the_script_answers_help(recipe: ModuleType, capsys: pytest.CaptureFixture[str]
                                 ) -> None:
    with pytest.raises(SystemExit) as exc:
        recipe.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--data", "--synthetic", "--float-epochs", "--retrain-epochs", "--schedule",
                 "--C", "--K", "--rows", "--save-float", "--json"):
        assert flag in out


def test_the_recipe_runs_end_to_end_on_the_synthetic_stand_in(
        recipe: ModuleType, tmp_path: Path) -> None:
    out, js, wts = tmp_path / "r9.halutnet", tmp_path / "r9.json", tmp_path / "float.pt"
    result = recipe.main([
        "--synthetic", "256", "--width", "4", "--image-size", "8", "--float-epochs", "3",
        "--batch-size", "32", "--device", "cpu", "--C", "4", "--rows", "2000",
        "--calib-images", "128", "--retrain-epochs", "1", "--retrain-batch-size", "64",
        "--val-images", "16", "--threads", "1", "-o", str(out), "--json", str(js),
        "--save-float", str(wts), "--no-progress"])
    figures = json.loads(js.read_text())
    assert figures["accuracy"] == result["accuracy"]
    for key in ("float", "before", "after"):
        assert 0.0 <= figures["accuracy"][key] <= 1.0
    assert figures["images"] == {"train": 256, "test": 64, "calibration": 128, "retrain": 256,
                                 "val": 16}
    assert {"float_train", "halutize", "retrain", "total"} <= set(figures["seconds"])
    assert len(figures["float_history"]) == 3 and len(figures["retrain_history"]) == 1
    assert "val_accuracy" in figures["retrain_history"][0]

    model = load_model("zoo:resnet9", image_size=8, width=4)
    load_state(model, wts)  # the float weights saved are the model's
    weight_layers = [n for n, m in model.named_modules()
                     if isinstance(m, (nn.Conv2d, nn.Linear))]
    bundle = load_bundle(out)
    assert sorted(layer.name for layer in bundle.layers) == sorted(weight_layers)
    assert len(bundle.layers) == 9
    from emulator.network import model_checksum

    assert bundle.source == model_checksum(model)
    prep = bundle.layer("prep.conv").units[0].program
    assert prep is not None and prep.C == 4  # min(C, D // 4) of D = 27
    assert torch.isfinite(torch.tensor(figures["layers"]["fc"]["nmse_train"]))


@pytest.mark.parametrize(("argv", "needle"), [
    (["--data", "no/such/cifar"], "CIFAR-10 folder no/such/cifar: no such folder"),
    (["--synthetic", "16", "--image-size", "4"], "--image-size must be between 8 and 32"),
])
def test_bad_input_is_one_line_and_exit_status_2(recipe: ModuleType, argv: list[str],
                                                 needle: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        recipe.main([*argv, "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_an_unwritable_output_fails_before_any_training(
        recipe: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        recipe.main(["--synthetic", "16", "--json", str(tmp_path / "file" / "r.json"),
                     "--no-progress"])
    assert "is not a folder" in capsys.readouterr().err
