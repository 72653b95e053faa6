"""Layer inference (emulator/layers.py): im2col, every backend, row tiles, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emulator import golden
from emulator.layers import LayerModel, run_conv2d, run_linear, run_rows
from emulator.params import RtlParams
from emulator.vectors import random_activations, random_program
from learning.conv import Conv2dGeometry, im2col
from learning.errors import HalutError
from learning.program import HardwareProgram

GEOMETRIES = [  # (Cin, H, W, kernel, stride, padding, dilation)
    (3, 7, 6, 3, 1, 1, 1),
    (2, 9, 8, (3, 2), (2, 1), (1, 0), 1),
    (1, 10, 10, 3, 2, 2, 2),
    (4, 5, 5, 1, 1, 0, 1),
]


def _p(layer: LayerModel) -> HardwareProgram:
    assert layer.program is not None
    return layer.program


def _layer(rng: np.random.Generator, C: int, K: int, M: int, D: int,
           thr: str = "fp16", lut: str = "int8") -> LayerModel:
    program = random_program(rng, C, K, M, D, thr, lut)
    W = rng.standard_normal((D, M)).astype(np.float32)
    return LayerModel(program=program, weights=W, bias=program.bias)


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_im2col_float_conv_equals_torch_conv2d(geom: tuple) -> None:
    Cin, H, W, k, s, p, d = geom
    rng = np.random.default_rng(1)
    g = Conv2dGeometry.make(Cin, k, s, p, d)
    X = rng.standard_normal((3, Cin, H, W)).astype(np.float32)
    M = 5
    layer = LayerModel(program=None, weights=rng.standard_normal((g.patch_size, M)).astype(
        np.float32), bias=rng.standard_normal(M).astype(np.float32))
    res = run_conv2d(layer, X, g, "float", row_tile=7)
    assert layer.weights is not None and layer.bias is not None
    w = torch.from_numpy(layer.weights.T.reshape(M, Cin, *g.kernel_size).copy())
    ref = torch.nn.functional.conv2d(torch.from_numpy(X), w, torch.from_numpy(layer.bias),
                                     g.stride, g.padding, g.dilation).numpy()
    assert res.y.shape == ref.shape
    np.testing.assert_allclose(res.y, ref, rtol=1e-5, atol=1e-5)


def test_im2col_rows_follow_torch_unfold_order() -> None:
    rng = np.random.default_rng(2)
    g = Conv2dGeometry.make(3, (2, 3), (1, 2), (1, 1), (2, 1))
    X = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    cols = torch.nn.functional.unfold(torch.from_numpy(X), g.kernel_size, g.dilation,
                                      g.padding, g.stride)  # (N, D, L)
    ref = cols.transpose(1, 2).reshape(-1, g.patch_size).numpy()
    np.testing.assert_array_equal(im2col(X, g), ref)


@pytest.mark.parametrize("fmt", [("fp16", "int8"), ("int8", "fp16")])
def test_linear_golden_equals_golden_model_and_tiles_do_not_matter(fmt: tuple) -> None:
    rng = np.random.default_rng(3)
    layer = _layer(rng, 4, 8, 6, 20, *fmt)
    X = random_activations(rng, _p(layer), 37)
    whole = golden.run(_p(layer), X)
    res = run_linear(layer, X, "golden", row_tile=5)
    assert len(res.tiles) == 8
    np.testing.assert_array_equal(res.y.view(np.uint32), whole.y.view(np.uint32))
    np.testing.assert_array_equal(res.acc, whole.acc)
    flt = run_linear(layer, X, "float")
    np.testing.assert_allclose(flt.y, X @ layer.weights + layer.bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_gpu_layers_are_bit_exact_with_golden(impl: str) -> None:
    rng = np.random.default_rng(4)
    g = Conv2dGeometry.make(2, 3, padding=1)
    layer = _layer(rng, 3, 4, 5, g.patch_size, "fp16", "fp16")
    X = rng.standard_normal((2, 2, 5, 4)).astype(np.float32)
    gold = run_conv2d(layer, X, g, "golden")
    gpu = run_conv2d(layer, X, g, "gpu", impl=impl, row_tile=16)
    np.testing.assert_array_equal(gpu.y.view(np.uint32), gold.y.view(np.uint32))
    lin = _layer(rng, 4, 8, 3, 12)
    A = random_activations(rng, _p(lin), 9)
    np.testing.assert_array_equal(run_linear(lin, A, "gpu", impl=impl).y,
                                  run_linear(lin, A, "golden").y)


@pytest.mark.slow
@pytest.mark.xdist_group("rtl_layers_c2k4")
def test_rtl_layers_are_bit_exact_with_golden_and_count_cycles_per_tile() -> None:
    rng = np.random.default_rng(5)
    g = Conv2dGeometry.make(2, 3, stride=2, padding=1)
    conv = _layer(rng, 2, 4, 6, g.patch_size)
    X = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)  # 2*3*3 = 18 rows
    params = RtlParams(C=2, K=4, M=4)  # 6 columns -> 2 column tiles with a LUT reload
    rtl = run_conv2d(conv, X, g, "rtl", row_tile=10, params=params)
    gold = run_conv2d(conv, X, g, "golden")
    np.testing.assert_array_equal(rtl.y.view(np.uint32), gold.y.view(np.uint32))
    np.testing.assert_array_equal(rtl.acc, gold.acc)
    assert [len(t.column_tiles) for t in rtl.tiles] == [2, 2]
    streams = [t.cycles.stream if t.cycles else None for t in rtl.tiles]
    assert streams == [2 * 10 * 2, 2 * 8 * 2]  # rows * C * column tiles, per row tile
    assert rtl.cycles is not None and rtl.cycles.stream == 18 * 2 * 2
    c0, c1 = rtl.tiles[0].cycles, rtl.tiles[1].cycles
    assert c0 is not None and c1 is not None and rtl.cycles == c0 + c1
    lin = _layer(rng, 2, 4, 3, 7)
    A = random_activations(rng, _p(lin), 11)
    r = run_linear(lin, A, "rtl", params=params)
    np.testing.assert_array_equal(r.y.view(np.uint32), golden.run(_p(lin), A).y.view(
        np.uint32))


class _Interrupt:
    def __init__(self, at: int | None) -> None:
        self.at = at
        self.calls: list[int] = []

    def __call__(self, index: int, rec: object) -> None:
        self.calls.append(index)
        if index == self.at:
            raise KeyboardInterrupt


def test_resume_after_interrupt_skips_finished_tiles_and_gives_identical_outputs(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    layer = _layer(rng, 4, 16, 8, 24)
    X = random_activations(rng, _p(layer), 50)
    ref = run_linear(layer, X, "golden")
    hook = _Interrupt(at=2)
    with pytest.raises(KeyboardInterrupt):
        run_linear(layer, X, "golden", row_tile=8, resume_dir=tmp_path, on_tile=hook)
    assert hook.calls == [0, 1, 2]
    assert len(list(tmp_path.glob("tile_*.npz"))) == 3  # the tile being hooked was stored
    again = _Interrupt(at=None)
    res = run_linear(layer, X, "golden", row_tile=8, resume_dir=tmp_path, on_tile=again)
    assert again.calls == [3, 4, 5, 6]
    assert (res.resumed, res.computed) == (3, 4)
    np.testing.assert_array_equal(res.y, ref.y)
    np.testing.assert_array_equal(res.acc, ref.acc)


def test_corrupt_or_foreign_tile_file_is_recomputed(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    layer = _layer(rng, 4, 16, 8, 24)
    X = random_activations(rng, _p(layer), 30)
    first = run_linear(layer, X, "golden", row_tile=10, resume_dir=tmp_path)
    files = sorted(tmp_path.glob("tile_*.npz"))
    data = bytearray(files[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[1].write_bytes(bytes(data))
    files[2].write_bytes(files[2].read_bytes()[:40])  # a truncated file
    res = run_linear(layer, X, "golden", row_tile=10, resume_dir=tmp_path)
    assert (res.resumed, res.computed) == (1, 2)
    assert len(res.info["rejected_tile_files"]) == 2
    np.testing.assert_array_equal(res.y, first.y)
    other = X.copy()
    other[0, 0] += 1.0  # another input: no tile of the first run may be reused
    res2 = run_linear(layer, other, "golden", row_tile=10, resume_dir=tmp_path)
    assert res2.resumed == 0
    np.testing.assert_array_equal(res2.y, golden.run(_p(layer), other).y)


def test_bad_layer_inputs_raise_one_clear_error() -> None:
    rng = np.random.default_rng(8)
    g = Conv2dGeometry.make(2, 3)
    layer = _layer(rng, 3, 4, 5, g.patch_size)
    X = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    with pytest.raises(HalutError, match="channels"):
        run_conv2d(layer, X[:, :1], Conv2dGeometry.make(1, 3), "golden")
    with pytest.raises(HalutError, match="3 channels, the layer takes 2"):
        run_conv2d(layer, np.zeros((1, 3, 5, 5), np.float32), g, "golden")
    with pytest.raises(HalutError, match="smaller than the dilated kernel"):
        run_conv2d(layer, X[:, :, :2, :2], g, "golden")
    with pytest.raises(HalutError, match=r"\(N, Cin, H, W\)"):
        run_conv2d(layer, X[0], g, "golden")
    bad = X.copy()
    bad[0, 1, 2, 3] = np.nan
    with pytest.raises(HalutError, match="NaN"):
        run_conv2d(layer, bad, g, "golden")
    with pytest.raises(HalutError, match="learned for D=18"):
        run_linear(layer, np.zeros((4, 10), np.float32), "golden")
    with pytest.raises(HalutError, match="unknown backend"):
        run_linear(layer, np.zeros((4, 18), np.float32), "fpga")
    with pytest.raises(HalutError, match="float weights"):
        run_rows(LayerModel(program=layer.program), np.zeros((2, 18), np.float32), "float")
    with pytest.raises(HalutError, match="row tile"):
        run_linear(layer, np.zeros((4, 18), np.float32), "golden", row_tile=0)
    with pytest.raises(HalutError, match="stride must be >= 1"):
        Conv2dGeometry.make(2, 3, stride=0)
    with pytest.raises(HalutError, match="weights have shape"):
        LayerModel(program=layer.program, weights=np.zeros((5, 5), np.float32))


def test_geometry_refuses_padding_beyond_the_dilated_kernel() -> None:
    Conv2dGeometry.make(2, 3, padding=2)  # dilation*(k-1) = 2: the last allowed padding
    Conv2dGeometry.make(2, 3, padding=4, dilation=2)
    with pytest.raises(HalutError, match=r"padding \(3, 3\) exceeds dilation\*\(kernel_size-1\)"
                                         r" = \(2, 2\).*only zero padding"):
        Conv2dGeometry.make(2, 3, padding=3)
    with pytest.raises(HalutError, match="padding"):
        Conv2dGeometry.make(2, 1, padding=1)  # a 1x1 kernel takes no padding
    with pytest.raises(HalutError, match="padding must be >= 0"):
        Conv2dGeometry.make(2, 3, padding=-1)


def test_float64_beyond_float32_range_is_one_error_without_warnings() -> None:
    import warnings

    from learning.validate import as_float_matrix, as_float_vector

    A = np.zeros((3, 4))
    A[2, 1] = -1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would fail here
        with pytest.raises(HalutError, match=r"outside the float32 range .* at row 2, column 1"):
            as_float_matrix(A, "activations")
        A[2, 1] = np.inf
        with pytest.raises(HalutError, match="activations hold inf at row 2, column 1"):
            as_float_matrix(A, "activations")
        with pytest.raises(HalutError, match="bias holds values outside the float32 range"):
            as_float_vector(np.array([0.0, 1e39]), "bias", 2)
        with pytest.raises(HalutError, match="bias holds NaN at index 1"):
            as_float_vector(np.array([0.0, np.nan]), "bias", 2)
        with pytest.raises(HalutError, match=r"a vector of 3 values, got shape \(2,\)"):
            as_float_vector(np.zeros(2), "bias", 3)
        big32 = np.float64(np.finfo(np.float32).max)
        np.testing.assert_array_equal(as_float_matrix(np.array([[big32]]), "a"),
                                      np.array([[big32]], np.float32))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from learning import learn, quantize, save_model

    rng = np.random.default_rng(3)
    A = rng.standard_normal((300, 16)).astype(np.float32)
    B = rng.standard_normal((16, 8)).astype(np.float32)
    model = learn(A, B, 4, 4)
    return save_model(tmp_path_factory.mktemp("layers") / "m.halut", model, quantize(model))


def _cli(*args: object) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from flows.cli import main

    res = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in res.output
    return res.exit_code, res.stdout, res.stderr


def test_cli_conv2d_geometry_is_checked_before_any_work(model_file: Path,
                                                        tmp_path: Path) -> None:
    X = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    conv = ["emulate", model_file, "--layer", "conv2d", "-a", tmp_path / "X.npy"]
    flat = ["--in-channels", 1, "--height", 8, "--width", 8]
    for opt, value in (("--in-channels", -1), ("--height", -8), ("--width", 0),
                       ("--kernel-size", 0), ("--stride", 0), ("--dilation", 0),
                       ("--padding", -1), ("--row-tile", 0)):
        args = [*conv, *flat, opt, value]
        code, _, err = _cli(*args)
        assert code == 2 and f"Invalid value for '{opt}'" in err, (opt, err)
    # the model's D = 16 with one channel: a 4x4 kernel; padding 4 > 1*(4-1)
    code, _, err = _cli(*conv, *flat, "--padding", 100000)
    assert code == 1 and err.startswith("error: padding (100000, 100000) exceeds")
    assert len(err.strip().splitlines()) == 1 and "only zero padding" in err
    code, out, err = _cli(*conv, *flat, "--padding", 3)
    assert code == 0, err
    assert "(3, 1, 8, 8) -> (3, 8, 11, 11)" in out


def test_cli_p_applies_to_rtl_only_in_compare(model_file: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "A.npy", np.zeros((4, 16), np.float32))
    for backends in ("golden", "float,golden,gpu"):
        code, _, err = _cli("compare", model_file, "-a", tmp_path / "A.npy", "--backends",
                            backends, "-p", "M=2")
        assert code == 1 and err.strip() == (f"error: -p applies to the rtl backend only "
                                             f"(got --backends {backends})"), err
    code, _, err = _cli("emulate", model_file, "-a", tmp_path / "A.npy", "-b", "golden",
                        "-p", "M=2")
    assert code == 1 and "apply to the rtl backend only" in err


def test_cli_layer_commands_reject_bad_model_headers_and_big_values(model_file: Path,
                                                                   tmp_path: Path) -> None:
    import json

    big = np.zeros((4, 16))
    big[0, 5] = 1e300
    np.save(tmp_path / "big.npy", big)
    for cmd in ("emulate", "compare"):
        code, _, err = _cli(cmd, model_file, "-a", tmp_path / "big.npy")
        assert code == 1 and "outside the float32 range" in err and "Warning" not in err, err
    with np.load(model_file, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["header"].tobytes().decode())
    header["program"]["input_scale"] = None
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    bad = tmp_path / "bad.halut"
    with open(bad, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    for cmd in ("emulate", "compare"):
        code, _, err = _cli(cmd, bad, "-a", tmp_path / "big.npy")
        assert code == 1 and "header field 'program.input_scale'" in err, err
