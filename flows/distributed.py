"""Where independent tasks run: in this process, a local process pool, or a Dask cluster
(docs/distributed.md).

The sweeps (``halut sweep``) and the gpu/rtl image shards of ``halut net eval`` are made of
tasks that depend only on picklable inputs (a model SPEC, file paths, options) and return
small picklable results. An :class:`Executor` maps one top-level function over such tasks and
yields ``(index, result)`` as they finish:

* :class:`LocalExecutor` ``(jobs=1)``: one after another, in this process;
* :class:`LocalExecutor` ``(jobs=N)``: N spawned worker processes on this machine; a pool
  broken by a dead worker is started again and its unfinished tasks resubmitted (at most
  :data:`WORKER_LOSS_RETRIES` times);
* :class:`DaskExecutor` ``(address)``: the workers of an existing Dask cluster
  (``distributed.Client(address)``); the scheduler resubmits the tasks of a lost worker
  itself (``distributed.scheduler.allowed-failures``, 3 by default).

A task is pure: it rebuilds what it needs from its inputs and its result does not depend on
the process or machine it ran on, nor on how often it ran, so a sweep or an evaluation gives
the same numbers whichever way it ran. Off this process, every task first checks that its
worker runs the same halut code as the client (:func:`code_digest`, a digest of the
packages' source and the RTL); the tasks themselves check that the worker's files (model,
weights, images, bundle) are the client's (the run's fingerprint).

``dask`` is imported only by :class:`DaskExecutor`; ``emulator/`` never imports it (a shard
runner built here is handed to :func:`emulator.network.evaluate_network`).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from learning.errors import HalutError, one_line

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

#: the folders beside this package whose files make up "the halut code" (code_digest)
CODE_FOLDERS: tuple[str, ...] = ("learning", "emulator", "flows", "rtl")
#: times a local pool broken by a dead worker is started again before the run gives up
WORKER_LOSS_RETRIES = 3
#: seconds to wait for the scheduler to answer
CONNECT_TIMEOUT_S = 10.0
#: seconds to wait for at least one worker to be there
WORKERS_TIMEOUT_S = 30.0

Task = tuple[Any, ...]


def code_digest() -> str:
    """sha256 of every file of the halut packages and the RTL beside them (relative path and
    bytes; caches excluded), as they are on disk now (a few milliseconds): equal on two
    machines when they have the same halut code."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(b"halut-code 1\0")
    for folder in CODE_FOLDERS:
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(root)
            if (not path.is_file() or "__pycache__" in rel.parts or path.suffix == ".pyc"
                    or any(p.startswith(".") for p in rel.parts)):
                continue
            data = path.read_bytes()
            h.update(f"{rel.as_posix()}\0{len(data)}\0".encode())
            h.update(data)
    return h.hexdigest()


def _where() -> str:
    import socket

    return f"{socket.gethostname()} (pid {os.getpid()})"


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


#: this worker's code digest, computed for its first task (again when a client's differs:
#: the files may have been updated since)
_CODE: list[str] = []


def _worker_code(client: str) -> str:
    if not _CODE or _CODE[0] != client:
        _CODE[:] = [code_digest()]
    return _CODE[0]


#: glibc's mallopt parameters, and the values :func:`_undo_malloc_trim` sets (those glibc's
#: dynamic threshold reaches on 64-bit after large blocks are freed)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 32 << 20, 64 << 20
_MALLOC_TUNED: list[bool] = []


def _undo_malloc_trim() -> None:
    """Dask's nanny starts a worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (and leaves it in
    its own process's environment, whence a local pool started later inherits it), which
    also freezes glibc's mmap threshold at 128 KiB: every large buffer of a forward pass is
    then mapped and unmapped again, and torch's convolutions run 3x slower (measured on the
    2-core machine, docs/distributed.md). Once per worker process, where that variable is
    set, put the thresholds where glibc's own adjustment would have taken them (mmap 32 MiB,
    trim 64 MiB); nothing elsewhere."""
    if _MALLOC_TUNED or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _MALLOC_TUNED.append(True)
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    except OSError:
        return
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


#: the BLAS thread limit set in this worker process (kept: dropping it would not undo it, but
#: its restore would)
_LIMITS: list[Any] = []


def run_task(fn: Callable[..., Any], args: Task, code: str | None,
             threads: int | None) -> Any:
    """What a worker process runs for one task: ``fn(*args)``, after checking that this
    worker runs the client's halut ``code`` (when given), setting torch's and BLAS's threads
    in this process (when given) and glibc's malloc thresholds (:func:`_undo_malloc_trim`)."""
    _undo_malloc_trim()
    if code is not None and code != _worker_code(code):
        raise HalutError(f"the worker on {_where()} runs other halut code than the client "
                         f"(code digest {_worker_code(code)[:12]}, the client's {code[:12]}): "
                         "install the same halut version on every worker")
    if threads is not None:
        import threadpoolctl
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if not _LIMITS:
            _LIMITS.append(threadpoolctl.threadpool_limits(threads))
    return fn(*args)


class Executor:
    """Maps a picklable top-level function over tasks (tuples of picklable arguments).

    ``in_process``: the tasks run here, one after another (the caller may then use objects
    it holds instead of rebuilding them); ``workers``: how many tasks run at once (for
    messages). Use it as a context manager: leaving it closes the pool or the connection."""

    in_process: bool = False
    workers: int = 1

    def map(self, fn: Callable[..., Any], tasks: Sequence[Task], *, name: str = "task"
            ) -> Iterator[tuple[int, Any]]:
        """``(i, fn(*tasks[i]))`` for every task, in the order they finish. A task's error
        is raised here (the others are cancelled)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Let the workers go (nothing for the in-process executor)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LocalExecutor(Executor):
    """``jobs == 1``: in this process, in order. ``jobs > 1``: that many spawned worker
    processes, sharing this machine's cores (torch and BLAS threads: ``cores() // jobs``
    each); when one dies the pool is started again and the unfinished tasks run again (at
    most :data:`WORKER_LOSS_RETRIES` times)."""

    def __init__(self, jobs: int = 1) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise HalutError(f"jobs must be an integer >= 1, got {jobs!r}")
        self.jobs = self.workers = jobs
        self.in_process = jobs == 1

    def describe(self) -> str:
        return "this process" if self.in_process else f"{self.jobs} local worker processes"

    def map(self, fn: Callable[..., Any], tasks: Sequence[Task], *, name: str = "task"
            ) -> Iterator[tuple[int, Any]]:
        if self.in_process:
            for i, args in enumerate(tasks):
                yield i, fn(*args)
            return
        pending = dict(enumerate(tasks))
        threads = max(1, cores() // self.jobs)
        losses = 0
        while pending:
            broken = False
            pool = ProcessPoolExecutor(min(self.jobs, len(pending)),
                                       mp_context=mp.get_context("spawn"))
            try:
                futs: dict[Future[Any], int] = {
                    pool.submit(run_task, fn, args, None, threads): i
                    for i, args in pending.items()}
                waiting = set(futs)
                while waiting:
                    done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                    for f in sorted(done, key=futs.__getitem__):
                        exc = f.exception()
                        if isinstance(exc, BrokenProcessPool):
                            broken = True
                            continue
                        if exc is not None:
                            raise exc
                        i = futs[f]
                        del pending[i]
                        yield i, f.result()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            if broken:
                losses += 1
                if losses > WORKER_LOSS_RETRIES:
                    raise HalutError(f"{name}: a local worker process died {losses} times "
                                     f"({len(pending)} tasks unfinished); out of memory?")


class DaskExecutor(Executor):
    """The workers of the Dask cluster whose scheduler is at ``address``
    (``tcp://HOST:8786``). Every task is submitted at once with its own key; the scheduler
    hands them to the workers and resubmits those of a worker that is lost. A task lost with
    its worker too often (``KilledWorker``) is one line. The workers' thread settings are
    left as they are (a nanny starts its worker with ``OMP_NUM_THREADS=1``: one core per
    worker thread)."""

    def __init__(self, address: str, *, timeout: float | None = None,
                 workers_timeout: float | None = None) -> None:
        timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
        wait_s = WORKERS_TIMEOUT_S if workers_timeout is None else workers_timeout
        if not isinstance(address, str) or not address.strip():
            raise HalutError("--scheduler needs an address such as tcp://HOST:8786")
        self.address = address.strip()
        try:
            from distributed import Client
        except ImportError:
            raise HalutError("--scheduler needs Dask distributed: pip install "
                             "'dask[distributed]'") from None
        try:
            self.client = Client(self.address, timeout=timeout, set_as_default=False)
        except Exception as exc:  # OSError, TimeoutError, ValueError for a bad address
            raise HalutError(f"cannot reach the Dask scheduler at {self.address}: "
                             f"{one_line(exc)}") from None
        try:
            self.client.wait_for_workers(1, timeout=wait_s)
        except Exception:
            self.client.close()
            raise HalutError(f"the Dask scheduler at {self.address} has no worker after "
                             f"{wait_s:g} s: start `dask worker {self.address}` on the "
                             "machines that should work") from None
        self.workers = max(1, sum(int(w.get("nthreads", 1)) for w in
                                  self.client.scheduler_info()["workers"].values()))

    def describe(self) -> str:
        return f"the Dask cluster at {self.address} ({self.workers} worker threads)"

    def map(self, fn: Callable[..., Any], tasks: Sequence[Task], *, name: str = "task"
            ) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        if not tasks:
            return
        token = uuid.uuid4().hex[:10]
        code = code_digest()
        futs = [self.client.submit(run_task, fn, args, code, None,
                                   key=f"halut-{name}-{i:06d}-{token}", pure=False)
                for i, args in enumerate(tasks)]
        index = {f.key: i for i, f in enumerate(futs)}
        try:
            for fut in as_completed(futs, loop=self.client.loop):
                try:
                    result = fut.result()
                except HalutError:
                    raise
                except Exception as exc:
                    if type(exc).__name__ == "KilledWorker":
                        raise HalutError(f"{name}: a task was lost with its worker too often "
                                         f"({one_line(exc)}); see the workers' logs") from None
                    raise
                yield index[fut.key], result
                fut.release()
        finally:
            self.client.cancel(futs)

    def close(self) -> None:
        self.client.close()


def make_executor(jobs: int = 1, scheduler: str | None = None) -> Executor:
    """The executor for ``--jobs N`` / ``--scheduler ADDRESS`` (the address wins)."""
    if scheduler:
        return DaskExecutor(scheduler)
    return LocalExecutor(jobs)


# ---- the model of a SPEC, as a worker rebuilds it --------------------------------------------

def _absolute_spec(spec: str) -> str:
    """``path/to/file.py:factory`` with the path made absolute (a worker's working folder is
    not the client's); ``zoo:NAME`` and ``package.module:factory`` as they are."""
    if spec.startswith("zoo:"):
        return spec
    source, sep, attr = spec.rpartition(":")
    if sep and source and (source.endswith(".py") or os.sep in source or "/" in source):
        return f"{os.path.abspath(source)}:{attr}"
    return spec


@dataclass(frozen=True)
class ModelSource:
    """A model as ``--model SPEC --model-arg NAME=VALUE --state-dict W.pt`` name it: what a
    worker needs to build the same float model. :meth:`absolute` makes its paths absolute."""

    spec: str
    model_args: tuple[str, ...] = ()
    state_dict: str | None = None

    def absolute(self) -> ModelSource:
        return ModelSource(_absolute_spec(self.spec), tuple(self.model_args),
                           None if self.state_dict is None else os.path.abspath(self.state_dict))

    def kwargs(self) -> dict[str, Any]:
        """The factory's keywords: values read as JSON, else kept as strings."""
        out: dict[str, Any] = {}
        for item in self.model_args:
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise HalutError(f"--model-arg {item!r} must look like NAME=VALUE")
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value
        return out

    def load(self) -> nn.Module:
        """The model with its weights, in eval mode."""
        from emulator.zoo import load_model, load_state

        model = load_model(self.spec, **self.kwargs())
        if self.state_dict is not None:
            load_state(model, Path(self.state_dict))
        return model.eval()


# ---- the image shards of `halut net eval` ----------------------------------------------------

@dataclass(frozen=True)
class NetSource:
    """A bundle on its model and the images, as files: what a worker rebuilds the network
    of ``halut net eval`` from (a torch.fx GraphModule does not pickle)."""

    model: ModelSource
    bundle: str
    data: str

    def absolute(self) -> NetSource:
        return NetSource(self.model.absolute(), os.path.abspath(self.bundle),
                         os.path.abspath(self.data))

    def load(self) -> tuple[nn.Module, np.ndarray]:
        from emulator.datasets import load_npy
        from emulator.network import apply_network

        X, _ = load_npy(Path(self.data))
        return apply_network(self.model.load(), Path(self.bundle)).eval(), X


def eval_shard(source: NetSource, backend: str, lo: int, hi: int, batch_size: int,
               fingerprint: str) -> list[Any]:
    """Images ``[lo, hi)`` of one backend's pass, on a worker: the network rebuilt from its
    files (fresh for every shard, as a forked shard worker starts from the client's), checked
    against the client's ``fingerprint`` (network tensors, images, batch size), then the
    batch records (``emulator.network._Batch``)."""
    from emulator.network import _fingerprint, _halut_layers, _run_batches

    net, X = source.load()
    if _fingerprint(net, X, batch_size) != fingerprint:
        raise HalutError(f"the worker on {_where()} rebuilt another network or other images "
                         f"from {source.bundle}, {source.model.spec} and {source.data}: every "
                         "worker needs the same files at the same paths")
    return _run_batches(net, _halut_layers(net), backend, X, lo, hi, batch_size, None, False)


def shard_runner(executor: Executor, source: NetSource, net: nn.Module, X: np.ndarray
                 ) -> Callable[[str, Sequence[tuple[int, int]], int, Any], list[list[Any]]]:
    """The ``shard_runner`` of :func:`emulator.network.evaluate_network` that runs each image
    shard as a task of ``executor`` (:func:`eval_shard`). ``net``/``X``: the client's network
    and images (their fingerprint is what the workers must rebuild). A resume folder stays on
    the client: a shard whose batches are all recorded there is taken from it, the others
    run and their batches are recorded as they come back."""
    from emulator.network import _fingerprint, _halut_layers

    names = [n for n, _ in _halut_layers(net)]
    prints: dict[int, str] = {}

    def run(backend: str, spans: Sequence[tuple[int, int]], batch_size: int, store: Any
            ) -> list[list[Any]]:
        if batch_size not in prints:
            prints[batch_size] = _fingerprint(net, X, batch_size)
        parts: list[list[Any] | None] = [None] * len(spans)
        tasks: list[Task] = []
        where: list[int] = []
        for k, (lo, hi) in enumerate(spans):
            recs = None if store is None else [
                store.load(backend, b0, min(hi, b0 + batch_size), names)
                for b0 in range(lo, hi, batch_size)]
            if recs is not None and all(r is not None for r in recs):
                parts[k] = recs
                continue
            tasks.append((source, backend, lo, hi, batch_size, prints[batch_size]))
            where.append(k)
        for i, recs in executor.map(eval_shard, tasks, name=f"eval-{backend}"):
            if store is not None:
                for rec in recs:
                    store.save(backend, rec)
            parts[where[i]] = recs
        return [p if p is not None else [] for p in parts]

    return run


__all__ = ["DaskExecutor", "Executor", "LocalExecutor", "ModelSource", "NetSource",
           "code_digest", "cores", "eval_shard", "make_executor", "run_task", "shard_runner"]
