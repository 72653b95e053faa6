"""Parameter sweeps: synthesis + timing (and optionally qflow) over a grid, in parallel,
resumable, with a CSV, a JSON table and plots.

``--grid C=2,4 --grid M=2,4`` sweeps the cartesian product over a base parameter set; besides
the RTL parameters, ``period`` (:data:`PERIOD`, ns) is a sweepable setting: the synthesis
target and the STA clock of each point (``--grid period=5,10``; default ``--period``). Each
point runs in its own process (``concurrent.futures``, ``--jobs``) in
``<sweep dir>/points/<params tag>/`` and ends by writing ``point.json``; a later sweep over
the same folder reuses every finished point whose parameters and settings match, so an
interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from emulator.params import RtlParams, parse_assignments
from flows import tools
from flows.hw.common import (
    JsonRecord,
    check_io_fraction,
    check_period,
    json_field,
    params_dict,
    read_json,
    rtl_sources,
    sources_digest,
    write_json,
)
from learning.atomic import atomic_write_bytes, atomic_write_text
from learning.errors import HalutError
from learning.strict import is_int, is_number, same_json


@dataclass(frozen=True, kw_only=True)
class SweepSettings(JsonRecord):
    """What a point's figures depend on besides its parameters: a finished point is reused
    only when its ``settings`` are these (``rtl_digest``: :func:`~flows.hw.common.
    sources_digest` of the RTL)."""

    period_ns: float
    io_fraction: float
    pnr: bool
    rtl_digest: str


@dataclass(frozen=True, kw_only=True)
class PointPnr(JsonRecord):
    """The qflow figures of a point (``--pnr``)."""

    die_area_um2: float
    wirelength_um: float
    vesta_fmax_mhz: float | None


@dataclass(frozen=True, kw_only=True)
class SweepPoint(JsonRecord):
    """One point's figures (``points/<tag>/point.json``); the qflow keys only with ``--pnr``."""

    params: dict[str, Any]
    settings: SweepSettings
    area: float
    cells: int
    flip_flops: int
    fmax_mhz: float
    wns_ns: float
    power_w: float | None
    seconds: float
    pnr: PointPnr | None = json_field(flatten=True, omit_none=True, default=None)


_COLUMN = "sweep_column"


def _column() -> Any:
    """A figure of the sweep table (a column of ``sweep.csv``)."""
    return field(metadata={_COLUMN: True})


@dataclass(frozen=True, kw_only=True)
class SweepRow(JsonRecord):
    """One row of the sweep table: the swept values (one key per swept parameter, as given
    on the grid), the figures (:data:`COLUMNS`; None where the point has none), whether the
    point was reused from an earlier sweep, and its full parameters."""

    values: dict[str, str] = json_field(flatten=True)
    area: float | None = _column()
    cells: int | None = _column()
    flip_flops: int | None = _column()
    fmax_mhz: float | None = _column()
    wns_ns: float | None = _column()
    power_w: float | None = _column()
    die_area_um2: float | None = _column()
    wirelength_um: float | None = _column()
    vesta_fmax_mhz: float | None = _column()
    seconds: float | None = _column()
    reused: bool
    params: dict[str, Any]

    @classmethod
    def from_point(cls, values: Mapping[str, str], point: Mapping[str, Any], reused: bool
                   ) -> SweepRow:
        """The row of a point's ``point.json`` object (figures it lacks are None)."""
        return cls(values=dict(values), **{c: point.get(c) for c in COLUMNS}, reused=reused,
                   params=point["params"])


#: the figures of a sweep, in table order
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SweepRow) if f.metadata.get(_COLUMN))


@dataclass(frozen=True, kw_only=True)
class GridAxis(JsonRecord):
    """One swept parameter and its values, as given (``--grid NAME=V1,V2``)."""

    name: str
    values: list[str]


@dataclass(frozen=True, kw_only=True)
class SweepResult(JsonRecord):
    """A sweep (``sweep.json``): the base assignments, the grid, the settings, one row per
    point in grid order, and the plots drawn."""

    base: list[str]
    grid: list[GridAxis]
    settings: SweepSettings
    rows: list[SweepRow]
    run_dir: str
    # the plot files; None (left out) in the sweep.json written before they are drawn
    plots: list[str] | None = json_field(omit_none=True, default=None)


#: the grid name of the clock period (ns), a setting of each point rather than an RTL parameter
PERIOD = "period"


def _period_value(text: str) -> float:
    """A ``period`` grid value as ns (finite, > 0), else a one-line error."""
    try:
        value = float(text)
    except ValueError:
        raise HalutError(f"grid value period={text!r} is not a number of ns") from None
    return check_period(value)


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["C=2,4", "M=2,4"]`` -> ``[("C", ["2", "4"]), ("M", ["2", "4"])]``."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        if "=" not in item:
            raise HalutError(f"grid entry {item!r} must look like NAME=V1,V2,...")
        name, values = (s.strip() for s in item.split("=", 1))
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not name or not vals:
            raise HalutError(f"grid entry {item!r} names no values")
        if any(n == name for n, _ in grid):
            raise HalutError(f"grid parameter {name} is given twice")
        if name == PERIOD:
            for v in vals:
                _period_value(v)
            if len({_period_value(v) for v in vals}) != len(vals):
                raise HalutError(f"grid entry {item!r} repeats a period")
        grid.append((name, vals))
    if not grid:
        raise HalutError("a sweep needs at least one --grid NAME=V1,V2")
    return grid


def grid_points(base: Sequence[str], grid: Sequence[tuple[str, list[str]]]
                ) -> list[tuple[dict[str, str], RtlParams]]:
    """Every combination as (swept values, validated RtlParams); bad ones fail up front.

    ``base`` holds the ``NAME=VALUE`` assignments shared by every point; each point is
    parsed from them plus its grid values, so defaults that depend on other parameters
    (``out_lanes`` = M) follow the swept values. A ``period`` value is a setting of the
    point (:func:`point_period`), not an RTL parameter."""
    out = []
    for combo in itertools.product(*[vals for _, vals in grid]):
        values = {name: v for (name, _), v in zip(grid, combo, strict=True)}
        params = parse_assignments([*base, *(f"{k}={v}" for k, v in values.items()
                                             if k != PERIOD)])
        out.append((values, params))
    return out


def point_period(values: Mapping[str, str], default_ns: float) -> float:
    """The clock period (ns) of the point with swept ``values``: its ``period`` value, else
    ``default_ns`` (``--period``)."""
    return _period_value(values[PERIOD]) if PERIOD in values else default_ns


def point_dir(run_dir: Path, values: Mapping[str, str], params: RtlParams) -> Path:
    """``<run>/points/<params tag>``, with ``_period<P>ns`` when the period is swept (two
    points then share the RTL parameters); a sweep without a swept period keeps the folder
    names of earlier sweeps, so they resume."""
    tag = params.tag()
    if PERIOD in values:
        tag += f"_period{_period_value(values[PERIOD]):g}ns"
    return run_dir / "points" / tag


def run_point(params: RtlParams, point_dir: str, settings: SweepSettings,
              sources: list[str] | None) -> SweepPoint:
    """Synthesis + STA (+ qflow) for one point; writes ``point.json``."""
    from flows.hw.sta import run_sta
    from flows.hw.synth import synthesize

    d = Path(point_dir)
    period = float(settings.period_ns)
    s = synthesize(params, d, sources=sources, period_ns=period, reuse=True,
                   breakdown=False)
    t = run_sta(params, Path(s.netlist), d, period_ns=period,
                io_fraction=float(settings.io_fraction), synthesis_period_ns=s.period_ns)
    seconds = round(s.seconds + t.seconds, 2)
    pnr = None
    if settings.pnr:
        from flows.hw.qflow import run_qflow

        q = run_qflow(params, Path(s.generic), d, period_ns=period,
                      io_fraction=float(settings.io_fraction))
        pnr = PointPnr(die_area_um2=q.die_area_um2, wirelength_um=q.wirelength_um,
                       vesta_fmax_mhz=q.vesta_fmax_mhz)
        seconds = round(seconds + q.seconds, 1)
    point = SweepPoint(params=params_dict(params), settings=settings, area=s.area,
                       cells=s.cells, flip_flops=s.flip_flops, fmax_mhz=t.fmax_mhz,
                       wns_ns=round(t.wns_ns, 4), power_w=t.power_w.get("total"),
                       seconds=seconds, pnr=pnr)
    write_json(d / "point.json", point.to_dict())
    return point


# the figures of a ``point.json`` (:class:`SweepPoint`, the qflow ones with ``--pnr``) that
# are integers; the others are numbers
_POINT_COUNTS = ("cells", "flip_flops")
_POINT_KEYS = frozenset({"params", "settings", *COLUMNS})


def _well_formed(point: dict[str, Any]) -> bool:
    """Every figure of ``point`` (:data:`COLUMNS`) that it has is a number (an integer for
    counts; no booleans) or null (a row shows a figure a point lacks as empty), and it has
    no key a :class:`SweepPoint` does not write."""
    for name in COLUMNS:
        v = point.get(name)
        if v is not None and not (is_int(v) if name in _POINT_COUNTS else is_number(v)):
            return False
    return isinstance(point.get("params"), dict) and set(point) <= _POINT_KEYS


def _finished(point_dir: Path, params: RtlParams, settings: SweepSettings
              ) -> dict[str, Any] | None:
    """The ``point.json`` object of a finished point with these parameters and settings
    (compared strictly: a ``true`` is no ``1``) whose figures are well-formed; None otherwise
    (a missing, damaged or foreign point is run again)."""
    old = read_json(point_dir / "point.json")
    if (old and same_json(old.get("params"), params_dict(params))
            and same_json(old.get("settings"), settings.to_dict())
            and _well_formed(old)):
        return old
    return None


def _run_points(todo: Sequence[tuple[int, RtlParams, Path, SweepSettings]],
                src: list[str] | None, jobs: int, progress: bool,
                scheduler: str | None = None) -> dict[int, SweepPoint]:
    """Run the points ``todo`` (index, parameters, folder, the point's settings) in ``jobs``
    processes (or, with ``scheduler``, as tasks on
    that Dask cluster: flows.distributed) behind a progress bar. On the first failure the
    waiting points are cancelled (the running ones finish and stay reusable) and the bar is
    cleared, so the error is the only line left."""
    from tqdm import tqdm

    rows: dict[int, SweepPoint] = {}
    bar = tqdm(total=len(todo), desc="sweep", disable=not progress)
    if scheduler:
        from flows.distributed import make_executor

        try:
            with make_executor(scheduler=scheduler) as ex:
                tasks = [(params, str(pdir), pset, src) for _, params, pdir, pset in todo]
                for k, point in ex.map(run_point, tasks, name="hw-sweep-point"):
                    rows[todo[k][0]] = point
                    bar.update(1)
        finally:
            bar.leave = len(rows) == len(todo)
            bar.close()
        return rows
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)))
    try:
        futs = {pool.submit(run_point, params, str(pdir), pset, src): i
                for i, params, pdir, pset in todo}
        for fut in as_completed(futs):
            rows[futs[fut]] = fut.result()
            bar.update(1)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.leave = False
        bar.close()
        raise
    pool.shutdown(wait=True)
    bar.close()
    return rows


def sweep(base: Sequence[str], grid: Sequence[tuple[str, list[str]]], run_dir: Path, *,
          jobs: int = 2, period_ns: float = 10.0, io_fraction: float = 0.2,
          pnr: bool = False, sources: Sequence[str | os.PathLike[str]] | None = None,
          progress: bool = False, scheduler: str | None = None) -> SweepResult:
    """Run (or resume) the sweep over ``grid`` on top of the ``NAME=VALUE`` assignments
    ``base``; writes ``sweep.json``, ``sweep.csv`` and ``*.png``.

    Everything that can be checked without running a tool (settings, parameters, the RTL
    files, the tools a point needs) is checked before the first point starts. A finished
    point is reused only when its parameters, settings and RTL (a digest of the sources'
    contents, ``settings.rtl_digest``) are the same. ``scheduler``: run the points on that
    Dask cluster (``tcp://HOST:8786``) instead of ``jobs`` local processes; the workers
    write into ``run_dir``, which must be on a file system they share (docs/distributed.md)."""
    if jobs < 1:
        raise HalutError(f"--jobs must be >= 1, got {jobs}")
    check_period(period_ns)
    check_io_fraction(io_fraction)
    points = grid_points(base, grid)
    files = rtl_sources(sources)
    settings = SweepSettings(period_ns=period_ns, io_fraction=io_fraction, pnr=pnr,
                             rtl_digest=sources_digest(files))
    src = [str(Path(s).resolve()) for s in sources] if sources is not None else None
    run_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[int, SweepRow] = {}
    todo = []
    for i, (values, params) in enumerate(points):
        pdir = point_dir(run_dir, values, params)
        # the point's own settings: its period when the period is swept
        pset = dataclasses.replace(settings, period_ns=point_period(values, period_ns))
        done = _finished(pdir, params, pset)
        if done is not None:
            rows[i] = SweepRow.from_point(values, done, reused=True)
        else:
            todo.append((i, params, pdir, pset))
    if todo:
        # the tools every point runs, found before the progress bar starts
        tools.find_yosys()
        tools.find_osu018("liberty")
        tools.find_sta()
        if pnr:
            tools.find_qflow()
            tools.find_osu018("lef")
        for i, point in _run_points(todo, src, jobs, progress, scheduler).items():
            rows[i] = SweepRow.from_point(points[i][0], point.to_dict(), reused=False)
    swept = [name for name, _ in grid]
    result = SweepResult(base=list(base),
                         grid=[GridAxis(name=n, values=list(v)) for n, v in grid],
                         settings=settings, rows=[rows[i] for i in range(len(points))],
                         run_dir=str(run_dir))
    write_json(run_dir / "sweep.json", result.to_dict())
    table = [row.to_dict() for row in result.rows]
    atomic_write_text(run_dir / "sweep.csv", to_csv(table, swept))
    result = dataclasses.replace(
        result, plots=[str(p) for p in plot_sweep(table, swept, run_dir, period_ns)])
    write_json(run_dir / "sweep.json", result.to_dict())
    return result


def to_csv(table: Sequence[dict[str, Any]], swept: Sequence[str]) -> str:
    """``sweep.csv``: the swept values and :data:`COLUMNS` of each row (a
    :meth:`SweepRow.to_dict`), empty where None."""
    buf = io.StringIO()
    w = csv.writer(buf)
    cols = [*swept, *COLUMNS]
    w.writerow(cols)
    for row in table:
        w.writerow(["" if row.get(c) is None else row.get(c) for c in cols])
    return buf.getvalue()


def _as_number(v: str) -> float | str:
    try:
        return float(v)
    except ValueError:
        return v


def _order(x: float | str) -> tuple[int, float, str]:
    return (1, 0.0, x) if isinstance(x, str) else (0, x, "")


@dataclass(frozen=True)
class SweepMetric:
    """A figure plotted against each swept parameter: its key in a row (``energy_pj``:
    power x period, computed), the file stem of its plot and its axis label."""

    key: str
    stem: str
    label: str


def sweep_metrics(period_note: str) -> list[SweepMetric]:
    """The plotted figures; ``period_note`` says at which clock the power was computed
    (``10 ns (100 MHz)``, or ``each point's period``)."""
    return [SweepMetric("area", "area", "cell area (um$^2$)"),
            SweepMetric("fmax_mhz", "fmax", "fmax (MHz)"),
            SweepMetric("power_w", "power",
                        f"power (W), OpenSTA default activity at {period_note}"),
            SweepMetric("energy_pj", "energy",
                        f"energy per cycle (pJ), OpenSTA default activity at {period_note}")]


def period_note(swept: Sequence[str], period_ns: float) -> str:
    """At which clock a sweep's power figures were computed, in words."""
    if PERIOD in swept:
        return "each point's period"
    return f"{period_ns:g} ns ({1000.0 / period_ns:g} MHz)"


def row_figure(row: Mapping[str, Any], key: str, period_ns: float) -> float | None:
    """A row's figure ``key`` (None when the point has none, or it is not finite);
    ``energy_pj`` is ``power_w`` x the point's period, in pJ per cycle."""
    if key == "energy_pj":
        power = row_figure(row, "power_w", period_ns)
        period = _as_number(str(row[PERIOD])) if PERIOD in row else period_ns
        return None if power is None or isinstance(period, str) else power * period * 1000.0
    v = row.get(key)
    if not is_number(v) or isinstance(v, bool) or not math.isfinite(v):
        return None
    return float(v)


def sweep_series(table: Sequence[Mapping[str, Any]], swept: Sequence[str], p: str, key: str,
                 period_ns: float) -> list[tuple[str, list[tuple[float | str, float]]]]:
    """The lines of a plot of figure ``key`` against swept parameter ``p``: one per
    combination of the other swept parameters (``"C=2, M=4"``; ``""`` when ``p`` is the
    only one), each a list of (x, y) in x order; x is a number when every value of ``p``
    is one. Lines without a point are left out."""
    others = [o for o in swept if o != p]
    numeric = all(not isinstance(_as_number(str(r[p])), str) for r in table)
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in table:
        groups.setdefault(tuple(str(row[o]) for o in others), []).append(row)
    out: list[tuple[str, list[tuple[float | str, float]]]] = []
    for key_values, rows_ in groups.items():
        pts: list[tuple[float | str, float]] = []
        for r in rows_:
            y = row_figure(r, key, period_ns)
            if y is not None:
                pts.append((_as_number(str(r[p])) if numeric else str(r[p]), y))
        pts.sort(key=lambda t: _order(t[0]))
        if pts:
            out.append((", ".join(f"{o}={v}" for o, v in zip(others, key_values, strict=True)),
                        pts))
    return out


def axis_label(p: str) -> str:
    """A swept parameter's axis label (the period with its unit)."""
    return "clock period (ns)" if p == PERIOD else p


def plot_sweep(table: Sequence[dict[str, Any]], swept: Sequence[str], out_dir: Path,
               period_ns: float = 10.0) -> list[Path]:
    """``<figure>_vs_<p>.png`` for each swept parameter ``p`` and figure (area, fmax, and
    when the points have power: power and energy per cycle, at OpenSTA's default activity):
    one line per combination of the other swept parameters. An integer parameter gets
    integer ticks (at its values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, MaxNLocator

    paths: list[Path] = []
    for metric in sweep_metrics(period_note(swept, period_ns)):
        for p in swept:
            series = sweep_series(table, swept, p, metric.key, period_ns)
            if not series:
                continue  # e.g. no power in any point
            fig, ax = plt.subplots(figsize=(5.5, 3.8))
            for name, pts in series:
                xs = [x for x, _ in pts]
                ax.plot(xs, [y for _, y in pts], marker="o", label=name or None)
            xs_all = sorted({x for _, pts in series for x, _ in pts if not isinstance(x, str)})
            if xs_all and all(float(x).is_integer() for x in xs_all):
                if len(xs_all) <= 12:
                    ax.xaxis.set_major_locator(FixedLocator(xs_all))
                else:
                    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            elif xs_all and len(xs_all) <= 12:
                ax.xaxis.set_major_locator(FixedLocator(xs_all))
            ax.set_xlabel(axis_label(p))
            ax.set_ylabel(metric.label.split(", ")[0])
            ax.set_title(f"{metric.label.split(' (')[0]} vs {p}" + (
                f"\n{metric.label.split(', ', 1)[1]}" if ", " in metric.label else ""),
                fontsize=9)
            ax.grid(True, alpha=0.3)
            if len(series) > 1 or series[0][0]:
                ax.legend(fontsize=7)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            plt.close(fig)
            path = out_dir / f"{metric.stem}_vs_{p}.png"
            atomic_write_bytes(path, buf.getvalue())
            paths.append(path)
    return paths
