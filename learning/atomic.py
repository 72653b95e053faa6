"""Atomic file writes: write to a temporary name beside the target, fsync, then rename.

An interrupted write leaves the previous file (if any) untouched.
"""

from __future__ import annotations

import contextlib
import os
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


def check_writable(path: str | os.PathLike[str], what: str = "") -> Path:
    """:func:`writable_target`, after proving that a file can be created beside it (one is
    created and removed: permission bits say nothing for root, or on a read-only mount).
    Callers use it to check an output path before a long run starts."""
    target = writable_target(path, what)
    try:
        os.unlink(temp_beside(target))
    except OSError as exc:
        label = f"{what} {path}" if what else str(path)
        raise HalutError(f"cannot write {label}: {exc.strerror} ({target.parent})") from None
    return target


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success rename it over ``path``.

    A symlink is written through (its target is replaced, the link kept); the new file gets
    the old file's permissions, or the usual ones for the umask."""
    target = writable_target(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:100]}.", suffix=".tmp",
                                   dir=target.parent)
    except OSError as exc:
        raise HalutError(f"cannot write {path}: {exc.strerror}") from None
    try:
        copy_permissions(tmp, target)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
