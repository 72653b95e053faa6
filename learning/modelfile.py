"""The ``.halut`` model file: an npz archive with a JSON header, no pickle.

Layout (format ``halut-model``, version 2; docs/model-file.md):

* ``header``: uint8 array holding UTF-8 JSON: ``format``, ``format_version``, ``C``, ``K``,
  ``D``, ``M``, ``has_program``, ``program`` (formats, input scale), ``stats``, ``created``,
  ``arrays`` (name -> dtype, shape) and ``checksum`` (sha256, see :func:`checksum`: from
  version 2 on over the header without ``checksum`` and the arrays; version 1, still read,
  covered the arrays only).
* ``model_dims`` (C, L) int32, ``model_thresholds`` (C, K-1) float32, ``model_lut``
  (M, C, K) float32, ``model_bias`` (M,) float32, optional ``model_weights`` (D, M)
  float32, ``model_counts`` (C, K) int64, ``model_calibration`` (R, C, L) float32.
* with a program: ``program_dims`` (C, L) int32, ``program_thresholds`` (C, K-1)
  float16|int8, ``program_lut`` (M, C, K) int8|float16, ``program_scale`` and
  ``program_bias`` (M,) float32.

Loading (:func:`load_model`) is strict (:mod:`learning.strict`): one archive exactly as
``np.savez`` writes it and nothing before, between or after its members; every ``.npy``
header checked against the bytes its member holds before anything is allocated; the header
strict JSON (size and nesting limits, no booleans or floats where integers belong); every
problem one short HalutError line naming the file.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from learning.atomic import atomic_write_bytes
from learning.errors import HalutError
from learning.model import HalutModel
from learning.program import LUT_FORMATS, THRESHOLD_FORMATS, HardwareProgram, log2_exact
from learning.strict import (
    canonical_json,
    clip,
    is_int,
    is_number,
    parse_json,
    read_file,
    read_npz,
    short_path,
    shown,
)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "READ_VERSIONS", "SUFFIX", "SavedModel",
           "archive_bytes", "checksum", "jsonable", "load_model", "load_model_bytes",
           "model_bytes", "read_file", "save_model", "write_archive"]

FORMAT_NAME = "halut-model"
FORMAT_VERSION = 2  # 2: the checksum covers the header too
READ_VERSIONS = (1, 2)  # version 1 files still load; their checksum covers the arrays only
SUFFIX = ".halut"
_MAX_HEADER = 16 << 20  # bytes of JSON a header may hold
_MAX_ARRAYS = 64  # arrays a model file may hold (it has at most 12)
_MAX_SIZE = 1 << 31  # C, K, D and M
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # the input scale is a float32
_HEADER_KEYS = frozenset({"format", "format_version", "C", "K", "D", "M", "has_program",
                          "program", "stats", "created", "arrays", "checksum"})
_PROGRAM_KEYS = frozenset({"threshold_format", "lut_format", "input_scale"})


@dataclass(frozen=True, eq=False)
class SavedModel:
    """What :func:`load_model` returns: the float model, the program (if saved) and the
    file's header (a dict)."""

    model: HalutModel
    program: HardwareProgram | None
    header: dict[str, Any] = field(default_factory=dict)


def checksum(arrays: dict[str, np.ndarray], header: dict[str, Any] | None = None) -> str:
    """sha256 over ``header`` (version 2: its canonical JSON without the ``checksum`` field,
    :func:`learning.strict.canonical_json`, then a newline), then the arrays in name order:
    for each, its name, dtype string, shape and C-order bytes (the ``header`` array is not
    included). Version 1 files hash the arrays only (``header`` None)."""
    h = hashlib.sha256()
    if header is not None:
        h.update(canonical_json({k: v for k, v in header.items() if k != "checksum"}))
        h.update(b"\n")
    for name in sorted(arrays):
        if name == "header":
            continue
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{list(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def jsonable(x: Any) -> Any:
    """A JSON-ready copy of ``x``: dicts (keys as str), lists, numpy arrays and scalars as
    Python values, non-finite floats as None, anything else as its ``str``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, np.generic)):
        return jsonable(x.tolist())
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


def _arrays_of(model: HalutModel, program: HardwareProgram | None) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "model_dims": model.dims, "model_thresholds": model.thresholds,
        "model_lut": model.lut, "model_bias": model.bias}
    for name in ("weights", "counts", "calibration"):
        v = getattr(model, name)
        if v is not None:
            arrays[f"model_{name}"] = v
    if program is not None:
        for name in ("dims", "thresholds", "lut", "scale", "bias"):
            arrays[f"program_{name}"] = getattr(program, name)
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def archive_bytes(arrays: dict[str, np.ndarray], header: dict[str, Any]) -> bytes:
    """The npz archive of ``arrays`` plus ``header`` (with array table and checksum added;
    the checksum covers the header unless it says ``format_version`` 1)."""
    header = dict(header)
    header["arrays"] = {k: {"dtype": v.dtype.str, "shape": list(v.shape)}
                        for k, v in sorted(arrays.items())}
    header.pop("checksum", None)
    header = jsonable(header)
    legacy = header.get("format_version") == 1
    header["checksum"] = checksum(arrays, None if legacy else header)
    text = json.dumps(header, sort_keys=True)
    payload = dict(arrays)
    payload["header"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **payload)  # type: ignore[arg-type]
    return buf.getvalue()


def write_archive(path: str | os.PathLike[str], arrays: dict[str, np.ndarray],
                  header: dict[str, Any]) -> None:
    """Write ``arrays`` plus ``header`` (with array table and checksum added) atomically."""
    atomic_write_bytes(path, archive_bytes(arrays, header))


def save_model(path: str | os.PathLike[str], model: HalutModel,
               program: HardwareProgram | None = None) -> Path:
    """Save ``model`` (and its quantized ``program``) to ``path`` atomically.

    An interrupted write leaves any previous file at ``path`` intact.
    """
    atomic_write_bytes(path, model_bytes(model, program))
    return Path(path)


def model_bytes(model: HalutModel, program: HardwareProgram | None = None) -> bytes:
    """The bytes of the ``.halut`` file of ``model`` (and ``program``): what
    :func:`save_model` writes (a network bundle holds one per layer)."""
    if not isinstance(model, HalutModel):
        raise HalutError(f"save_model needs a HalutModel, got {type(model).__name__}")
    if program is not None:
        if not isinstance(program, HardwareProgram):
            raise HalutError(f"program must be a HardwareProgram, got {type(program).__name__}")
        got = (program.C, program.K, program.D, program.M)
        want = (model.C, model.K, model.D, model.M)
        if got != want:
            raise HalutError(f"program (C, K, D, M) = {got} does not match the model's {want}")
    header: dict[str, Any] = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "C": model.C, "K": model.K, "D": model.D, "M": model.M,
        "has_program": program is not None,
        "program": None if program is None else {
            "threshold_format": program.threshold_format, "lut_format": program.lut_format,
            "input_scale": program.input_scale},
        "stats": model.stats,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return archive_bytes(_arrays_of(model, program), header)


def _expected(h: dict[str, Any], R: int | None) -> dict[str, tuple[tuple[int, ...], set[str]]]:
    C, K, D, M = (int(h[k]) for k in ("C", "K", "D", "M"))
    L = log2_exact(K)
    exp: dict[str, tuple[tuple[int, ...], set[str]]] = {
        "model_dims": ((C, L), {"<i4"}), "model_thresholds": ((C, K - 1), {"<f4"}),
        "model_lut": ((M, C, K), {"<f4"}), "model_bias": ((M,), {"<f4"}),
        "model_weights": ((D, M), {"<f4"}), "model_counts": ((C, K), {"<i8"}),
        "program_dims": ((C, L), {"<i4"}), "program_thresholds": ((C, K - 1), {"<f2", "|i1"}),
        "program_lut": ((M, C, K), {"|i1", "<f2"}), "program_scale": ((M,), {"<f4"}),
        "program_bias": ((M,), {"<f4"})}
    if R is not None:
        exp["model_calibration"] = ((R, C, L), {"<f4"})
    return exp


def _read_header(members: dict[str, np.ndarray], where: str) -> dict[str, Any]:
    """The archive's JSON header, strictly typed (version, sizes, every field), or one
    HalutError line naming the file and what is wrong."""
    if "header" not in members:
        raise HalutError(f"{where} is not a halut model file (no header in the archive)")
    raw = members["header"]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise HalutError(f"{where}: the header is not a byte array")
    header = parse_json(raw.tobytes(), where, max_bytes=_MAX_HEADER)
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise HalutError(f"{where} is not a halut model file (format {shown(fmt)}, "
                         f"expected {FORMAT_NAME!r})")
    version = header.get("format_version")
    if not is_int(version) or version not in READ_VERSIONS:
        raise HalutError(f"{where} has model file format version {shown(version, 20)}, but "
                         f"this halut reads versions {' and '.join(map(str, READ_VERSIONS))}")
    for key in ("C", "K", "D", "M", "arrays", "checksum"):
        if key not in header:
            raise HalutError(f"{where}: the header lacks {key!r}")
    unknown = sorted(set(header) - _HEADER_KEYS)
    if unknown:
        raise HalutError(f"{where}: the header has an unknown field {shown(unknown[0])}")
    _check_header_types(header, where)
    return header


def _kind(x: Any) -> str:
    """The JSON name of a header value's type, for messages."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, (int, float)):
        return "a number"
    if isinstance(x, str):
        return "a string"
    if isinstance(x, list):
        return "a list"
    if isinstance(x, dict):
        return "an object"
    return type(x).__name__


def _check_header_types(h: dict[str, Any], where: str) -> None:
    """Every header field has the JSON type :func:`save_model` writes, or one HalutError
    naming the file and the field."""

    def bad(field_name: str, want: str, got: Any) -> HalutError:
        text = shown(got, 41)
        return HalutError(f"{where}: header field {clip(field_name, 60)!r} must be {want}, "
                          f"got {text if len(text) <= 40 else _kind(got)}")

    for key in ("C", "K", "D", "M"):
        if not is_int(h[key]) or not 1 <= h[key] <= _MAX_SIZE:
            raise bad(key, "a positive integer", h[key])
    if not isinstance(h["checksum"], str):
        raise bad("checksum", "a string", h["checksum"])
    table = h["arrays"]
    if not isinstance(table, dict):
        raise bad("arrays", "an object (array name -> dtype and shape)", table)
    if len(table) > _MAX_ARRAYS:
        raise bad("arrays", f"an object of at most {_MAX_ARRAYS} arrays", table)
    for name, entry in table.items():
        if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape"}
                and isinstance(entry["dtype"], str) and isinstance(entry["shape"], list)
                and all(is_int(n) for n in entry["shape"])):
            raise bad(f"arrays.{name}", 'an object {"dtype": string, "shape": [integers]}',
                      entry)
    stats = h.get("stats")
    if stats is not None and not isinstance(stats, dict):
        raise bad("stats", "an object", stats)
    created = h.get("created")
    if created is not None and not isinstance(created, str):
        raise bad("created", "a string", created)
    has_program = h.get("has_program", False)
    if not isinstance(has_program, bool):
        raise bad("has_program", "true or false", has_program)
    meta = h.get("program")
    if not has_program:
        if meta is not None:
            raise bad("program", "null when 'has_program' is false", meta)
        return
    if not isinstance(meta, dict) or set(meta) != _PROGRAM_KEYS:
        raise bad("program", "an object of " + ", ".join(sorted(_PROGRAM_KEYS))
                  + " (has_program is true)", meta)
    for key, choices in (("threshold_format", THRESHOLD_FORMATS), ("lut_format", LUT_FORMATS)):
        if meta.get(key) not in choices:
            raise bad(f"program.{key}", "one of " + ", ".join(choices), meta.get(key))
    s = meta.get("input_scale")
    if not is_number(s) or not math.isfinite(s) or s <= 0 or s > _FLOAT32_MAX:
        raise bad("program.input_scale", "a finite number > 0", s)


def load_model(path: str | os.PathLike[str]) -> SavedModel:
    """Load and fully validate a ``.halut`` file; every problem is one HalutError line."""
    where = f"model file {short_path(path)}"
    return load_model_bytes(read_file(path, where), where)


def load_model_bytes(data: bytes, where: str) -> SavedModel:
    """:func:`load_model` on the bytes of a ``.halut`` file; ``where`` names it in errors.

    The file must be one npz archive exactly as :func:`model_bytes` writes it (nothing before
    or after it, every member a plain ``.npy`` whose declared size is checked before anything
    is allocated, CRC-32s intact), its header strict JSON of the right types, and its checksum
    (header included from version 2 on) must match. Every problem is one HalutError line of
    at most :data:`learning.strict.MAX_MESSAGE` characters naming the file."""
    try:
        return _load(data, where)
    except HalutError as exc:
        raise HalutError(clip(str(exc))) from None
    except (MemoryError, RecursionError) as exc:
        raise HalutError(clip(f"{where} cannot be loaded ({type(exc).__name__})")) from None


def _load(data: bytes, where: str) -> SavedModel:
    members = read_npz(data, where, "halut model file", archive="an npz/zip archive",
                       max_members=_MAX_ARRAYS + 1)
    header = _read_header(members, where)
    arrays = {name: a for name, a in members.items() if name != "header"}
    table = header["arrays"]
    if set(table) != set(arrays):
        missing = [clip(n, 40) for n in sorted(set(table) - set(arrays))[:4]]
        extra = [clip(n, 40) for n in sorted(set(arrays) - set(table))[:4]]
        raise HalutError(f"{where}: the arrays do not match the header's table (missing "
                         f"{missing}, unexpected {extra})")
    cal = arrays.get("model_calibration")
    try:
        expected = _expected(header, None if cal is None or cal.ndim != 3 else cal.shape[0])
    except (TypeError, ValueError) as exc:
        raise HalutError(f"{where}: bad sizes in the header ({exc})") from None
    for name, arr in arrays.items():
        if name not in expected:
            raise HalutError(f"{where}: unexpected array {name!r}")
        shape, dtypes = expected[name]
        if arr.shape != shape:
            raise HalutError(f"{where}: array {name!r} has shape {arr.shape}, expected {shape}")
        if arr.dtype.str not in dtypes:
            raise HalutError(f"{where}: array {name!r} has dtype {arr.dtype}, expected "
                             f"{' or '.join(sorted(dtypes))}")
        if list(arr.shape) != table[name]["shape"] or arr.dtype.str != table[name]["dtype"]:
            raise HalutError(f"{where}: array {name!r} differs from the header's description")
    for required in ("model_dims", "model_thresholds", "model_lut", "model_bias"):
        if required not in arrays:
            raise HalutError(f"{where}: array {required!r} is missing")
    program_arrays = sorted(n for n in arrays if n.startswith("program_"))
    if not header.get("has_program") and program_arrays:
        raise HalutError(f"{where}: the header says there is no program, but the file holds "
                         f"{', '.join(program_arrays)}")
    want = checksum(arrays, header if header["format_version"] >= 2 else None)
    if want != header["checksum"]:
        covered = "the header or arrays were" if header["format_version"] >= 2 else \
            "the arrays were"
        raise HalutError(f"{where} is corrupt: checksum mismatch ({covered} changed after "
                         "writing)")
    for name, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise HalutError(f"{where}: array {name!r} holds NaN or inf")
    try:
        model = HalutModel(dims=arrays["model_dims"], thresholds=arrays["model_thresholds"],
                           lut=arrays["model_lut"], bias=arrays["model_bias"],
                           D=int(header["D"]), weights=arrays.get("model_weights"),
                           stats=dict(header.get("stats") or {}),
                           counts=arrays.get("model_counts"), calibration=cal)
    except (ValueError, TypeError, IndexError) as exc:  # HalutError is a ValueError
        raise HalutError(f"{where}: {exc}") from None
    program = None
    if header.get("has_program"):
        meta = header["program"]
        try:
            program = HardwareProgram(
                dims=arrays["program_dims"], thresholds=arrays["program_thresholds"],
                lut=arrays["program_lut"], scale=arrays["program_scale"],
                bias=arrays["program_bias"], D=int(header["D"]),
                threshold_format=meta["threshold_format"], lut_format=meta["lut_format"],
                input_scale=float(meta["input_scale"]))
        except KeyError as exc:
            raise HalutError(f"{where}: program array {exc} is missing") from None
        except (ValueError, TypeError, IndexError) as exc:
            raise HalutError(f"{where}: {exc}") from None
        _check_program_matches(model, program, where)
    return SavedModel(model=model, program=program, header=header)


def _check_program_matches(model: HalutModel, program: HardwareProgram, where: str) -> None:
    """The stored program must be the model's: the same split dims, and usable scales."""
    if not np.array_equal(program.dims, model.dims):
        c, lvl = (int(i) for i in np.argwhere(program.dims != model.dims)[0])
        raise HalutError(f"{where} is inconsistent: the program's dims differ from the model's "
                         f"(codebook {c}, level {lvl}: {int(program.dims[c, lvl])} vs "
                         f"{int(model.dims[c, lvl])})")
    zero = np.flatnonzero(program.scale == 0)
    if zero.size:
        raise HalutError(f"{where} is inconsistent: the program's output scale is 0 for "
                         f"{zero.size} of {program.M} columns (first: column {int(zero[0])}); "
                         "every output would be its bias")
