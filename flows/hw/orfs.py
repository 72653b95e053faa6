"""OpenROAD-flow-scripts (ORFS): design config, SDC and netlist; a run when ORFS is found;
the metrics parser.

ORFS is not packaged for Debian or PyPI. The flow writes, in ``run_dir/orfs``:

* ``config.mk`` in ORFS's conventions (``DESIGN_NAME``, ``PLATFORM``, ``VERILOG_FILES``,
  ``SDC_FILE``, ``CORE_UTILIZATION``, ``PLACE_DENSITY``, ...);
* ``constraint.sdc``: the project's constraints (:func:`flows.hw.sta.sdc_text`) without the
  osu018 driving cell, with the period in the platform's time unit (ps for asap7);
* ``halut_accel.v``: the generic flattened Verilog of :mod:`flows.hw.synth`, which ORFS's
  own Yosys maps onto the platform;

then runs ``make -C <flow> DESIGN_CONFIG=... WORK_HOME=...`` and ``make ... metadata`` when
``ORFS_ROOT`` / ``FLOW_HOME`` point to a checkout, and parses ``metadata.json``
(:func:`parse_metrics`). Without ORFS the files are still written (``--no-run``), so they
can be taken to a machine that has it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from emulator.hwif import TOP
from emulator.params import RtlParams
from flows import tools
from flows.hw.common import (
    JsonRecord,
    check_io_fraction,
    check_period,
    check_timeout,
    json_field,
    params_dict,
    write_json,
)
from flows.hw.sta import DEFAULT_IO_FRACTION, sdc_text
from learning.atomic import atomic_write_text
from learning.errors import HalutError

PLATFORMS: dict[str, dict[str, Any]] = {
    # time unit of the platform's Liberty (SDC periods are in it)
    "nangate45": {"time_scale": 1.0, "utilization": 40, "density": 0.60},
    "sky130hd": {"time_scale": 1.0, "utilization": 40, "density": 0.60},
    "asap7": {"time_scale": 1000.0, "utilization": 40, "density": 0.60},
}

_METRICS_KEY = "orfs_metrics_key"


def _metric(key: str) -> Any:
    """A figure of :class:`OrfsMetrics`, read from ``metadata.json``'s ``key`` (a number, or
    None when ORFS did not write it)."""
    return field(metadata={_METRICS_KEY: key})


@dataclass(frozen=True, kw_only=True)
class OrfsMetrics(JsonRecord):
    """The key figures of a finished ORFS run (:func:`parse_metrics`), in the platform's
    units (``units``: e.g. um^2, ns, W)."""

    metrics_file: str
    design: str | None
    platform: str | None
    setup_ws: float | None = _metric("finish__timing__setup__ws")
    setup_tns: float | None = _metric("finish__timing__setup__tns")
    instance_area: float | None = _metric("finish__design__instance__area")
    stdcells: float | None = _metric("finish__design__instance__count__stdcell")
    utilization: float | None = _metric("finish__design__instance__utilization")
    die_area: float | None = _metric("finish__design__die__area")
    core_area: float | None = _metric("finish__design__core__area")
    drc_errors: float | None = _metric("detailedroute__route__drc_errors")
    wirelength: float | None = _metric("detailedroute__route__wirelength")
    power_total: float | None = _metric("finish__power__total")
    power_internal: float | None = _metric("finish__power__internal__total")
    power_switching: float | None = _metric("finish__power__switching__total")
    power_leakage: float | None = _metric("finish__power__leakage__total")
    synth_area: float | None = _metric("synth__design__instance__area__stdcell")
    units: dict[str, Any]
    clock_period: float | None
    fmax_mhz: float | None
    # per-module ``{"cells", "area"}`` of the ``synth_stat.txt`` beside the metrics, if any
    synth_modules: dict[str, dict[str, float]] | None = json_field(omit_none=True,
                                                                   default=None)


# the figures a report shows: (name, metrics key)
KEY_METRICS: tuple[tuple[str, str], ...] = tuple(
    (f.name, f.metadata[_METRICS_KEY]) for f in fields(OrfsMetrics) if _METRICS_KEY in f.metadata)


@dataclass(frozen=True, kw_only=True)
class OrfsResult(JsonRecord):
    """The ORFS step (``pnr.json``): the design files written and, when ORFS ran
    (``ran``), its log, time and figures (the keys of :class:`OrfsMetrics` merged in; its
    ``platform`` is the one the metrics name)."""

    tool: str = json_field(default="orfs", init=False)
    params: dict[str, Any]
    platform: str
    period_ns: float
    config: str
    run_dir: str
    seconds: float | None = json_field(omit_none=True, default=None)
    ran: bool
    log: str | None = json_field(omit_none=True, default=None)
    metrics: OrfsMetrics | None = json_field(flatten=True, omit_none=True, default=None)


def orfs_settings(platform: str, utilization: float | None = None,
                  density: float | None = None) -> tuple[float, float]:
    """The (core utilization %, placement density) for ``platform``: the given values or the
    platform's defaults, checked (one-line errors)."""
    if platform not in PLATFORMS:
        raise HalutError(f"unknown ORFS platform {platform!r}; choose one of "
                         f"{', '.join(PLATFORMS)}")
    p = PLATFORMS[platform]
    util = p["utilization"] if utilization is None else utilization
    dens = p["density"] if density is None else density
    if not 1 <= util <= 95:
        raise HalutError(f"core utilization must be a percentage in [1, 95], got {util}")
    if not 0 < dens <= 1:
        raise HalutError(f"placement density must be in (0, 1], got {dens}")
    return util, dens


def config_mk(platform: str, verilog: str, sdc: str, *, utilization: float | None = None,
              density: float | None = None, design_name: str = TOP) -> str:
    """An ORFS design config (``DESIGN_CONFIG``) for the generic netlist ``verilog``."""
    util, dens = orfs_settings(platform, utilization, density)
    return "\n".join([
        "# generated by `halut hw pnr --tool orfs`",
        f"export DESIGN_NAME = {design_name}",
        f"export DESIGN_NICKNAME = {design_name}",
        f"export PLATFORM = {platform}",
        f"export VERILOG_FILES = {verilog}",
        f"export SDC_FILE = {sdc}",
        f"export CORE_UTILIZATION = {util:g}",
        f"export PLACE_DENSITY = {dens:g}",
        "export TNS_END_PERCENT = 100",
        "",
    ])


def orfs_sdc(period_ns: float, platform: str, io_fraction: float = DEFAULT_IO_FRACTION) -> str:
    """The project's SDC in the platform's time unit (no osu018 cells named)."""
    scale = PLATFORMS[platform]["time_scale"] if platform in PLATFORMS else 1.0
    text = sdc_text(period_ns * scale, io_fraction, clock="core_clock", driving_cell=None,
                    load_pf=0.0)
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith("set_load")) + "\n"


def write_design(params: RtlParams, generic: Path, run_dir: Path, *, platform: str,
                 period_ns: float, io_fraction: float = DEFAULT_IO_FRACTION,
                 utilization: float | None = None, density: float | None = None) -> Path:
    """Write ``config.mk``, ``constraint.sdc`` and the netlist into ``run_dir/orfs``;
    returns the config path."""
    if not generic.is_file():
        raise HalutError(f"{generic} not found (synthesis writes it)")
    d = run_dir / "orfs"
    d.mkdir(parents=True, exist_ok=True)
    verilog, sdc = d / f"{TOP}.v", d / "constraint.sdc"
    shutil.copyfile(generic, verilog)
    atomic_write_text(sdc, orfs_sdc(period_ns, platform, io_fraction))
    cfg = d / "config.mk"
    atomic_write_text(cfg, config_mk(platform, str(verilog.resolve()), str(sdc.resolve()),
                                     utilization=utilization, density=density))
    write_json(d / "design.json", {"params": params_dict(params), "platform": platform,
                                   "period_ns": period_ns})
    return cfg


def find_metrics_file(path: Path) -> Path:
    """``metadata.json`` at ``path`` or below it (ORFS: ``reports/<platform>/<design>/
    <variant>/metadata.json``)."""
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.rglob("metadata.json"), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    raise HalutError(f"no ORFS metrics (metadata.json) at {path}")


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def clock_period(metrics: dict[str, Any]) -> float | None:
    """The first clock's period from ``constraints__clocks__details`` ("name: period")."""
    details = metrics.get("constraints__clocks__details")
    if isinstance(details, list) and details:
        m = re.search(r":\s*([0-9.eE+-]+)\s*$", str(details[0]))
        if m:
            return float(m.group(1))
    return None


def parse_metrics(path: Path) -> OrfsMetrics:
    """The key figures of an ORFS run from its ``metadata.json`` (a file or a folder to
    search), plus the per-module areas of a ``synth_stat.txt`` beside it when present.

    Units are the platform's (``run__flow__platform__*_units``: e.g. um^2, ns, W).
    ``fmax_mhz`` is ``1 / (period - setup WNS)``; ORFS reports a met clock as WNS 0, so a
    met clock gives the constrained frequency (a lower bound of the real fmax).
    """
    f = find_metrics_file(path)
    try:
        metrics = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise HalutError(f"{f} is not a readable ORFS metrics JSON ({exc})") from None
    if not isinstance(metrics, dict):
        raise HalutError(f"{f} is not an ORFS metrics JSON object")
    if "finish__design__instance__area" not in metrics:
        raise HalutError(f"{f} has no finish__* metrics: the ORFS run did not finish")
    figures = {name: _num(metrics.get(key)) for name, key in KEY_METRICS}
    units = {k.removeprefix("run__flow__platform__").removesuffix("_units"): v
             for k, v in metrics.items()
             if k.startswith("run__flow__platform__") and k.endswith("_units")}
    period = clock_period(metrics)
    ws = figures["setup_ws"]
    fmax = None
    if period is not None and ws is not None and period - ws > 0:
        scale = 1000.0 if str(units.get("time", "1ns")).endswith("ps") else 1.0
        fmax = round(1000.0 * scale / (period - ws), 2)
    stat = f.parent / "synth_stat.txt"
    return OrfsMetrics(
        metrics_file=str(f), design=metrics.get("run__flow__design"),
        platform=metrics.get("run__flow__platform"), **figures, units=units,
        clock_period=period, fmax_mhz=fmax,
        synth_modules=(parse_yosys_stat_text(stat.read_text(errors="replace"))
                       if stat.is_file() else None))


def parse_yosys_stat_text(text: str) -> dict[str, dict[str, float]]:
    """Per-module ``{"cells", "area"}`` from a Yosys ``stat -liberty`` text report (the
    pre-0.50 layout that ORFS writes: ``=== name ===``, ``Number of cells:``, ``Chip area
    for module '\\name': A``). The top's total is under ``"(top)"``."""
    mods: dict[str, dict[str, float]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^=== (.+) ===$", line.strip())
        if m:
            current = m.group(1)
            continue
        m = re.match(r"^\s*Number of cells:\s+(\d+)", line)
        if m and current and current != "design hierarchy":
            mods.setdefault(current, {})["cells"] = float(m.group(1))
        m = re.match(r"^\s*Chip area for (top )?module '\\?(.+)':\s+([0-9.eE+-]+)", line)
        if m:
            name = "(top)" if m.group(1) else m.group(2)
            mods.setdefault(name, {})["area"] = float(m.group(3))
    return mods


def run_orfs(params: RtlParams, generic: Path, run_dir: Path, *, platform: str = "nangate45",
             period_ns: float = 10.0, io_fraction: float = DEFAULT_IO_FRACTION,
             utilization: float | None = None, density: float | None = None,
             run: bool = True, timeout: float | None = None) -> OrfsResult:
    """Write the ORFS design and, with ``run``, run ORFS and parse its metrics; writes
    ``pnr.json`` (:meth:`OrfsResult.to_dict`)."""
    check_period(period_ns)
    check_io_fraction(io_fraction)
    orfs_settings(platform, utilization, density)
    check_timeout(timeout)
    flow = tools.find_orfs() if run else None
    cfg = write_design(params, generic, run_dir, platform=platform, period_ns=period_ns,
                       io_fraction=io_fraction, utilization=utilization, density=density)
    design: dict[str, Any] = {"params": params_dict(params), "platform": platform,
                              "period_ns": period_ns, "config": str(cfg),
                              "run_dir": str(run_dir)}
    if flow is None:
        result = OrfsResult(**design, ran=False)
        write_json(run_dir / "pnr.json", result.to_dict())
        return result
    work = (run_dir / "orfs" / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    base = ["make", "-C", str(flow), f"DESIGN_CONFIG={cfg.resolve()}", f"WORK_HOME={work}"]
    log = run_dir / "orfs.log"
    t0 = time.monotonic()
    env = dict(os.environ)
    tools.run_tool(base, cwd=run_dir, log=log, env=env, timeout=timeout, what="ORFS make")
    tools.run_tool([*base, "metadata"], cwd=run_dir, log=run_dir / "orfs_metadata.log",
                   env=env, timeout=timeout, check=False, what="ORFS make metadata")
    result = OrfsResult(**design, seconds=round(time.monotonic() - t0, 1), ran=True,
                        log=str(log), metrics=parse_metrics(work))
    write_json(run_dir / "pnr.json", result.to_dict())
    return result
