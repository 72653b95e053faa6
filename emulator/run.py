"""One entry point for every matrix-level backend: ``run_program(program, A, backend)``.

Backends (docs/numeric-contract.md): ``golden`` (the specification), ``rtl`` (the Verilated
accelerator, bit-exact with golden, with cycle counts) and ``gpu`` (Triton kernels, or the
Triton interpreter on CPU, or a torch fallback; bit-exact with golden). The ``float``
reference needs the float weights and lives with layer inference (emulator/layers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emulator.cycles import CycleReport
from learning.errors import HalutError
from learning.program import HardwareProgram

BACKENDS: tuple[str, ...] = ("golden", "rtl", "gpu")


@dataclass(frozen=True)
class RunResult:
    """Outputs of one matrix-level run.

    y : (N, M) float32, dequantized; acc : (N, M) int32 | float32, the raw accumulators;
    cycles : the accelerator's cycle report (rtl only); tiles : one report per column tile.
    """

    y: np.ndarray
    acc: np.ndarray
    backend: str
    cycles: CycleReport | None = None
    tiles: list[CycleReport] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def run_program(program: HardwareProgram, A: np.ndarray, backend: str = "golden",
                **options: Any) -> RunResult:
    """Run ``program`` on activations ``A`` (N, D) on ``backend``.

    ``options`` go to the backend: for ``rtl`` see :func:`emulator.rtl.run_rtl` (params,
    driver, vcd, bubbles, backpressure, progress); for ``gpu`` see
    :func:`emulator.gpu.run_gpu` (impl).
    """
    if backend == "golden":
        if options:
            raise HalutError(f"the golden backend takes no options, got {sorted(options)}")
        from emulator import golden

        g = golden.run(program, A)
        return RunResult(y=g.y, acc=g.acc, backend="golden")
    if backend == "rtl":
        from emulator.rtl import run_rtl

        return run_rtl(program, A, **options)
    if backend == "gpu":
        from emulator.gpu import run_gpu

        return run_gpu(program, A, **options)
    raise HalutError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
