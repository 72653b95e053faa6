"""Atomic output files (learning/atomic.py) and the CLI's one-line file-system errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from flows.cli import main
from learning.atomic import atomic_save_npy, atomic_write_text, writable_target
from learning.errors import HalutError


def test_a_write_replaces_the_file_whole_and_keeps_its_permissions(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "y.txt"
    atomic_write_text(out, "one")
    assert out.read_text() == "one"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    out.chmod(0o640)
    atomic_write_text(out, "two")
    assert out.read_text() == "two" and stat.S_IMODE(out.stat().st_mode) == 0o640
    assert [p.name for p in out.parent.iterdir()] == ["y.txt"]  # no temporary left


def test_a_symlink_is_written_through_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "real.npy"
    link = tmp_path / "link.npy"
    link.symlink_to(real)
    atomic_save_npy(link, np.arange(3))
    assert link.is_symlink() and np.array_equal(np.load(real), np.arange(3))


def test_special_files_and_folders_are_refused_untouched(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (fifo, tmp_path, Path(os.devnull)):
        with pytest.raises(HalutError, match="not a regular file"):
            atomic_write_text(target, "x")
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert stat.S_ISCHR(Path(os.devnull).stat().st_mode)  # /dev/null is still a device


def test_an_output_below_a_file_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "A.npy"
    blocker.write_text("data")
    with pytest.raises(HalutError, match="cannot write"):
        writable_target(blocker / "y.npy")
    assert blocker.read_text() == "data"


def test_cli_turns_unforeseen_file_system_errors_into_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net for an OSError no command anticipated (here a full disk while the
    model file is written): one line, exit 1, no traceback."""
    import flows.cmd_model as cmd_model

    rng = np.random.default_rng(0)
    np.save(tmp_path / "A.npy", rng.standard_normal((200, 8)).astype(np.float32))
    np.save(tmp_path / "B.npy", rng.standard_normal((8, 4)).astype(np.float32))

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "m.halut"))

    monkeypatch.setattr(cmd_model, "save_model", full_disk)
    r = CliRunner().invoke(main, ["learn", "-a", str(tmp_path / "A.npy"), "-w",
                                  str(tmp_path / "B.npy"), "-C", "2", "-K", "2", "-o",
                                  str(tmp_path / "m.halut")])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert lines == [f"error: No space left on device ({tmp_path / 'm.halut'})"]
