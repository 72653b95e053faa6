"""Every layer kind and geometry against torch's own float layer, and golden per group.

Conv2d/Conv1d with strides, paddings (ints, pairs, 'same' with even kernels and dilation,
'valid'), padding modes, dilation and groups (grouped and depthwise: one MADDNESS problem
per group); Linear on inputs of any rank (learning/conv.py, emulator/layers.py,
emulator/modules.py)."""

from __future__ import annotations

import copy
import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from torch import nn

from emulator import golden
from emulator.layers import LayerModel, run_conv1d, run_conv2d, run_linear
from emulator.modules import HalutConv1d, HalutConv2d, HalutConvGroup, HalutLinear
from emulator.replace import replace_layers
from learning.conv import Conv1dGeometry, Conv2dGeometry, geometry_from_dict, im2col
from learning.errors import HalutError

CONV2D = [  # nn.Conv2d keyword arguments (in_channels, out_channels given), input (H, W)
    ({"kernel_size": 3, "stride": 2, "padding": 1}, (7, 6)),
    ({"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)}, (9, 8)),
    ({"kernel_size": 4, "padding": "same"}, (6, 7)),  # even kernel: 1 before, 2 after
    ({"kernel_size": (2, 3), "padding": "same", "dilation": (3, 2)}, (8, 9)),
    ({"kernel_size": 3, "padding": "valid", "dilation": 2}, (7, 7)),
    ({"kernel_size": 3, "padding": 1, "groups": 2}, (5, 6)),
    ({"kernel_size": 3, "padding": "same", "groups": 4, "padding_mode": "reflect"}, (5, 5)),
    ({"kernel_size": (3, 2), "padding": (2, 1), "stride": 2, "padding_mode": "replicate"},
     (6, 5)),
    ({"kernel_size": 3, "padding": 2, "dilation": 1, "padding_mode": "circular"}, (5, 4)),
    ({"kernel_size": 2, "padding": "same", "padding_mode": "reflect", "dilation": 2}, (5, 6)),
]

CONV1D = [
    ({"kernel_size": 3, "stride": 2, "padding": 1}, 11),
    ({"kernel_size": 4, "padding": "same", "dilation": 2}, 12),
    ({"kernel_size": 5, "padding": "valid", "groups": 2}, 9),
    ({"kernel_size": 3, "padding": "same", "groups": 4, "padding_mode": "circular"}, 7),
    ({"kernel_size": 2, "padding": 1, "padding_mode": "reflect"}, 6),
]


def _torch_conv2d(cin: int, cout: int, kw: dict, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, **kw)


def _layers_of(conv: nn.Conv1d | nn.Conv2d) -> list[LayerModel]:
    """One float LayerModel per group from the torch layer's weights."""
    G, cout = conv.groups, conv.out_channels
    w = conv.weight.detach().numpy().reshape(cout, -1)
    assert conv.bias is not None
    b = conv.bias.detach().numpy()
    M = cout // G
    return [LayerModel(program=None, weights=np.ascontiguousarray(w[g * M:(g + 1) * M].T),
                       bias=b[g * M:(g + 1) * M]) for g in range(G)]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(("kw", "hw"), CONV2D)
def test_conv2d_im2col_float_path_equals_torch(kw: dict, hw: tuple[int, int]) -> None:
    cin, cout = 4, 8
    conv = _torch_conv2d(cin, cout, kw)
    g = Conv2dGeometry.from_conv(conv)
    assert g.group_patch_size * g.groups == g.patch_size
    X = np.random.default_rng(1).standard_normal((2, cin, *hw)).astype(np.float32)
    ref = conv(torch.from_numpy(X)).detach().numpy()
    res = run_conv2d(_layers_of(conv), X, g, "float", row_tile=13)
    assert res.y.shape == ref.shape
    np.testing.assert_allclose(res.y, ref, rtol=1e-5, atol=1e-5)
    assert res.info["groups"] == g.groups


@pytest.mark.parametrize(("kw", "length"), CONV1D)
def test_conv1d_im2col_float_path_equals_torch(kw: dict, length: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv1d(4, 8, **kw)
    g = Conv1dGeometry.from_conv(conv)
    X = np.random.default_rng(2).standard_normal((3, 4, length)).astype(np.float32)
    ref = conv(torch.from_numpy(X)).detach().numpy()
    res = run_conv1d(_layers_of(conv), X, g, "float")
    assert res.y.shape == ref.shape
    np.testing.assert_allclose(res.y, ref, rtol=1e-5, atol=1e-5)


def test_im2col_with_padding_modes_follows_torch_pad_then_unfold() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    for mode in ("reflect", "replicate", "circular"):
        g = Conv2dGeometry.make(3, (3, 4), 1, "same", (1, 1), padding_mode=mode)
        (t, b), (le, r) = g.pads
        assert (t, b, le, r) == (1, 1, 1, 2)
        xp = torch.nn.functional.pad(torch.from_numpy(X), (le, r, t, b), mode=mode)
        cols = torch.nn.functional.unfold(xp, g.kernel_size)
        ref = cols.transpose(1, 2).reshape(-1, g.patch_size).numpy()
        np.testing.assert_array_equal(im2col(X, g), ref)


def _learned(module: nn.Module, x: torch.Tensor, **kw: object) -> nn.Module:
    """``module`` replaced inside a one-layer Sequential (C=2, K=4 unless given)."""
    net = nn.Sequential(copy.deepcopy(module))
    opts: dict = {"C": 2, "K": 4, "max_rows": 400, **kw}
    replace_layers(net, [x], **opts)
    return net[0]


def test_grouped_and_depthwise_conv2d_run_each_group_on_golden_and_float_equals_torch() -> None:
    torch.manual_seed(4)
    x = torch.randn(6, 4, 6, 6)
    for conv in (nn.Conv2d(4, 6, 3, padding=1, groups=2),
                 nn.Conv2d(4, 8, 3, padding="same", groups=4, padding_mode="reflect")):
        mod = _learned(conv, x)
        assert isinstance(mod, HalutConv2d) and mod.groups == conv.groups
        G = conv.groups
        assert len(mod.programs) == G and len(mod.group_layers) == G
        assert all(isinstance(m, HalutConvGroup) for m in mod.group_layers)
        g = mod.geometry
        assert [p.D for p in mod.programs] == [(4 // G) * 9] * G
        assert [p.M for p in mod.programs] == [conv.out_channels // G] * G
        # golden: each group is its own program on its own im2col columns
        y = mod(x).numpy()
        rows = im2col(x.numpy(), g)
        per = [golden.run(p, np.ascontiguousarray(rows[:, g.group_columns(i)])).y
               for i, p in enumerate(mod.programs)]
        ref = np.concatenate(per, axis=1).reshape(6, 6, 6, -1).transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(y, ref)
        assert mod.last_result is not None and len(mod.last_results) == G
        assert mod.last_result.info["groups"] == G
        # layers.run_conv2d with the G layer models gives the same bits
        lay = run_conv2d(mod.layer_models(), x.numpy(), g, "golden", row_tile=50)
        np.testing.assert_array_equal(lay.y, y)
        assert len(lay.tiles) == G * 5  # 216 rows in tiles of 50, per group
        # float: torch's own convolution on the float weights, as the source layer
        mod.backend = "float"
        np.testing.assert_allclose(mod(x).numpy(), conv(x).detach().numpy(), rtol=1e-6,
                                   atol=1e-6)
        assert mod.weight.shape == conv.weight.shape and mod.bias.shape == (conv.out_channels,)
        np.testing.assert_array_equal(mod.weight.numpy(), conv.weight.detach().numpy())
        with pytest.raises(HalutError, match=f"groups={G}: one program per group"):
            _ = mod.program


def test_conv1d_is_replaced_and_matches_torch_and_golden() -> None:
    torch.manual_seed(5)
    x = torch.randn(8, 4, 12)
    for conv in (nn.Conv1d(4, 6, 4, padding="same", dilation=2),
                 nn.Conv1d(4, 4, 3, stride=2, padding=1, groups=4, padding_mode="circular")):
        net = nn.Sequential(copy.deepcopy(conv), nn.ReLU(), nn.Flatten())
        replace_layers(net, [x], C=2, K=4, max_rows=300)  # layers=None takes Conv1d too
        mod = net[0]
        assert isinstance(mod, HalutConv1d)
        y = mod(x).numpy()
        assert y.shape == tuple(conv(x).shape)
        g = mod.geometry
        rows = im2col(x.numpy(), g)
        per = [golden.run(p, np.ascontiguousarray(rows[:, g.group_columns(i)])).y
               for i, p in enumerate(mod.programs)]
        np.testing.assert_array_equal(
            y, np.concatenate(per, axis=1).reshape(8, y.shape[2], -1).transpose(0, 2, 1))
        mod.backend = "float"
        np.testing.assert_allclose(mod(x).numpy(), conv(x).detach().numpy(), rtol=1e-6,
                                   atol=1e-6)
        assert mod.weight.shape == conv.weight.shape
        assert mod.kernel_size == conv.kernel_size and mod.padding == conv.padding


def test_linear_takes_inputs_of_any_rank() -> None:
    torch.manual_seed(6)
    lin = nn.Linear(12, 5)
    x = torch.randn(4, 7, 12)  # (batch, tokens, features)
    mod = _learned(lin, x, C=3)
    assert isinstance(mod, HalutLinear)
    y = mod(x)
    assert y.shape == (4, 7, 5)
    np.testing.assert_array_equal(y.reshape(-1, 5).numpy(),
                                  golden.run(mod.program, x.reshape(-1, 12).numpy()).y)
    mod.backend = "float"
    np.testing.assert_allclose(mod(x).numpy(), lin(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mod(x[0, 0]).numpy(), lin(x[0, 0]).detach().numpy(), rtol=1e-5,
                               atol=1e-6)  # rank 1
    assert mod.weight.shape == lin.weight.shape and mod.bias.shape == (5,)
    layer = mod.layer_model()
    res = run_linear(layer, x.numpy(), "golden", row_tile=9)
    assert res.y.shape == (4, 7, 5) and res.rows_y.shape == (28, 5)
    np.testing.assert_array_equal(res.rows_y, y.reshape(-1, 5).numpy())


def test_transformer_encoder_layer_runs_with_its_ffn_replaced() -> None:
    torch.manual_seed(7)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0,
                                       batch_first=True).eval()
    x = torch.randn(6, 5, 16)
    with torch.no_grad():
        ref = layer(x).numpy()
    net = copy.deepcopy(layer)
    report: dict = {}
    replace_layers(net, [x], ["linear1", "linear2"], C=4, K=4, max_rows=500, report=report)
    assert isinstance(net.linear1, HalutLinear) and isinstance(net.linear2, HalutLinear)
    assert report["linear1"]["rows"] == 30 and report["linear1"]["D"] == 16
    # torch's fast-path check reads .weight/.bias: present, shaped like torch's
    assert net.linear1.weight.shape == (32, 16) and net.linear2.bias.shape == (16,)
    for backend in ("float", "golden"):
        net.linear1.backend = net.linear2.backend = backend
        with torch.no_grad():
            y = net(x)
        assert y.shape == (6, 5, 16)
        assert net.linear2.last_result is not None  # the halut layer ran (no fused path)
        if backend == "float":
            np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-5)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    fresh = copy.deepcopy(net)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        np.testing.assert_array_equal(fresh(x).numpy(), net(x).numpy())


def test_attention_out_proj_and_unused_layers_are_errors_naming_them() -> None:
    torch.manual_seed(8)
    enc = nn.Sequential(nn.TransformerEncoderLayer(16, 2, 32, 0.0, batch_first=True))
    x = torch.randn(2, 3, 16)
    with pytest.raises(HalutError, match=r"layer '0\.self_attn\.out_proj' cannot be replaced: "
                                         r"it is the output projection of the "
                                         r"nn.MultiheadAttention '0\.self_attn', which calls it "
                                         r"through its functional path"):
        replace_layers(enc, [x])  # every Linear, out_proj included
    assert isinstance(enc[0].linear1, nn.Linear)  # nothing was replaced

    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.spare = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.used(t)

    with pytest.raises(HalutError, match=r"layer 'spare' recorded no inputs: its forward was "
                                         r"never called"):
        replace_layers(Unused(), [torch.randn(8, 4)], C=2, K=4)


def test_unsupported_modules_and_geometries_are_one_clear_error() -> None:
    net = nn.Sequential(nn.ConvTranspose2d(2, 2, 3), nn.Conv3d(2, 2, 1), nn.ReLU())
    for name, kind in (("0", "ConvTranspose2d"), ("1", "Conv3d"), ("2", "ReLU")):
        with pytest.raises(HalutError, match=rf"layer '{name}' is a {kind}, which cannot be "
                                             r"replaced: only Linear and Conv2d/Conv1d"):
            replace_layers(net, [torch.randn(1, 2, 4, 4, 4)], [name])
    with pytest.raises(HalutError, match="no Linear and Conv2d/Conv1d layer was selected"):
        replace_layers(nn.Sequential(nn.ReLU()), [torch.randn(2, 2)])
    big = nn.Sequential(nn.Conv2d(2, 2, 3, padding=2, padding_mode="reflect"))
    with pytest.raises(HalutError, match=r"layer '0': reflect padding of 2 needs an input "
                                         r"height of at least 3, got 2"):
        replace_layers(big, [torch.randn(1, 2, 2, 6)], C=2, K=4)
    far = nn.Sequential(nn.Conv2d(2, 2, 1, padding=1))
    with pytest.raises(HalutError, match=r"layer '0' \(Conv2d\): padding \(1, 1\) exceeds"):
        replace_layers(far, [torch.randn(1, 2, 4, 4)], C=2, K=4)
    dw = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(HalutError, match=r"C=16 exceeds its input dimension D=9 \(each of its "
                                         r"groups=4 groups"):
        replace_layers(dw, [torch.randn(2, 4, 5, 5)])


def test_geometry_round_trips_through_json_and_checks_its_fields() -> None:
    for g in (Conv2dGeometry.make(4, (2, 3), 1, "same", (2, 1), 2, "reflect"),
              Conv2dGeometry.make(3, 3, 2, 1),
              Conv1dGeometry(6, 4, 1, "same", 2, 3, "circular"),
              Conv1dGeometry(2, 3, 2, 1)):
        assert geometry_from_dict(json.loads(json.dumps(g.to_dict()))) == g
    old = {"in_channels": 3, "kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1],
           "dilation": [1, 1]}  # a dict written before groups and padding modes
    assert geometry_from_dict(old) == Conv2dGeometry.make(3, 3, padding=1)
    assert Conv2dGeometry.make(2, 3, padding="valid").padding == (0, 0)
    for kwargs, msg in (({"stride": 2, "padding": "same"}, "needs stride 1"),
                        ({"groups": 3}, "groups=3 does not divide in_channels=4"),
                        ({"padding_mode": "mirror"}, "padding_mode must be one of"),
                        ({"padding": "full"}, "'same' or 'valid'")):
        with pytest.raises(HalutError, match=msg):
            Conv2dGeometry.make(4, 3, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(HalutError, match="padding 3 exceeds"):
        Conv1dGeometry(2, 3, padding=3)
    with pytest.raises(HalutError, match="unknown conv geometry kind 'conv3d'"):
        geometry_from_dict({"kind": "conv3d"})
    with pytest.raises(HalutError, match="lacks the field 'in_channels'"):
        geometry_from_dict({"kind": "conv1d", "kernel_size": 3})
    with pytest.raises(HalutError, match="circular padding of 3 needs an input width of at "
                                         "least 3, got 2"):
        Conv2dGeometry.make(1, 4, padding=3, padding_mode="circular").output_size(5, 2)


def test_grouped_conv_state_dict_round_trip_and_the_pre_groups_layout_loads() -> None:
    torch.manual_seed(9)
    x = torch.randn(4, 4, 5, 5)
    mod = _learned(nn.Conv2d(4, 6, 3, padding=1, groups=2), x)
    assert isinstance(mod, HalutConv2d)
    buf = io.BytesIO()
    torch.save(mod.state_dict(), buf)
    buf.seek(0)
    fresh = HalutConv2d(4, 6, 3, padding=1, groups=2, C=2, K=4)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    np.testing.assert_array_equal(fresh(x).numpy(), mod(x).numpy())
    assert "groups=2" in repr(fresh) and "HalutConvGroup(in_features=18" in repr(fresh)
    one = _learned(nn.Conv2d(4, 3, 3, padding=1), x)
    legacy = {k.replace("group_layers.0.", ""): v for k, v in one.state_dict().items()}
    assert "dims" in legacy
    old = HalutConv2d(4, 3, 3, padding=1, C=2, K=4)
    old.load_state_dict(legacy)
    np.testing.assert_array_equal(old(x).numpy(), one(x).numpy())
    with pytest.raises(HalutError, match="groups=2 takes 2 programs"):
        HalutConv2d.from_learned(mod.geometry, mod.programs[:1])


@pytest.mark.slow
@pytest.mark.xdist_group("rtl_layers_c2k4")  # the chip of test_layers' rtl test: one build
def test_grouped_conv_on_rtl_is_bit_exact_with_golden_per_group() -> None:
    from emulator.params import RtlParams
    from emulator.vectors import random_program

    rng = np.random.default_rng(10)
    g = Conv2dGeometry.make(4, 3, padding="same", groups=2, padding_mode="replicate")
    layers = [LayerModel(program=random_program(rng, 2, 4, 3, g.group_patch_size))
              for _ in range(2)]
    X = rng.standard_normal((1, 4, 4, 4)).astype(np.float32)
    gold = run_conv2d(layers, X, g, "golden")
    rtl = run_conv2d(layers, X, g, "rtl", params=RtlParams(C=2, K=4, M=4))
    np.testing.assert_array_equal(rtl.y.view(np.uint32), gold.y.view(np.uint32))
    np.testing.assert_array_equal(rtl.acc, gold.acc)
    assert rtl.cycles is not None and rtl.cycles.stream == 2 * 16 * 2  # groups * rows * C


@pytest.mark.parametrize("geometry, shape", [
    (Conv2dGeometry(6, (3, 3), (2, 1), (1, 2), (1, 2), 2, "reflect"), (3, 6, 9, 11)),
    (Conv2dGeometry(4, (1, 3), padding="same"), (2, 4, 5, 7)),
])
def test_im2col_of_chosen_columns_is_those_columns(geometry: Conv2dGeometry,
                                                   shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal(shape).astype(np.float32)
    full = im2col(X, geometry)
    cols = rng.choice(full.shape[1], size=min(9, full.shape[1]), replace=False)
    assert np.array_equal(im2col(X, geometry, columns=cols), full[:, cols])
    with pytest.raises(HalutError, match="im2col columns"):
        im2col(X, geometry, columns=np.array([full.shape[1]]))


@pytest.mark.parametrize("same_dims", [False, True])
def test_a_compact_program_computes_the_same_on_its_columns(same_dims: bool) -> None:
    """What the conv forward runs for golden/rtl/gpu: the program over just its split
    columns gives the very bits the whole program gives on whole rows (padded up to C
    columns when the trees share them)."""
    from emulator.modules import compact_program
    from emulator.vectors import random_activations, random_program

    rng = np.random.default_rng(2)
    program = random_program(rng, 4, 4, 3, 30, "fp16", "fp16")
    if same_dims:
        program = dataclasses.replace(program, dims=np.full_like(program.dims, 7))
    A = random_activations(rng, program, 50)
    used, small = compact_program(program)
    assert small.D == used.size >= program.C and small.D < program.D
    want, got = golden.run(program, A), golden.run(small, np.ascontiguousarray(A[:, used]))
    assert np.array_equal(want.y.view(np.uint32), got.y.view(np.uint32))
