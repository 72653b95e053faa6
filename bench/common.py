"""Helpers shared by the benchmarks: where results go and how they are written."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from learning.atomic import atomic_write_text  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus machine facts and a timestamp) to bench/results/<name>.json and
    print it."""
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "machine": {"python": platform.python_version(), "cpu": platform.processor(),
                           "cores": __import__("os").cpu_count()}, **payload}
    path = RESULTS / f"{name}.json"
    text = json.dumps(payload, indent=2)
    atomic_write_text(path, text + "\n")
    print(text)
    return path
