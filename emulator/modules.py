"""Drop-in torch modules for learned MADDNESS layers: :class:`HalutLinear`, :class:`HalutConv2d`.

They hold a quantized :class:`~learning.program.HardwareProgram` (and, when known, the float
:class:`~learning.HalutModel` it came from) as buffers, so they print, ``state_dict`` and
``load_state_dict`` like any ``nn.Module``. They are **inference only**: the forward pass runs
outside autograd (no gradients flow through a halut layer).

``module.backend`` names how a forward pass computes (:mod:`emulator.backends`): ``float``
(the exact float weights; a convolution runs torch's own ``conv2d``), ``maddness``
(learning's float MADDNESS), ``golden``, ``rtl`` or ``gpu``. Every backend runs through the
layer runner (:func:`emulator.runner.run_matrix`), so the module's rows take the same loop
nest as ``halut emulate``; ``module.last_result`` is the runner's RunResult (cycles, tiles).
``module.backend_options`` go to the backend (rtl: ``params``, ``driver``, ...; the rtl
default is the default chip with the program's K and formats, ``RtlParams.for_program``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from emulator.backends import check_backend_name, make_backend
from emulator.params import RtlParams
from emulator.runner import LayerModel, RunResult, run_matrix
from learning.conv import Conv2dGeometry, im2col, rows_to_nchw
from learning.errors import HalutError
from learning.modelfile import jsonable
from learning.program import HardwareProgram, log2_exact

STATE_VERSION = 1
_PROGRAM_BUFFERS = ("dims", "thresholds", "lut", "scale", "program_bias", "input_scale")
_MODEL_PREFIX = "maddness_"


def _model_class() -> type:
    from learning import HalutModel

    return HalutModel


def _split_model(model: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A HalutModel's array fields (buffers) and its other fields (JSON-able metadata)."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for f in dataclasses.fields(model):
        v = getattr(model, f.name)
        if isinstance(v, np.ndarray):
            arrays[f.name] = v
        else:
            meta[f.name] = jsonable(v)
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
        #: options of the backend (rtl: params, driver, ...), set before ``backend``
        self.backend_options: dict[str, Any] = {}
        self.backend = backend
        #: what the last forward returned (the layer runner's RunResult: cycles, tiles)
        self.last_result: RunResult | None = None

    # ---- backend attribute -----------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        name = check_backend_name(name)
        if name != getattr(self, "_backend", None):
            self.backend_options = {}  # options belong to the backend they were given for
        self._backend = name

    def set_backend(self, name: str, **options: Any) -> Self:
        """Choose the backend and its options (checked now); returns the module."""
        make_backend(check_backend_name(name), **options)
        self.backend = name
        self.backend_options = dict(options)
        return self

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
    def layer_model(self) -> LayerModel:
        """What the layer runner needs: the program, the float weights and model if held."""
        model = self.model
        weights = getattr(model, "weights", None) if model is not None else None
        bias = getattr(model, "bias", None) if weights is not None else None
        return LayerModel(program=self.program, weights=weights, bias=bias, model=model)

    def _float_weights(self) -> tuple[np.ndarray, np.ndarray]:
        layer = self.layer_model()
        if layer.weights is None or layer.bias is None:
            raise HalutError("backend 'float' needs the layer's float weights, which this "
                             "module does not hold (it was loaded from a program only)")
        return layer.weights, layer.bias

    def run_rows(self, A: np.ndarray) -> np.ndarray:
        """Run the selected backend on matrix rows ``A`` (N, D) float32 -> (N, M) float32."""
        options = dict(self.backend_options)
        if self.backend == "rtl" and options.get("params") is None:
            # the modules' accelerator: the default chip with the program's K and formats
            options["params"] = RtlParams.for_program(self.program)
        backend = make_backend(self.backend, **options)
        res = run_matrix(backend, self.layer_model(), A)
        self.last_result = res
        return res.y

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
                self.last_result = None
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
