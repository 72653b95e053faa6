"""No stray files after ``kill -9`` (docs/reliability.md): the temporaries of a killed
atomic write (learning/atomic.py), of a killed tile write in a resume folder and of a killed
Verilator build (emulator/build.py) are removed by the next write or build of the same
place -- and never while a live process holds them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from learning.atomic import (
    atomic_write_text,
    check_writable,
    locked_temp_beside,
    remove_stale_temps,
)

REPO = Path(__file__).resolve().parents[1]

# writes ``target`` through learning.atomic, stops half-way ("ready") and waits to be killed
_WRITER = textwrap.dedent("""
    import sys, time
    from learning.atomic import atomic_open
    with atomic_open(sys.argv[1], "w") as fh:
        fh.write("half of a new file")
        fh.flush()
        print("ready", flush=True)
        time.sleep(120)
""")


def _start(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A python child running ``script``, once it has printed its first line."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"child did not start: {line!r} {proc.stderr.read()!r}")  # type: ignore[union-attr]
    return proc


def _kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen]]:
    """Children a test starts; any still alive at the end are killed."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            _kill9(p)


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_killed_write_leaves_the_old_file_and_the_next_write_removes_its_temp(
        tmp_path: Path, children: list[subprocess.Popen]) -> None:
    target = tmp_path / "y.txt"
    atomic_write_text(target, "old")
    child = _start(_WRITER, str(target))
    children.append(child)
    (temp,) = _temps(tmp_path)
    assert re.fullmatch(rf"\.y\.txt\.{child.pid}\.[a-z0-9_]+\.tmp", temp)  # the writer's PID

    # a live writer's temporary is never touched, by a write or an output check
    atomic_write_text(target, "meanwhile")
    check_writable(target)
    assert _temps(tmp_path) == [temp] and target.read_text() == "meanwhile"

    _kill9(child)
    assert target.read_text() == "meanwhile" and _temps(tmp_path) == [temp]
    atomic_write_text(target, "new")  # the next write to the same place cleans up
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.txt"]


def test_an_output_check_removes_stale_temps_too(tmp_path: Path,
                                                 children: list[subprocess.Popen]) -> None:
    target = tmp_path / "Y.npy"
    child = _start(_WRITER, str(target))
    children.append(child)
    _kill9(child)
    assert len(_temps(tmp_path)) == 1 and not target.exists()
    check_writable(target, "output")
    assert list(tmp_path.iterdir()) == []


def test_only_the_projects_own_unlocked_temps_of_that_name_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "m.halut"
    keep = [".m.halut.abcd1234.tmp",       # the old scheme (no PID): unknown owner
            ".m.halut.123.abcd1234.txt",   # not a temporary
            ".other.halut.123.abcd1234.tmp",  # another target's
            "m.halut.123.abcd1234.tmp",    # not hidden
            ".m.halut.x12.abcd1234.tmp"]   # no PID
    for name in keep:
        (tmp_path / name).write_text("user data")
    (tmp_path / ".m.halut.77.dir_____.tmp").mkdir()  # a folder of that name
    (tmp_path / ".m.halut.78.link____.tmp").symlink_to(tmp_path / keep[0])
    stale = tmp_path / ".m.halut.99999.abcd1234.tmp"  # nobody holds its lock
    stale.write_text("partial")
    fd, mine = locked_temp_beside(target)  # this process's live one
    try:
        assert remove_stale_temps(target) == [stale]
        assert Path(mine).exists()
    finally:
        os.close(fd)
        os.unlink(mine)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*keep, ".m.halut.77.dir_____.tmp", ".m.halut.78.link____.tmp"])


_TILE_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import emulator.checkpoint as cp
    from emulator.layers import LayerModel, run_linear
    from emulator.vectors import random_activations, random_program
    from learning.atomic import atomic_open

    rng = np.random.default_rng(11)
    program = random_program(rng, 4, 16, 8, 24, "fp16", "int8")
    X = random_activations(rng, program, 40)
    saved = []

    def killed_in_the_third_write(path, data):
        saved.append(path)
        with atomic_open(path, "wb") as fh:
            fh.write(data[:len(data) // 2] if len(saved) == 3 else data)
            if len(saved) == 3:
                fh.flush()
                print("ready", flush=True)
                time.sleep(120)

    cp.atomic_write_bytes = killed_in_the_third_write
    run_linear(LayerModel(program=program, weights=None, bias=program.bias), X, "golden",
               row_tile=8, resume_dir=sys.argv[1])
""")


def test_a_finished_resume_leaves_no_temporary_tile(tmp_path: Path,
                                                    children: list[subprocess.Popen]) -> None:
    from emulator import golden
    from emulator.layers import LayerModel, run_linear
    from emulator.vectors import random_activations, random_program

    child = _start(_TILE_WRITER, str(tmp_path))
    children.append(child)
    _kill9(child)
    assert len(list(tmp_path.glob("tile_*.npz"))) == 2
    (temp,) = _temps(tmp_path)
    assert temp.startswith(".tile_")

    rng = np.random.default_rng(11)
    program = random_program(rng, 4, 16, 8, 24, "fp16", "int8")
    X = random_activations(rng, program, 40)
    res = run_linear(LayerModel(program=program, weights=None, bias=program.bias), X, "golden",
                     row_tile=8, resume_dir=tmp_path)
    assert (res.resumed, res.computed) == (2, 3)
    np.testing.assert_array_equal(res.y, golden.run(program, X).y)
    assert _temps(tmp_path) == [] and len(list(tmp_path.glob("tile_*.npz"))) == 5


# ---- the Verilator build cache ---------------------------------------------------------------

# builds the tiny harness with a stand-in for Verilator that stops inside the build
_BUILDER = textwrap.dedent("""
    import time
    from pathlib import Path
    import emulator.build as b
    from emulator.params import RtlParams

    def stuck(cmd, cwd, log, env):
        (Path(cwd) / "obj").mkdir()
        (Path(cwd) / "obj" / "half.o").write_bytes(b"half")
        print("ready", flush=True)
        time.sleep(120)

    b.run_build_step = stuck
    b.build_harness(RtlParams(C=1, K=2, M=1))
""")


def _fake_verilator(cmd: list[str], cwd: Path, log: Path, env: dict[str, str]) -> None:
    """Stands in for the Verilator run: writes the library where ``-o`` says."""
    Path(cmd[cmd.index("-o") + 1]).write_bytes(b"not really a library")


def test_a_killed_build_leaves_a_temp_folder_the_next_build_of_its_key_removes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        children: list[subprocess.Popen]) -> None:
    import emulator.build as build
    from emulator.params import RtlParams

    cache = tmp_path / "cache"
    env = dict(os.environ, HALUT_CACHE=str(cache))
    child = _start(_BUILDER, env=env)
    children.append(child)
    root = cache / "verilator"
    (stale,) = [p for p in root.iterdir() if p.is_dir()]
    assert stale.name.startswith(".") and (stale / "obj" / "half.o").is_file()
    _kill9(child)
    key = stale.name[1:].split(".")[0]
    other = root / ".0123456789abcdef0123456789abcdef.zz_stale"  # another key's: kept
    other.mkdir()

    monkeypatch.setenv("HALUT_CACHE", str(cache))
    monkeypatch.setattr(build, "run_build_step", _fake_verilator)
    res = build.build_harness(RtlParams(C=1, K=2, M=1))  # the same key, built under its lock
    assert res.key == key and not res.cached and res.path.is_file()
    assert sorted(p.name for p in root.iterdir()) == sorted([key, f"{key}.lock", other.name])
