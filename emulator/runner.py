"""The layer runner: the one loop nest that runs a layer's matrix product on a backend.

Every path that computes a layer (``halut run``, ``halut emulate``/``compare``, the torch
modules, the demo, the benchmarks) comes through :func:`run_matrix`. The layer is *mapped*
onto the backend: ``column_tile`` output columns and ``codebook_passes`` codebook ranges at
a time (rtl: the chip's M and C; every other backend: the whole layer in one job, a no-op
mapping, since a pass-wise sum from the previous pass's partial sums is the sequential
sum)::

    session = backend.open(layer)               # rtl: build (cached), open one simulator
    for each job (column tile [lo, hi), codebook pass [k0, k1)):  # tiles outside, passes in
        session.load(job, next job)             # rtl: queue its writes, SWAP; the next
                                                #      job's writes load beside the beats
        for each row tile [r0, r1):             # resumable: finished cells are skipped
            session.stream(prepared rows, job)  # -> the cells the last pass finishes

Each job's configuration is written once per simulator and every row of every row tile
streams through it; a pass after the first starts each row from the previous pass's
results (the preload port). The host side runs beside the simulator: while a cell streams
(the batch harness releases the GIL), a worker thread gathers, converts and packs the next
row tile (``session.prepare``), so the end-to-end rate stays close to the harness's
streaming rate.

A *cell* is one (row tile, column tile) pair. With ``resume_dir`` each finished cell is one
file (:mod:`emulator.checkpoint`); a killed run repeated with the same arguments skips them.

Backends are objects (:mod:`emulator.backends` makes them from names at the edge: the CLI,
the torch modules' ``backend`` attribute). This module only needs the two protocols below.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from emulator.checkpoint import TileRecord, TileStore, run_key
from emulator.cycles import CycleReport
from learning.errors import HalutError
from learning.program import HardwareProgram
from learning.validate import as_float_matrix

DEFAULT_ROW_TILE = 4096
#: backends that compute in float from the layer's weights or float model (no program)
FLOAT_PATHS: tuple[str, ...] = ("float", "maddness")


# ---- what a layer is ------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerModel:
    """What a layer needs on every backend.

    program : the quantized HardwareProgram (golden, rtl, gpu), or None (float only)
    weights : (D, M) float32, the exact weights (float backend), or None
    bias : (M,) float32 added by the float backend (the program's bias already holds it)
    model : the float ``learning.HalutModel`` (the ``maddness`` backend), or None
    """

    program: HardwareProgram | None
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    model: Any = None

    def __post_init__(self) -> None:
        if self.program is None and self.weights is None and self.model is None:
            raise HalutError("a layer needs a hardware program or float weights")
        if self.weights is not None:
            W = as_float_matrix(self.weights, "weights")
            if self.program is not None and W.shape != (self.program.D, self.program.M):
                raise HalutError(f"float weights have shape {W.shape}, the program is "
                                 f"D={self.program.D} -> M={self.program.M}")
            object.__setattr__(self, "weights", np.array(W))  # a private, writable copy
            b = (np.zeros(W.shape[1], np.float32) if self.bias is None
                 else np.array(self.bias, dtype=np.float32))
            if b.shape != (W.shape[1],) or not np.all(np.isfinite(b)):
                raise HalutError(f"bias must be finite with shape ({W.shape[1]},), got {b.shape}")
            object.__setattr__(self, "bias", b)

    @property
    def D(self) -> int:
        if self.program is not None:
            return self.program.D
        if self.weights is not None:
            return int(self.weights.shape[0])
        return int(self.model.D)

    @property
    def M(self) -> int:
        if self.program is not None:
            return self.program.M
        if self.weights is not None:
            return int(self.weights.shape[1])
        return int(self.model.M)

    def need_program(self, backend: str) -> HardwareProgram:
        if self.program is None:
            raise HalutError(f"backend {backend!r} needs a hardware program; the model holds "
                             "none (quantize it first)")
        return self.program

    @classmethod
    def from_model(cls, model: Any, program: HardwareProgram | None) -> LayerModel:
        """From a learning.HalutModel (its ``weights`` and ``bias``) and its program."""
        weights = getattr(model, "weights", None) if model is not None else None
        bias = getattr(model, "bias", None) if model is not None else None
        return cls(program=program, weights=weights,
                   bias=bias if weights is not None else None, model=model)

    @classmethod
    def from_saved(cls, saved: Any) -> LayerModel:
        """From ``learning.load_model(path)`` (fields ``.model`` and ``.program``)."""
        return cls.from_model(getattr(saved, "model", None), getattr(saved, "program", None))


# ---- results ---------------------------------------------------------------------------------

@dataclass
class RowTileReport:
    """One row tile: rows ``[lo, hi)``, its cycles (summed over column tiles), one report per
    column tile, and whether it came from tile files of an earlier run."""

    lo: int
    hi: int
    cycles: CycleReport | None
    column_tiles: list[CycleReport]
    resumed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "resumed": self.resumed,
                "cycles": self.cycles.to_dict() if self.cycles else None,
                "column_tiles": [c.to_dict() for c in self.column_tiles]}


class ResumeCounts:
    """``computed`` / ``resumed``: row tiles run now / loaded from an earlier run's files."""

    def row_reports(self) -> list[RowTileReport]:
        raise NotImplementedError

    @property
    def computed(self) -> int:
        return sum(not t.resumed for t in self.row_reports())

    @property
    def resumed(self) -> int:
        return sum(t.resumed for t in self.row_reports())


@dataclass
class RunResult(ResumeCounts):
    """Outputs of one matrix run.

    y : (R, M) float32, dequantized
    acc : (R, M) int32 | float32 raw accumulators, None for the float paths
    cycles : the accelerator's cycles summed over every cell (backends that count cycles)
    tiles : one CycleReport per column tile, summed over row tiles
    row_tiles : one report per row tile
    """

    y: np.ndarray
    acc: np.ndarray | None
    backend: str
    cycles: CycleReport | None = None
    tiles: list[CycleReport] = field(default_factory=list)
    row_tiles: list[RowTileReport] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def row_reports(self) -> list[RowTileReport]:
        return self.row_tiles


@dataclass
class Cell:
    """What a session returns for one (row tile, column tile) cell."""

    y: np.ndarray  # (rows, cols) float32
    acc: np.ndarray | None  # (rows, cols) int32 | float32
    cycles: CycleReport | None = None


@dataclass(frozen=True)
class Job:
    """One slice of a layer on the backend: columns ``[lo, hi)`` (column tile ``tile``) and
    codebooks ``[k0, k1)`` (pass ``index`` of ``passes``)."""

    tile: int
    lo: int
    hi: int
    index: int
    passes: int
    k0: int
    k1: int

    @property
    def last_pass(self) -> bool:
        return self.index == self.passes - 1


# ---- the backend protocols -------------------------------------------------------------------

class Session(Protocol):
    """One open backend for one layer (rtl: one simulator)."""

    def prepare(self, A: np.ndarray) -> Any:
        """Host-side work on validated rows (R, D) float32 that needs no simulator (gather,
        convert, pack). Runs on a worker thread beside :meth:`stream`."""

    def load(self, job: Job, nxt: Job | None) -> None:
        """Make ``job`` the one the next rows stream through; ``nxt``: the job that follows
        (rtl: its configuration loads beside this job's rows), None for the last."""

    def stream(self, prepared: Any, job: Job, *, last: bool) -> list[Cell]:
        """Stream prepared rows (one row tile, all of the layer's codebooks) through ``job``;
        ``last``: no more rows follow in this job. Returns the cells finished by this call
        (only a last pass finishes cells), in the order their rows were streamed (rtl: a row
        tile's last results may come out during a later call; the last call of the last job
        drains, so every cell is back when it returns)."""

    def close(self, *, keep: bool) -> None:
        """Release the simulator; ``keep``: the run finished (waveforms are kept)."""

    def info(self) -> dict[str, Any]:
        """What the run's result reports about the backend (rtl: build, driver, params)."""


class Backend(Protocol):
    """A backend object: ``run(program, A) -> RunResult`` plus what the loop nest needs."""

    name: str
    #: whether results carry accelerator cycle counts
    counts_cycles: bool

    def column_tile(self, layer: LayerModel) -> int:
        """Output columns per column tile for this layer (``layer.M``: one tile)."""

    def codebook_passes(self, layer: LayerModel) -> list[tuple[int, int]]:
        """The codebook ranges ``[k0, k1)`` of the layer's passes, in order (one: all)."""

    def open(self, layer: LayerModel) -> Session:
        """Open a session for ``layer`` (rtl: build or find the model, open one simulator)."""

    def options_key(self) -> dict[str, Any]:
        """The options that change the numbers or cycles (the resume key)."""

    def run(self, program: HardwareProgram, A: np.ndarray) -> RunResult:
        """The whole matrix product of ``program`` on ``A`` (N, D)."""


TileHook = Callable[[int, TileRecord], None]


class RowsSession:
    """The session of a backend with no simulator: each cell is one call ``fn(rows)``, no
    preparation, nothing to load; ``info`` is what the result reports (``fn`` may fill it)."""

    def __init__(self, fn: Callable[[np.ndarray], Cell],
                 info: dict[str, Any] | None = None) -> None:
        self.fn = fn
        self._info = {} if info is None else info

    def prepare(self, A: np.ndarray) -> np.ndarray:
        return A

    def load(self, job: Job, nxt: Job | None) -> None:
        return None

    def stream(self, A: np.ndarray, job: Job, *, last: bool) -> list[Cell]:
        return [self.fn(A)]

    def close(self, *, keep: bool) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return self._info


class BackendBase:
    """Defaults of the :class:`Backend` protocol: one column tile, no options, and
    :meth:`run` through :func:`run_matrix` (the same loop nest as every layer)."""

    name = "?"
    counts_cycles = False
    #: options for run_matrix when the backend runs a whole matrix by itself
    progress = False

    def column_tile(self, layer: LayerModel) -> int:
        return layer.M

    def codebook_passes(self, layer: LayerModel) -> list[tuple[int, int]]:
        return [(0, layer.program.C if layer.program is not None else 0)]

    def options_key(self) -> dict[str, Any]:
        return {}

    def open(self, layer: LayerModel) -> Session:
        raise NotImplementedError

    def run(self, program: HardwareProgram, A: np.ndarray) -> RunResult:
        if not isinstance(program, HardwareProgram):
            raise HalutError(f"program must be a HardwareProgram, got {type(program).__name__}")
        return run_matrix(self, LayerModel(program), A, progress=self.progress)


# ---- the loop nest ---------------------------------------------------------------------------

def _bounds(n: int, step: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def _float_digest(layer: LayerModel, backend: str) -> str | None:
    """SHA-256 of what a float path computes with (float: weights and bias; maddness: the
    float model's arrays); None for the program backends (the run key has the program)."""
    if backend == "float":
        arrays = [layer.weights, layer.bias]
    elif backend == "maddness" and layer.model is not None:
        arrays = [getattr(layer.model, n, None) for n in ("dims", "thresholds", "lut", "bias")]
    else:
        return None
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class _Prefetch:
    """Prepared inputs of row tiles, computed one ahead on a worker thread and kept while
    more column tiles will use them."""

    def __init__(self, session: Session, A: np.ndarray, rows: list[tuple[int, int]],
                 keep: bool) -> None:
        self.session, self.A, self.rows, self.keep = session, A, rows, keep
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="halut-host")
        self.futures: dict[int, Future[Any]] = {}

    def submit(self, r: int) -> None:
        """Start preparing row tile ``r`` (if it is not under way already)."""
        if r not in self.futures:
            lo, hi = self.rows[r]
            self.futures[r] = self.pool.submit(self.session.prepare, self.A[lo:hi])

    def get(self, r: int, next_r: int | None) -> Any:
        self.submit(r)
        if next_r is not None:
            self.submit(next_r)
        value = self.futures[r].result()
        if not self.keep:
            del self.futures[r]
        return value

    def close(self) -> None:
        for f in self.futures.values():
            f.cancel()
        self.pool.shutdown(wait=True)


def run_matrix(backend: Backend, layer: LayerModel, A: np.ndarray, *,
               row_tile: int | None = None, resume_dir: str | Path | None = None,
               progress: bool = False, on_tile: TileHook | None = None,
               key_extra: dict[str, Any] | None = None) -> RunResult:
    """Run the layer's matrix product on rows ``A`` (R, D): row tiles x column tiles.

    Parameters
    ----------
    backend : a backend object (:func:`emulator.backends.make_backend`)
    layer : the layer (program, float weights, float model)
    A : (R, D) float array, finite
    row_tile : rows per tile (default :data:`DEFAULT_ROW_TILE`)
    resume_dir : folder of finished cell files; finished cells of the same run are skipped
    progress : a tqdm bar over cells
    on_tile : called as ``on_tile(index, record)`` after each computed cell is stored
        (``index = column_tile * row_tiles + row_tile``: the cell's place in run order)
    key_extra : more identity for the resume key (the layer's geometry)

    Returns
    -------
    RunResult with ``y`` (R, M) and cycle reports per column tile, per row tile and in total
    """
    A = as_float_matrix(A, "activations", cols=layer.D)
    R, M = A.shape[0], layer.M
    tile = DEFAULT_ROW_TILE if row_tile is None else int(row_tile)
    if tile < 1:
        raise HalutError(f"row tile must be >= 1 rows, got {row_tile}")
    rows = _bounds(R, tile) if R else []
    cols = _bounds(M, max(1, min(backend.column_tile(layer), M)))
    store = None
    if resume_dir is not None:
        key = run_key(program=None if backend.name in FLOAT_PATHS else layer.program, A=A,
                      backend=backend.name, options=backend.options_key(), row_tile=tile,
                      extra={**(key_extra or {}),
                             "weights": _float_digest(layer, backend.name)})
        store = TileStore(Path(resume_dir), key)
    whole = len(cols) == 1
    cells: dict[tuple[int, int], TileRecord] = {}
    if store is not None:
        for t, (c0, c1) in enumerate(cols):
            for r, (lo, hi) in enumerate(rows):
                rec = store.load(lo, hi, c1 - c0, None if whole else (c0, c1))
                if rec is not None:
                    cells[(r, t)] = rec
    todo = [[r for r in range(len(rows)) if (r, t) not in cells] for t in range(len(cols))]
    passes = backend.codebook_passes(layer)
    jobs = [Job(t, c0, c1, p, len(passes), k0, k1)
            for t, (c0, c1) in enumerate(cols) if todo[t]
            for p, (k0, k1) in enumerate(passes)]
    bar = tqdm(total=len(rows) * len(cols), initial=len(cells), desc=f"{backend.name} tiles",
               unit="tile", disable=not progress, leave=False)
    finished = False
    extra: dict[str, Any] = {}
    session = backend.open(layer) if jobs else None
    prefetch = None if session is None else _Prefetch(session, A, rows, keep=len(jobs) > 1)
    pending: list[tuple[int, int]] = []  # (row tile, column tile) in stream order
    try:
        for j, job in enumerate(jobs):
            assert session is not None and prefetch is not None
            mine = todo[job.tile]
            after = jobs[j + 1] if j + 1 < len(jobs) else None
            prefetch.submit(mine[0])  # the first rows get ready while the job loads
            session.load(job, after)
            for i, r in enumerate(mine):
                nxt = (mine[i + 1] if i + 1 < len(mine) else
                       None if after is None else todo[after.tile][0])
                if job.last_pass:
                    pending.append((r, job.tile))
                for cell in session.stream(prefetch.get(r, nxt), job, last=i + 1 == len(mine)):
                    done, t = pending.pop(0)
                    lo, hi = rows[done]
                    c0, c1 = cols[t]
                    rec = TileRecord(lo=lo, hi=hi, y=np.asarray(cell.y, np.float32),
                                     acc=None if cell.acc is None else np.asarray(cell.acc),
                                     cycles=cell.cycles)
                    if store is not None:
                        store.save(rec, None if whole else (c0, c1))
                    cells[(done, t)] = rec
                    if on_tile is not None:
                        on_tile(t * len(rows) + done, rec)
                    bar.update(1)
        if pending:
            raise HalutError(f"backend {backend.name!r} returned no results for the cells "
                             f"(row tile, column tile) {pending}")
        finished = True
        if session is not None:
            extra = session.info()
    finally:
        bar.close()
        if prefetch is not None:
            prefetch.close()
        if session is not None:
            session.close(keep=finished)
    res = _assemble(backend, layer, rows, cols, cells, R, tile, store)
    res.info.update(extra)
    return res


def _assemble(backend: Backend, layer: LayerModel, rows: list[tuple[int, int]],
              cols: list[tuple[int, int]], cells: dict[tuple[int, int], TileRecord], R: int,
              tile: int, store: TileStore | None) -> RunResult:
    M = layer.M
    y = np.empty((R, M), np.float32)
    have_acc = (all(c.acc is not None for c in cells.values()) if cells
                else backend.name not in FLOAT_PATHS and layer.program is not None)
    acc = None
    if have_acc:
        first = next(iter(cells.values()), None)
        dtype = (first.acc.dtype if first is not None and first.acc is not None
                 else layer.need_program(backend.name).acc_dtype)
        acc = np.empty((R, M), dtype)
    for (r, t), rec in cells.items():
        (lo, hi), (c0, c1) = rows[r], cols[t]
        y[lo:hi, c0:c1] = rec.y
        if acc is not None and rec.acc is not None:
            acc[lo:hi, c0:c1] = rec.acc
    row_reports = []
    for r, (lo, hi) in enumerate(rows):
        per_col = [cells[(r, t)] for t in range(len(cols))]
        reports = [c.cycles for c in per_col if c.cycles is not None]
        row_reports.append(RowTileReport(lo, hi, _sum(reports), reports,
                                         all(c.resumed for c in per_col)))
    col_reports = []
    for t in range(len(cols)):
        col = [cells[(r, t)].cycles for r in range(len(rows))]
        total = _sum([c for c in col if c is not None])
        if total is not None:
            col_reports.append(total)
    info: dict[str, Any] = {"rows": R, "D": layer.D, "M": M, "row_tile": tile,
                            "column_tile": cols[0][1] - cols[0][0] if cols else M,
                            "column_tiles": len(cols),
                            "codebook_passes": len(backend.codebook_passes(layer))}
    if store is not None and store.rejected:
        info["rejected_tile_files"] = [f"{n}: {why}" for n, why in store.rejected]
    return RunResult(y=y, acc=acc, backend=backend.name,
                     cycles=_sum(col_reports), tiles=col_reports, row_tiles=row_reports,
                     info=info)


def _sum(reports: list[CycleReport]) -> CycleReport | None:
    return sum(reports[1:], reports[0]) if reports else None
