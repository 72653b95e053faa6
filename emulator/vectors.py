"""Test vectors for every backend: random programs and the golden corner-case table.

Shared by the golden, RTL, GPU and gate-level tests, so that each runs the same stimulus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from learning.program import HardwareProgram, log2_exact

# shape of every corner-case program: small, and inside the RTL test covering set
CORNER_C, CORNER_K, CORNER_M, CORNER_D = 3, 4, 8, 6
FP16_MAX = 65504.0
FP16_MIN_SUB = 2.0**-24


def random_program(rng: np.random.Generator, C: int, K: int, M: int, D: int,
                   threshold_format: str = "fp16", lut_format: str = "int8",
                   input_scale: float = 32.0) -> HardwareProgram:
    """A random but valid program: full-range int8 LUTs, fp16 LUTs with exact opposites
    (so partial sums cancel), fp16 thresholds around zero, int8 thresholds over the range."""
    L = log2_exact(K)
    dims = rng.integers(0, D, size=(C, L)).astype(np.int32)
    if threshold_format == "fp16":
        thr = rng.standard_normal((C, K - 1)).astype(np.float16)
    else:
        thr = rng.integers(-128, 128, size=(C, K - 1)).astype(np.int8)
    if lut_format == "int8":
        lut = rng.integers(-128, 128, size=(M, C, K)).astype(np.int8)
    else:
        vals = (rng.standard_normal((M, C, K)) * rng.choice([1e-3, 1.0, 100.0], size=(M, C, K)))
        lut = vals.astype(np.float16)
        flip = rng.random((M, C, K)) < 0.3  # some entries are exact negatives of others
        lut = np.where(flip, -np.roll(lut, 1, axis=1), lut).astype(np.float16)
    scale = rng.uniform(1e-3, 0.1, size=M).astype(np.float32)
    bias = rng.standard_normal(M).astype(np.float32)
    return HardwareProgram(dims=dims, thresholds=thr, lut=lut, scale=scale, bias=bias, D=D,
                           threshold_format=threshold_format, lut_format=lut_format,
                           input_scale=input_scale if threshold_format == "int8" else 1.0)


def threshold_as_float(program: HardwareProgram) -> np.ndarray:
    """Activations that convert exactly onto each threshold: (C, K-1) float32."""
    if program.threshold_format == "fp16":
        return program.thresholds.astype(np.float32)
    return (program.thresholds.astype(np.float32) / np.float32(program.input_scale))


def random_activations(rng: np.random.Generator, program: HardwareProgram, N: int,
                       tie_prob: float = 0.15) -> np.ndarray:
    """(N, D) float32 activations; about ``tie_prob`` of the gathered features are set to
    land exactly on a threshold of their level, so ties (f == t goes left) are exercised."""
    A = rng.standard_normal((N, program.D)).astype(np.float32)
    if program.threshold_format == "int8":
        A *= np.float32(64.0 / program.input_scale)
    t = threshold_as_float(program)
    for c in range(program.C):
        for level in range(program.L):
            rows = np.nonzero(rng.random(N) < tie_prob)[0]
            nodes = (1 << level) - 1 + rng.integers(0, 1 << level, size=rows.size)
            A[rows, program.dims[c, level]] = t[c, nodes]
    return A


@dataclass(frozen=True)
class CornerCase:
    name: str
    program: HardwareProgram
    A: np.ndarray  # (N, CORNER_D) float32


def _code_revealing_lut(lut_format: str) -> np.ndarray:
    """LUT with ``lut[m, c, k] = k`` where ``c == m % C`` and 0 elsewhere: y[:, m] = code[c]."""
    lut = np.zeros((CORNER_M, CORNER_C, CORNER_K), dtype=np.float32)
    for m in range(CORNER_M):
        lut[m, m % CORNER_C, :] = np.arange(CORNER_K)
    return lut.astype(np.float16 if lut_format == "fp16" else np.int8)


def _program(thr: np.ndarray, lut: np.ndarray, threshold_format: str, lut_format: str,
             input_scale: float = 1.0) -> HardwareProgram:
    # codebook c looks at dims (2c, 2c+1) for its two levels
    dims = np.arange(CORNER_C * 2, dtype=np.int32).reshape(CORNER_C, 2)
    return HardwareProgram(
        dims=dims, thresholds=thr, lut=lut,
        scale=np.ones(CORNER_M, np.float32), bias=np.zeros(CORNER_M, np.float32),
        D=CORNER_D, threshold_format=threshold_format, lut_format=lut_format,
        input_scale=input_scale)


def _rows(values_per_dim: list[list[float]]) -> np.ndarray:
    return np.array(values_per_dim, dtype=np.float32)


def _fp16_compare_cases(lut_format: str) -> list[CornerCase]:
    sub = FP16_MIN_SUB
    lut = _code_revealing_lut(lut_format)
    cases = []
    # root thresholds per codebook: +0, -0, a subnormal; level-1 nodes the same
    thr = np.array([[0.0, -0.0, 3 * sub], [-0.0, 0.0, sub], [3 * sub, FP16_MAX, -FP16_MAX]],
                   dtype=np.float16)
    A = _rows([
        [-0.0, 0.0, 0.0, -0.0, 3 * sub, 3 * sub],       # -0 vs +0, +0 vs -0, ties on subnormal
        [sub, -sub, sub, -sub, 4 * sub, 2 * sub],        # smallest subnormals either side
        [0.0, 0.0, -0.0, -0.0, 2 * sub, 4 * sub],
        [1e-9, -1e-9, 1e-9, -1e-9, 2.5 * sub, 3.5 * sub],  # rounds to +-0 / subnormal ties
        [-1.0, 1.0, 1.0, -1.0, -1.0, 1.0],
    ])
    cases.append(CornerCase("fp16 signed zeros and subnormals", _program(
        thr, lut, "fp16", lut_format), A))
    thr2 = np.array([[1.0, 1.0, 1.0], [FP16_MAX, FP16_MAX, FP16_MAX],
                     [-FP16_MAX, np.inf, -np.inf]], dtype=np.float16)
    A2 = _rows([
        [1.0, 1.0, FP16_MAX, FP16_MAX, -FP16_MAX, -FP16_MAX],   # ties go left
        [1 + 2**-11, 1 + 3 * 2**-11, 65519.0, 65520.0, -1e6, 1e6],  # RNE ties; overflow to inf
        [1 + 2**-10, 1 - 2**-12, 1e30, -1e30, -65520.0, 65519.99],
        [np.nextafter(np.float32(1.0), np.float32(2.0)), 0.9999999, 0.0, 0.0, 1e6, -1e6],
    ])
    cases.append(CornerCase("fp16 ties, rounding, max and inf", _program(
        thr2, lut, "fp16", lut_format), A2))
    return cases


def _int8_compare_cases(lut_format: str) -> list[CornerCase]:
    lut = _code_revealing_lut(lut_format)
    s = 4.0  # input scale: q = rne(x * 4)
    thr = np.array([[-128, -128, 127], [127, 0, -1], [0, -128, 127]], dtype=np.int8)
    A = _rows([
        [-32.0, -32.0, 31.75, 31.75, 0.0, 0.0],      # exactly on -128 / 127 / 0: ties left
        [-1e9, 1e9, -0.125, 0.125, 0.375, -0.375],    # saturation; rne ties 0.5 -> 0, 1.5 -> 2
        [31.875, -31.875, 0.625, -0.625, -32.125, 32.125],  # 127.5 -> 127 (sat after rne 128)
        [-31.875, 31.0, -0.1, 0.1, 1e30, -1e30],
    ])
    return [CornerCase("int8 extremes, saturation and round-half-even", _program(
        thr, lut, "int8", lut_format, input_scale=s), A)]


def _lut_cases(threshold_format: str, lut_format: str) -> list[CornerCase]:
    """Accumulation corners, with codes forced by the features (all thresholds zero)."""
    C, K, M = CORNER_C, CORNER_K, CORNER_M
    thr_dtype = np.float16 if threshold_format == "fp16" else np.int8
    thr = np.zeros((C, K - 1), dtype=thr_dtype)
    # feature pattern for code k of a codebook: bit1 = f0 > 0, bit0 = f1 > 0
    pat = {0: (-1.0, -1.0), 1: (-1.0, 1.0), 2: (1.0, -1.0), 3: (1.0, 1.0)}
    A = _rows([[v for c in range(C) for v in pat[(n + c) % K]] for n in range(K)]
              + [[v for c in range(C) for v in pat[k]] for k in range(K)])
    scale = 1.0
    if lut_format == "int8":
        lut = np.zeros((M, C, K), dtype=np.int8)
        lut[0] = [[127, -128, 100, -100], [127, -128, -100, 100], [127, -128, 0, 1]]
        lut[1] = [[-128, -128, -128, -128], [-128, -128, -128, -128], [-128, -128, -128, -128]]
        lut[2] = [[127, 127, 127, 127], [127, 127, 127, 127], [127, 127, 127, 127]]
        lut[3] = [[1, -1, 50, -50], [-1, 1, -50, 50], [0, 0, 0, 0]]  # partial sums cancel
        for m in range(4, M):
            lut[m] = np.arange(-128, 128, 256 // (C * K))[: C * K].reshape(C, K)
        name = "int8 LUT extremes and exact cancellation"
    else:
        big, sub = FP16_MAX, FP16_MIN_SUB
        lut16 = np.zeros((M, C, K), dtype=np.float64)
        lut16[0] = [[big, -big, 1.0, -0.0], [-big, big, -1.0, -0.0], [big, big, 0.0, -0.0]]
        lut16[1] = [[sub, -sub, 2.0**-14, -(2.0**-14)], [sub, sub, -sub, 2.0**-15],
                    [-sub, -sub, sub, -(2.0**-15)]]
        # fp32 round-to-nearest-even ties: 1 + 2^-23 + 2^-24 and 1 + 2^-24
        lut16[2] = [[1.0, 1.0, 2048.0, -0.0], [2.0**-23, 0.0, 2.0**-13, -0.0],
                    [2.0**-24, 2.0**-24, 2.0**-13, -0.0]]
        lut16[3] = [[3.0, -3.0, 0.1, -0.1], [-3.0, 3.0, -0.1, 0.1], [0.0, -0.0, -0.0, 0.0]]
        for m in range(4, M):
            lut16[m] = np.linspace(-big, big, C * K).reshape(C, K) / (m - 3)
        lut = lut16.astype(np.float16)
        name = "fp16 LUT: cancellation to +0, -0, subnormals, fp32 ties, fp16 max"
    dims = np.arange(C * 2, dtype=np.int32).reshape(C, 2)
    prog = HardwareProgram(dims=dims, thresholds=thr, lut=lut, scale=np.full(M, scale, np.float32),
                           bias=np.zeros(M, np.float32), D=CORNER_D,
                           threshold_format=threshold_format, lut_format=lut_format,
                           input_scale=4.0 if threshold_format == "int8" else 1.0)
    return [CornerCase(name, prog, A)]


def corner_cases(threshold_format: str = "fp16", lut_format: str = "int8") -> list[CornerCase]:
    """The golden corner-case table for one format pair; every program has shape
    (C, K, M, D) = (3, 4, 8, 6)."""
    if threshold_format == "fp16":
        cases = _fp16_compare_cases(lut_format)
    else:
        cases = _int8_compare_cases(lut_format)
    return cases + _lut_cases(threshold_format, lut_format)
