"""Input checks shared by every entry point: one clear :class:`HalutError` per problem."""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from learning.errors import HalutError

_F32_MAX = float(np.finfo(np.float32).max)


def _where(index: tuple[int, ...]) -> str:
    if len(index) == 1:
        return f"index {index[0]}"
    return f"row {index[0]}, column {index[1]}"


def _to_float32(arr: np.ndarray, name: str, verb: str) -> np.ndarray:
    """``arr`` (a float array) as C-contiguous float32, refusing values beyond float32's
    range, NaN and inf with one line that names the first bad position."""
    if arr.dtype.itemsize > 4 and arr.size:
        # float64 values beyond float32's range would become inf (and warn) in the cast
        with np.errstate(invalid="ignore"):
            big = np.isfinite(arr) & (np.abs(arr) > _F32_MAX)
        if big.any():
            idx = tuple(int(i) for i in np.argwhere(big)[0])
            raise HalutError(f"{name} {verb} values outside the float32 range (|x| <= "
                             f"{_F32_MAX:.4g}), e.g. {float(arr[idx]):.4g} at {_where(idx)} "
                             "(the accelerator computes in float32)")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
        kind = "NaN" if np.isnan(out[idx]) else "inf"
        raise HalutError(f"{name} {verb} {kind} at {_where(idx)} "
                         "(the accelerator takes finite values only)")
    return out


def _check_float_dtype(arr: np.ndarray, name: str) -> None:
    if not (np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize <= 8):
        raise HalutError(f"{name} must be a float array (float16/32/64), got dtype {arr.dtype}")


def as_float_matrix(x: object, name: str, cols: int | None = None,
                    allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 matrix, or raise a one-line HalutError.

    Accepts float16/32/64 arrays (and torch tensors through ``np.asarray``); rejects other
    dtypes, non-2-D shapes, a wrong column count, empty arrays, NaN or inf values and
    float64 values beyond float32's range.

    Parameters
    ----------
    x : array-like, shape (N, cols)
    name : str, used in the message ("activations", "weights", ...), a plural noun
    cols : expected number of columns, or None for any
    """
    arr = np.asarray(x)
    _check_float_dtype(arr, name)
    if arr.ndim != 2:
        raise HalutError(f"{name} must be a 2-D matrix, got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise HalutError(f"{name} is empty (shape {arr.shape})")
    if cols is not None and arr.shape[1] != cols:
        raise HalutError(f"{name} must have {cols} columns, got shape {arr.shape}")
    return _to_float32(arr, name, "hold")


def as_float_vector(x: object, name: str, length: int | None = None) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 vector, or raise a one-line HalutError (the
    same dtype and value rules as :func:`as_float_matrix`).

    Parameters
    ----------
    x : array-like, shape (length,)
    name : str, used in the message ("bias", ...), a singular noun
    length : expected number of values, or None for any (but at least one)
    """
    arr = np.asarray(x)
    _check_float_dtype(arr, name)
    if arr.ndim != 1 or (length is not None and arr.shape[0] != length) or arr.size == 0:
        want = "a non-empty vector" if length is None else f"a vector of {length} values"
        raise HalutError(f"{name} must be {want}, got shape {arr.shape}")
    return _to_float32(arr, name, "holds")


# ---- .npy files: sizes checked from the header, before any allocation ---------------------

def _read_meminfo(field: str) -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``), or None when there is none or it cannot be read."""
    for name in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" / a huge number: no limit
            return int(text)
    return None


def available_memory() -> int | None:
    """Bytes of memory a new allocation can count on: ``MemAvailable`` from /proc/meminfo
    (else ``os.sysconf``'s available physical pages), capped by the cgroup's memory limit;
    None when unknown."""
    avail = _read_meminfo("MemAvailable")
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    limit = _cgroup_limit()
    if limit is not None:
        avail = limit if avail is None else min(avail, limit)
    return avail


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if value < 1024 or unit == "PB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # not reached


def _read_header(fh: BinaryIO) -> tuple[tuple[int, ...], np.dtype] | None:
    """The shape and dtype an .npy header declares (``fh`` at the start of the file); None
    for a header version this numpy cannot read without loading. ValueError for a bad
    header."""
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(fh)
    else:  # 3.0 (utf-8 field names): numpy's private reader, where it has one
        reader = None
        for name in ("numpy.lib._format_impl", "numpy.lib.format"):  # numpy 2, numpy 1
            with contextlib.suppress(ImportError):
                reader = getattr(importlib.import_module(name), "_read_array_header", None)
            if reader is not None:
                break
        if reader is None:
            return None
        shape, _, dtype = reader(fh, version)
    return tuple(int(d) for d in shape), np.dtype(dtype)


def check_npy_size(path: str | os.PathLike[str], where: str) -> None:
    """Refuse, with one :class:`HalutError` line naming ``where`` ("activations file
    'A.npy'"), an .npy file whose header declares more data than the file holds (truncated
    or corrupt) or more than the memory available (:func:`available_memory`) -- before
    numpy allocates the array. Headers numpy cannot parse and object arrays are left to
    ``np.load``, whose own errors the callers turn into one line."""
    try:
        with open(path, "rb") as fh:
            header = _read_header(fh)
            offset = fh.tell()
            file_size = os.fstat(fh.fileno()).st_size
    except (ValueError, OSError, EOFError, SyntaxError, TypeError):
        return
    if header is None:
        return
    shape, dtype = header
    if dtype.hasobject or any(d < 0 for d in shape):
        return
    count = 1
    for d in shape:
        count *= d
    need = count * dtype.itemsize
    have = max(file_size - offset, 0)
    if need > have:
        need_s, have_s = _size(need), _size(have)
        if need_s == have_s:  # a few bytes short: exact counts
            need_s, have_s = f"{need} bytes", f"{have} bytes"
        raise HalutError(f"{where} is truncated or corrupt: its header declares shape "
                         f"{shape} {dtype}, {need_s}, but the file holds {have_s} of data")
    declared = f"shape {shape} {dtype}, {_size(need)}"
    mem = available_memory()
    if mem is not None and need > mem:
        raise HalutError(f"{where} holds {declared}: more than the {_size(mem)} of memory "
                         f"available; split it into smaller files")
