"""``kill -9`` in the middle of the long network jobs, then the same command again: network
evaluation (``halut net eval --resume``) and retraining (``halut net retrain --resume``) go on
from what the killed run left and end exactly as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from emulator.zoo import load_model
from flows.cli import main
from learning.bundle import load_bundle

ARGS = ["--model", "zoo:lenet", "--model-arg", "image_size=8"]
CLI = [sys.executable, "-c", "from flows.cli import main; main()"]


def _setup(tmp_path: Path, n: int) -> tuple[list[str], Path]:
    rng = np.random.default_rng(0)
    x, y, w = tmp_path / "X.npy", tmp_path / "y.npy", tmp_path / "w.pt"
    np.save(x, rng.standard_normal((n, 1, 8, 8)).astype(np.float32))
    np.save(y, rng.integers(0, 10, n))
    torch.manual_seed(0)
    torch.save(load_model("zoo:lenet", image_size=8).state_dict(), w)
    net = tmp_path / "net.halutnet"
    r = CliRunner().invoke(main, ["net", "learn", *ARGS, "--state-dict", str(w), "--data",
                                  str(x), "-C", "4", "--set", "fc3:C=2", "--layers", "conv*",
                                  "--layers", "fc3", "-o", str(net)])
    assert r.exit_code == 0, r.output
    return [*ARGS, "--state-dict", str(w), "--data", str(x), "--labels", str(y)], net


def _kill_when(cmd: list[str], ready: Callable[[], bool], timeout: float = 300) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds, and insist it was still
    running then (else the test would prove nothing)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before it could be killed: "
                                 f"{proc.stderr.read().decode()[-400:] if proc.stderr else ''}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("the run never reached the point to kill it at")
        time.sleep(0.01)
    assert proc.poll() is None, "finished before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _run(args: list[str]) -> dict:
    r = subprocess.run([*CLI, *args, "--json"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_net_eval_resumes_after_kill_9(tmp_path: Path) -> None:
    data, net = _setup(tmp_path, 48)
    resume = tmp_path / "resume"
    args = ["net", "eval", str(net), *data, "--backend", "golden,rtl", "--batch-size", "1",
            "--resume", str(resume)]
    _run(["net", "eval", str(net), *data, "--backend", "rtl", "--rtl-images", "1"])  # builds

    def some_rtl() -> bool:
        return len(list(resume.glob("rtl_*.json"))) >= 3

    _kill_when([*CLI, *args], some_rtl)
    kept = {p.name: p.stat().st_mtime_ns for p in resume.glob("*.json")}
    assert 3 <= sum(k.startswith("rtl_") for k in kept) < 48
    resumed = _run(args)
    for name, mtime in kept.items():  # the killed run's batches were taken, not run again
        assert (resume / name).stat().st_mtime_ns == mtime, name
    assert not list(resume.glob(".*.tmp*"))
    whole = _run(["net", "eval", str(net), *data, "--backend", "golden,rtl", "--batch-size",
                  "1"])
    for ev in (resumed, whole):
        ev["totals"].pop("seconds")
    assert resumed == whole
    assert all(r["rtl_bit_exact"] for r in resumed["layers"])


@pytest.mark.slow
def test_net_retrain_resumes_after_kill_9(tmp_path: Path) -> None:
    data, net = _setup(tmp_path, 96)
    ckpt = tmp_path / "ckpt"
    common = ["net", "retrain", str(net), *data, "--epochs", "6", "--batch-size", "8"]
    out_a, out_b = tmp_path / "a.halutnet", tmp_path / "b.halutnet"
    _kill_when([*CLI, *common, "--resume", str(ckpt), "-o", str(out_b)],
               lambda: (ckpt / "retrain.pt").exists())
    assert not out_b.exists()
    rep = _run([*common, "--resume", str(ckpt), "-o", str(out_b)])
    assert [h["epoch"] for h in rep["history"]] == list(range(6))
    _run([*common, "-o", str(out_a)])
    a, b = load_bundle(out_a), load_bundle(out_b)
    assert a.floats.keys() == b.floats.keys()
    for k in a.floats:
        assert np.array_equal(a.floats[k], b.floats[k]), k
    for la, lb in zip(a.layers, b.layers, strict=True):
        for ua, ub in zip(la.units, lb.units, strict=True):
            assert ua.program is not None and ub.program is not None
            for field in ("thresholds", "lut", "scale", "bias"):
                assert np.array_equal(getattr(ua.program, field), getattr(ub.program, field))


def test_sweep_resumes_after_kill_9(tmp_path: Path) -> None:
    from tests.test_sweep import MODEL_PY

    spec = tmp_path / "tiny.py"
    spec.write_text(MODEL_PY)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.standard_normal((40, 1, 4, 4)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 40))

    def args(run: Path) -> list[str]:
        return ["sweep", "--model", f"{spec}:factory", "--data", str(tmp_path / "X.npy"),
                "--labels", str(tmp_path / "y.npy"), "--grid", "C=1,2,4,8", "--grid",
                "K=2,4,16", "--encoder", "maddness,pq", "--no-rtl-check", "--run-dir",
                str(run)]

    run = tmp_path / "run"
    _kill_when([*CLI, *args(run)], lambda: len(list(run.glob("record_*.json"))) >= 2)
    kept = {p.name: p.stat().st_mtime_ns for p in run.glob("record_*.json")}
    assert 2 <= len(kept) < 48 and not (run / "sweep.csv").exists()
    _run(args(run))
    for name, mtime in kept.items():  # finished records were taken, not computed again
        assert (run / name).stat().st_mtime_ns == mtime, name
    assert not list(run.glob(".*.tmp"))
    _run(args(tmp_path / "whole"))
    assert (run / "sweep.csv").read_bytes() == (tmp_path / "whole" / "sweep.csv").read_bytes()
