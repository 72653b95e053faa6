"""Backends as objects, made from names at the edge (the CLI, the torch modules' ``backend``
attribute): :func:`make_backend`.

Every backend has one interface (:class:`emulator.runner.Backend`): ``run(program, A) ->
RunResult`` for a whole matrix, and ``open(layer)`` for the layer runner's loop nest,
plus capabilities (``counts_cycles``, ``column_tile``).

* ``float``: the exact ``A @ weights + bias`` in float32 by torch (the accuracy reference;
  needs the layer's float weights)
* ``maddness``: learning's float MADDNESS (``HalutModel.predict``; needs the float model)
* ``golden``: the numpy specification (emulator/golden.py)
* ``rtl``: the Verilated accelerator (emulator/rtl.py), bit-exact with golden, with cycles
* ``gpu``: Triton kernels or their torch fallback (emulator/gpu.py), bit-exact with golden
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emulator import golden
from emulator.runner import Backend, BackendBase, Cell, LayerModel, RowsSession, RunResult
from learning.errors import HalutError
from learning.program import HardwareProgram

#: every backend name, in the order the CLI lists them
BACKENDS: tuple[str, ...] = ("float", "maddness", "golden", "rtl", "gpu")
#: the backends that run a quantized hardware program
PROGRAM_BACKENDS: tuple[str, ...] = ("golden", "rtl", "gpu")


class GoldenBackend(BackendBase):
    """The specification: gather, encode, accumulate, dequantize (emulator/golden.py)."""

    name = "golden"

    def open(self, layer: LayerModel) -> RowsSession:
        program = layer.need_program(self.name)

        def cell(A: np.ndarray) -> Cell:
            acc = golden.accumulate(program, golden.encode(program, golden.gather(program, A)))
            return Cell(y=golden.dequantize(program, acc), acc=acc)

        return RowsSession(cell)


class FloatBackend(BackendBase):
    """The exact float32 product with the layer's float weights (torch's ``linear``)."""

    name = "float"

    def open(self, layer: LayerModel) -> RowsSession:
        if layer.weights is None or layer.bias is None:
            raise HalutError("the float backend needs the layer's float weights; this model "
                             "holds none")
        W = np.ascontiguousarray(layer.weights.T)
        b = np.array(layer.bias)

        def cell(A: np.ndarray) -> Cell:
            import torch

            with torch.no_grad():
                y = torch.nn.functional.linear(torch.from_numpy(np.array(A)),
                                               torch.from_numpy(W), torch.from_numpy(b))
            return Cell(y=y.numpy(), acc=None)

        return RowsSession(cell)

    def run(self, program: HardwareProgram, A: np.ndarray) -> RunResult:
        raise HalutError("the float backend runs a layer's float weights, not a hardware "
                         "program")


class MaddnessBackend(BackendBase):
    """learning's float MADDNESS (``HalutModel.predict``): no quantization."""

    name = "maddness"

    def open(self, layer: LayerModel) -> RowsSession:
        model = layer.model
        if model is None:
            raise HalutError("backend 'maddness' needs the float HalutModel, which this layer "
                             "does not hold")
        return RowsSession(lambda A: Cell(y=np.asarray(model.predict(A), np.float32),
                                           acc=None))

    def run(self, program: HardwareProgram, A: np.ndarray) -> RunResult:
        raise HalutError("the maddness backend runs a layer's float model, not a hardware "
                         "program")


def check_backend_name(name: object) -> str:
    """``name`` if it is a backend's name; one clear HalutError otherwise."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise HalutError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def make_backend(name: str, **options: Any) -> Backend:
    """The backend object called ``name`` with its options (rtl: :class:`RtlBackend`'s;
    gpu: :func:`emulator.gpu.run_gpu`'s); float, maddness and golden take none."""
    check_backend_name(name)
    if name == "rtl":
        from emulator.rtl import RtlBackend

        return RtlBackend(**options)
    if name == "gpu":
        from emulator.gpu import GpuBackend

        return GpuBackend(**options)
    if options:
        raise HalutError(f"the {name} backend takes no options, got {sorted(options)}")
    simple: dict[str, type[BackendBase]] = {"golden": GoldenBackend, "float": FloatBackend,
                                            "maddness": MaddnessBackend}
    return simple[name]()
