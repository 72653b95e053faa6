"""The one place that resolves the cache directory: ``$HALUT_CACHE`` (default
``~/.cache/halut``). Verilator builds, the Python shim for Verilator's Makefiles, Yosys'
WebAssembly cache and the demo's trained network all live below it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$HALUT_CACHE``, or ``~/.cache/halut`` when it is unset or empty."""
    return Path(os.environ.get("HALUT_CACHE") or Path.home() / ".cache" / "halut")


def cache_dir(*parts: str) -> Path:
    """A folder below the cache root (not created)."""
    return cache_root().joinpath(*parts)
