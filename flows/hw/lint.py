"""Lint: Verilator 5.048 ``--lint-only -Wall`` over the RTL for one parameter set.

The RTL must be clean (ARCHITECTURE.md); waivers live in the RTL with a comment. ``-Wno-fatal``
lets Verilator list every warning instead of stopping at the first; the run passes when there
is no ``%Warning`` and no ``%Error`` and Verilator exits 0.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.hwif import TOP
from emulator.params import RtlParams
from emulator.verilator import build_env, find_verilator
from flows import tools
from flows.hw.common import JsonRecord, params_dict, rtl_sources, write_json

_MSG = re.compile(r"^%(Warning|Error)(?:-([A-Z0-9_]+))?: (.*)$")


@dataclass(frozen=True)
class LintResult(JsonRecord):
    """Verilator's messages for one parameter set (``lint.json``)."""

    params: dict[str, Any]
    passed: bool
    warnings: list[dict[str, str]]
    errors: list[dict[str, str]]
    sources: list[str]
    seconds: float
    run_dir: str
    log: str


def parse_messages(text: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(warnings, errors) of a Verilator log: ``{"code", "where", "message"}`` each."""
    warnings: list[dict[str, str]] = []
    errors: list[dict[str, str]] = []
    for line in text.splitlines():
        m = _MSG.match(line.strip())
        if not m:
            continue
        kind, code, rest = m.groups()
        where, _, msg = rest.partition(": ")
        if not re.match(r"^\S+:\d+(:\d+)?$", where):
            where, msg = "", rest
        entry = {"code": code or "", "where": where, "message": msg.strip()}
        (warnings if kind == "Warning" else errors).append(entry)
    return warnings, errors


def lint(params: RtlParams, run_dir: Path, *,
         sources: Sequence[str | os.PathLike[str]] | None = None,
         timeout: float | None = 600) -> LintResult:
    """Lint the accelerator's top (:data:`emulator.hwif.TOP`) with ``params``; writes
    ``lint.log`` and ``lint.json``."""
    files = rtl_sources(sources)
    v = find_verilator()
    gparams = [f"-G{k}={val}" for k, val in params.verilog_parameters().items()]
    cmd = [str(v.executable), "--lint-only", "-Wall", "-Wno-fatal", "--top-module", TOP,
           *gparams, *[str(f) for f in files]]
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "lint.log"
    t0 = time.monotonic()
    run = tools.run_tool(cmd, cwd=run_dir, log=log, env=build_env(v), timeout=timeout,
                         check=False, what="verilator")
    warnings, errors = parse_messages(log.read_text(errors="replace"))
    if run.returncode != 0 and not errors:
        errors.append({"code": "", "where": "",
                       "message": f"verilator exit {run.returncode}: {tools.last_error_line(log)}"})
    res = LintResult(params=params_dict(params), passed=not warnings and not errors,
                     warnings=warnings, errors=errors, sources=[str(f) for f in files],
                     seconds=round(time.monotonic() - t0, 2), run_dir=str(run_dir),
                     log=str(log))
    write_json(run_dir / "lint.json", res.to_dict())
    return res
