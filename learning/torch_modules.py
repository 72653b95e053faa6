"""Drop-in torch modules for learned MADDNESS layers, and layer replacement.

* :class:`HalutLinear` and :class:`HalutConv2d` hold a quantized
  :class:`~learning.program.HardwareProgram` (and, when known, the float
  :class:`~learning.HalutModel` it came from) as buffers, so they print, ``state_dict`` and
  ``load_state_dict`` like any ``nn.Module``. They are **inference only**: the forward pass
  runs outside autograd (no gradients flow through a halut layer).
* ``module.backend`` selects how a forward pass computes: ``"float"`` (the layer's exact float
  weights, torch's own ``linear``/``conv2d``), ``"maddness"`` (learning's float MADDNESS,
  ``HalutModel.predict``), or a hardware backend from :mod:`learning.backends` (``golden``,
  ``rtl``, ``gpu``; registered by importing ``emulator.layers``).
* :func:`replace_layers` swaps chosen ``nn.Linear``/``nn.Conv2d`` layers of a model in place,
  torchao ``quantize_`` style: it records the layers' inputs over a few batches, learns an
  encoder and LUT per layer with ``learning.learn`` and quantizes it.

:func:`im2col` is the one home of the convolution's row layout; ``emulator.layers`` uses it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from learning.backends import BUILTIN_BACKENDS, check_backend_name, run_backend
from learning.errors import HalutError
from learning.program import HardwareProgram, log2_exact

STATE_VERSION = 1
_PROGRAM_BUFFERS = ("dims", "thresholds", "lut", "scale", "program_bias", "input_scale")
_MODEL_PREFIX = "maddness_"

# --------------------------------------------------------------------------------------------
# convolution geometry and im2col (the one home of the conv row layout)


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
    def from_conv(cls, conv: nn.Conv2d) -> Conv2dGeometry:
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


# --------------------------------------------------------------------------------------------
# HalutModel <-> buffers


def _model_class() -> type:
    from learning import HalutModel

    return HalutModel


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _split_model(model: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A HalutModel's array fields (buffers) and its other fields (JSON-able metadata)."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for f in dataclasses.fields(model):
        v = getattr(model, f.name)
        if isinstance(v, np.ndarray):
            arrays[f.name] = v
        else:
            meta[f.name] = _jsonable(v)
    return arrays, meta


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).copy())


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


class _HalutLayer(nn.Module):
    """Shared state of HalutLinear and HalutConv2d: program and float-model buffers."""

    in_features: int
    out_features: int

    def __init__(self, D: int, M: int, C: int, K: int, threshold_format: str,
                 lut_format: str, backend: str) -> None:
        super().__init__()
        L = log2_exact(int(K))
        if not 1 <= int(C) <= int(D):
            raise HalutError(f"C={C} must be between 1 and D={D}")
        if int(M) < 1:
            raise HalutError(f"the layer needs at least one output, got {M}")
        self.in_features, self.out_features = int(D), int(M)
        self.C, self.K = int(C), int(K)
        self.threshold_format, self.lut_format = threshold_format, lut_format
        thr_dtype = torch.float16 if threshold_format == "fp16" else torch.int8
        lut_dtype = torch.int8 if lut_format == "int8" else torch.float16
        if threshold_format not in ("fp16", "int8") or lut_format not in ("int8", "fp16"):
            raise HalutError(f"formats must be fp16|int8 thresholds and int8|fp16 LUTs, got "
                             f"{threshold_format!r}, {lut_format!r}")
        self.register_buffer("dims", torch.zeros((self.C, L), dtype=torch.int32))
        self.register_buffer("thresholds", torch.zeros((self.C, self.K - 1), dtype=thr_dtype))
        self.register_buffer("lut", torch.zeros((self.out_features, self.C, self.K),
                                                dtype=lut_dtype))
        self.register_buffer("scale", torch.ones(self.out_features, dtype=torch.float32))
        self.register_buffer("program_bias", torch.zeros(self.out_features, dtype=torch.float32))
        self.register_buffer("input_scale", torch.ones((), dtype=torch.float32))
        self._model_meta: dict[str, Any] | None = None
        self._program: HardwareProgram | None = None
        self._model: Any = None
        self.backend = backend
        #: what the last hardware forward returned (the emulator's RunResult: cycles, tiles)
        self.last_result: Any = None

    # ---- backend attribute -----------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        self._backend = check_backend_name(name)

    # ---- loading learned state -------------------------------------------------------------
    @classmethod
    def _from_program(cls, program: HardwareProgram, model: Any, backend: str,
                      *args: Any) -> Self:
        """``cls(*args, C=.., K=.., formats of program, backend=backend)`` loaded with
        ``program`` and ``model``: the body of the subclasses' ``from_learned``."""
        make: Callable[..., Self] = cls  # the subclasses' constructors take C, K, ... by name
        mod = make(*args, C=program.C, K=program.K, threshold_format=program.threshold_format,
                   lut_format=program.lut_format, backend=backend)
        mod.load_learned(program, model)
        return mod

    def load_learned(self, program: HardwareProgram, model: Any = None) -> None:
        """Fill the buffers from a quantized ``program`` and (optionally) its float model."""
        want = (self.C, self.K, self.in_features, self.out_features, self.threshold_format,
                self.lut_format)
        got = (program.C, program.K, program.D, program.M, program.threshold_format,
               program.lut_format)
        if want != got:
            raise HalutError(f"the program (C, K, D, M, formats) = {got} does not fit this layer "
                             f"{want}")
        self.dims = _to_tensor(program.dims)
        self.thresholds = _to_tensor(program.thresholds)
        self.lut = _to_tensor(program.lut)
        self.scale = _to_tensor(program.scale)
        self.program_bias = _to_tensor(program.bias)
        self.input_scale = torch.tensor(program.input_scale, dtype=torch.float32)
        for name in [n for n in self._buffers if n.startswith(_MODEL_PREFIX)]:
            del self._buffers[name]
        self._model_meta = None
        if model is not None:
            if (int(model.D), int(model.M)) != (self.in_features, self.out_features):
                raise HalutError(f"the float model is {model.D} -> {model.M}, this layer is "
                                 f"{self.in_features} -> {self.out_features}")
            arrays, meta = _split_model(model)
            for name, arr in arrays.items():
                self.register_buffer(_MODEL_PREFIX + name, _to_tensor(arr))
            self._model_meta = meta
        self._program, self._model = program, model

    @property
    def program(self) -> HardwareProgram:
        """The quantized hardware program held in the buffers."""
        if self._program is None:
            self._program = HardwareProgram(
                dims=_to_numpy(self.dims), thresholds=_to_numpy(self.thresholds),
                lut=_to_numpy(self.lut), scale=_to_numpy(self.scale),
                bias=_to_numpy(self.program_bias), D=self.in_features,
                threshold_format=self.threshold_format, lut_format=self.lut_format,
                input_scale=float(self.input_scale))
        return self._program

    @property
    def model(self) -> Any:
        """The float HalutModel, or None when the module was loaded from a program only."""
        if self._model is None and self._model_meta is not None:
            kw: dict[str, Any] = dict(self._model_meta)
            for name, buf in self._buffers.items():
                if name.startswith(_MODEL_PREFIX) and buf is not None:
                    kw[name[len(_MODEL_PREFIX):]] = _to_numpy(buf)
            self._model = _model_class()(**kw)
        return self._model

    def get_extra_state(self) -> Any:
        return {"version": STATE_VERSION, "model_meta": json.dumps(self._model_meta)}

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise HalutError(f"halut layer state has an unknown version "
                             f"(want {STATE_VERSION}): {state!r:.80}")
        self._model_meta = json.loads(state["model_meta"])

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # the float model's arrays have shapes only it knows: take them from the state
        for name in [n for n in self._buffers if n.startswith(_MODEL_PREFIX)]:
            del self._buffers[name]
        for key, value in state_dict.items():
            name = key[len(prefix):]
            if not key.startswith(prefix) or "." in name or not isinstance(value, torch.Tensor):
                continue
            if name in _PROGRAM_BUFFERS or name.startswith(_MODEL_PREFIX):
                self.register_buffer(name, torch.empty_like(value, device="cpu"))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)
        self._program, self._model = None, None
        try:
            prog = self.program
            if (prog.C, prog.K) != (self.C, self.K):
                raise HalutError(f"state has C={prog.C}, K={prog.K}, the module C={self.C}, "
                                 f"K={self.K}")
            if self.out_features != prog.M:
                raise HalutError(f"state has {prog.M} outputs, the module {self.out_features}")
            _ = self.model
        except (HalutError, TypeError, ValueError) as exc:
            error_msgs.append(f"{prefix or 'halut layer'}: {exc}")

    # ---- computing -------------------------------------------------------------------------
    def _float_weights(self) -> tuple[np.ndarray, np.ndarray]:
        model = self.model
        if model is None or getattr(model, "weights", None) is None:
            raise HalutError("backend 'float' needs the layer's float weights, which this "
                             "module does not hold (it was loaded from a program only)")
        bias = model.bias if getattr(model, "bias", None) is not None else np.zeros(
            self.out_features, np.float32)
        return np.asarray(model.weights, np.float32), np.asarray(bias, np.float32)

    def run_rows(self, A: np.ndarray) -> np.ndarray:
        """Run the selected backend on matrix rows ``A`` (N, D) float32 -> (N, M) float32."""
        if self.backend == "float":
            W, b = self._float_weights()
            out = torch.nn.functional.linear(torch.from_numpy(np.array(A)),
                                             torch.from_numpy(W.T.copy()),
                                             torch.from_numpy(b.copy()))
            return out.numpy()
        if self.backend == "maddness":
            if self.model is None:
                raise HalutError("backend 'maddness' needs the float HalutModel, which this "
                                 "module does not hold")
            return np.asarray(self.model.predict(A), dtype=np.float32)
        y, self.last_result = run_backend(self.backend, self.program, A)
        return y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, C={self.C}, "
                f"K={self.K}, thresholds={self.threshold_format}, lut={self.lut_format}, "
                f"backend={self.backend!r}, inference only")


def _as_numpy_input(x: torch.Tensor) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        raise HalutError(f"a halut layer takes a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise HalutError(f"a halut layer takes float inputs, got {x.dtype}")
    return x.detach().to("cpu", torch.float32).numpy()


class HalutLinear(_HalutLayer):
    """``nn.Linear`` replaced by a learned MADDNESS program (inference only, no gradients).

    Input ``(..., in_features)``, output ``(..., out_features)`` in the input's dtype/device.
    """

    def __init__(self, in_features: int, out_features: int, *, C: int, K: int = 16,
                 threshold_format: str = "fp16", lut_format: str = "int8",
                 backend: str = "golden") -> None:
        super().__init__(in_features, out_features, C, K, threshold_format, lut_format, backend)

    @classmethod
    def from_learned(cls, program: HardwareProgram, model: Any = None,
                     backend: str = "golden") -> HalutLinear:
        return cls._from_program(program, model, backend, program.D, program.M)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            a = _as_numpy_input(x)
            if a.ndim < 1 or a.shape[-1] != self.in_features:
                raise HalutError(f"HalutLinear takes (..., {self.in_features}) inputs, got "
                                 f"{tuple(a.shape)}")
            lead = a.shape[:-1]
            y = self.run_rows(np.ascontiguousarray(a.reshape(-1, self.in_features)))
            return torch.from_numpy(y.reshape(*lead, self.out_features)).to(x.device, x.dtype)


class HalutConv2d(_HalutLayer):
    """``nn.Conv2d`` (groups = 1, zero padding) replaced by a learned MADDNESS program over
    im2col patches (D = in_channels * kh * kw). Inference only, no gradients.

    Input ``(N, in_channels, H, W)``, output ``(N, out_channels, Hout, Wout)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, *, C: int, K: int = 16,
                 threshold_format: str = "fp16", lut_format: str = "int8",
                 backend: str = "golden") -> None:
        geom = Conv2dGeometry.make(in_channels, kernel_size, stride, padding, dilation)
        super().__init__(geom.patch_size, out_channels, C, K, threshold_format, lut_format,
                         backend)
        self.geometry = geom
        self.in_channels, self.out_channels = geom.in_channels, int(out_channels)

    @classmethod
    def from_learned(cls, geometry: Conv2dGeometry, program: HardwareProgram, model: Any = None,
                     backend: str = "golden") -> HalutConv2d:
        return cls._from_program(program, model, backend, geometry.in_channels, program.M,
                                 geometry.kernel_size, geometry.stride, geometry.padding,
                                 geometry.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            a = _as_numpy_input(x)
            N = a.shape[0] if a.ndim == 4 else 0
            rows = im2col(a, self.geometry)
            Hout, Wout = self.geometry.output_size(a.shape[2], a.shape[3])
            if self.backend == "float":  # torch's own conv2d on the float weights
                W, b = self._float_weights()
                g = self.geometry
                w = torch.from_numpy(W.T.reshape(self.out_channels, g.in_channels,
                                                 *g.kernel_size).copy())
                y = torch.nn.functional.conv2d(torch.from_numpy(a), w, torch.from_numpy(b.copy()),
                                               g.stride, g.padding, g.dilation)
                return y.to(x.device, x.dtype)
            y_rows = self.run_rows(rows)
            out = rows_to_nchw(y_rows, N, Hout, Wout)
            return torch.from_numpy(out).to(x.device, x.dtype)

    def extra_repr(self) -> str:
        g = self.geometry
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={g.kernel_size}, "
                f"stride={g.stride}, padding={g.padding}, dilation={g.dilation}, "
                + super().extra_repr())


# --------------------------------------------------------------------------------------------
# layer replacement

LayerFilter = Callable[[str, nn.Module], bool]
PerLayer = int | Mapping[str, int] | Callable[[str, nn.Module], int]


def _per_layer(value: PerLayer, name: str, module: nn.Module, what: str) -> int:
    if isinstance(value, Mapping):
        if name not in value:
            raise HalutError(f"{what} has no entry for layer {name!r}")
        v = value[name]
    elif callable(value):
        v = value(name, module)
    else:
        v = value
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise HalutError(f"{what} for layer {name!r} must be a positive int, got {v!r}")
    return int(v)


class _Reservoir:
    """Seeded reservoir sample (algorithm R, vectorised) of at most ``capacity`` rows."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity, self.rng = capacity, rng
        self.rows: np.ndarray | None = None
        self.filled = 0
        self.seen = 0

    def add(self, batch: np.ndarray) -> None:
        if self.rows is None:
            self.rows = np.empty((self.capacity, batch.shape[1]), dtype=np.float32)
        take = min(self.capacity - self.filled, batch.shape[0])
        if take:
            self.rows[self.filled:self.filled + take] = batch[:take]
            self.filled += take
        rest = batch[take:]
        if rest.shape[0]:
            idx = self.seen + take + np.arange(rest.shape[0])
            j = self.rng.integers(0, idx + 1)
            keep = j < self.capacity
            self.rows[j[keep]] = rest[keep]  # a later row wins a slot, as in sequential R
        self.seen += batch.shape[0]

    def sample(self) -> np.ndarray:
        if self.rows is None or self.filled == 0:
            raise HalutError("no inputs were recorded")
        return self.rows[:self.filled]


def _select(model: nn.Module, layers: None | Sequence[str] | LayerFilter
            ) -> list[tuple[str, nn.Module]]:
    supported = (nn.Linear, nn.Conv2d)
    named = dict(model.named_modules())
    chosen: list[tuple[str, nn.Module]]
    if layers is None:
        chosen = [(n, m) for n, m in named.items() if isinstance(m, supported)]
    elif callable(layers):
        chosen = [(n, m) for n, m in named.items() if isinstance(m, supported) and layers(n, m)]
    else:
        if isinstance(layers, str):
            layers = [layers]
        chosen = []
        for n in layers:
            if n not in named or n == "":
                raise HalutError(f"the model has no layer named {n!r}")
            if not isinstance(named[n], supported):
                raise HalutError(f"layer {n!r} is a {type(named[n]).__name__}; only Linear and "
                                 "Conv2d can be replaced")
            chosen.append((n, named[n]))
    if not chosen:
        raise HalutError("no Linear or Conv2d layer was selected for replacement")
    return chosen


def _first_tensor(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, np.ndarray):
        return torch.from_numpy(batch)
    raise HalutError(f"batches must yield tensors or (inputs, ...) tuples, got "
                     f"{type(batch).__name__}")


def _layer_rows(module: nn.Module, x: torch.Tensor) -> np.ndarray:
    a = x.detach().to("cpu", torch.float32).numpy()
    if isinstance(module, nn.Conv2d):
        return im2col(a, Conv2dGeometry.from_conv(module))
    return a.reshape(-1, a.shape[-1])


def _layer_weights(module: nn.Linear | nn.Conv2d) -> tuple[np.ndarray, np.ndarray | None]:
    """(B (D, M) float32, bias (M,) float32 | None) of a Linear or Conv2d."""
    w = module.weight.detach().to("cpu", torch.float32).numpy()
    B = np.ascontiguousarray(w.reshape(w.shape[0], -1).T)
    b = module.bias
    return B, (None if b is None else b.detach().to("cpu", torch.float32).numpy().copy())


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def replace_layers(model: nn.Module, batches: Iterable[Any],
                   layers: None | Sequence[str] | LayerFilter = None, *,
                   C: PerLayer = 16, K: PerLayer = 16, threshold_format: str = "fp16",
                   lut_format: str = "int8", max_rows: int = 20000, seed: int = 0,
                   backend: str = "golden", learn_options: Mapping[str, Any] | None = None,
                   report: dict[str, Any] | None = None) -> nn.Module:
    """Swap chosen ``nn.Linear``/``nn.Conv2d`` layers of ``model`` for Halut layers, in place.

    The layers' inputs are recorded with forward hooks while ``model`` (in eval mode, no
    grad) runs over ``batches``; each layer keeps a seeded reservoir sample of at most
    ``max_rows`` rows (im2col patches for convolutions), so memory stays bounded. Every layer
    is then learned from the float network's own activations (``learning.learn`` with the
    layer's weight as ``B`` and its bias) and quantized (``learning.quantize``).

    Parameters
    ----------
    model : the network; modified in place and returned
    batches : iterable of input tensors, or of tuples whose first item is the input
    layers : None (every Linear/Conv2d), a list of module names, or ``filter(name, module)``
    C, K : an int, a dict ``name -> int``, or ``fn(name, module) -> int`` (per layer)
    threshold_format, lut_format : hardware formats (see learning.program)
    max_rows : rows kept per layer for learning
    seed : seeds the reservoir and ``learning.learn``
    backend : the replaced modules' initial backend
    learn_options : extra keyword options for ``learning.learn``
    report : if given, filled with ``name -> {D, M, C, K, rows, kind, nmse_train, ...}``

    Returns
    -------
    The same ``model`` object with the layers swapped.
    """
    from learning import learn, quantize

    check_backend_name(backend)
    if int(max_rows) < 1:
        raise HalutError(f"max_rows must be >= 1, got {max_rows}")
    chosen = _select(model, layers)
    rng = np.random.default_rng(seed)
    reservoirs = {n: _Reservoir(int(max_rows), np.random.default_rng(rng.integers(2**63)))
                  for n, _ in chosen}
    for _n, m in chosen:
        if isinstance(m, nn.Conv2d):
            Conv2dGeometry.from_conv(m)  # fail before the capture for unsupported convs

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            reservoirs[name].add(_layer_rows(module, args[0]))
        return hook

    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in chosen]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                model(_first_tensor(batch))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    for n, m in chosen:
        A = reservoirs[n].sample()
        B, bias = _layer_weights(m)  # type: ignore[arg-type]
        c, k = _per_layer(C, n, m, "C"), _per_layer(K, n, m, "K")
        if c > B.shape[0]:
            raise HalutError(f"layer {n!r}: C={c} exceeds its input dimension D={B.shape[0]}")
        hm = learn(A, B, c, k, seed=seed, bias=bias, **dict(learn_options or {}))
        prog = quantize(hm, threshold_format=threshold_format, lut_format=lut_format)
        new: _HalutLayer
        if isinstance(m, nn.Conv2d):
            new = HalutConv2d.from_learned(Conv2dGeometry.from_conv(m), prog, hm, backend)
        else:
            new = HalutLinear.from_learned(prog, hm, backend)
        _set_submodule(model, n, new)
        if report is not None:
            report[n] = {"kind": "conv2d" if isinstance(m, nn.Conv2d) else "linear",
                         "D": int(B.shape[0]), "M": int(B.shape[1]), "C": c, "K": k,
                         "rows": int(A.shape[0]), "rows_seen": int(reservoirs[n].seen),
                         "threshold_format": threshold_format, "lut_format": lut_format,
                         **{key: _jsonable(v) for key, v in dict(hm.stats).items()
                            if isinstance(v, (int, float, str, np.generic))}}
    return model


__all__ = ["BUILTIN_BACKENDS", "Conv2dGeometry", "HalutConv2d", "HalutLinear", "im2col",
           "replace_layers", "rows_to_nchw"]
