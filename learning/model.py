"""The learned (float) MADDNESS model: encoders, LUT, bias, and what quantization needs.

A :class:`HalutModel` is what :func:`learning.learn` returns and what
:func:`learning.quantize` turns into a :class:`learning.program.HardwareProgram`. It uses
the hardware's layout (heap-ordered thresholds, ``dims[c, l]`` per level, LUT ``(M, C, K)``)
but keeps everything in float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from learning.errors import HalutError
from learning.program import LutShape, log2_exact
from learning.validate import as_float_matrix


def _frozen(arr: np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(arr).copy()
    out.setflags(write=False)
    return out


def _float_array(x: object, name: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise HalutError(f"model {name} must be a float array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise HalutError(f"model {name} must have shape {shape}, got {arr.shape}")
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise HalutError(f"model {name} holds NaN or inf")
    return _frozen(out)


def tree_encode(dims: np.ndarray, thresholds: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Walk heap-ordered trees: ``code = 2*code + (f[:, c, l] > t[c, node])``.

    The one tree walk of the project: learning encodes float features with it, and the
    golden model (``emulator.golden.encode``) encodes the hardware's fp16/int8 features with
    it (numpy's ``>`` on float16 is the IEEE order with -0 == +0, on int8 the signed order).

    Parameters
    ----------
    dims : (C, L) int, only its shape is used
    thresholds : (C, K-1) in heap order, any ordered dtype comparable with ``features``
    features : (N, C, L) gathered features ``A[n, dims[c, l]]``

    Returns
    -------
    (N, C) int32 codes in [0, K)
    """
    C, L = dims.shape
    N = features.shape[0]
    code = np.zeros((N, C), dtype=np.int32)
    cols = np.arange(C)[None, :]
    for level in range(L):
        t = thresholds[cols, (1 << level) - 1 + code]
        code = 2 * code + (features[:, :, level] > t).astype(np.int32)
    return code


@dataclass(frozen=True, eq=False)
class HalutModel(LutShape):
    """A float MADDNESS model for one layer ``Y = A @ weights + bias`` (A: (N, D)).

    Attributes
    ----------
    dims : (C, L) int32, the input dimension split on by level ``l`` of codebook ``c``
    thresholds : (C, K-1) float32, node thresholds in heap order (bit = ``x > t``)
    lut : (M, C, K) float32, ``lut[m, c, k] = prototype[c, k] . weights[:, m]``
    bias : (M,) float32, added to every output row
    D : int, input dimensions
    weights : (D, M) float32 or None, the exact weights (for the ``float`` backend)
    stats : dict, training facts (``nmse_train``, ``n_rows``, ``seconds``, ...)
    counts : (C, K) int64 or None, training rows per leaf
    calibration : (R, C, L) float32 or None, a sample of training features at the split
        dims, used by :func:`learning.quantize` to choose the int8 input scale
    """

    dims: np.ndarray
    thresholds: np.ndarray
    lut: np.ndarray
    bias: np.ndarray
    D: int
    weights: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    counts: np.ndarray | None = None
    calibration: np.ndarray | None = None

    def __post_init__(self) -> None:
        lut = np.asarray(self.lut)
        if lut.ndim != 3:
            raise HalutError(f"model lut must have shape (M, C, K), got {lut.shape}")
        M, C, K = (int(s) for s in lut.shape)
        L = log2_exact(K)
        D = int(self.D)
        if D < 1 or C < 1 or M < 1 or C > D:
            raise HalutError(f"model needs 1 <= C <= D and M >= 1, got C={C}, D={D}, M={M}")
        dims = np.asarray(self.dims)
        if dims.shape != (C, L) or not np.issubdtype(dims.dtype, np.integer):
            raise HalutError(f"model dims must be integer with shape ({C}, {L}), "
                             f"got {dims.dtype} {dims.shape}")
        if dims.min() < 0 or dims.max() >= D:
            raise HalutError(f"model dims must lie in [0, {D}), got [{dims.min()}, "
                             f"{dims.max()}]")
        object.__setattr__(self, "dims", _frozen(dims.astype(np.int32)))
        object.__setattr__(self, "thresholds",
                           _float_array(self.thresholds, "thresholds", (C, K - 1)))
        object.__setattr__(self, "lut", _float_array(lut, "lut", (M, C, K)))
        object.__setattr__(self, "bias", _float_array(self.bias, "bias", (M,)))
        object.__setattr__(self, "D", D)
        if self.weights is not None:
            object.__setattr__(self, "weights", _float_array(self.weights, "weights", (D, M)))
        if self.counts is not None:
            counts = np.asarray(self.counts)
            if counts.shape != (C, K) or not np.issubdtype(counts.dtype, np.integer):
                raise HalutError(f"model counts must be non-negative integers with shape "
                                 f"({C}, {K}), got {counts.dtype} {counts.shape}")
            if counts.size and counts.min() < 0:
                raise HalutError(f"model counts must be non-negative, got {counts.min()}")
            object.__setattr__(self, "counts", _frozen(counts.astype(np.int64)))
        if self.calibration is not None:
            cal = np.asarray(self.calibration)
            if cal.ndim != 3 or cal.shape[1:] != (C, L):
                raise HalutError(f"model calibration must have shape (R, {C}, {L}), "
                                 f"got {cal.shape}")
            object.__setattr__(self, "calibration",
                               _float_array(cal, "calibration", tuple(cal.shape)))
        if not isinstance(self.stats, Mapping):
            raise HalutError(f"model stats must be a dict, got {type(self.stats).__name__}")
        object.__setattr__(self, "stats", dict(self.stats))

    # ---- inference ---------------------------------------------------------------------
    def encode(self, A: np.ndarray) -> np.ndarray:
        """Codes of activations ``A`` (N, D) float: (N, C) int32 in [0, K)."""
        A32 = as_float_matrix(A, "activations", cols=self.D)
        return tree_encode(self.dims, self.thresholds, A32[:, self.dims])

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """``y[n, m] = sum_c lut[m, c, codes[n, c]] + bias[m]``: (N, M) float32."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.C:
            raise HalutError(f"codes must have shape (N, {self.C}), got {codes.shape}")
        y = np.zeros((codes.shape[0], self.M), dtype=np.float32)
        for c in range(self.C):
            y += self.lut[:, c, codes[:, c]].T
        return y + self.bias[None, :]

    def predict(self, A: np.ndarray) -> np.ndarray:
        """Float MADDNESS output for ``A`` (N, D): (N, M) float32 (float thresholds, float
        LUT, plus bias)."""
        return self.decode(self.encode(A))

    def exact(self, A: np.ndarray) -> np.ndarray:
        """The exact layer ``A @ weights + bias``: (N, M) float32."""
        if self.weights is None:
            raise HalutError("this model keeps no exact weights (learned without them)")
        A32 = as_float_matrix(A, "activations", cols=self.D)
        return (A32 @ self.weights + self.bias[None, :]).astype(np.float32)

    def summary(self) -> dict[str, Any]:
        return {"C": self.C, "K": self.K, "D": self.D, "M": self.M,
                "has_weights": self.weights is not None, **self.stats}
