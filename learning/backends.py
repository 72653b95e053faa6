"""A small registry of hardware backends, so that ``learning`` can run them without importing
``emulator`` (imports point one way: flows -> emulator -> learning).

``emulator.layers`` registers ``golden``, ``rtl`` and ``gpu`` when it is imported. A backend
is a function ``fn(program, A) -> y`` taking a :class:`~learning.program.HardwareProgram` and
activations ``A`` (N, D) float32 and returning ``y`` (N, M) float32, or an object with a
``y`` attribute (the emulator returns its ``RunResult``, so callers can read cycle counts).

The two float paths need no registry: ``float`` (exact ``A @ weights + bias``) and
``maddness`` (learning's own float MADDNESS, ``HalutModel.predict``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from learning.errors import HalutError
from learning.program import HardwareProgram

BackendFn = Callable[[HardwareProgram, np.ndarray], Any]

#: the float paths every Halut module understands without a registered backend
BUILTIN_BACKENDS: tuple[str, ...] = ("float", "maddness")
#: the hardware backends ``emulator.layers`` registers
HARDWARE_BACKENDS: tuple[str, ...] = ("golden", "rtl", "gpu")


class BackendRegistry:
    """Name -> backend function. One instance, :data:`REGISTRY`, serves the process."""

    def __init__(self) -> None:
        self._fns: dict[str, BackendFn] = {}

    def register(self, name: str, fn: BackendFn) -> None:
        if not isinstance(name, str) or not name:
            raise HalutError(f"a backend name must be a non-empty string, got {name!r}")
        if name in BUILTIN_BACKENDS:
            raise HalutError(f"backend {name!r} is built in and cannot be replaced")
        if not callable(fn):
            raise HalutError(f"backend {name!r} must be callable, got {type(fn).__name__}")
        self._fns[name] = fn

    def get(self, name: str) -> BackendFn:
        try:
            return self._fns[name]
        except KeyError:
            if name in HARDWARE_BACKENDS:
                raise HalutError(f"backend {name!r} is not registered: import emulator.layers "
                                 f"to use backend {name!r}") from None
            known = sorted(set(self._fns) | set(HARDWARE_BACKENDS) | set(BUILTIN_BACKENDS))
            raise HalutError(f"unknown backend {name!r}; choose one of "
                             f"{', '.join(known)}") from None

    def names(self) -> list[str]:
        return sorted(self._fns)


REGISTRY = BackendRegistry()


def register_backend(name: str, fn: BackendFn) -> None:
    """Make ``fn(program, A) -> y`` available as backend ``name`` (replaces an earlier one)."""
    REGISTRY.register(name, fn)


def get_backend(name: str) -> BackendFn:
    """The function registered as ``name``; a HalutError saying what to import otherwise."""
    return REGISTRY.get(name)


def registered_backends() -> list[str]:
    """Names registered so far (``float`` and ``maddness`` are always available)."""
    return REGISTRY.names()


def check_backend_name(name: str) -> str:
    """Validate a backend name without requiring it to be registered yet."""
    if not isinstance(name, str) or name not in (*BUILTIN_BACKENDS, *HARDWARE_BACKENDS,
                                                 *REGISTRY.names()):
        known = sorted(set(BUILTIN_BACKENDS) | set(HARDWARE_BACKENDS) | set(REGISTRY.names()))
        raise HalutError(f"unknown backend {name!r}; choose one of {', '.join(known)}")
    return name


def run_backend(name: str, program: HardwareProgram, A: np.ndarray) -> tuple[np.ndarray, Any]:
    """Run registered backend ``name``: returns ``(y (N, M) float32, raw result)``."""
    out = get_backend(name)(program, A)
    y = getattr(out, "y", out)
    y = np.asarray(y)
    if y.shape != (A.shape[0], program.M):
        raise HalutError(f"backend {name!r} returned shape {y.shape}, expected "
                         f"{(A.shape[0], program.M)}")
    return y.astype(np.float32, copy=False), out
