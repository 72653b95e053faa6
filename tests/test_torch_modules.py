"""Torch integration: backend names, HalutLinear/HalutConv2d, replace_layers."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from emulator import golden
from emulator.backends import make_backend
from emulator.layers import LayerModel, run_conv2d
from emulator.modules import HalutConv2d, HalutLinear
from emulator.replace import replace_layers
from learning import learn, quantize
from learning.conv import Conv2dGeometry, im2col
from learning.datasets import nmse
from learning.errors import HalutError


def _small_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5))


def _batches(n: int = 4, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(16, 2, 6, 6, generator=g) for _ in range(n)]


def test_modules_run_every_backend_without_any_import_side_effect() -> None:
    code = ("import numpy as np, torch\n"
            "from emulator.vectors import random_program\n"
            "from emulator.modules import HalutLinear\n"
            "p = random_program(np.random.default_rng(0), 2, 4, 3, 6)\n"
            "m = HalutLinear.from_learned(p, backend='golden')\n"
            "print(tuple(m(torch.zeros(2, 6)).shape))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "(2, 3)"
    mods = subprocess.run(
        [sys.executable, "-c", "import sys, learning, learning.conv; print(sorted(sys.modules))"],
        capture_output=True, text=True, check=True).stdout
    assert "emulator" not in mods and "'torch'" not in mods


def test_backend_names_are_checked_where_they_are_given() -> None:
    with pytest.raises(HalutError, match="unknown backend 'fpga'"):
        make_backend("fpga")
    with pytest.raises(HalutError, match="takes no options"):
        make_backend("golden", impl="torch")
    lin = HalutLinear(6, 3, C=2, K=4)
    with pytest.raises(HalutError, match="unknown backend 'fpga'"):
        lin.backend = "fpga"


def test_backend_options_are_checked_and_belong_to_their_backend() -> None:
    p = quantize(learn(np.random.default_rng(0).standard_normal((64, 6)).astype(np.float32),
                       np.ones((6, 3), np.float32), 2, 4))
    lin = HalutLinear.from_learned(p)
    with pytest.raises(HalutError, match="takes no options"):
        lin.set_backend("golden", impl="torch")
    x = torch.zeros(2, 6)
    y_gpu = lin.set_backend("gpu", impl="torch")(x)
    assert lin.backend_options == {"impl": "torch"}
    assert lin.last_result is not None and lin.last_result.info["impl"] == "torch"
    lin.backend = "golden"  # a new backend starts without the old one's options
    assert lin.backend_options == {}
    assert torch.equal(lin(x), y_gpu)


def _learned_linear(rng: np.random.Generator, D: int = 24, M: int = 6, C: int = 4, K: int = 8
                    ) -> tuple[HalutLinear, np.ndarray]:
    A = rng.standard_normal((400, D)).astype(np.float32)
    B = rng.standard_normal((D, M)).astype(np.float32)
    hm = learn(A, B, C, K, bias=rng.standard_normal(M).astype(np.float32))
    prog = quantize(hm, threshold_format="fp16", lut_format="int8")
    return HalutLinear.from_learned(prog, hm), A


def test_halut_linear_runs_each_backend_and_matches_its_reference() -> None:
    rng = np.random.default_rng(0)
    mod, A = _learned_linear(rng)
    x = torch.from_numpy(A[:10]).reshape(2, 5, -1)  # leading dims are kept
    mod.backend = "golden"
    y = mod(x)
    assert y.shape == (2, 5, 6) and not y.requires_grad
    np.testing.assert_array_equal(y.reshape(10, 6).numpy(), golden.run(mod.program, A[:10]).y)
    mod.backend = "float"
    np.testing.assert_allclose(mod(x).reshape(10, 6).numpy(), mod.model.exact(A[:10]),
                               rtol=1e-5, atol=1e-5)
    mod.backend = "maddness"
    np.testing.assert_array_equal(mod(x).reshape(10, 6).numpy(), mod.model.predict(A[:10]))
    mod.backend = "gpu"
    np.testing.assert_array_equal(mod(x).reshape(10, 6).numpy(),
                                  golden.run(mod.program, A[:10]).y)
    with pytest.raises(HalutError, match="unknown backend"):
        mod.backend = "tpu"
    with pytest.raises(HalutError, match=r"\(\.\.\., 24\)"):
        mod(torch.zeros(3, 7))
    text = repr(mod)
    for part in ("in_features=24", "out_features=6", "C=4", "K=8", "thresholds=fp16",
                 "lut=int8", "backend='gpu'", "inference only"):
        assert part in text


def test_halut_linear_state_dict_round_trip_into_a_fresh_module() -> None:
    rng = np.random.default_rng(1)
    mod, A = _learned_linear(rng)
    buf = io.BytesIO()
    torch.save(mod.state_dict(), buf)
    buf.seek(0)
    fresh = HalutLinear(24, 6, C=4, K=8)
    fresh.load_state_dict(torch.load(buf, weights_only=False))
    x = torch.from_numpy(A[:20])
    for backend in ("golden", "float", "maddness"):
        mod.backend = fresh.backend = backend
        np.testing.assert_array_equal(fresh(x).numpy(), mod(x).numpy())
    assert fresh.program.summary() == mod.program.summary()
    wrong = HalutLinear(24, 6, C=8, K=8)
    with pytest.raises(RuntimeError, match="C=4"):
        wrong.load_state_dict(mod.state_dict())


def test_halut_conv2d_equals_layer_inference_and_round_trips() -> None:
    rng = np.random.default_rng(2)
    g = Conv2dGeometry.make(3, 3, stride=1, padding=1)
    X = rng.standard_normal((6, 3, 5, 5)).astype(np.float32)
    rows = im2col(X, g)
    B = rng.standard_normal((g.patch_size, 4)).astype(np.float32)
    hm = learn(rows, B, 3, 16, bias=np.ones(4, np.float32))
    prog = quantize(hm, threshold_format="int8", lut_format="fp16")
    mod = HalutConv2d.from_learned(g, prog, hm)
    y = mod(torch.from_numpy(X)).numpy()
    ref = run_conv2d(LayerModel.from_model(hm, prog), X, g, "golden")
    np.testing.assert_array_equal(y, ref.y)
    mod.backend = "float"
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(B.T.reshape(4, 3, 3, 3).copy()))
        assert conv.bias is not None
        conv.bias.fill_(1.0)
        np.testing.assert_array_equal(mod(torch.from_numpy(X)).numpy(),
                                      conv(torch.from_numpy(X)).numpy())
    fresh = HalutConv2d(3, 4, 3, padding=1, C=3, K=16, threshold_format="int8",
                        lut_format="fp16")
    fresh.load_state_dict(mod.state_dict())
    mod.backend = fresh.backend = "golden"
    np.testing.assert_array_equal(fresh(torch.from_numpy(X)).numpy(), y)
    assert "kernel_size=(3, 3)" in repr(fresh) and "thresholds=int8" in repr(fresh)


def test_replace_layers_swaps_chosen_layers_and_stays_close_to_float() -> None:
    net = _small_net()
    x = _batches()[0]  # rows the layers were learned from (noise inputs do not generalise)
    ref = net(x).detach().numpy()
    report: dict = {}
    out = replace_layers(net, _batches(), C={"0": 9, "3": 36}, K=16, max_rows=300, seed=0,
                         report=report)
    assert out is net
    assert isinstance(net[0], HalutConv2d) and isinstance(net[3], HalutLinear)
    assert report["0"]["rows"] == 300 and report["0"]["rows_seen"] == 4 * 16 * 36
    assert report["3"]["rows"] == 64 and report["3"]["C"] == 36
    for m in (net[0], net[3]):
        m.backend = "float"
    np.testing.assert_allclose(net(x).numpy(), ref, rtol=1e-5, atol=1e-5)
    for m in (net[0], net[3]):
        m.backend = "golden"
    err = nmse(net(x).numpy(), ref)
    assert err < 0.3
    # seeded: the same call gives the same program
    net2 = replace_layers(_small_net(), _batches(), C={"0": 9, "3": 36}, K=16, max_rows=300,
                          seed=0)
    np.testing.assert_array_equal(net2[0].program.lut, net[0].program.lut)  # type: ignore[index]


def test_replace_layers_accepts_a_filter_and_callable_C() -> None:
    net = _small_net()
    replace_layers(net, _batches(2), lambda name, m: isinstance(m, nn.Conv2d),
                   C=lambda name, m: int(m.in_channels), K=4)  # type: ignore[arg-type]
    assert isinstance(net[0], HalutConv2d) and net[0].C == 2 and net[0].K == 4
    assert isinstance(net[3], nn.Linear)


def test_replace_layers_bad_input_raises_one_clear_error() -> None:
    with pytest.raises(HalutError, match="no layer named 'nope'"):
        replace_layers(_small_net(), _batches(1), ["nope"])
    with pytest.raises(HalutError, match="only Linear and Conv2d"):
        replace_layers(_small_net(), _batches(1), ["1"])
    with pytest.raises(HalutError, match="no entry for layer '3'"):
        replace_layers(_small_net(), _batches(1), C={"0": 2})
    # a grouped conv is one problem per group: C is checked against each group's D
    with pytest.raises(HalutError, match=r"C=16 exceeds its input dimension D=9 \(each of its "
                                         r"groups=2 groups"):
        replace_layers(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), _batches(1))
    with pytest.raises(HalutError, match="exceeds its input dimension"):
        replace_layers(_small_net(), _batches(1), ["0"], C=19)
    with pytest.raises(HalutError, match="batches must yield tensors"):
        replace_layers(_small_net(), ["x"], ["0"], C=2)
