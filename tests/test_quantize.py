"""Quantization of a float model to a hardware program: threshold rounding, LUT scales and
offsets, every format pair through the golden model, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from emulator import golden
from learning import HalutError, HalutModel, learn, quantize
from learning.datasets import nmse, synthetic
from learning.quantize import fp16_thresholds, int8_thresholds

FORMATS = [("fp16", "int8"), ("fp16", "fp16"), ("int8", "int8"), ("int8", "fp16")]


@pytest.fixture(scope="module")
def setup() -> tuple[HalutModel, np.ndarray, np.ndarray]:
    A, A_test, B = synthetic(n_train=3000, n_test=1000, D=64, M=8, seed=1)
    return learn(A, B, 8, 16), A_test, A_test @ B


def all_fp16_boundaries() -> tuple[np.ndarray, np.ndarray]:
    """Every finite fp16 value (ascending, -0 dropped) and the boundary of ``fp16(x) > v``."""
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    v = bits.view(np.float16)
    v = np.unique(v[np.isfinite(v)])
    with np.errstate(over="ignore"):
        up = np.nextafter(v, np.float16(np.inf))
    b = (v.astype(np.float64) + up.astype(np.float64)) / 2
    b[~np.isfinite(up)] = np.inf
    return v, b


def test_fp16_threshold_boundary_is_the_nearest_achievable_one() -> None:
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.standard_normal(3000) * 10 ** rng.uniform(-6, 4, 3000),
                        [0.0, 1.0, 2.0, 0.5 + 2 ** -12, 65504.0, 1e6, -1e6, 6e-8]])
    t = t.astype(np.float32)
    t16 = fp16_thresholds(t)
    assert t16.dtype == np.float16 and np.all(np.isfinite(t16))
    v, b = all_fp16_boundaries()
    t64 = t.astype(np.float64)
    i = np.clip(np.searchsorted(b, t64), 1, b.size - 1)  # boundaries ascend with v
    best = np.minimum(np.abs(b[i] - t64), np.abs(b[i - 1] - t64))
    idx = np.searchsorted(v, t16)
    got = np.abs(b[idx] - t.astype(np.float64))
    np.testing.assert_array_equal(got, best)


def test_fp16_thresholds_keep_decisions_of_float32_features() -> None:
    rng = np.random.default_rng(1)
    t = (rng.standard_normal(200) * 3).astype(np.float32)
    t16 = fp16_thresholds(t)
    x = (t[:, None] + rng.standard_normal((200, 500)).astype(np.float32) * 0.05)
    agree = (x.astype(np.float16) > t16[:, None]) == (x > t[:, None])
    # disagreement only inside half an fp16 ulp of t
    ulp = np.abs(np.spacing(t.astype(np.float16))).astype(np.float32)
    far = np.abs(x - t[:, None]) > ulp[:, None]
    assert np.all(agree[far])
    # rounding to nearest instead (the naive choice) disagrees more often
    naive = (x.astype(np.float16) > t.astype(np.float16)[:, None]) == (x > t[:, None])
    assert agree.mean() >= naive.mean()


def test_int8_thresholds_decide_like_float_outside_half_a_step() -> None:
    rng = np.random.default_rng(2)
    s = 20.0
    t = rng.uniform(-6, 6, 300).astype(np.float32)
    tq = int8_thresholds(t, s)
    x = rng.uniform(-7, 7, (300, 400)).astype(np.float32)
    q = np.clip(np.rint(x * np.float32(s)), -128, 127).astype(np.int8)
    agree = (q > tq[:, None]) == (x > t[:, None])
    far = np.abs(x - t[:, None]) > 0.5 / s + 1e-6
    inside = np.abs(t * s) < 127
    assert np.all(agree[far & inside[:, None]])
    assert int8_thresholds(np.array([1e3, -1e3], np.float32), s).tolist() == [127, -128]


@pytest.mark.parametrize("thr_fmt,lut_fmt", FORMATS)
def test_every_format_pair_stays_within_5_percent_of_float(
        setup: tuple[HalutModel, np.ndarray, np.ndarray], thr_fmt: str, lut_fmt: str) -> None:
    model, A_test, Y = setup
    program = quantize(model, thr_fmt, lut_fmt)
    assert (program.threshold_format, program.lut_format) == (thr_fmt, lut_fmt)
    g = golden.run(program, A_test)
    float_err = nmse(model.predict(A_test), Y)
    q_err = nmse(g.y, Y)
    assert q_err <= 1.05 * float_err
    agree = np.mean(g.codes == model.encode(A_test))
    assert agree > (0.999 if thr_fmt == "fp16" else 0.98)


def test_int8_lut_error_is_bounded_by_half_a_step_per_codebook(
        setup: tuple[HalutModel, np.ndarray, np.ndarray]) -> None:
    model, A_test, _ = setup
    program = quantize(model, "fp16", "int8")
    codes = model.encode(A_test)
    acc = golden.accumulate(program, codes)
    y = golden.dequantize(program, acc)
    bound = model.C * program.scale / 2 + 1e-3 * np.abs(model.lut).max()
    assert np.all(np.abs(y - model.decode(codes)) <= bound[None, :])
    assert np.all(np.abs(program.lut.astype(np.int32)).max(axis=(1, 2)) == 127)


def test_fp16_lut_with_huge_entries_neither_overflows_nor_loses_precision() -> None:
    rng = np.random.default_rng(3)
    A = rng.standard_normal((400, 16)).astype(np.float32)
    B = (rng.standard_normal((16, 3)) * 1e6).astype(np.float32)
    model = learn(A, B, 4, 4)
    program = quantize(model, "fp16", "fp16")
    assert np.all(np.isfinite(program.lut.astype(np.float32)))
    assert np.all(np.log2(program.scale) == np.round(np.log2(program.scale)))  # powers of 2
    codes = model.encode(A)
    y = golden.dequantize(program, golden.accumulate(program, codes))
    ref = model.decode(codes)
    assert np.max(np.abs(y - ref)) <= 2e-3 * np.max(np.abs(ref))


def test_program_bias_includes_the_model_bias() -> None:
    rng = np.random.default_rng(4)
    A = rng.standard_normal((500, 16)).astype(np.float32)
    B = rng.standard_normal((16, 3)).astype(np.float32)
    bias = np.array([100.0, -50.0, 0.25], np.float32)
    m0, mb = learn(A, B, 4, 4), learn(A, B, 4, 4, bias=bias)
    np.testing.assert_allclose(quantize(mb).bias - quantize(m0).bias, bias, atol=1e-3)


def test_bad_input_to_quantize_is_one_clear_error(
        setup: tuple[HalutModel, np.ndarray, np.ndarray]) -> None:
    model = setup[0]
    with pytest.raises(HalutError, match="threshold format"):
        quantize(model, "bf16", "int8")
    with pytest.raises(HalutError, match="LUT format"):
        quantize(model, "fp16", "int4")
    with pytest.raises(HalutError, match="HalutModel"):
        quantize("model.halut")  # type: ignore[arg-type]


def test_relu_activations_with_exact_zeros_keep_their_codes_in_fp16() -> None:
    # many features are exactly 0 and one column is dead: a threshold must never sit on a
    # training value, or fp16 rounding sends x == t the wrong way
    rng = np.random.default_rng(0)
    A = np.maximum(rng.standard_normal((500, 20)), 0).astype(np.float32)
    A[:, 3] = 0
    B = rng.standard_normal((20, 5)).astype(np.float32)
    model = learn(A, B, 5, 64)
    float_codes = model.encode(A)
    for thr_fmt, lut_fmt in FORMATS:
        g = golden.run(quantize(model, thr_fmt, lut_fmt), A)
        assert np.mean(g.codes == float_codes) > (0.999 if thr_fmt == "fp16" else 0.98)
    assert not np.any(np.isin(model.thresholds[:, 0], A[:, model.dims[:, 0]]))
    assert fp16_thresholds(np.zeros(1, np.float32))[0] == 0  # boundary above 0, not below


def test_int8_scale_without_calibration_rows_falls_back_to_the_threshold_range(
        setup: tuple[HalutModel, np.ndarray, np.ndarray]) -> None:
    _, A_test, Y = setup
    A, _, B = synthetic(n_train=3000, n_test=10, D=64, M=8, seed=1)
    model = learn(A, B, 8, 16, calibration_rows=0)
    assert model.calibration is None
    program = quantize(model, "int8", "int8")
    assert program.input_scale == pytest.approx(127 / np.abs(model.thresholds).max(), rel=1e-6)
    assert nmse(golden.run(program, A_test).y, Y) <= 1.1 * nmse(model.predict(A_test), Y)
