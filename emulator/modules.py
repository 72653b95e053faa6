"""Drop-in torch modules for learned MADDNESS layers: :class:`HalutLinear`, :class:`HalutConv2d`,
:class:`HalutConv1d`.

They hold a quantized :class:`~learning.program.HardwareProgram` (and, when known, the float
:class:`~learning.HalutModel` it came from) as buffers, so they print, ``state_dict`` and
``load_state_dict`` like any ``nn.Module``. A convolution with ``groups = G`` holds G of them,
one :class:`HalutConvGroup` per group (``module.group_layers``): each group is its own
MADDNESS problem on its own input channels (D = Cin/G * kernel, M = Cout/G). They are
**inference only**: the forward pass runs outside autograd (no gradients flow through a
halut layer).

``module.weight`` and ``module.bias`` are the float weights the layer was learned from, shaped
like torch's (``(out, in)``; ``(Cout, Cin/G, *kernel)``), so torch code that reads them (for
example ``nn.TransformerEncoderLayer``'s fast-path check) keeps working. They are
:class:`HalutFloatWeight` tensors: a tensor subclass, which tells torch's fused fast paths
(which would compute with these weights directly and skip the halut layer) to call the
module instead. A module loaded from a program only has no float weights: its ``weight`` and
``bias`` are then ``meta`` tensors (the shape, no values).

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from emulator.backends import check_backend_name, make_backend
from emulator.layers import merge_group_results
from emulator.params import RtlParams
from emulator.runner import Backend, LayerModel, RunResult, run_matrix
from learning.conv import (
    Conv1dGeometry,
    Conv2dGeometry,
    ConvGeometry,
    check_conv_input,
    im2col,
    output_spatial,
    rows_to_channels_first,
)
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


class HalutFloatWeight(torch.Tensor):
    """The float weights (or bias) of a halut layer, as ``module.weight`` / ``module.bias``.

    A plain tensor subclass: torch's fused paths (``nn.TransformerEncoderLayer`` and
    ``nn.TransformerEncoder`` in eval mode) see ``has_torch_function`` and call the module's
    forward instead of computing with these float weights themselves.
    """


def _float_view(t: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    if t is None:  # no float model: the shape only
        return torch.empty(shape, dtype=torch.float32, device="meta").as_subclass(
            HalutFloatWeight)
    return t.detach().as_subclass(HalutFloatWeight)


#: the backends that compute from the hardware program alone, reading only its split
#: dimensions of each input row
PROGRAM_BACKENDS = ("golden", "rtl", "gpu")


def compact_program(program: HardwareProgram, period: int = 1
                    ) -> tuple[np.ndarray, HardwareProgram]:
    """(``used``, the same program over just the input columns ``used``): the columns its
    trees split on (padded with others up to C, a program's least D), its ``dims``
    renumbered into them. On rows ``A[:, used]`` it computes exactly what ``program``
    computes on rows ``A``: an encoder reads nothing else. ``used`` is ordered by column
    modulo ``period``, then column (for im2col: ``period`` = the kernel's area, so that the
    columns of one kernel offset are adjacent and gathered by one slice)."""
    used = np.unique(program.dims)
    if used.size < program.C:
        spare = np.setdiff1d(np.arange(program.D), used)[:program.C - used.size]
        used = np.concatenate([used, spare])
    used = used[np.lexsort((used, used % period))]
    index = np.zeros(program.D, dtype=np.int64)
    index[used] = np.arange(used.size)
    dims = index[program.dims].astype(program.dims.dtype)
    return used, dataclasses.replace(program, dims=dims, D=int(used.size))


class _HalutBackend(nn.Module):
    """The backend a halut module computes on: ``backend``, ``backend_options``,
    ``set_backend``, ``last_result``."""

    def _init_backend(self, backend: str) -> None:
        #: options of the backend (rtl: params, driver, ...), set before ``backend``
        self.backend_options: dict[str, Any] = {}
        self.backend = backend
        #: what the last forward returned (the layer runner's RunResult: cycles, tiles)
        self.last_result: RunResult | None = None

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

    def _backend_for(self, program: HardwareProgram) -> Backend:
        options = dict(self.backend_options)
        if self.backend == "rtl" and options.get("params") is None:
            # the modules' accelerator: the default chip with the program's K and formats
            options["params"] = RtlParams.for_program(program)
        return make_backend(self.backend, **options)


class _HalutLayer(_HalutBackend):
    """One MADDNESS problem's state (HalutLinear, one group of a convolution): program and
    float-model buffers."""

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
        self._init_backend(backend)

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
        res = run_matrix(self._backend_for(self.program), self.layer_model(), A)
        self.last_result = res
        return res.y

    def _buffer(self, name: str) -> torch.Tensor | None:
        return self._buffers.get(_MODEL_PREFIX + name)

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

    Input ``(..., in_features)`` of any rank (batch, tokens, features), output
    ``(..., out_features)`` in the input's dtype/device. ``weight`` (out, in) and ``bias``
    (out,) are the float weights (:class:`HalutFloatWeight`).
    """

    def __init__(self, in_features: int, out_features: int, *, C: int, K: int = 16,
                 threshold_format: str = "fp16", lut_format: str = "int8",
                 backend: str = "golden") -> None:
        super().__init__(in_features, out_features, C, K, threshold_format, lut_format, backend)

    @classmethod
    def from_learned(cls, program: HardwareProgram, model: Any = None,
                     backend: str = "golden") -> HalutLinear:
        return cls._from_program(program, model, backend, program.D, program.M)

    @property
    def weight(self) -> torch.Tensor:
        """The float weights (out_features, in_features), as ``nn.Linear.weight``."""
        w = self._buffer("weights")
        return _float_view(None if w is None else w.T, (self.out_features, self.in_features))

    @property
    def bias(self) -> torch.Tensor:
        """The float bias (out_features,) (zeros where the source layer had none)."""
        b = self._buffer("bias") if self._buffer("weights") is not None else None
        return _float_view(b, (self.out_features,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            a = _as_numpy_input(x)
            if a.ndim < 1 or a.shape[-1] != self.in_features:
                raise HalutError(f"HalutLinear takes (..., {self.in_features}) inputs, got "
                                 f"{tuple(a.shape)}")
            lead = a.shape[:-1]
            y = self.run_rows(np.ascontiguousarray(a.reshape(-1, self.in_features)))
            return torch.from_numpy(y.reshape(*lead, self.out_features)).to(x.device, x.dtype)


class HalutConvGroup(_HalutLayer):
    """One group of a halut convolution: the program and float model of the matrix product
    of the group's im2col columns (``in_features`` = Cin/G * kernel) with its output channels
    (``out_features`` = Cout/G). Storage only: the convolution runs it."""

    def __init__(self, in_features: int, out_features: int, *, C: int, K: int = 16,
                 threshold_format: str = "fp16", lut_format: str = "int8") -> None:
        super().__init__(in_features, out_features, C, K, threshold_format, lut_format, "golden")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise HalutError("a HalutConvGroup is one group of a halut convolution; call the "
                         "convolution")

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, C={self.C}, "
                f"K={self.K}, thresholds={self.threshold_format}, lut={self.lut_format}")


def _as_list(value: Any, n: int, what: str) -> list[Any]:
    """``value`` as one item per group: None -> n Nones, a list or tuple as it is, one item
    (groups = 1) -> [item]; a HalutError if the count is not n."""
    if value is None:
        return [None] * n
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(items) != n:
        raise HalutError(f"a convolution with groups={n} takes {n} {what} (one per group), "
                         f"got {len(items)}")
    return items


class _HalutConv(_HalutBackend):
    """Shared body of HalutConv2d and HalutConv1d: G groups, im2col, the float path."""

    geometry: ConvGeometry

    def __init__(self, geometry: ConvGeometry, out_channels: int, C: int, K: int,
                 threshold_format: str, lut_format: str, backend: str) -> None:
        super().__init__()
        G = geometry.groups
        if int(out_channels) < 1 or int(out_channels) % G:
            raise HalutError(f"out_channels={out_channels} must be a positive multiple of "
                             f"groups={G}")
        self.geometry = geometry
        self.in_channels, self.out_channels = int(geometry.in_channels), int(out_channels)
        self.groups, self.padding_mode = G, geometry.padding_mode
        self.C, self.K = int(C), int(K)
        self.threshold_format, self.lut_format = threshold_format, lut_format
        self.group_layers = nn.ModuleList(
            HalutConvGroup(geometry.group_patch_size, self.out_channels // G, C=C, K=K,
                           threshold_format=threshold_format, lut_format=lut_format)
            for _ in range(G))
        self._init_backend(backend)
        #: the last forward's RunResult per group (``last_result`` joins them)
        self.last_results: list[RunResult] = []

    # ---- torch's attributes ----------------------------------------------------------------
    @classmethod
    def from_learned(cls, geometry: ConvGeometry,
                     program: HardwareProgram | Sequence[HardwareProgram], model: Any = None,
                     backend: str = "golden") -> Self:
        """From the geometry and the learned program (one per group) and float model(s)."""
        progs = _as_list(program, geometry.groups, "programs")
        p0 = progs[0]
        make: Callable[..., Self] = cls  # the subclasses take torch's positional arguments
        mod = make(geometry.in_channels, p0.M * geometry.groups, geometry.kernel_size,
                   geometry.stride, geometry.padding, geometry.dilation, geometry.groups,
                   padding_mode=geometry.padding_mode, C=p0.C, K=p0.K,
                   threshold_format=p0.threshold_format, lut_format=p0.lut_format,
                   backend=backend)
        mod.load_learned(progs, model)
        return mod

    def _kernel(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def weight(self) -> torch.Tensor:
        """The float weights (out_channels, in_channels/groups, *kernel), as torch's."""
        shape = (self.out_channels, self.geometry.group_channels, *self._kernel())
        ws = [grp._buffer("weights") for grp in self._groups()]
        if any(w is None for w in ws):
            return _float_view(None, shape)
        parts = [w.T.reshape(w.shape[1], *shape[1:]) for w in ws if w is not None]
        return _float_view(torch.cat(parts, 0), shape)

    @property
    def bias(self) -> torch.Tensor:
        """The float bias (out_channels,) (zeros where the source layer had none)."""
        bs = [grp._buffer("bias") if grp._buffer("weights") is not None else None
              for grp in self._groups()]
        if any(b is None for b in bs):
            return _float_view(None, (self.out_channels,))
        return _float_view(torch.cat([b for b in bs if b is not None]), (self.out_channels,))

    # ---- learned state ---------------------------------------------------------------------
    def _groups(self) -> list[HalutConvGroup]:
        return [m for m in self.group_layers if isinstance(m, HalutConvGroup)]

    def load_learned(self, programs: HardwareProgram | Sequence[HardwareProgram],
                     models: Any = None) -> None:
        """Fill every group from its program (a list of G, or one when groups = 1) and float
        model (the same, or None)."""
        G = self.groups
        progs = _as_list(programs, G, "programs")
        mods = _as_list(models, G, "float models")
        for g, (grp, prog, mod) in enumerate(zip(self._groups(), progs, mods, strict=True)):
            try:
                grp.load_learned(prog, mod)
            except HalutError as exc:
                raise HalutError(f"group {g}: {exc}" if G > 1 else str(exc)) from None

    @property
    def programs(self) -> list[HardwareProgram]:
        """The quantized program of every group."""
        return [grp.program for grp in self._groups()]

    @property
    def models(self) -> list[Any]:
        """The float HalutModel of every group (None where loaded from a program only)."""
        return [grp.model for grp in self._groups()]

    def _single(self, what: str) -> HalutConvGroup:
        if self.groups != 1:
            raise HalutError(f"this convolution has groups={self.groups}: one {what} per group "
                             f"(use .{what}s)")
        return self._groups()[0]

    @property
    def program(self) -> HardwareProgram:
        """The program (groups = 1 only; see :attr:`programs`)."""
        return self._single("program").program

    @property
    def model(self) -> Any:
        """The float model (groups = 1 only; see :attr:`models`)."""
        return self._single("model").model

    def layer_models(self) -> list[LayerModel]:
        """What the layer runner needs for every group (program, float weights and model)."""
        return [grp.layer_model() for grp in self._groups()]

    def layer_model(self) -> LayerModel:
        """What the layer runner needs (groups = 1 only; see :meth:`layer_models`)."""
        return self._single("layer_model").layer_model()

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # a state from before groups (the program and model were the module's own buffers)
        # is group 0's state
        if self.groups == 1 and isinstance(state_dict, dict):
            for key in [k for k in state_dict if k.startswith(prefix)]:
                name = key[len(prefix):]
                if name in _PROGRAM_BUFFERS or name == "_extra_state" or (
                        name.startswith(_MODEL_PREFIX) and "." not in name):
                    state_dict[f"{prefix}group_layers.0.{name}"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    # ---- computing -------------------------------------------------------------------------
    def _torch_conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _float_forward(self, X: np.ndarray) -> torch.Tensor:
        """torch's own convolution on the float weights, padded as torch pads."""
        ws = [grp._buffer("weights") for grp in self._groups()]
        if any(w is None for w in ws):
            raise HalutError("backend 'float' needs the layer's float weights, which this "
                             "module does not hold (it was loaded from a program only)")
        w = self.weight.as_subclass(torch.Tensor).to("cpu", torch.float32)
        b = self.bias.as_subclass(torch.Tensor).to("cpu", torch.float32)
        return self._torch_conv(torch.from_numpy(X), w, b)

    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """``x`` padded as torch's ConvNd pads a non-zero padding mode, and the padding left
        for the convolution itself."""
        g = self.geometry
        if g.padding_mode == "zeros":
            pad: Any = g.padding
            return x, pad
        if isinstance(g, Conv1dGeometry):
            flat: tuple[int, ...] = g.pads
        else:
            (t, bo), (le, r) = g.pads
            flat = (le, r, t, bo)
        return torch.nn.functional.pad(x, flat, mode=g.padding_mode), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            g = self.geometry
            X = check_conv_input(_as_numpy_input(x), g)
            if self.backend == "float":  # torch's own convolution on the float weights
                self.last_result, self.last_results = None, []
                return self._float_forward(X).to(x.device, x.dtype)
            spatial = output_spatial(g, X.shape)
            groups = self._groups()
            backend = self._backend_for(groups[0].program)
            results = []
            if self.backend in PROGRAM_BACKENDS and all(grp.program is not None
                                                        for grp in groups):
                # these backends read only the programs' split dimensions: gather just those
                # im2col columns (a fraction of each patch) and run the programs on them
                for i, grp in enumerate(groups):
                    assert grp.program is not None
                    used, program = compact_program(grp.program, g.kernel_area)
                    first = g.group_columns(i).start
                    grows = im2col(X, g, columns=first + used)
                    results.append(run_matrix(backend, LayerModel(program=program), grows))
            else:
                rows = im2col(X, g)
                for i, grp in enumerate(groups):
                    grows = rows if g.groups == 1 else np.ascontiguousarray(
                        rows[:, g.group_columns(i)])
                    results.append(run_matrix(backend, grp.layer_model(), grows))
            self.last_results = results
            self.last_result = merge_group_results(results)
            out = rows_to_channels_first(self.last_result.y, X.shape[0], spatial)
            return torch.from_numpy(out).to(x.device, x.dtype)

    def extra_repr(self) -> str:
        g = self.geometry
        extra = (f", groups={g.groups}" if g.groups != 1 else "") + (
            f", padding_mode={g.padding_mode!r}" if g.padding_mode != "zeros" else "")
        padding = repr(g.padding) if isinstance(g.padding, str) else g.padding
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={g.kernel_size}, "
                f"stride={g.stride}, padding={padding}, dilation={g.dilation}{extra}, "
                f"C={self.C}, K={self.K}, thresholds={self.threshold_format}, "
                f"lut={self.lut_format}, backend={self.backend!r}, inference only")


class HalutConv2d(_HalutConv):
    """``nn.Conv2d`` replaced by learned MADDNESS programs over im2col patches, one per group
    (D = in_channels/groups * kh * kw, M = out_channels/groups). Inference only, no gradients.

    Any stride, padding (ints, pairs, ``'same'``, ``'valid'``), dilation, groups and padding
    mode (zeros, reflect, replicate, circular). Input ``(N, in_channels, H, W)``, output
    ``(N, out_channels, Hout, Wout)``.
    """

    geometry: Conv2dGeometry

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, *,
                 padding_mode: str = "zeros", C: int, K: int = 16,
                 threshold_format: str = "fp16", lut_format: str = "int8",
                 backend: str = "golden") -> None:
        geom = Conv2dGeometry.make(in_channels, kernel_size, stride, padding, dilation, groups,
                                   padding_mode)
        super().__init__(geom, out_channels, C, K, threshold_format, lut_format, backend)
        self.kernel_size, self.stride = geom.kernel_size, geom.stride
        self.padding, self.dilation = geom.padding, geom.dilation

    def _kernel(self) -> tuple[int, ...]:
        return self.geometry.kernel_size

    def _torch_conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        xp, pad = self._padded(x)
        return torch.nn.functional.conv2d(xp, w, b, g.stride, pad, g.dilation, g.groups)


class HalutConv1d(_HalutConv):
    """``nn.Conv1d`` replaced by learned MADDNESS programs over im2col patches, one per group
    (D = in_channels/groups * k, M = out_channels/groups); computed as a Conv2d with a
    height-1 kernel. Inference only, no gradients.

    Input ``(N, in_channels, L)``, output ``(N, out_channels, Lout)``.
    """

    geometry: Conv1dGeometry

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int],
                 stride: int | tuple[int] = 1, padding: int | tuple[int] | str = 0,
                 dilation: int | tuple[int] = 1, groups: int = 1, *,
                 padding_mode: str = "zeros", C: int, K: int = 16,
                 threshold_format: str = "fp16", lut_format: str = "int8",
                 backend: str = "golden") -> None:
        geom = Conv1dGeometry(in_channels, kernel_size, stride, padding,  # type: ignore[arg-type]
                              dilation, groups, padding_mode)  # type: ignore[arg-type]
        super().__init__(geom, out_channels, C, K, threshold_format, lut_format, backend)
        self.kernel_size, self.stride = (geom.kernel_size,), (geom.stride,)
        self.padding = geom.padding if isinstance(geom.padding, str) else (geom.padding,)
        self.dilation = (geom.dilation,)

    def _kernel(self) -> tuple[int, ...]:
        return (self.geometry.kernel_size,)

    def _torch_conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        xp, pad = self._padded(x)
        return torch.nn.functional.conv1d(xp, w, b, g.stride, pad, g.dilation, g.groups)


HALUT_MODULES: tuple[type[_HalutBackend], ...] = (HalutLinear, HalutConv2d, HalutConv1d)
