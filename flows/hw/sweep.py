"""Parameter sweeps: synthesis + timing (and optionally qflow) over a grid, in parallel,
resumable, with a CSV, a JSON table and plots.

``--grid C=2,4 --grid M=2,4`` sweeps the cartesian product over a base parameter set. Each
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
        grid.append((name, vals))
    if not grid:
        raise HalutError("a sweep needs at least one --grid NAME=V1,V2")
    return grid


def grid_points(base: Sequence[str], grid: Sequence[tuple[str, list[str]]]
                ) -> list[tuple[dict[str, str], RtlParams]]:
    """Every combination as (swept values, validated RtlParams); bad ones fail up front.

    ``base`` holds the ``NAME=VALUE`` assignments shared by every point; each point is
    parsed from them plus its grid values, so defaults that depend on other parameters
    (``out_lanes`` = M) follow the swept values."""
    out = []
    for combo in itertools.product(*[vals for _, vals in grid]):
        values = {name: v for (name, _), v in zip(grid, combo, strict=True)}
        params = parse_assignments([*base, *(f"{k}={v}" for k, v in values.items())])
        out.append((values, params))
    return out


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
                io_fraction=float(settings.io_fraction))
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


def _run_points(todo: Sequence[tuple[int, RtlParams, Path]], settings: SweepSettings,
                src: list[str] | None, jobs: int, progress: bool,
                scheduler: str | None = None) -> dict[int, SweepPoint]:
    """Run the points ``todo`` in ``jobs`` processes (or, with ``scheduler``, as tasks on
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
                tasks = [(params, str(pdir), settings, src) for _, params, pdir in todo]
                for k, point in ex.map(run_point, tasks, name="hw-sweep-point"):
                    rows[todo[k][0]] = point
                    bar.update(1)
        finally:
            bar.leave = len(rows) == len(todo)
            bar.close()
        return rows
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)))
    try:
        futs = {pool.submit(run_point, params, str(pdir), settings, src): i
                for i, params, pdir in todo}
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
        pdir = run_dir / "points" / params.tag()
        done = _finished(pdir, params, settings)
        if done is not None:
            rows[i] = SweepRow.from_point(values, done, reused=True)
        else:
            todo.append((i, params, pdir))
    if todo:
        # the tools every point runs, found before the progress bar starts
        tools.find_yosys()
        tools.find_osu018("liberty")
        tools.find_sta()
        if pnr:
            tools.find_qflow()
            tools.find_osu018("lef")
        for i, point in _run_points(todo, settings, src, jobs, progress, scheduler).items():
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
        result, plots=[str(p) for p in plot_sweep(table, swept, run_dir)])
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


def plot_sweep(table: Sequence[dict[str, Any]], swept: Sequence[str], out_dir: Path
               ) -> list[Path]:
    """``area_vs_<p>.png`` and ``fmax_vs_<p>.png`` for each swept parameter ``p``: one line
    per combination of the other swept parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    for metric, label in (("area", "area (um$^2$)"), ("fmax_mhz", "fmax (MHz)")):
        for p in swept:
            others = [o for o in swept if o != p]
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in table:
                groups.setdefault(tuple(str(row[o]) for o in others), []).append(row)
            fig, ax = plt.subplots(figsize=(5, 3.5))
            for key, rows_ in groups.items():
                pts = sorted(((_as_number(str(r[p])), r[metric]) for r in rows_
                              if r.get(metric) is not None), key=lambda t: _order(t[0]))
                if not pts:
                    continue
                xs = [str(x) if isinstance(x, str) else x for x, _ in pts]
                name = ", ".join(f"{o}={v}" for o, v in zip(others, key, strict=True))
                ax.plot(xs, [y for _, y in pts], marker="o", label=name or None)
            ax.set_xlabel(p)
            ax.set_ylabel(label)
            ax.set_title(f"{label.split(' (')[0]} vs {p}")
            ax.grid(True, alpha=0.3)
            if others:
                ax.legend(fontsize=7)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            plt.close(fig)
            path = out_dir / f"{metric.split('_')[0]}_vs_{p}.png"
            atomic_write_bytes(path, buf.getvalue())
            paths.append(path)
    return paths
