"""Input checks shared by every entry point: one clear :class:`HalutError` per problem."""

from __future__ import annotations

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
