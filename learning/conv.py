"""Convolution geometry and im2col in numpy: the one home of the convolution's row layout.

A 2-D convolution becomes a matrix product over im2col patches: row ``(n * Hout + i) * Wout
+ j`` is the patch of output pixel (i, j) of image n, column ``(cin * kh + di) * kw + dj``
(the feature order of torch's ``weight.reshape(Cout, -1)``). The layer runner
(emulator/layers.py), the torch modules and layer replacement all use it; it needs no torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from learning.errors import HalutError


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        t = (int(v), int(v))
    else:
        try:
            items = [int(x) for x in v]  # type: ignore[union-attr]
        except TypeError:
            raise HalutError(f"{name} must be an int or a pair of ints, got {v!r}") from None
        if len(items) != 2:
            raise HalutError(f"{name} must be an int or a pair of ints, got {v!r}")
        t = (items[0], items[1])
    return t


@dataclass(frozen=True)
class Conv2dGeometry:
    """A 2-D convolution's geometry (groups = 1, zero padding), validated on construction.

    ``kernel_size``, ``stride``, ``padding``, ``dilation`` accept an int or a pair.
    """

    in_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        if int(self.in_channels) < 1:
            raise HalutError(f"in_channels must be >= 1, got {self.in_channels}")
        object.__setattr__(self, "in_channels", int(self.in_channels))
        for name, low in (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
            pair = _pair(getattr(self, name), name)
            if min(pair) < low:
                raise HalutError(f"{name} must be >= {low}, got {pair}")
            object.__setattr__(self, name, pair)
        reach = tuple(d * (k - 1) for d, k in zip(self.dilation, self.kernel_size, strict=True))
        if any(p > r for p, r in zip(self.padding, reach, strict=True)):
            raise HalutError(f"padding {self.padding} exceeds dilation*(kernel_size-1) = "
                             f"{reach} (kernel {self.kernel_size}, dilation {self.dilation}): "
                             "the outer output rows or columns would see only zero padding")

    @property
    def patch_size(self) -> int:
        """D of the im2col rows: in_channels * kh * kw."""
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(Hout, Wout) for an input of (height, width); a HalutError if it is empty."""
        out = []
        for size, k, s, p, d in zip((height, width), self.kernel_size, self.stride,
                                    self.padding, self.dilation, strict=True):
            span = d * (k - 1) + 1
            if size + 2 * p < span:
                raise HalutError(f"input of {height}x{width} (padding {self.padding}) is smaller "
                                 f"than the dilated kernel {self.kernel_size} "
                                 f"(dilation {self.dilation})")
            out.append((size + 2 * p - span) // s + 1)
        return out[0], out[1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def make(cls, in_channels: int, kernel_size: int | Sequence[int],
             stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
             dilation: int | Sequence[int] = 1) -> Conv2dGeometry:
        """Like the constructor, with ints or pairs (as ``nn.Conv2d`` takes them)."""
        return cls(in_channels, _pair(kernel_size, "kernel_size"), _pair(stride, "stride"),
                   _pair(padding, "padding"), _pair(dilation, "dilation"))

    @classmethod
    def from_conv(cls, conv: Any) -> Conv2dGeometry:
        """From an ``nn.Conv2d`` (or anything with its attributes)."""
        if conv.groups != 1:
            raise HalutError(f"only groups=1 convolutions can be replaced, got "
                             f"groups={conv.groups}")
        if conv.padding_mode != "zeros":
            raise HalutError(f"only zero padding is supported, got {conv.padding_mode!r}")
        if isinstance(conv.padding, str):
            raise HalutError(f"padding={conv.padding!r} is not supported; give explicit sizes")
        return cls.make(conv.in_channels, conv.kernel_size, conv.stride,
                        conv.padding, conv.dilation)


def check_conv_input(X: np.ndarray, geometry: Conv2dGeometry) -> np.ndarray:
    """``X`` as a finite float32 (N, Cin, H, W) array, or one clear HalutError."""
    arr = np.asarray(X)
    if not np.issubdtype(arr.dtype, np.floating):
        raise HalutError(f"conv2d activations must be a float array, got dtype {arr.dtype}")
    if arr.ndim != 4:
        raise HalutError(f"conv2d activations must have shape (N, Cin, H, W), got {arr.shape}")
    if arr.shape[1] != geometry.in_channels:
        raise HalutError(f"conv2d activations have {arr.shape[1]} channels, the layer takes "
                         f"{geometry.in_channels}")
    if arr.shape[0] == 0:
        raise HalutError(f"conv2d activations are empty (shape {arr.shape})")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise HalutError("conv2d activations hold NaN or inf (the accelerator takes finite "
                         "values only)")
    return out


def im2col(X: np.ndarray, geometry: Conv2dGeometry) -> np.ndarray:
    """Patches of ``X`` as matrix rows, in the feature order of ``weight.reshape(Cout, -1)``.

    Parameters
    ----------
    X : (N, Cin, H, W) float array
    geometry : the convolution

    Returns
    -------
    (N * Hout * Wout, Cin * kh * kw) float32; row ``(n * Hout + i) * Wout + j`` is the patch of
    output pixel (i, j) of image n, column ``(cin * kh + di) * kw + dj``.
    """
    X = check_conv_input(X, geometry)
    N, Cin, H, W = X.shape
    Hout, Wout = geometry.output_size(H, W)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (geometry.kernel_size, geometry.stride,
                                              geometry.padding, geometry.dilation)
    Xp = np.pad(X, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((N, Hout, Wout, Cin, kh, kw), dtype=np.float32)
    for di in range(kh):
        for dj in range(kw):
            r0, c0 = di * dh, dj * dw
            patch = Xp[:, :, r0:r0 + sh * (Hout - 1) + 1:sh, c0:c0 + sw * (Wout - 1) + 1:sw]
            cols[:, :, :, :, di, dj] = patch.transpose(0, 2, 3, 1)
    return cols.reshape(N * Hout * Wout, Cin * kh * kw)


def rows_to_nchw(Y: np.ndarray, N: int, Hout: int, Wout: int) -> np.ndarray:
    """im2col-ordered outputs (N*Hout*Wout, Cout) -> (N, Cout, Hout, Wout)."""
    M = Y.shape[1]
    return np.ascontiguousarray(Y.reshape(N, Hout, Wout, M).transpose(0, 3, 1, 2))
