"""Place-and-route with qflow 1.3 (Yosys 0.23, graywolf, qrouter, vesta) on osu018.

qflow's own Yosys 0.23 cannot read the project's SystemVerilog, so its input is the
generic, flattened Verilog that :mod:`flows.hw.synth` writes (``generic.v``: Yosys 0.70's
technology-independent gates and flip-flops, plain Verilog-2005). qflow re-maps it onto
osu018 with its own ``abc`` and ``blifFanout`` buffering, places (graywolf), routes (qrouter)
and times the routed design (vesta on qrouter's delays).

Figures: die area from the routed DEF's ``DIEAREA``; routed wirelength = the Manhattan length
of every routed segment of the regular nets in the DEF's ``NETS`` section (power nets in
``SPECIALNETS`` are not counted); ``vesta_fmax_mhz`` is vesta's "Computed maximum clock
frequency" (register-to-register, zero margin); the OpenSTA figures are
:mod:`flows.hw.sta` on qflow's final netlist with its SDF back-annotated (``<``/``>`` in
bus names rewritten to ``[``/``]``, which OpenSTA 2.0.17 needs; see :func:`clean_sdf`).
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, fields
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
from flows.hw.sta import DEFAULT_IO_FRACTION, StaResult, run_sta
from learning.atomic import atomic_write_text
from learning.errors import HalutError


@dataclass(frozen=True)
class DefSummary:
    """What a routed DEF says: die box (um), wirelength (um), net and component counts."""

    die_width_um: float
    die_height_um: float
    wirelength_um: float
    nets: int
    routed_nets: int
    components: int
    fill_cells: int

    @property
    def die_area_um2(self) -> float:
        return self.die_width_um * self.die_height_um


_POINT = re.compile(r"\(\s*(\S+)\s+(\S+)(?:\s+\S+)?\s*\)")


def _path_length(path: str) -> float:
    """Manhattan length (DEF units) of one routed path ``layer ( x y ) [via] ( x * ) ...``."""
    total = 0.0
    prev: tuple[float, float] | None = None
    for xs, ys in _POINT.findall(path):
        x = prev[0] if xs == "*" and prev else float(xs)
        y = prev[1] if ys == "*" and prev else float(ys)
        if prev is not None:
            total += abs(x - prev[0]) + abs(y - prev[1])
        prev = (x, y)
    return total


def parse_def(text: str) -> DefSummary:
    """Summarize a routed DEF (the units line, DIEAREA, COMPONENTS and NETS sections)."""
    m = re.search(r"UNITS\s+DISTANCE\s+MICRONS\s+(\d+)", text)
    units = float(m.group(1)) if m else 1.0
    m = re.search(r"DIEAREA\s+\(\s*(-?\d+)\s+(-?\d+)\s*\)\s*\(\s*(-?\d+)\s+(-?\d+)\s*\)", text)
    if not m:
        raise HalutError("the DEF has no DIEAREA")
    x0, y0, x1, y1 = (float(g) for g in m.groups())
    comp = re.search(r"^COMPONENTS\s+(\d+)\s*;(.*?)^END COMPONENTS", text, re.S | re.M)
    n_comp = int(comp.group(1)) if comp else 0
    fills = len(re.findall(r"^\s*-\s+\S+\s+FILL\w*\b", comp.group(2), re.M)) if comp else 0
    nets = re.search(r"^NETS\s+(\d+)\s*;(.*?)^END NETS", text, re.S | re.M)
    if not nets:
        raise HalutError("the DEF has no NETS section")
    length = 0.0
    routed = 0
    for stmt in nets.group(2).split(";"):
        parts = re.split(r"\+\s*(?:ROUTED|FIXED|COVER|NOSHIELD)\b", stmt, maxsplit=1)
        if len(parts) < 2:
            continue
        routed += 1
        # further properties (+ USE ...) end the wiring
        wiring = re.split(r"\+\s*[A-Z]", parts[1], maxsplit=1)[0]
        for path in re.split(r"\bNEW\b", wiring):
            length += _path_length(path)
    return DefSummary(die_width_um=(x1 - x0) / units, die_height_um=(y1 - y0) / units,
                      wirelength_um=length / units, nets=int(nets.group(1)),
                      routed_nets=routed, components=n_comp, fill_cells=fills)


def _find(proj: Path, names: list[str]) -> Path | None:
    for sub in ("layout", "synthesis", "."):
        for name in names:
            p = proj / sub / name
            if p.is_file():
                return p
    return None


def _routed_def(proj: Path) -> Path | None:
    for cand in (proj / "layout" / f"{TOP}.def", proj / f"{TOP}.def",
                 proj / "layout" / f"{TOP}_route.def", proj / f"{TOP}_route.def"):
        if cand.is_file() and "ROUTED" in cand.read_text(errors="replace"):
            return cand
    return None


_UNNAMED_SINK = re.compile(r"^[ \t]*\(INTERCONNECT \S+ ERROR \([^()]*\)\)[ \t]*\n", re.MULTILINE)


def clean_sdf(text: str) -> tuple[str, int]:
    """qflow's SDF made readable for OpenSTA 2.0.17: ``<``/``>`` bus brackets become
    ``[``/``]``, and INTERCONNECT entries whose sink qflow could not name (written as the
    pin ``ERROR``, seen once in a 6.9k-cell design) are dropped. Returns the text and the
    number of entries dropped (that many wire delays are then missing from the timing)."""
    fixed, dropped = _UNNAMED_SINK.subn("", text)
    return fixed.replace("<", "[").replace(">", "]"), dropped


@dataclass(frozen=True, kw_only=True)
class PostRouteSta(JsonRecord):
    """The figures of :class:`~flows.hw.sta.StaResult` a place-and-route result keeps (the
    full result is ``post_route_sta.json``)."""

    period_ns: float
    wns_ns: float
    tns_ns: float
    fmax_mhz: float
    min_period_ns: float
    critical_path: dict[str, Any]
    power_w: dict[str, float]

    @classmethod
    def from_sta(cls, sta: StaResult) -> PostRouteSta:
        return cls(**{f.name: getattr(sta, f.name) for f in fields(cls)})


@dataclass(frozen=True, kw_only=True)
class PostRouteTiming(JsonRecord):
    """OpenSTA on the routed design: the figures, or why there are none. Keys that a run
    did not reach are left out of the JSON."""

    # INTERCONNECT entries dropped from qflow's SDF (:func:`clean_sdf`); None: no SDF read
    sdf_unnamed_sinks_dropped: int | None = json_field(omit_none=True, default=None)
    skipped: str | None = json_field(name="post_route_sta_skipped", omit_none=True,
                                     default=None)
    sta: PostRouteSta | None = json_field(name="post_route_sta", omit_none=True, default=None)


@dataclass(frozen=True, kw_only=True)
class QflowResult(JsonRecord):
    """A qflow place-and-route (``pnr.json``): the routed DEF's figures (um), vesta's fmax
    and the post-route OpenSTA figures (their keys merged in, see :class:`PostRouteTiming`)."""

    tool: str = json_field(default="qflow", init=False)
    params: dict[str, Any]
    returncode: int
    seconds: float
    run_dir: str
    log: str
    def_path: str = json_field(name="def")
    die_area_um2: float
    die_width_um: float
    die_height_um: float
    wirelength_um: float
    nets: int
    routed_nets: int
    components: int
    cells: int
    # qrouter's count of nets left unrouted; None when its log has no ``Final:`` line
    failed_routes: int | None
    vesta_fmax_mhz: float | None
    post_route: PostRouteTiming = json_field(flatten=True)


def post_route_timing(params: RtlParams, proj: Path, run_dir: Path, *, period_ns: float,
                      io_fraction: float = DEFAULT_IO_FRACTION) -> PostRouteTiming:
    """OpenSTA on qflow's final netlist in ``proj`` with its SDF back-annotated: the
    ``post_route_sta`` figures, or ``post_route_sta_skipped`` with the reason."""
    netlist = _find(proj, [f"{TOP}.rtlnopwr.v"])
    sdf = _find(proj, [f"{TOP}.sdf"])
    if netlist is None or sdf is None:
        return PostRouteTiming(skipped="qflow wrote no final netlist or SDF")
    text = sdf.read_text(errors="replace")
    if text.count("(") != text.count(")"):
        # seen here: qrouter's SDF of a 2.3k-cell design ended mid-line
        return PostRouteTiming(skipped=f"qflow's SDF {sdf} is truncated")
    fixed_text, dropped = clean_sdf(text)
    fixed = run_dir / "qflow_post_route.sdf"
    atomic_write_text(fixed, fixed_text)
    try:
        post = run_sta(params, netlist, run_dir, period_ns=period_ns, io_fraction=io_fraction,
                       sdf=fixed, name="post_route_sta")
    except HalutError as exc:
        return PostRouteTiming(sdf_unnamed_sinks_dropped=dropped, skipped=str(exc))
    return PostRouteTiming(sdf_unnamed_sinks_dropped=dropped, sta=PostRouteSta.from_sta(post))


def check_density(density: float | None) -> float | None:
    """graywolf's ``initial_density`` when None or in [0.05, 1], else a one-line error."""
    if density is not None and not 0.05 <= density <= 1.0:
        raise HalutError(f"placement density must be in [0.05, 1], got {density}")
    return density


def run_qflow(params: RtlParams, generic: Path, run_dir: Path, *, period_ns: float = 10.0,
              io_fraction: float = DEFAULT_IO_FRACTION, density: float | None = None,
              timeout: float | None = None) -> QflowResult:
    """Run ``qflow build -T osu018 <top>`` on ``generic`` in ``run_dir/qflow``.

    Parameters
    ----------
    generic : the generic flattened Verilog of :func:`flows.hw.synth.synthesize`
    period_ns : clock period for the post-route OpenSTA check
    density : graywolf's initial density (``project_vars.sh``; lower spreads the cells and
        helps a congested route); qflow's default when None
    """
    check_period(period_ns)
    check_io_fraction(io_fraction)
    check_density(density)
    check_timeout(timeout)
    qflow = tools.find_qflow()
    tools.find_osu018("lef")
    if not generic.is_file():
        raise HalutError(f"{generic} not found (synthesis writes it)")
    proj = run_dir / "qflow"
    if proj.exists():
        shutil.rmtree(proj)
    (proj / "source").mkdir(parents=True)
    shutil.copyfile(generic, proj / "source" / f"{TOP}.v")
    if density is not None:
        atomic_write_text(proj / "project_vars.sh",
                          f"#!/bin/tcsh -f\nset initial_density = {density}\n")
    log = run_dir / "qflow.log"
    t0 = time.monotonic()
    run = tools.run_tool([qflow, "build", "-T", "osu018", TOP], cwd=proj, log=log,
                         timeout=timeout, check=False, what="qflow")
    seconds = time.monotonic() - t0
    logtext = log.read_text(errors="replace")
    route_log = _find(proj, ["log/route.log"]) or proj / "log" / "route.log"
    rtext = route_log.read_text(errors="replace") if route_log.is_file() else ""
    m = re.search(r"Final:\s*(No failed routes|(\d+) failed routes?)", rtext)
    failed = (0 if m and m.group(2) is None else int(m.group(2))) if m else None
    def_path = _routed_def(proj)
    if def_path is None:
        raise HalutError(f"qflow produced no routed DEF (exit {run.returncode}; "
                         f"{tools.last_error_line(log)}; log: {log})")
    summary = parse_def(def_path.read_text(errors="replace"))
    vesta = ""
    for p in sorted((proj / "log").glob("*sta*.log")):
        vesta += p.read_text(errors="replace")
    fm = re.findall(r"Computed maximum clock frequency \(zero margin\) = ([0-9.]+) MHz",
                    vesta + logtext)
    post_route = post_route_timing(params, proj, run_dir, period_ns=period_ns,
                                   io_fraction=io_fraction)
    result = QflowResult(
        params=params_dict(params), returncode=run.returncode, seconds=round(seconds, 1),
        run_dir=str(run_dir), log=str(log), def_path=str(def_path),
        die_area_um2=round(summary.die_area_um2, 2), die_width_um=summary.die_width_um,
        die_height_um=summary.die_height_um, wirelength_um=round(summary.wirelength_um, 1),
        nets=summary.nets, routed_nets=summary.routed_nets, components=summary.components,
        cells=summary.components - summary.fill_cells, failed_routes=failed,
        vesta_fmax_mhz=float(fm[-1]) if fm else None, post_route=post_route)
    write_json(run_dir / "pnr.json", result.to_dict())
    return result
