"""Loaders for users' data sets: ``.npy`` arrays, CIFAR-10's python batches, image folders.

Every loader returns ``X`` as C-contiguous float32 with the sample index first (images as
NCHW in [0, 1]) and ``y`` as int64 labels, and answers bad input with one
:class:`HalutError` line naming the file (and, where it helps, the sample) at fault.

CIFAR-10's python batches are pickles (the only pickle read anywhere in the project). They
are read with :class:`CifarUnpickler`, which resolves only the globals that format needs to
rebuild its numpy array (``numpy``'s ``_reconstruct``/``_frombuffer``, ``ndarray``,
``dtype``, and ``_codecs.encode`` restricted to latin-1, which Python 3 uses for bytes in
protocol 2) and a few builtin containers; any other global, the usual vehicle of a
malicious pickle, is refused before it is resolved.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from learning.errors import HalutError, one_line
from learning.validate import check_npy_size

#: CIFAR-10 class names, in label order (batches.meta's label_names)
CIFAR10_CLASSES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                    "frog", "horse", "ship", "truck")
#: extensions an image folder's files may have (case-insensitive)
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")


def _sample_index(shape: tuple[int, ...], flat: int) -> str:
    idx = np.unravel_index(flat, shape)
    return f"sample {int(idx[0])} (index {tuple(int(i) for i in idx)})"


# ---- checks on arrays in memory --------------------------------------------------------------

def check_inputs(X: object, name: str = "X",
                 sample_shape: Sequence[int] | None = None) -> np.ndarray:
    """``X`` as C-contiguous float32 with at least 2 dims and at least one sample.

    Parameters
    ----------
    X : float16/32/64 array (N, ...), N samples first
    name : how messages name the array (a file name, "X")
    sample_shape : the per-sample shape the model takes (``X.shape[1:]``), or None for any

    Raises a one-line :class:`HalutError` for a non-float dtype, fewer than 2 dims, no
    samples, a sample shape other than ``sample_shape``, values beyond float32's range, NaN
    or inf (naming the first bad sample).
    """
    arr = np.asarray(X)
    if not (np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize <= 8):
        raise HalutError(f"{name} must hold float32 inputs, got dtype {arr.dtype} (convert, "
                         "e.g. X.astype(np.float32) / 255 for 8-bit images)")
    if arr.ndim < 2:
        raise HalutError(f"{name} must be (N, ...) with samples first and at least 2 dims, "
                         f"got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise HalutError(f"{name} holds no samples (shape {arr.shape})")
    if sample_shape is not None and tuple(arr.shape[1:]) != tuple(sample_shape):
        raise HalutError(f"{name} holds samples of shape {tuple(arr.shape[1:])}, the model "
                         f"takes {tuple(sample_shape)}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
        bad = ~np.isfinite(out)
    if bad.any():
        flat = int(np.flatnonzero(bad)[0])
        orig = arr.reshape(-1)[flat]
        kind = ("NaN" if np.isnan(orig) else "inf" if np.isinf(orig)
                else "a value beyond the float32 range")
        raise HalutError(f"{name} holds {kind} at {_sample_index(arr.shape, flat)} "
                         "(inputs must be finite float32)")
    return out


def check_labels(y: object, name: str = "y", n: int | None = None,
                 num_classes: int | None = None) -> np.ndarray:
    """``y`` as an int64 vector of class ids.

    Parameters
    ----------
    y : integer array (N,)
    name : how messages name the array
    n : the number of samples the labels must match, or None
    num_classes : labels must lie in ``[0, num_classes)``, or None for any value >= 0

    Raises a one-line :class:`HalutError` for a non-integer dtype, a shape other than (N,),
    a count other than ``n`` and a label out of range (the first one named).
    """
    arr = np.asarray(y)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise HalutError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise HalutError(f"{name} must be a vector (N,) of labels, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise HalutError(f"{name} holds {arr.shape[0]} labels for {n} samples")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise HalutError(f"{name} holds label {int(arr.max())}, beyond int64")
    out = arr.astype(np.int64)
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes < 1:
            raise HalutError(f"num_classes must be a positive int, got {num_classes!r}")
        bad = (out < 0) | (out >= num_classes)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise HalutError(f"{name} holds label {int(out[i])} at sample {i}, outside "
                             f"[0, {int(num_classes)}) for {int(num_classes)} classes")
    elif out.size and out.min() < 0:
        i = int(np.argmin(out))
        raise HalutError(f"{name} holds the negative label {int(out[i])} at sample {i}")
    return out


# ---- .npy ------------------------------------------------------------------------------------

def _load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise HalutError(f"{p}: no such file")
    check_npy_size(p, str(p))  # a huge declared shape: one line, not a MemoryError
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise HalutError(f"{p} holds Python objects (a pickled array), not numbers: save "
                             "a numeric array") from None
        raise HalutError(f"{p} is not a readable .npy file ({one_line(exc)})") from None
    except Exception as exc:
        raise HalutError(f"{p} is not a readable .npy file ({one_line(exc)})") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise HalutError(f"{p} is an .npz archive, not a single .npy array")
    return arr


def load_npy(x_path: str | os.PathLike[str], y_path: str | os.PathLike[str] | None = None, *,
             num_classes: int | None = None, sample_shape: Sequence[int] | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs from ``x_path`` and (optionally) labels from ``y_path``, checked.

    Parameters
    ----------
    x_path : .npy file of float inputs (N, ...), samples first (float16/32/64 accepted)
    y_path : .npy file of integer labels (N,), or None
    num_classes : labels must lie in ``[0, num_classes)``
    sample_shape : the per-sample shape the model takes, or None for any

    Returns
    -------
    X : (N, ...) float32, C-contiguous
    y : (N,) int64, or None without ``y_path``

    Raises a one-line :class:`HalutError` for a missing or unreadable file, a pickled object
    array, a wrong dtype, a shape mismatch (labels vs samples, sample shape), labels out of
    range, NaN or inf.
    """
    X = check_inputs(_load_npy(x_path), str(x_path), sample_shape)
    if y_path is None:
        return X, None
    y = check_labels(_load_npy(y_path), str(y_path), n=X.shape[0], num_classes=num_classes)
    return X, y


# ---- CIFAR-10 python batches -----------------------------------------------------------------

def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it (latin-1 only)."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


class CifarUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR-10's python batches and nothing else: it resolves only the
    globals that rebuild a dict of lists, bytes and one numpy array."""

    _ALLOWED: dict[tuple[str, str], Any] = {
        ("builtins", "dict"): dict, ("builtins", "list"): list, ("builtins", "tuple"): tuple,
        ("builtins", "bytes"): bytes, ("builtins", "str"): str, ("builtins", "int"): int,
        ("__builtin__", "dict"): dict, ("__builtin__", "list"): list,
        ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    _NUMPY: frozenset[tuple[str, str]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if (module, name) in self._NUMPY:
            # numpy's own array-rebuilding helpers (numpy.core is numpy 1's name of _core)
            old, new = ("numpy.core.", "numpy._core.") if hasattr(np, "_core") \
                else ("numpy._core.", "numpy.core.")
            return super().find_class(module.replace(old, new), name)
        raise pickle.UnpicklingError(f"it references {module}.{name}, which a CIFAR-10 batch "
                                     "never does (refused)")


def _key(batch: dict[Any, Any], key: str) -> Any:
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    return None


def load_cifar10_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch (``data_batch_1`` ... ``data_batch_5``, ``test_batch``).

    The file is a pickle of a dict with ``b'data'`` (N, 3072) uint8 (1024 red, 1024 green,
    1024 blue values per image, rows first) and ``b'labels'`` (N ints in 0..9), read with
    :class:`CifarUnpickler`.

    Returns
    -------
    X : (N, 3, 32, 32) float32 in [0, 1]
    y : (N,) int64
    """
    p = Path(path)
    if not p.is_file():
        raise HalutError(f"CIFAR-10 batch {p}: no such file")
    try:
        with open(p, "rb") as fh:
            batch = CifarUnpickler(fh, encoding="latin1").load()
    except HalutError:
        raise
    except Exception as exc:
        raise HalutError(f"{p} is not a CIFAR-10 python batch ({one_line(exc)})") from None
    if not isinstance(batch, dict):
        raise HalutError(f"{p} is not a CIFAR-10 python batch (it holds a "
                         f"{type(batch).__name__}, not a dict)")
    data, labels = _key(batch, "data"), _key(batch, "labels")
    if labels is None:
        hint = " (a CIFAR-100 batch?)" if _key(batch, "fine_labels") is not None else ""
        raise HalutError(f"{p} is not a CIFAR-10 python batch: no 'labels' entry{hint}")
    if not isinstance(data, np.ndarray):
        raise HalutError(f"{p} is not a CIFAR-10 python batch: no 'data' array")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise HalutError(f"{p}: 'data' must be (N, 3072) uint8, got {data.shape} {data.dtype}")
    try:
        y = np.asarray(labels)
    except Exception:
        y = np.asarray([], dtype=object)
    y = check_labels(y, f"{p} 'labels'", n=data.shape[0], num_classes=len(CIFAR10_CLASSES))
    X = data.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(X), y


def load_cifar10(root: str | os.PathLike[str], split: str = "train"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from its python folder (``cifar-10-batches-py``): ``split='train'`` reads
    ``data_batch_1`` ... ``data_batch_5`` (those present, at least one), ``'test'`` reads
    ``test_batch``. Returns X (N, 3, 32, 32) float32 in [0, 1] and y (N,) int64."""
    folder = Path(root)
    if not folder.is_dir():
        raise HalutError(f"CIFAR-10 folder {folder}: no such folder")
    if split == "train":
        files = [folder / f"data_batch_{i}" for i in range(1, 6)
                 if (folder / f"data_batch_{i}").is_file()]
        if not files:
            raise HalutError(f"CIFAR-10 folder {folder} has no data_batch_1..5")
    elif split == "test":
        files = [folder / "test_batch"]
    else:
        raise HalutError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
    parts = [load_cifar10_batch(f) for f in files]
    return (np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))


# ---- image folders ---------------------------------------------------------------------------

def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise HalutError("reading an image folder needs Pillow, which is not installed "
                         "(pip install pillow)") from None
    return Image


def load_image_folder(root: str | os.PathLike[str], size: int | tuple[int, int],
                      color: str = "rgb") -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images from ``root/CLASS_NAME/*.png|jpg|jpeg``, classes in sorted order.

    Each image is converted to RGB or grayscale and resized (bilinear) to ``size``.
    Hidden entries (names starting with '.') are skipped; a class folder without images is
    an error.

    Parameters
    ----------
    root : the folder holding one sub-folder per class
    size : output height and width, an int or an (h, w) pair
    color : ``'rgb'`` (3 channels) or ``'gray'`` (1 channel)

    Returns
    -------
    X : (N, 3 or 1, h, w) float32 in [0, 1], classes in sorted order, files sorted by name
    y : (N,) int64, the index of each image's class in ``classes``
    classes : the sorted class names
    """
    if color not in ("rgb", "gray"):
        raise HalutError(f"image folder color must be 'rgb' or 'gray', got {color!r}")
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        hw = (size[0], size[1])
    else:
        raise HalutError(f"image size must be an int or an (h, w) pair, got {size!r}")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in hw):
        raise HalutError(f"image size must be positive ints, got {size!r}")
    folder = Path(root)
    if not folder.is_dir():
        raise HalutError(f"image folder {folder}: no such folder")
    Image = _pil()
    classes = tuple(sorted(d.name for d in folder.iterdir()
                           if d.is_dir() and not d.name.startswith(".")))
    if not classes:
        raise HalutError(f"image folder {folder} has no class sub-folders "
                         "(expected ROOT/CLASS_NAME/*.png)")
    mode = "RGB" if color == "rgb" else "L"
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(f for f in (folder / name).iterdir()
                       if f.is_file() and not f.name.startswith(".")
                       and f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise HalutError(f"image folder {folder}: class {name!r} has no "
                             f"{'/'.join(IMAGE_EXTENSIONS)} files")
        for f in files:
            try:
                with Image.open(f) as img:
                    img = img.convert(mode).resize((hw[1], hw[0]), Image.BILINEAR)
                    arr = np.asarray(img, dtype=np.uint8)
            except Exception as exc:
                raise HalutError(f"cannot read image {f} ({one_line(exc)})") from None
            images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
            labels.append(label)
    X = np.stack(images).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(X), np.asarray(labels, dtype=np.int64), classes
