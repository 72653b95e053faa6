"""The quantized hardware program: what the accelerator stores.

This module is the single home of the program's layout (see docs/numeric-contract.md). The
golden model, the RTL drivers, the GPU path and the docs all import it; nothing re-derives
heap order or formats elsewhere.

Layout
------
* ``dims``        (C, L) int32: input dimension looked at by level ``l`` of codebook ``c``.
* ``thresholds``  (C, K-1) in heap order: node 0 is the root, node ``2**l - 1 + prefix`` is
  the node at level ``l`` reached by the ``prefix`` bits so far. dtype float16 (threshold
  format ``fp16``) or int8 (format ``int8``).
* ``lut``         (M, C, K): int8 (LUT format ``int8``) or float16 (``fp16``).
* ``scale``, ``bias`` (M,) float32: host dequantization ``y = float32(acc) * scale + bias``.
* ``input_scale`` float32: int8 features are
  ``saturate(round_half_even(float32(x) * input_scale))``; ignored (1.0) for fp16 features.

The address map of the configuration port and the writes that load a program are the
accelerator's interface, not the program's: they live in ``emulator/hwif.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from learning.errors import HalutError

ThresholdFormat = Literal["fp16", "int8"]
LutFormat = Literal["int8", "fp16"]
THRESHOLD_FORMATS: tuple[str, ...] = ("fp16", "int8")
LUT_FORMATS: tuple[str, ...] = ("int8", "fp16")
K_MIN, K_MAX = 2, 256


def log2_exact(k: int) -> int:
    """``log2(k)`` for a power of two ``k`` in [2, 256]; a :class:`HalutError` otherwise."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise HalutError(f"K must be an integer, got {k!r}")
    if k < K_MIN or k > K_MAX or (k & (k - 1)) != 0:
        raise HalutError(f"K must be a power of two between {K_MIN} and {K_MAX}, got {k}")
    return int(k).bit_length() - 1


def clog2(n: int) -> int:
    """Bits to index ``n`` items, at least 1 (the RTL's field width rule)."""
    return max(1, (int(n) - 1).bit_length())


def heap_node(level: int, prefix: int) -> int:
    """Heap index of the node at ``level`` reached by ``prefix`` (the bits taken so far)."""
    return (1 << level) - 1 + prefix


def codebook_bounds(D: int, C: int) -> np.ndarray:
    """Start offsets of the C contiguous codebooks over D dims, shape (C+1,), int64.

    Codebook ``c`` covers ``[bounds[c], bounds[c+1])``; sizes differ by at most one (the
    first ``D % C`` codebooks get one extra dimension).
    """
    if C < 1 or D < 1:
        raise HalutError(f"need C >= 1 and D >= 1, got C={C}, D={D}")
    if C > D:
        raise HalutError(f"C={C} codebooks cannot split D={D} input dimensions (need C <= D)")
    sizes = np.full(C, D // C, dtype=np.int64)
    sizes[: D % C] += 1
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


class LutShape:
    """Shape facts of a class holding an ``(M, C, K)`` ``lut``: ``M``, ``C``, ``K`` and
    ``L = log2 K`` (shared by :class:`HardwareProgram` and ``learning.model.HalutModel``)."""

    lut: np.ndarray

    @property
    def M(self) -> int:
        return int(self.lut.shape[0])

    @property
    def C(self) -> int:
        return int(self.lut.shape[1])

    @property
    def K(self) -> int:
        return int(self.lut.shape[2])

    @property
    def L(self) -> int:
        return log2_exact(self.K)


@dataclass(frozen=True, eq=False)
class HardwareProgram(LutShape):
    """A quantized MADDNESS program, validated on construction (see module docstring)."""

    dims: np.ndarray
    thresholds: np.ndarray
    lut: np.ndarray
    scale: np.ndarray
    bias: np.ndarray
    D: int
    threshold_format: str = "fp16"
    lut_format: str = "int8"
    input_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.threshold_format not in THRESHOLD_FORMATS:
            raise HalutError(f"threshold format must be one of {THRESHOLD_FORMATS}, "
                             f"got {self.threshold_format!r}")
        if self.lut_format not in LUT_FORMATS:
            raise HalutError(f"LUT format must be one of {LUT_FORMATS}, got {self.lut_format!r}")
        lut = np.asarray(self.lut)
        if lut.ndim != 3:
            raise HalutError(f"lut must have shape (M, C, K), got {lut.shape}")
        M, C, K = lut.shape
        L = log2_exact(K)
        want_lut = np.float16 if self.lut_format == "fp16" else np.int8
        if lut.dtype != want_lut:
            raise HalutError(f"lut dtype must be {np.dtype(want_lut)} for format "
                             f"{self.lut_format}, got {lut.dtype}")
        if lut.dtype == np.float16 and not np.all(np.isfinite(lut)):
            raise HalutError("lut holds NaN or inf entries")
        dims = np.asarray(self.dims)
        if dims.shape != (C, L) or not np.issubdtype(dims.dtype, np.integer):
            raise HalutError(f"dims must be integer with shape (C, L) = ({C}, {L}), "
                             f"got {dims.dtype} {dims.shape}")
        if int(self.D) < 1 or int(self.D) < C:
            raise HalutError(f"D={self.D} must be >= C={C}")
        if dims.size and (dims.min() < 0 or dims.max() >= self.D):
            raise HalutError(f"dims must lie in [0, D={self.D}), got range "
                             f"[{dims.min()}, {dims.max()}]")
        thr = np.asarray(self.thresholds)
        want_thr = np.float16 if self.threshold_format == "fp16" else np.int8
        if thr.shape != (C, K - 1) or thr.dtype != want_thr:
            raise HalutError(f"thresholds must be {np.dtype(want_thr)} with shape (C, K-1) = "
                             f"({C}, {K - 1}), got {thr.dtype} {thr.shape}")
        if thr.dtype == np.float16 and np.any(np.isnan(thr)):
            raise HalutError("thresholds hold NaN")
        for name in ("scale", "bias"):
            v = np.asarray(getattr(self, name))
            if v.shape != (M,) or v.dtype != np.float32:
                raise HalutError(f"{name} must be float32 with shape (M,) = ({M},), "
                                 f"got {v.dtype} {v.shape}")
            if not np.all(np.isfinite(v)):
                raise HalutError(f"{name} holds NaN or inf")
        s = float(self.input_scale)
        if not np.isfinite(s) or s <= 0:
            raise HalutError(f"input_scale must be finite and > 0, got {self.input_scale}")
        # store canonical, read-only arrays
        for name, arr in (("dims", dims.astype(np.int32)), ("thresholds", thr), ("lut", lut),
                          ("scale", np.asarray(self.scale)), ("bias", np.asarray(self.bias))):
            arr = np.ascontiguousarray(arr).copy()
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "D", int(self.D))
        object.__setattr__(self, "input_scale", float(np.float32(s)))

    # ---- formats -----------------------------------------------------------------------
    @property
    def feature_dtype(self) -> type[np.generic]:
        return np.float16 if self.threshold_format == "fp16" else np.int8

    @property
    def acc_dtype(self) -> type[np.generic]:
        return np.int32 if self.lut_format == "int8" else np.float32

    def replace(self, **changes: object) -> HardwareProgram:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def column_slice(self, lo: int, hi: int) -> HardwareProgram:
        """The program restricted to output columns ``[lo, hi)`` (one tile)."""
        if not 0 <= lo < hi <= self.M:
            raise HalutError(f"column range [{lo}, {hi}) is outside [0, {self.M})")
        return self.replace(lut=self.lut[lo:hi], scale=self.scale[lo:hi], bias=self.bias[lo:hi])

    def summary(self) -> dict[str, object]:
        return {"C": self.C, "K": self.K, "D": self.D, "M": self.M,
                "threshold_format": self.threshold_format, "lut_format": self.lut_format,
                "input_scale": self.input_scale}
