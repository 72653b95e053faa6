"""The model zoo, load_model's SPECs and load_state's one-line errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from torch import fx, nn

from emulator.zoo import ZOO, ViT, load_model, load_state
from learning.errors import HalutError

#: (zoo name, small kwargs, input shape) for quick forward passes
SMALL: tuple[tuple[str, dict, tuple[int, ...]], ...] = (
    ("lenet", {"in_channels": 1, "image_size": 8, "num_classes": 10}, (2, 1, 8, 8)),
    ("resnet8", {"in_channels": 1, "image_size": 8, "num_classes": 10, "width": 8},
     (2, 1, 8, 8)),
    ("resnet20", {"in_channels": 3, "num_classes": 7, "width": 4}, (2, 3, 16, 16)),
    ("resnet9", {"in_channels": 3, "image_size": 8, "num_classes": 10, "width": 4},
     (2, 3, 8, 8)),
    ("dscnn", {"width": 16, "blocks": 2}, (2, 1, 49, 10)),
    ("vit", {"in_channels": 3, "image_size": 16, "dim": 32, "heads": 2}, (2, 3, 16, 16)),
)


def _one_line(exc: pytest.ExceptionInfo[HalutError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def test_the_zoo_lists_the_networks_the_issue_names() -> None:
    assert set(ZOO) == {"lenet", "resnet8", "resnet20", "resnet9", "dscnn", "vit"}


@pytest.mark.parametrize(("name", "kwargs", "shape"), SMALL, ids=[s[0] for s in SMALL])
def test_every_zoo_model_runs_traces_and_has_the_requested_head(
        name: str, kwargs: dict, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = load_model(f"zoo:{name}", **kwargs).eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        out = model(x)
        traced = fx.symbolic_trace(model)(x)
    assert out.shape == (shape[0], kwargs.get("num_classes", 12 if name == "dscnn" else 10))
    torch.testing.assert_close(traced, out)


def test_resnet_depths_count_their_weight_layers() -> None:
    def weight_layers(m: nn.Module) -> int:  # 3x3 convs + the head (1x1 shortcuts excluded)
        return sum(1 for x in m.modules() if isinstance(x, nn.Linear)
                   or (isinstance(x, nn.Conv2d) and x.kernel_size == (3, 3)))

    assert weight_layers(ZOO["resnet8"]()) == 8
    assert weight_layers(ZOO["resnet20"]()) == 20
    r8 = ZOO["resnet8"](width=8)
    shortcuts = [m for n, m in r8.named_modules() if n.endswith("shortcut.0")]
    assert [s.kernel_size for s in shortcuts] == [(1, 1), (1, 1)]
    assert all(s.stride == (2, 2) for s in shortcuts)


def test_resnet9_is_pages_dawnbench_network() -> None:
    m = ZOO["resnet9"]()
    convs = [(n, x) for n, x in m.named_modules() if isinstance(x, nn.Conv2d)]
    assert [n for n, _ in convs] == ["prep.conv", "layer1.conv", "res1.conv1", "res1.conv2",
                                     "layer2.conv", "layer3.conv", "res3.conv1", "res3.conv2"]
    assert [x.out_channels for _, x in convs] == [64, 128, 128, 128, 256, 512, 512, 512]
    assert all(x.kernel_size == (3, 3) and x.bias is None for _, x in convs)
    assert isinstance(m.fc, nn.Linear) and m.fc.in_features == 512 and m.fc.bias is None
    assert m.scale == 0.125
    assert sum(isinstance(x, nn.MaxPool2d) for x in m.modules()) == 3
    assert sum(p.numel() for p in m.parameters()) == 6_573_120  # Page's 6.5M
    # halutmatmul's variant: the last stage stays at 4w, no logit scale
    hm = ZOO["resnet9"](widths=(64, 128, 256, 256), scale=1.0)
    assert [x.out_channels for x in hm.modules() if isinstance(x, nn.Conv2d)] == [
        64, 128, 128, 128, 256, 256, 256, 256]
    assert isinstance(hm.fc, nn.Linear) and hm.fc.in_features == 256
    # the last pool adapts: 32x32 and a non-square 8x12 input both give (N, classes)
    small = ZOO["resnet9"](width=2, image_size=(8, 12), num_classes=4, in_channels=1).eval()
    with torch.no_grad():
        assert small(torch.randn(3, 1, 8, 12)).shape == (3, 4)
        assert small(torch.randn(1, 1, 32, 32)).shape == (1, 4)


def test_resnet9_halutizes_every_conv_and_the_linear() -> None:
    from emulator.modules import HalutConv2d, HalutLinear
    from emulator.network import NetConfig, halutize

    torch.manual_seed(0)
    m = ZOO["resnet9"](image_size=8, width=4)
    x = torch.randn(16, 3, 8, 8)
    report: dict = {}
    net = halutize(m, [x], NetConfig(C=4, K=16, rows=300), report=report)
    assert len(report["_fold"]["folded"]) == 8 and not report["_fold"]["kept"]
    assert sum(isinstance(x, HalutConv2d) for x in net.modules()) == 8
    assert sum(isinstance(x, HalutLinear) for x in net.modules()) == 1
    assert not any(isinstance(x, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))
                   for x in net.modules()
                   if not isinstance(x, (HalutConv2d, HalutLinear)))
    with torch.no_grad():
        assert net(x).shape == (16, 10)


def test_dscnn_uses_depthwise_convs_with_batchnorm() -> None:
    m = ZOO["dscnn"](width=8, blocks=3)
    dw = [x for x in m.modules() if isinstance(x, nn.Conv2d) and x.groups > 1]
    assert len(dw) == 3 and all(x.groups == x.in_channels == 8 for x in dw)
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == 1 + 2 * 3


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("patch_embed", ["conv", "linear"])
def test_vit_variants_run_with_batch_first_encoder_layers(pool: str, patch_embed: str) -> None:
    m = ViT(in_channels=1, image_size=(8, 12), patch_size=4, dim=16, heads=2, depth=1,
            pool=pool, patch_embed=patch_embed, num_classes=3).eval()
    layers = [x for x in m.modules() if isinstance(x, nn.TransformerEncoderLayer)]
    assert len(layers) == 1 and layers[0].self_attn.batch_first
    with torch.no_grad():
        assert m(torch.randn(2, 1, 8, 12)).shape == (2, 3)


@pytest.mark.parametrize(("spec", "kwargs", "needle"), [
    ("zoo:vit", {"image_size": 30, "patch_size": 4}, "not a multiple of patch_size 4"),
    ("zoo:vit", {"dim": 30, "heads": 4}, "dim 30 is not a multiple of heads 4"),
    ("zoo:vit", {"pool": "max"}, "pool must be 'cls' or 'mean'"),
    ("zoo:lenet", {"image_size": 3}, "at least 4x4"),
    ("zoo:resnet8", {"num_classes": 0}, "num_classes must be a positive int"),
    ("zoo:dscnn", {"width": 2.5}, "width must be a positive int"),
    ("zoo:resnet20", {"image_size": (8,)}, "image_size must be a positive int or an (h, w)"),
    ("zoo:resnet9", {"image_size": (8, 6)}, "image_size must be at least 8x8"),
    ("zoo:resnet9", {"width": 0}, "width must be a positive int"),
    ("zoo:resnet9", {"scale": 0.0}, "scale must be a finite number > 0"),
    ("zoo:resnet9", {"widths": (8, 16, 32)}, "widths must be 4 positive ints"),
])
def test_bad_zoo_arguments_are_one_line(spec: str, kwargs: dict, needle: str) -> None:
    with pytest.raises(HalutError) as exc:
        load_model(spec, **kwargs)
    msg = _one_line(exc)
    assert msg.startswith(f"model {spec}: ") and needle in msg


def test_an_unknown_keyword_is_a_factory_error_naming_it() -> None:
    with pytest.raises(HalutError) as exc:
        load_model("zoo:resnet8", colour="red")
    assert "factory raised TypeError" in _one_line(exc) and "colour" in str(exc.value)


# ---- SPECs -----------------------------------------------------------------------------------

def test_an_unknown_zoo_name_lists_the_known_ones() -> None:
    with pytest.raises(HalutError) as exc:
        load_model("zoo:resnet50")
    msg = _one_line(exc)
    assert "'resnet50'" in msg and "dscnn, lenet, resnet20, resnet8, resnet9, vit" in msg


def test_a_package_module_factory_spec_loads() -> None:
    m = load_model("emulator.zoo:resnet8", width=4)
    assert isinstance(m, nn.Module) and m.fc.in_features == 16
    assert isinstance(load_model("torch.nn:Identity"), nn.Identity)  # a class is a factory


def test_a_dotted_factory_attribute_resolves(tmp_path: Path) -> None:
    f = tmp_path / "nets.py"
    f.write_text("import torch.nn as nn\n"
                 "class Builders:\n"
                 "    @staticmethod\n"
                 "    def tiny(width=3):\n"
                 "        return nn.Linear(2, width)\n")
    m = load_model(f"{f}:Builders.tiny", width=5)
    assert isinstance(m, nn.Linear) and m.out_features == 5


def test_a_file_spec_loads_a_factory_from_a_python_file(tmp_path: Path) -> None:
    f = tmp_path / "my_model.py"
    f.write_text("from dataclasses import dataclass\n"
                 "import torch.nn as nn\n"
                 "@dataclass\n"
                 "class Cfg:\n"
                 "    width: int = 4\n"
                 "def build(width=4):\n"
                 "    return nn.Sequential(nn.Linear(3, Cfg(width).width), nn.ReLU())\n")
    m = load_model(f"{f}:build", width=6)
    assert isinstance(m, nn.Sequential) and m[0].out_features == 6


@pytest.mark.parametrize(("source", "needle"), [
    ("raise ImportError('needs the package foo_bar_missing')",
     "does not import (ImportError: needs the package foo_bar_missing)"),
    ("def broken(:\n    pass", "does not import (SyntaxError"),
    ("import sys\nsys.exit(3)", "does not import (SystemExit: 3)"),
    ("import foo_bar_not_installed_anywhere",
     "does not import (ModuleNotFoundError: No module named 'foo_bar_not_installed_anywhere')"),
])
def test_a_file_that_does_not_import_says_why_in_one_line(tmp_path: Path, source: str,
                                                          needle: str) -> None:
    f = tmp_path / "bad_model.py"
    f.write_text(source + "\n")
    with pytest.raises(HalutError) as exc:
        load_model(f"{f}:build")
    msg = _one_line(exc)
    assert str(f) in msg and needle in msg


@pytest.mark.parametrize(("spec", "needle"), [
    ("no_such_package_xyz.models:build",
     "module no_such_package_xyz.models does not import (ModuleNotFoundError"),
    ("emulator.zoo:resnet_9000", "emulator.zoo has no attribute 'resnet_9000'"),
    ("emulator.zoo:ZOO.nothing", "emulator.zoo:ZOO.nothing has no attribute 'nothing'"),
    ("resnet8", "must be zoo:NAME, package.module:factory or path/to/file.py:factory"),
    ("zoo:", "no zoo model ''"),
    ("emulator zoo:lenet", "is not a module name"),
    ("missing/dir/net.py:build", "no such file missing/dir/net.py"),
])
def test_bad_specs_are_one_line(spec: str, needle: str) -> None:
    with pytest.raises(HalutError) as exc:
        load_model(spec)
    msg = _one_line(exc)
    assert needle in msg, msg


def test_a_factory_that_raises_or_returns_no_module_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "factories.py"
    f.write_text("import numpy as np\n"
                 "def boom():\n"
                 "    raise RuntimeError('out of coffee\\nsecond line')\n"
                 "def array():\n"
                 "    return np.zeros(3)\n"
                 "CONSTANT = 3\n")
    with pytest.raises(HalutError) as exc:
        load_model(f"{f}:boom")
    assert _one_line(exc).endswith("the factory raised RuntimeError: out of coffee")
    with pytest.raises(HalutError) as exc:
        load_model(f"{f}:array")
    assert "returned a ndarray, not an nn.Module" in _one_line(exc)
    with pytest.raises(HalutError) as exc:
        load_model(f"{f}:CONSTANT")
    assert "CONSTANT is a int, not a callable" in _one_line(exc)


# ---- load_state ------------------------------------------------------------------------------

def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return ZOO["resnet8"](in_channels=1, width=4, num_classes=3)


def test_a_saved_state_dict_round_trips(tmp_path: Path) -> None:
    src, dst = _tiny(), ZOO["resnet8"](in_channels=1, width=4, num_classes=3)
    with torch.no_grad():
        src.bn1.running_mean.fill_(0.5)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    assert load_state(dst, tmp_path / "w.pt") is dst
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)


def test_checkpoint_dicts_and_data_parallel_prefixes_are_accepted(tmp_path: Path) -> None:
    src = _tiny()
    torch.save({"epoch": 3, "state_dict": src.state_dict()}, tmp_path / "ckpt.pt")
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "dp.pt")
    for name in ("ckpt.pt", "dp.pt"):
        dst = load_state(ZOO["resnet8"](in_channels=1, width=4, num_classes=3),
                         tmp_path / name)
        torch.testing.assert_close(dst.fc.weight, src.fc.weight)


def test_state_errors_are_one_line(tmp_path: Path) -> None:
    model = _tiny()
    state = model.state_dict()
    cases: list[tuple[str, object, str]] = [
        ("corrupt.pt", b"not a torch file at all", "is not a readable torch file"),
        ("list.pt", [torch.zeros(1)], "holds a list, not a mapping of parameter names"),
        ("missing.pt", {k: v for k, v in state.items() if k != "fc.bias"},
         "does not match ResNet: missing fc.bias"),
        ("extra.pt", {**state, "fc2.weight": torch.zeros(1)},
         "does not match ResNet: unexpected fc2.weight"),
        ("shape.pt", {**state, "fc.weight": torch.zeros(5, 16)},
         "fc.weight has shape (5, 16), the model's is (3, 16)"),
    ]
    for name, content, needle in cases:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        with pytest.raises(HalutError) as exc:
            load_state(model, path)
        msg = _one_line(exc)
        assert needle in msg and str(path) in msg, msg
    with pytest.raises(HalutError) as exc:
        load_state(model, tmp_path / "absent.pt")
    assert _one_line(exc).endswith("absent.pt: no such file")


def test_a_state_file_with_arbitrary_pickled_objects_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"fc.weight": torch.zeros(1), "opt": Path("/x")}, buf)  # not weights-only safe
    (tmp_path / "evil.pt").write_bytes(buf.getvalue())
    with pytest.raises(HalutError) as exc:
        load_state(_tiny(), tmp_path / "evil.pt")
    assert "is not a readable torch file" in _one_line(exc)


def test_safetensors_files_load_or_name_the_missing_package(tmp_path: Path) -> None:
    model = _tiny()
    path = tmp_path / "w.safetensors"
    try:
        from safetensors.torch import save_file
    except ImportError:
        path.write_bytes(b"{}")
        with pytest.raises(HalutError) as exc:
            load_state(model, path)
        assert "needs the safetensors package" in _one_line(exc)
        return
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    dst = load_state(ZOO["resnet8"](in_channels=1, width=4, num_classes=3), path)
    torch.testing.assert_close(dst.fc.weight, model.fc.weight)
    path.write_bytes(b"garbage")
    with pytest.raises(HalutError) as exc:
        load_state(model, path)
    assert "is not a readable safetensors file" in _one_line(exc)
