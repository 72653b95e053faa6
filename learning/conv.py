"""Convolution geometry and im2col in numpy: the one home of the convolution's row layout.

A 2-D convolution becomes a matrix product over im2col patches: row ``(n * Hout + i) * Wout
+ j`` is the patch of output pixel (i, j) of image n, column ``(cin * kh + di) * kw + dj``
(the feature order of torch's ``weight.reshape(Cout, -1)``). The layer runner
(emulator/layers.py), the torch modules and layer replacement all use it; it needs no torch.

A grouped convolution (``groups = G``) is G matrix products: group g sees input channels
``[g*Cin/G, (g+1)*Cin/G)``, which are the contiguous im2col columns
:meth:`Conv2dGeometry.group_columns`, and produces output channels ``[g*Cout/G, (g+1)*Cout/G)``;
each group is its own MADDNESS problem with ``D = Cin/G * kh * kw`` and ``M = Cout/G``.
A 1-D convolution is the 2-D one with a height-1 kernel on a height-1 image
(:class:`Conv1dGeometry`); its rows are ``n * Lout + i`` and its columns ``cin * k + dj``.

Padding is zeros (``padding_mode='zeros'``) or, as torch does, the input padded first with
``reflect``, ``replicate`` or ``circular`` values; ``padding='same'`` pads ``d*(k-1)//2``
before and the rest after (torch's rule, also for even kernels), ``'valid'`` is no padding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from learning.errors import HalutError

#: torch's padding modes and the numpy ``np.pad`` mode that computes each exactly
PADDING_MODES: dict[str, str] = {"zeros": "constant", "reflect": "reflect",
                                 "replicate": "edge", "circular": "wrap"}

Padding = tuple[int, int] | str


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


def _single(v: int | Sequence[int], name: str) -> int:
    """An int, or a 1-tuple of one (torch's Conv1d stores ``kernel_size=(3,)``)."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    try:
        items = [int(x) for x in v]  # type: ignore[union-attr]
    except TypeError:
        raise HalutError(f"{name} must be an int, got {v!r}") from None
    if len(items) != 1:
        raise HalutError(f"{name} of a 1-D convolution must be one int, got {v!r}")
    return items[0]


def _padding(v: Any) -> Padding:
    if isinstance(v, str):
        if v == "valid":
            return (0, 0)
        if v == "same":
            return "same"
        raise HalutError(f"padding must be an int, a pair, 'same' or 'valid', got {v!r}")
    return _pair(v, "padding")


@dataclass(frozen=True)
class Conv2dGeometry:
    """A 2-D convolution's geometry, validated on construction.

    ``kernel_size``, ``stride``, ``dilation`` accept an int or a pair; ``padding`` an int, a
    pair, ``'same'`` (stride 1 only, as in torch) or ``'valid'`` (stored as ``(0, 0)``);
    ``groups`` divides ``in_channels``; ``padding_mode`` is one of :data:`PADDING_MODES`.
    """

    in_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: Padding = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    padding_mode: str = "zeros"

    def __post_init__(self) -> None:
        if int(self.in_channels) < 1:
            raise HalutError(f"in_channels must be >= 1, got {self.in_channels}")
        object.__setattr__(self, "in_channels", int(self.in_channels))
        for name, low in (("kernel_size", 1), ("stride", 1), ("dilation", 1)):
            pair = _pair(getattr(self, name), name)
            if min(pair) < low:
                raise HalutError(f"{name} must be >= {low}, got {pair}")
            object.__setattr__(self, name, pair)
        padding = _padding(self.padding)
        if isinstance(padding, tuple) and min(padding) < 0:
            raise HalutError(f"padding must be >= 0, got {padding}")
        object.__setattr__(self, "padding", padding)
        if padding == "same" and self.stride != (1, 1):
            raise HalutError(f"padding='same' needs stride 1 (as in torch), got stride "
                             f"{self.stride}")
        groups = self.groups
        if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
            raise HalutError(f"groups must be a positive int, got {groups!r}")
        if self.in_channels % int(groups):
            raise HalutError(f"groups={groups} does not divide in_channels={self.in_channels}")
        object.__setattr__(self, "groups", int(groups))
        if self.padding_mode not in PADDING_MODES:
            raise HalutError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got "
                             f"{self.padding_mode!r}")
        reach = tuple(d * (k - 1) for d, k in zip(self.dilation, self.kernel_size, strict=True))
        if isinstance(padding, tuple) and any(p > r for p, r in zip(padding, reach, strict=True)):
            raise HalutError(f"padding {padding} exceeds dilation*(kernel_size-1) = "
                             f"{reach} (kernel {self.kernel_size}, dilation {self.dilation}): "
                             "the outer output rows or columns would see only zero padding")

    @property
    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((top, bottom), (left, right)): the padding on each side ('same' resolved)."""
        if isinstance(self.padding, str):  # 'same': torch's rule, the odd one after
            out = []
            for d, k in zip(self.dilation, self.kernel_size, strict=True):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return out[0], out[1]
        ph, pw = self.padding
        return (ph, ph), (pw, pw)

    @property
    def patch_size(self) -> int:
        """Width of the im2col rows: in_channels * kh * kw (D when groups = 1)."""
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    @property
    def group_channels(self) -> int:
        """Input channels per group: in_channels / groups."""
        return self.in_channels // self.groups

    @property
    def group_patch_size(self) -> int:
        """D of each group's MADDNESS problem: in_channels / groups * kh * kw."""
        return self.group_channels * self.kernel_area

    @property
    def kernel_area(self) -> int:
        """kh * kw: the im2col columns of one input channel."""
        return self.kernel_size[0] * self.kernel_size[1]

    def group_columns(self, g: int) -> slice:
        """The im2col columns of group ``g`` (its input channels' patches)."""
        if not 0 <= g < self.groups:
            raise HalutError(f"group {g} out of range for groups={self.groups}")
        return slice(g * self.group_patch_size, (g + 1) * self.group_patch_size)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(Hout, Wout) for an input of (height, width); a HalutError if it is empty or the
        padding mode cannot pad it (torch's limits: reflect < size, circular <= size)."""
        out = []
        for axis, size, k, s, (p0, p1), d in zip(("height", "width"), (height, width),
                                                 self.kernel_size, self.stride, self.pads,
                                                 self.dilation, strict=True):
            span = d * (k - 1) + 1
            if size + p0 + p1 < span:
                raise HalutError(f"input of {height}x{width} (padding {self.padding}) is smaller "
                                 f"than the dilated kernel {self.kernel_size} "
                                 f"(dilation {self.dilation})")
            mode, pad = self.padding_mode, max(p0, p1)
            need = pad + 1 if mode == "reflect" else pad  # torch's limits for these modes
            if mode in ("reflect", "circular") and size < need:
                raise HalutError(f"{mode} padding of {pad} needs an input {axis} of at least "
                                 f"{need}, got {size}")
            out.append((size + p0 + p1 - span) // s + 1)
        return out[0], out[1]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "conv2d", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Conv2dGeometry:
        """From :meth:`to_dict` (also after a JSON round trip; older dicts lack groups and
        padding_mode)."""
        if d.get("kind", "conv2d") != "conv2d":
            raise HalutError(f"not a conv2d geometry: kind {d.get('kind')!r}")
        try:
            return cls.make(d["in_channels"], d["kernel_size"], d.get("stride", 1),
                            d.get("padding", 0), d.get("dilation", 1),
                            groups=d.get("groups", 1),
                            padding_mode=d.get("padding_mode", "zeros"))
        except KeyError as exc:
            raise HalutError(f"conv2d geometry lacks the field {exc}") from None

    @classmethod
    def make(cls, in_channels: int, kernel_size: int | Sequence[int],
             stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
             dilation: int | Sequence[int] = 1, groups: int = 1,
             padding_mode: str = "zeros") -> Conv2dGeometry:
        """Like the constructor, with ints or pairs (as ``nn.Conv2d`` takes them)."""
        return cls(in_channels, _pair(kernel_size, "kernel_size"), _pair(stride, "stride"),
                   _padding(padding), _pair(dilation, "dilation"), groups, padding_mode)

    @classmethod
    def from_conv(cls, conv: Any) -> Conv2dGeometry:
        """From an ``nn.Conv2d`` (or anything with its attributes)."""
        return cls.make(conv.in_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, conv.padding_mode)


@dataclass(frozen=True)
class Conv1dGeometry:
    """A 1-D convolution's geometry: the 2-D one (:attr:`as_2d`) with a height-1 kernel.

    Fields are ints (1-tuples, as ``nn.Conv1d`` stores them, are accepted); ``padding`` an
    int, ``'same'`` or ``'valid'`` (stored as 0).
    """

    in_channels: int
    kernel_size: int
    stride: int = 1
    padding: int | str = 0
    dilation: int = 1
    groups: int = 1
    padding_mode: str = "zeros"

    def __post_init__(self) -> None:
        for name in ("kernel_size", "stride", "dilation"):
            object.__setattr__(self, name, _single(getattr(self, name), name))
        padding: int | str
        if isinstance(self.padding, str):
            spec = _padding(self.padding)  # 'same', or (0, 0) for 'valid'
            padding = spec if isinstance(spec, str) else 0
        else:
            padding = _single(self.padding, "padding")
        object.__setattr__(self, "padding", padding)
        if int(self.in_channels) < 1:
            raise HalutError(f"in_channels must be >= 1, got {self.in_channels}")
        object.__setattr__(self, "in_channels", int(self.in_channels))
        for name in ("kernel_size", "stride", "dilation"):
            if getattr(self, name) < 1:
                raise HalutError(f"{name} must be >= 1, got {getattr(self, name)}")
        if isinstance(padding, int):
            reach = self.dilation * (self.kernel_size - 1)
            if padding < 0:
                raise HalutError(f"padding must be >= 0, got {padding}")
            if padding > reach:
                raise HalutError(f"padding {padding} exceeds dilation*(kernel_size-1) = {reach} "
                                 f"(kernel {self.kernel_size}, dilation {self.dilation}): the "
                                 "outer outputs would see only zero padding")
        self.as_2d  # noqa: B018 -- checks groups, padding_mode and 'same' with a stride

    @property
    def as_2d(self) -> Conv2dGeometry:
        """The same convolution as a Conv2dGeometry over (N, Cin, 1, L) inputs."""
        pad: Padding = "same" if self.padding == "same" else (0, int(self.padding))
        return Conv2dGeometry(int(self.in_channels), (1, self.kernel_size), (1, self.stride),
                              pad, (1, self.dilation), self.groups, self.padding_mode)

    @property
    def patch_size(self) -> int:
        """Width of the im2col rows: in_channels * k."""
        return int(self.in_channels) * self.kernel_size

    @property
    def group_channels(self) -> int:
        return int(self.in_channels) // self.groups

    @property
    def group_patch_size(self) -> int:
        """D of each group's MADDNESS problem: in_channels / groups * k."""
        return self.group_channels * self.kernel_area

    @property
    def kernel_area(self) -> int:
        """k: the im2col columns of one input channel."""
        return self.kernel_size

    def group_columns(self, g: int) -> slice:
        return self.as_2d.group_columns(g)

    @property
    def pads(self) -> tuple[int, int]:
        """(left, right) padding ('same' resolved)."""
        return self.as_2d.pads[1]

    def output_size(self, length: int) -> int:
        """Lout for an input of ``length``; a HalutError if it is empty."""
        return self.as_2d.output_size(1, length)[1]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "conv1d", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Conv1dGeometry:
        if d.get("kind") != "conv1d":
            raise HalutError(f"not a conv1d geometry: kind {d.get('kind')!r}")
        try:
            return cls(d["in_channels"], d["kernel_size"], d.get("stride", 1),
                       d.get("padding", 0), d.get("dilation", 1), d.get("groups", 1),
                       d.get("padding_mode", "zeros"))
        except KeyError as exc:
            raise HalutError(f"conv1d geometry lacks the field {exc}") from None

    @classmethod
    def from_conv(cls, conv: Any) -> Conv1dGeometry:
        """From an ``nn.Conv1d`` (or anything with its attributes)."""
        return cls(conv.in_channels, conv.kernel_size, conv.stride, conv.padding,
                   conv.dilation, conv.groups, conv.padding_mode)


ConvGeometry = Conv2dGeometry | Conv1dGeometry


def geometry_from_dict(d: Mapping[str, Any]) -> ConvGeometry:
    """A conv geometry from its ``to_dict()`` (``kind`` conv2d, the default, or conv1d)."""
    if not isinstance(d, Mapping):
        raise HalutError(f"a conv geometry must be a dict, got {type(d).__name__}")
    kind = d.get("kind", "conv2d")
    if kind == "conv1d":
        return Conv1dGeometry.from_dict(d)
    if kind == "conv2d":
        return Conv2dGeometry.from_dict(d)
    raise HalutError(f"unknown conv geometry kind {kind!r} (conv1d or conv2d)")


def check_conv_input(X: np.ndarray, geometry: ConvGeometry) -> np.ndarray:
    """``X`` as a finite float32 (N, Cin, H, W) array ((N, Cin, L) for a Conv1dGeometry), or
    one clear HalutError."""
    one_d = isinstance(geometry, Conv1dGeometry)
    kind, want = ("conv1d", "(N, Cin, L)") if one_d else ("conv2d", "(N, Cin, H, W)")
    arr = np.asarray(X)
    if not np.issubdtype(arr.dtype, np.floating):
        raise HalutError(f"{kind} activations must be a float array, got dtype {arr.dtype}")
    if arr.ndim != (3 if one_d else 4):
        raise HalutError(f"{kind} activations must have shape {want}, got {arr.shape}")
    if arr.shape[1] != geometry.in_channels:
        raise HalutError(f"{kind} activations have {arr.shape[1]} channels, the layer takes "
                         f"{geometry.in_channels}")
    if arr.shape[0] == 0:
        raise HalutError(f"{kind} activations are empty (shape {arr.shape})")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise HalutError(f"{kind} activations hold NaN or inf (the accelerator takes finite "
                         "values only)")
    return out


def output_spatial(geometry: ConvGeometry, shape: Sequence[int]) -> tuple[int, ...]:
    """The output's spatial shape for an input of ``shape`` ((N, Cin, H, W) or (N, Cin, L))."""
    if isinstance(geometry, Conv1dGeometry):
        return (geometry.output_size(int(shape[2])),)
    return geometry.output_size(int(shape[2]), int(shape[3]))


def im2col(X: np.ndarray, geometry: ConvGeometry, columns: np.ndarray | None = None
           ) -> np.ndarray:
    """Patches of ``X`` as matrix rows, in the feature order of ``weight.reshape(Cout, -1)``.

    Parameters
    ----------
    X : (N, Cin, H, W) float array ((N, Cin, L) for a Conv1dGeometry)
    geometry : the convolution
    columns : only these columns, in this order (1-D integer array): the features a
        program reads (its split dimensions), without the rest of each patch

    Returns
    -------
    (N * Hout * Wout, Cin * kh * kw) float32; row ``(n * Hout + i) * Wout + j`` is the patch of
    output pixel (i, j) of image n, column ``(cin * kh + di) * kw + dj`` (1-D: row
    ``n * Lout + i``, column ``cin * k + dj``). Group g's columns are
    ``geometry.group_columns(g)``. With ``columns``: (N * Hout * Wout, len(columns)).
    """
    X = check_conv_input(X, geometry)
    if isinstance(geometry, Conv1dGeometry):
        X, geometry = X[:, :, None, :], geometry.as_2d
    N, Cin, H, W = X.shape
    Hout, Wout = geometry.output_size(H, W)
    (kh, kw), (sh, sw), (dh, dw) = geometry.kernel_size, geometry.stride, geometry.dilation
    pads = ((0, 0), (0, 0), *geometry.pads)
    Xp = np.pad(X, pads, mode=PADDING_MODES[geometry.padding_mode])  # type: ignore[call-overload]
    if columns is not None:
        return _im2col_columns(Xp, np.asarray(columns), (N, Cin, Hout, Wout), geometry)
    cols = np.empty((N, Hout, Wout, Cin, kh, kw), dtype=np.float32)
    for di in range(kh):
        for dj in range(kw):
            r0, c0 = di * dh, dj * dw
            patch = Xp[:, :, r0:r0 + sh * (Hout - 1) + 1:sh, c0:c0 + sw * (Wout - 1) + 1:sw]
            cols[:, :, :, :, di, dj] = patch.transpose(0, 2, 3, 1)
    return cols.reshape(N * Hout * Wout, Cin * kh * kw)


def _im2col_columns(Xp: np.ndarray, columns: np.ndarray, shape: tuple[int, int, int, int],
                    geometry: Conv2dGeometry) -> np.ndarray:
    """:func:`im2col`'s ``columns`` of the padded input ``Xp``: one strided slice per kernel
    offset, over just the channels whose column at that offset is asked for."""
    N, Cin, Hout, Wout = shape
    (kh, kw), (sh, sw), (dh, dw) = geometry.kernel_size, geometry.stride, geometry.dilation
    if columns.ndim != 1 or not np.issubdtype(columns.dtype, np.integer) or (
            columns.size and (columns.min() < 0 or columns.max() >= Cin * kh * kw)):
        raise HalutError(f"im2col columns must be integers in [0, {Cin * kh * kw})")
    cin, rest = np.divmod(columns, kh * kw)
    di, dj = np.divmod(rest, kw)
    out = np.empty((N, Hout, Wout, columns.size), dtype=np.float32)
    # runs of columns at one kernel offset: one strided slice each (a run is the whole
    # offset's share when the columns come in offset order, as compact_program orders them)
    starts = np.flatnonzero(np.diff(rest, prepend=-1) != 0)
    for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), columns.size], strict=True):
        r0, c0 = int(di[lo]) * dh, int(dj[lo]) * dw
        chans = cin[lo:hi]
        rows_ = slice(r0, r0 + sh * (Hout - 1) + 1, sh)
        cols_ = slice(c0, c0 + sw * (Wout - 1) + 1, sw)
        patch = (Xp[:, int(chans[0]):int(chans[-1]) + 1, rows_, cols_]
                 if hi - lo == int(chans[-1]) - int(chans[0]) + 1
                 and np.all(np.diff(chans) == 1) else Xp[:, chans, rows_, cols_])
        out[:, :, :, lo:hi] = patch.transpose(0, 2, 3, 1)
    return out.reshape(N * Hout * Wout, columns.size)


def rows_to_channels_first(Y: np.ndarray, N: int, spatial: Sequence[int]) -> np.ndarray:
    """im2col-ordered outputs (N * prod(spatial), Cout) -> (N, Cout, *spatial)."""
    M = Y.shape[1]
    k = len(spatial)
    out = Y.reshape(N, *spatial, M).transpose(0, k + 1, *range(1, k + 1))
    return np.ascontiguousarray(out)


def rows_to_nchw(Y: np.ndarray, N: int, Hout: int, Wout: int) -> np.ndarray:
    """im2col-ordered outputs (N*Hout*Wout, Cout) -> (N, Cout, Hout, Wout)."""
    return rows_to_channels_first(Y, N, (Hout, Wout))
