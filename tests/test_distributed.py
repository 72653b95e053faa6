"""Sweeps and network evaluations on Dask distributed (flows/distributed.py,
docs/distributed.md): a LocalCluster of two worker processes on 127.0.0.1 gives the same
results as a serial run, also when a worker is killed in the middle of a sweep; the local
pool (``--jobs``) does too; bad addresses and misuse are one line."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from emulator.zoo import load_model
from flows.cli import main
from flows.distributed import (
    LocalExecutor,
    ModelSource,
    NetSource,
    code_digest,
    eval_shard,
    make_executor,
    run_task,
)
from flows.sweep import SweepOptions, SweepSource, grid_points, parse_grid, sweep_task
from learning.errors import HalutError

distributed = pytest.importorskip("distributed")

MODEL_PY = """
import torch
from torch import nn

def factory():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(1),
                         nn.Linear(64, 3))
"""
#: 4 maddness points + 4 pq points, 2 layers: 16 records
GRID = ["--grid", "C=2,4", "--grid", "K=4,16", "--encoder", "maddness,pq"]
NET_ARGS = ["--model", "zoo:lenet", "--model-arg", "image_size=8"]


def _warm() -> None:
    """What the tasks import, loaded once per worker (torch takes seconds)."""
    import emulator.network  # noqa: F401
    import flows.sweep  # noqa: F401


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, Any]]:
    """Two single-threaded worker processes (each under a nanny that restarts it when it
    dies) and a scheduler, on the loopback address only."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cl, \
            Client(cl, set_as_default=False) as client:
        client.run(_warm)
        yield cl, client


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tests/test_sweep.py's tiny conv + linear network, 40 images labelled by it."""
    tmp = tmp_path_factory.mktemp("files")
    spec = tmp / "tiny.py"
    spec.write_text(MODEL_PY)
    X = np.random.default_rng(0).standard_normal((40, 1, 4, 4)).astype(np.float32)
    with torch.no_grad():
        y = load_model(f"{spec}:factory")(torch.from_numpy(X)).numpy().argmax(1)
    np.save(tmp / "X.npy", X)
    np.save(tmp / "y.npy", y.astype(np.int64))
    return {"spec": spec, "X": tmp / "X.npy", "y": tmp / "y.npy"}


def _sweep(files: dict[str, Path], run: Path, *extra: str) -> dict[str, Any]:
    r = CliRunner().invoke(main, ["sweep", "--model", f"{files['spec']}:factory", "--data",
                                  str(files["X"]), "--labels", str(files["y"]), "--run-dir",
                                  str(run), *GRID, "--json", *extra])
    assert r.exit_code == 0, (r.output, r.exception)
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _timeless(summary: dict[str, Any]) -> dict[str, Any]:
    """sweep.json without what measures time, says which records were reused or names the
    run folder."""
    out = {k: v for k, v in summary.items() if k not in ("seconds", "records")}
    out["inputs"] = {k: v for k, v in summary["inputs"].items() if k != "run_dir"}
    out["rows"] = [{k: v for k, v in r.items() if k not in ("learn_seconds", "eval_seconds")}
                   for r in summary["rows"]]
    out["cycle_model_check"] = {k: v for k, v in summary["cycle_model_check"].items()
                                if k != "seconds"}
    return out


@pytest.fixture(scope="module")
def serial(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[bytes, dict[str, Any]]:
    """The sweep run in this process, one record after another: the reference."""
    run = tmp_path_factory.mktemp("serial")
    summary = _sweep(files, run)
    assert summary["records"] == {"computed": 16, "reused": 0}
    assert summary["cycle_model_checked"] is True
    return (run / "sweep.csv").read_bytes(), summary


def test_a_sweep_through_the_cluster_equals_the_serial_sweep(
        cluster: tuple[Any, Any], files: dict[str, Path], serial: tuple[bytes, dict[str, Any]],
        tmp_path: Path) -> None:
    cl, _ = cluster
    run = tmp_path / "dask"
    summary = _sweep(files, run, "--scheduler", cl.scheduler_address)
    assert (run / "sweep.csv").read_bytes() == serial[0]
    assert _timeless(summary) == _timeless(serial[1])
    assert summary["records"] == {"computed": 16, "reused": 0}
    assert len(list(run.glob("record_*.json"))) == 16 and (run / "check.json").is_file()
    again = _sweep(files, run, "--scheduler", cl.scheduler_address)  # every record reused
    assert again["records"] == {"computed": 0, "reused": 16}
    assert (run / "sweep.csv").read_bytes() == serial[0]


def test_a_worker_killed_mid_sweep_loses_nothing(
        cluster: tuple[Any, Any], files: dict[str, Path], serial: tuple[bytes, dict[str, Any]],
        tmp_path: Path) -> None:
    """SIGKILL to a worker process that is running a record, once the first record is
    written: the scheduler gives its tasks to the other worker (the nanny starts a new
    one), and the sweep ends with the serial sweep's CSV."""
    cl, client = cluster
    run = tmp_path / "killed"
    pids = client.run(os.getpid)
    killed: list[tuple[str, list[str]]] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set() and not killed:
            if any(run.glob("record_*.json")):
                busy = {w: list(keys) for w, keys in client.processing().items()
                        if any("halut-sweep" in str(k) for k in keys)}
                if busy:
                    addr = sorted(busy)[0]
                    os.kill(pids[addr], signal.SIGKILL)
                    killed.append((addr, busy[addr]))
                    return
            time.sleep(0.005)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        summary = _sweep(files, run, "--scheduler", cl.scheduler_address)
    finally:
        stop.set()
        t.join(10)
    assert killed, "the sweep ended before a worker could be killed"
    assert killed[0][1], "the killed worker was running no task"
    assert (run / "sweep.csv").read_bytes() == serial[0]
    assert _timeless(summary) == _timeless(serial[1])
    assert summary["records"] == {"computed": 16, "reused": 0}
    client.wait_for_workers(2, timeout=60)  # the nanny brought it back
    assert pids[killed[0][0]] not in client.run(os.getpid).values()


def test_a_local_pool_equals_the_serial_sweep(files: dict[str, Path],
                                              serial: tuple[bytes, dict[str, Any]],
                                              tmp_path: Path) -> None:
    summary = _sweep(files, tmp_path / "pool", "--jobs", "2", "--no-rtl-check")
    assert (tmp_path / "pool" / "sweep.csv").read_bytes() == serial[0]
    assert _timeless(summary)["rows"] == _timeless(serial[1])["rows"]


def _square_or_die(n: int, marker: str) -> int:
    """n * n; the first worker to get n == 3 dies (and leaves ``marker``), like a worker
    killed by the OOM killer."""
    if n == 3 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return n * n


def test_the_local_pool_runs_again_the_tasks_of_a_dead_worker(tmp_path: Path) -> None:
    marker = str(tmp_path / "died")
    with LocalExecutor(2) as ex:
        got = dict(ex.map(_square_or_die, [(n, marker) for n in range(6)], name="squares"))
    assert got == {n: n * n for n in range(6)} and os.path.exists(marker)


def test_misuse_is_one_line(files: dict[str, Path], tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["sweep", "--model", f"{files['spec']}:factory", "--data", str(files["X"]),
            "--labels", str(files["y"]), "--run-dir", str(tmp_path / "run")]
    cases = [
        ([*base, "--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"], "do not go together"),
        ([*base, "--scheduler", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler"),
    ]
    monkeypatch.setattr("flows.distributed.CONNECT_TIMEOUT_S", 1.0)
    for args, message in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code != 0, args
        assert message in r.stderr and r.stderr.strip().count("\n") == 0, (args, r.stderr)
    assert not (tmp_path / "run" / "sweep.csv").exists()
    with pytest.raises(HalutError, match="jobs must be an integer >= 1"):
        make_executor(0)
    with pytest.raises(HalutError, match="other halut code"):
        run_task(abs, (-1,), "0" * 64, None)
    assert run_task(abs, (-1,), code_digest(), None) == 1
    assert ModelSource("m.py:f", (), "w.pt").absolute() == ModelSource(
        f"{os.path.abspath('m.py')}:f", (), os.path.abspath("w.pt"))
    assert ModelSource("zoo:lenet").absolute().spec == "zoo:lenet"
    # a worker whose files are not the client's says so instead of computing other numbers
    source = SweepSource(ModelSource(f"{files['spec']}:factory"), str(files["X"]),
                         str(files["y"]))
    points = grid_points(parse_grid(["C=2", "K=4"]), ["maddness"])
    with pytest.raises(HalutError, match="same files at the same paths"):
        sweep_task("record", source, points, SweepOptions(), "0" * 64, 1.0, 0, 0)


def _trace(r: Any) -> dict[str, Any]:
    assert r.exit_code == 0, (r.output, r.exception)
    ev: dict[str, Any] = json.loads(r.stdout)
    ev["totals"].pop("seconds")
    return ev


def test_net_eval_shards_on_the_cluster_equal_the_local_shards(
        cluster: tuple[Any, Any], tmp_path: Path) -> None:
    """`halut net eval --jobs 2`: the rtl pass's two image shards forked here, or sent to
    the cluster's workers (which rebuild the lenet from its files): the same trace, cycles
    included; a resume folder stays here and a second run takes every shard from it."""
    cl, _ = cluster
    rng = np.random.default_rng(0)
    x, y, w = tmp_path / "X.npy", tmp_path / "y.npy", tmp_path / "w.pt"
    np.save(x, rng.standard_normal((24, 1, 8, 8)).astype(np.float32))
    np.save(y, rng.integers(0, 10, 24))
    torch.manual_seed(0)
    torch.save(load_model("zoo:lenet", image_size=8).state_dict(), w)
    net = tmp_path / "net.halutnet"
    r = CliRunner().invoke(main, ["net", "learn", *NET_ARGS, "--state-dict", str(w), "--data",
                                  str(x), "-C", "4", "-K", "16", "--layers", "conv*",
                                  "--layers", "fc3", "-o", str(net)])
    assert r.exit_code == 0, r.output
    args = ["net", "eval", str(net), *NET_ARGS, "--state-dict", str(w), "--data", str(x),
            "--labels", str(y), "--backend", "golden,rtl", "--rtl-images", "5",
            "--batch-size", "2", "--jobs", "2", "--json"]
    local = _trace(CliRunner().invoke(main, args))
    resume = tmp_path / "resume"
    remote = _trace(CliRunner().invoke(main, [*args, "--scheduler", cl.scheduler_address,
                                              "--resume", str(resume)]))
    assert remote == local
    assert all(row["rtl_bit_exact"] for row in remote["layers"])
    assert remote["totals"]["images"]["rtl"] == 5 and remote["totals"]["cycles_per_image"] > 0
    assert len(list(resume.glob("rtl_*.json"))) == 3  # shards [0, 2) and [2, 5), batches of 2
    again = _trace(CliRunner().invoke(main, [*args, "--scheduler", cl.scheduler_address,
                                             "--resume", str(resume)]))
    assert again == local
    source = NetSource(ModelSource("zoo:lenet", ("image_size=8",), str(w)), str(net), str(x))
    with pytest.raises(HalutError, match="same files at the same paths"):
        eval_shard(source, "rtl", 0, 2, 2, "0" * 64)


def test_hw_sweep_runs_its_points_on_the_cluster(cluster: tuple[Any, Any],
                                                 tmp_path: Path) -> None:
    """``halut hw sweep --scheduler``: the points' synthesis and timing run on the workers
    (the run folder is shared: one machine), with the same figures as local processes."""
    from flows.hw.sweep import parse_grid as parse_hw_grid
    from flows.hw.sweep import sweep as hw_sweep

    cl, _ = cluster
    base = ["K=2", "M=1", "threshold_format=int8", "lut_format=int8"]
    grid = parse_hw_grid(["C=1,2"])
    local = hw_sweep(base, grid, tmp_path / "local", jobs=2)
    remote = hw_sweep(base, grid, tmp_path / "dask", scheduler=cl.scheduler_address)
    assert [r.reused for r in remote.rows] == [False, False]
    for a, b in zip(local.rows, remote.rows, strict=True):
        assert (a.values, a.area, a.cells, a.fmax_mhz) == (b.values, b.area, b.cells, b.fmax_mhz)
    again = hw_sweep(base, grid, tmp_path / "dask", scheduler=cl.scheduler_address)
    assert all(r.reused for r in again.rows)
