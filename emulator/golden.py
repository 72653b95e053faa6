"""The golden model: the numeric contract of docs/numeric-contract.md in numpy, bit-exact.

This is the specification every other backend (RTL, GPU) is checked against. It is
written to read like the contract: short functions named after its words, vectorised over
rows and columns, looping only over codebooks. No speed tricks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from learning.errors import HalutError
from learning.model import tree_encode
from learning.program import HardwareProgram
from learning.validate import as_float_matrix


def to_fp16(x: np.ndarray) -> np.ndarray:
    """float32 -> IEEE binary16, round to nearest even, subnormals kept, overflow to inf."""
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float32).astype(np.float16)


def to_int8(x: np.ndarray, input_scale: float) -> np.ndarray:
    """float32 -> int8: ``saturate(round_half_even(x * input_scale))`` in float32."""
    with np.errstate(over="ignore"):  # beyond float32: inf, saturated below
        scaled = np.asarray(x, dtype=np.float32) * np.float32(input_scale)
    with np.errstate(invalid="ignore"):
        return np.clip(np.rint(scaled), -128, 127).astype(np.int8)


def gather_features(program: HardwareProgram, A: np.ndarray) -> np.ndarray:
    """Host side: ``f[n, c, l] = A[n, dims[c, l]]`` converted to the threshold format.

    Parameters
    ----------
    A : (N, D) float array, finite (NaN or inf is an input error)

    Returns
    -------
    (N, C, L) float16 or int8
    """
    return gather(program, as_float_matrix(A, "activations", cols=program.D))


def gather(program: HardwareProgram, A32: np.ndarray) -> np.ndarray:
    """:func:`gather_features` on activations already checked: (N, D) finite float32."""
    # f[n, c, l] = A[n, dims[c, l]] (np.take on the flat dims: the same gather, 4x faster
    # than fancy indexing with the (C, L) array)
    f = np.take(A32, program.dims.ravel(), axis=1).reshape(A32.shape[0], program.C, program.L)
    if program.threshold_format == "fp16":
        return to_fp16(f)
    return to_int8(f, program.input_scale)


def encode(program: HardwareProgram, features: np.ndarray) -> np.ndarray:
    """Walk each codebook's heap-ordered tree: ``code = 2*code + (f_l > t[node])``, the
    comparison being the IEEE order with -0 == +0 and exact subnormals (fp16) or the signed
    order (int8); the walk itself is ``learning.model.tree_encode``.

    Parameters
    ----------
    features : (N, C, L) in the threshold format

    Returns
    -------
    (N, C) int32 codes in [0, K)
    """
    if features.dtype != program.feature_dtype:
        raise HalutError(f"features must be {np.dtype(program.feature_dtype)}, "
                         f"got {features.dtype}")
    if np.issubdtype(features.dtype, np.floating) and np.any(np.isnan(features)):
        raise HalutError("a NaN feature cannot be sent to the accelerator")
    return tree_encode(program.dims, program.thresholds, features)


def fp32_add(acc: np.ndarray, x: np.ndarray) -> np.ndarray:
    """IEEE-754 binary32 addition, round to nearest even, subnormals kept (numpy does not
    flush), exact cancellation gives +0, overflow gives inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.add(acc.astype(np.float32), x.astype(np.float32), dtype=np.float32)


def accumulate(program: HardwareProgram, codes: np.ndarray) -> np.ndarray:
    """``acc[n, m] = sum_c LUT[m, c, code[n, c]]`` in codebook order c = 0..C-1.

    int8 LUT: int32 two's-complement sum (exact). fp16 LUT: ``acc = +0.0`` then
    ``acc = fp32_add(acc, fp32(lut))`` for each codebook in order.

    Returns
    -------
    (N, M) int32 or float32
    """
    N = codes.shape[0]
    if program.lut_format == "int8":
        acc_i = np.zeros((N, program.M), dtype=np.int32)
        for c in range(program.C):
            acc_i += program.lut[:, c, codes[:, c]].T.astype(np.int32)
        return acc_i
    acc = np.zeros((N, program.M), dtype=np.float32)
    for c in range(program.C):
        acc = fp32_add(acc, program.lut[:, c, codes[:, c]].T.astype(np.float32))
    return acc


def dequantize(program: HardwareProgram, acc: np.ndarray, lo: int = 0) -> np.ndarray:
    """Host side, identical for every backend: ``y = float32(acc) * scale + bias`` (two
    separately rounded float32 operations, no fused multiply-add). ``acc`` holds output
    columns ``lo .. lo + acc.shape[1] - 1`` (a column tile), by default all of them."""
    cols = slice(lo, lo + acc.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        prod = np.multiply(acc.astype(np.float32), program.scale[None, cols], dtype=np.float32)
        return np.add(prod, program.bias[None, cols], dtype=np.float32)


@dataclass(frozen=True)
class GoldenResult:
    """Every intermediate of one golden run."""

    features: np.ndarray  # (N, C, L) float16 | int8
    codes: np.ndarray  # (N, C) int32
    acc: np.ndarray  # (N, M) int32 | float32
    y: np.ndarray  # (N, M) float32


def run(program: HardwareProgram, A: np.ndarray) -> GoldenResult:
    """The whole contract for activations ``A`` (N, D): gather, encode, accumulate, dequantize."""
    f = gather_features(program, A)
    codes = encode(program, f)
    acc = accumulate(program, codes)
    return GoldenResult(features=f, codes=codes, acc=acc, y=dequantize(program, acc))
