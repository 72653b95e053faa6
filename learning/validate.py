"""Input checks shared by every entry point: one clear :class:`HalutError` per problem."""

from __future__ import annotations

import numpy as np

from learning.errors import HalutError


def as_float_matrix(x: object, name: str, cols: int | None = None,
                    allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 matrix, or raise a one-line HalutError.

    Accepts float16/32/64 arrays (and torch tensors through ``np.asarray``); rejects other
    dtypes, non-2-D shapes, a wrong column count, empty arrays and NaN or inf values.

    Parameters
    ----------
    x : array-like, shape (N, cols)
    name : str, used in the message ("activations", "weights", ...)
    cols : expected number of columns, or None for any
    """
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize <= 8):
        raise HalutError(f"{name} must be a float array (float16/32/64), got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise HalutError(f"{name} must be a 2-D matrix, got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise HalutError(f"{name} is empty (shape {arr.shape})")
    if cols is not None and arr.shape[1] != cols:
        raise HalutError(f"{name} must have {cols} columns, got shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        bad = np.argwhere(~np.isfinite(out))[0]
        kind = "NaN" if np.isnan(out[tuple(bad)]) else "inf"
        raise HalutError(f"{name} hold {kind} at row {bad[0]}, column {bad[1]} "
                         "(the accelerator takes finite values only)")
    return out
