"""Atomic file writes: write to a temporary name beside the target, fsync, then rename.

An interrupted write leaves the previous file (if any) untouched. A write killed outright
(``kill -9``, a power cut) cannot remove its temporary file; the next write to the same
place does (:func:`remove_stale_temps`):

* a temporary file is named ``.NAME.PID.XXXXXXXX.tmp`` (NAME the target's name, cut to 100
  characters; PID the writer's process id, for people reading a folder listing);
* its writer holds an exclusive ``flock`` on it from creation until it is renamed over the
  target (or removed); the kernel drops that lock when the process dies, however it dies;
* before it writes, a write to ``NAME`` removes every ``.NAME.<digits>.<random>.tmp`` beside
  it on which it can take that lock at once (no process holds it: its writer is dead). A
  temporary a live writer holds is never touched, whichever host or PID namespace it runs in
  (the lock, not the PID, decides). Files of other names, and temporaries made before this
  scheme (no PID in the name), are left alone.

See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from learning.errors import HalutError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def copy_permissions(temp: str | os.PathLike[str], target: Path) -> None:
    """Give ``temp`` (about to replace ``target``) the target's permission bits, or for a
    new file the usual ones under the umask (mkstemp's are 0600)."""
    perm = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask()
    os.chmod(temp, perm)


def writable_target(path: str | os.PathLike[str], what: str = "") -> Path:
    """The file a write to ``path`` must replace: symlinks followed, missing folders made.

    Raises a one-line :class:`HalutError` naming ``what`` ("waveform", "output", ...) when a
    folder on the way is a file, ``path`` is not a regular file (a folder, a device such as
    /dev/null, a FIFO) or its folder cannot be made."""
    label = f"{what} {path}" if what else str(path)
    for folder in Path(os.path.abspath(path)).parents:  # the nearest existing folder
        if os.path.lexists(folder):
            if not folder.is_dir():
                raise HalutError(f"cannot write {label}: {folder} is not a folder")
            break
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():
        raise HalutError(f"cannot write {label}: not a regular file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HalutError(f"cannot write {label}: {exc.strerror} ({target.parent})") from None
    return target


def temp_beside(target: Path) -> str:
    """A new empty file beside ``target`` (``.NAME.XXXX.tmp``); OSError when none can be made."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:100]}.", suffix=".tmp",
                               dir=target.parent)
    os.close(fd)
    return tmp


def _temp_prefix(target: Path) -> str:
    return f".{target.name[:100]}."


def _stale_pattern(target: Path) -> re.Pattern[str]:
    """Names of :func:`locked_temp_beside`'s temporaries for ``target``."""
    return re.compile(re.escape(_temp_prefix(target)) + r"[0-9]+\.[a-z0-9_]+\.tmp")


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def locked_temp_beside(target: Path) -> tuple[int, str]:
    """A new empty file ``.NAME.PID.XXXXXXXX.tmp`` beside ``target``, exclusively
    ``flock``-ed by this process: ``(fd, path)``.

    The lock lives as long as ``fd`` (or a ``dup`` of it) is open: keep it open until the
    file is renamed over ``target`` or removed, then close it. While it is held,
    :func:`remove_stale_temps` leaves the file alone; once the process is gone (killed), the
    next write to ``target`` removes it. On a file system without ``flock`` the file is
    returned unlocked (and is then never removed as stale). OSError when no file can be
    made."""
    prefix = f"{_temp_prefix(target)}{os.getpid()}."
    for _ in range(8):
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return fd, tmp  # no flock here: unlocked (never cleaned as stale)
            os.close(fd)  # a cleaner took it between mkstemp and flock: it removes it
            continue
        try:  # a cleaner may have removed the name before our lock: then take another
            if _same_file(os.fstat(fd), os.stat(tmp, follow_symlinks=False)):
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OSError(errno.EAGAIN, "no temporary file could be kept", str(target.parent))


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of killed writes to ``target``: files beside it named
    ``.NAME.<digits>.<random>.tmp`` (:func:`locked_temp_beside`'s) whose ``flock`` this
    process can take at once, i.e. that no live process holds. Returns the removed paths;
    never raises for a file it cannot open, lock or remove (it is left)."""
    target = Path(target)
    pattern = _stale_pattern(target)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live writer: OSError
            if _same_file(os.fstat(fd), os.stat(entry.path, follow_symlinks=False)):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def check_writable(path: str | os.PathLike[str], what: str = "") -> Path:
    """:func:`writable_target`, after proving that a file can be created beside it (one is
    created and removed: permission bits say nothing for root, or on a read-only mount).
    Callers use it to check an output path before a long run starts. Stale temporaries of
    killed writes to the same path are removed (:func:`remove_stale_temps`)."""
    target = writable_target(path, what)
    remove_stale_temps(target)
    try:
        fd, tmp = locked_temp_beside(target)
        try:
            os.unlink(tmp)
        finally:
            os.close(fd)
    except OSError as exc:
        label = f"{what} {path}" if what else str(path)
        raise HalutError(f"cannot write {label}: {exc.strerror} ({target.parent})") from None
    return target


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success rename it over ``path``.

    A symlink is written through (its target is replaced, the link kept); the new file gets
    the old file's permissions, or the usual ones for the umask. The temporary file is
    :func:`locked_temp_beside`'s (locked until renamed), and temporaries of killed earlier
    writes to ``path`` are removed first (:func:`remove_stale_temps`)."""
    target = writable_target(path)
    remove_stale_temps(target)
    try:
        fd, tmp = locked_temp_beside(target)
    except OSError as exc:
        raise HalutError(f"cannot write {path}: {exc.strerror}") from None
    try:
        lock = os.dup(fd)  # holds the flock after ``fh`` is closed, until the rename
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with os.fdopen(fd, mode) as fh:
            copy_permissions(tmp, target)
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(lock)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    with atomic_open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[IO], None],
                      mode: str = "wb") -> None:
    with atomic_open(path, mode) as fh:
        writer(fh)
