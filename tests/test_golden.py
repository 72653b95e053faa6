"""The golden model against a deliberately plain per-element reference (tests/reference.py)
and the explicit corner-case table."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator import golden
from emulator.vectors import corner_cases, random_activations, random_program
from learning.errors import HalutError
from learning.program import HardwareProgram
from tests import reference as ref

FORMATS = [("fp16", "int8"), ("fp16", "fp16"), ("int8", "int8"), ("int8", "fp16")]


def plain_run(program: HardwareProgram, A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """codes, acc bits (uint32) and y bits (uint32), one element at a time."""
    N = A.shape[0]
    C, M, L = program.C, program.M, program.L
    codes = np.zeros((N, C), dtype=np.int64)
    acc_bits = np.zeros((N, M), dtype=np.uint32)
    y_bits = np.zeros((N, M), dtype=np.uint32)
    if program.threshold_format == "fp16":
        thr = [[ref.fp16_bits_to_value(int(b)) for b in row]
               for row in program.thresholds.view(np.uint16)]
    else:
        thr = [[int(v) for v in row] for row in program.thresholds]
    for n in range(N):
        for c in range(C):
            code = 0
            for level in range(L):
                x = float(A[n, program.dims[c, level]])
                if program.threshold_format == "fp16":
                    f = ref.to_fp16_value(x)
                else:
                    f = ref.to_int8_value(x, program.input_scale)
                node = (1 << level) - 1 + code
                code = 2 * code + (1 if f > thr[c][node] else 0)
            codes[n, c] = code
        for m in range(M):
            if program.lut_format == "int8":
                total = sum(int(program.lut[m, c, codes[n, c]]) for c in range(C))
                acc_val: Fraction | float = Fraction(total)
                acc_bits[n, m] = np.uint32(total & 0xFFFFFFFF)
            else:
                acc_val = Fraction(0)
                for c in range(C):
                    entry = ref.fp16_bits_to_value(
                        int(program.lut[m, c, codes[n, c]:codes[n, c] + 1].view(np.uint16)[0]))
                    acc_val = ref.fp32_add_exact(acc_val, entry)
                acc_bits[n, m] = ref.value_to_fp32_bits(acc_val)
            acc32 = ref.round_to_format(Fraction(acc_val), 23, -126, 127) \
                if not isinstance(acc_val, float) else acc_val
            prod = ref.round_to_format(Fraction(acc32) * Fraction(float(program.scale[m])),
                                       23, -126, 127)
            yv = ref.fp32_add_exact(prod, Fraction(float(program.bias[m])))
            y_bits[n, m] = ref.value_to_fp32_bits(yv)
    return codes, acc_bits, y_bits


def assert_same_as_plain(program: HardwareProgram, A: np.ndarray) -> None:
    g = golden.run(program, A)
    codes, acc_bits, y_bits = plain_run(program, A)
    np.testing.assert_array_equal(g.codes, codes)
    np.testing.assert_array_equal(g.acc.view(np.uint32), acc_bits)
    np.testing.assert_array_equal(g.y.view(np.uint32), y_bits)


@pytest.mark.parametrize("thr_fmt,lut_fmt", FORMATS)
@pytest.mark.parametrize("K", [2, 4, 16])
def test_golden_matches_plain_reference_on_random_programs(thr_fmt: str, lut_fmt: str,
                                                           K: int) -> None:
    rng = np.random.default_rng(K * 7 + len(thr_fmt + lut_fmt))
    program = random_program(rng, C=5, K=K, M=4, D=11, threshold_format=thr_fmt,
                             lut_format=lut_fmt)
    assert_same_as_plain(program, random_activations(rng, program, 24))


@pytest.mark.parametrize("thr_fmt,lut_fmt", FORMATS)
def test_golden_matches_plain_reference_on_corner_cases(thr_fmt: str, lut_fmt: str) -> None:
    for case in corner_cases(thr_fmt, lut_fmt):
        assert_same_as_plain(case.program, case.A)


def _case(thr_fmt: str, lut_fmt: str, word: str):  # type: ignore[no-untyped-def]
    return next(c for c in corner_cases(thr_fmt, lut_fmt) if word in c.name)


def test_signed_zeros_compare_equal_and_ties_go_left() -> None:
    case = _case("fp16", "int8", "signed zeros")
    codes = golden.run(case.program, case.A).codes
    # row 0: -0 > +0 and +0 > -0 are both false; 3*sub > 3*sub is false
    assert codes[0].tolist() == [0, 0, 0]
    # row 1: the smallest subnormal is greater than +0 and -sub is not
    assert codes[1, 0] == 2


def test_fp16_conversion_rounds_half_to_even_and_overflows_to_inf() -> None:
    case = _case("fp16", "int8", "ties, rounding")
    f = golden.run(case.program, case.A).features
    assert f[1, 0, 0] == np.float16(1.0)  # 1 + 2^-11 is a tie: rounds to even (1.0)
    assert f[1, 0, 1] == np.float16(1 + 2**-9)  # 1 + 3*2^-11 ties up to the even 1 + 2^-9
    assert f[1, 1, 0] == np.float16(65504.0)  # 65519 rounds down to fp16 max
    assert np.isposinf(f[1, 1, 1])  # 65520 is the first value that rounds to inf


def test_int8_features_round_half_even_and_saturate() -> None:
    case = _case("int8", "int8", "int8 extremes")
    f = golden.run(case.program, case.A).features
    assert f[1, 0, 0] == -128 and f[1, 0, 1] == 127  # saturation of +-1e9
    assert f[1, 1, 0] == 0 and f[1, 1, 1] == 0  # -0.5 and 0.5 round to even (0)
    assert f[1, 2, 0] == 2 and f[1, 2, 1] == -2  # 1.5 -> 2, -1.5 -> -2
    assert f[2, 0, 0] == 127  # 127.5 rounds to 128, saturates to 127


def test_fp32_accumulation_cancels_to_positive_zero_and_rounds_ties_to_even() -> None:
    case = _case("fp16", "fp16", "cancellation")
    acc = golden.run(case.program, case.A).acc
    bits = acc.view(np.uint32)
    assert bits[7, 0] == 0  # -0 + -0 + -0 from acc = +0 stays +0
    assert bits[3, 0] == 0  # -0 - max + max: exact cancellation is +0
    assert acc[4, 2] == np.float32(1 + 2**-22)  # 1 + 2^-23 + 2^-24: tie to even, up
    assert acc[5, 2] == np.float32(1.0)  # 1 + 0 + 2^-24: tie to even, down


def test_int8_accumulation_is_exact_at_the_extremes() -> None:
    case = _case("fp16", "int8", "int8 LUT")
    acc = golden.run(case.program, case.A).acc
    assert acc.dtype == np.int32
    assert (acc[:, 1] == -384).all() and (acc[:, 2] == 381).all()
    assert acc[4, 3] == 0  # partial sums that cancel exactly


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_fp32_add_is_ieee_round_to_nearest_even(a_bits: int, b_bits: int) -> None:
    a = np.array([a_bits], dtype=np.uint32).view(np.float32)
    b = np.array([b_bits], dtype=np.uint32).view(np.float32)
    if np.isnan(a[0]) or np.isnan(b[0]):
        return
    got = golden.fp32_add(a, b)
    if np.isinf(a[0]) or np.isinf(b[0]):
        want_f = float(a[0]) + float(b[0])
        assert (np.isnan(got[0]) and want_f != want_f) or got[0] == want_f
        return
    want = ref.fp32_add_exact(Fraction(float(a[0])), Fraction(float(b[0])))
    both_neg_zero = a_bits == 0x80000000 and b_bits == 0x80000000
    assert int(got.view(np.uint32)[0]) == ref.value_to_fp32_bits(want, both_neg_zero)


def test_fp32_add_keeps_subnormals_and_overflows_to_inf() -> None:
    tiny = np.array([2.0**-149], dtype=np.float32)
    assert golden.fp32_add(tiny, tiny)[0] == np.float32(2.0**-148)
    big = np.array([np.finfo(np.float32).max], dtype=np.float32)
    assert np.isposinf(golden.fp32_add(big, big)[0])
    assert golden.fp32_add(np.float32([5.5]), np.float32([-5.5])).view(np.uint32)[0] == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_activations_are_rejected_with_a_clear_error(bad: float) -> None:
    rng = np.random.default_rng(0)
    program = random_program(rng, C=2, K=4, M=2, D=4)
    A = np.zeros((3, 4), dtype=np.float32)
    A[1, 2] = bad
    with pytest.raises(HalutError, match="row 1, column 2"):
        golden.run(program, A)


def test_nan_features_never_reach_the_tree() -> None:
    rng = np.random.default_rng(0)
    program = random_program(rng, C=2, K=4, M=2, D=4)
    f = np.full((1, 2, 2), np.nan, dtype=np.float16)
    with pytest.raises(HalutError, match="NaN"):
        golden.encode(program, f)


@pytest.mark.parametrize("A,match", [
    (np.zeros((3, 5), np.float32), "4 columns"),
    (np.zeros((3,), np.float32), "2-D"),
    (np.zeros((0, 4), np.float32), "empty"),
    (np.zeros((3, 4), np.int32), "float array"),
])
def test_bad_activation_shapes_and_dtypes_are_rejected(A: np.ndarray, match: str) -> None:
    program = random_program(np.random.default_rng(0), C=2, K=4, M=2, D=4)
    with pytest.raises(HalutError, match=match):
        golden.run(program, A)
