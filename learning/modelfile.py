"""The ``.halut`` model file: an npz archive with a JSON header, no pickle.

Layout (format ``halut-model``, version 1; docs/model-file.md):

* ``header``: uint8 array holding UTF-8 JSON: ``format``, ``format_version``, ``C``, ``K``,
  ``D``, ``M``, ``has_program``, ``program`` (formats, input scale), ``stats``, ``created``,
  ``arrays`` (name -> dtype, shape) and ``checksum`` (sha256, see :func:`checksum`).
* ``model_dims`` (C, L) int32, ``model_thresholds`` (C, K-1) float32, ``model_lut``
  (M, C, K) float32, ``model_bias`` (M,) float32, optional ``model_weights`` (D, M)
  float32, ``model_counts`` (C, K) int64, ``model_calibration`` (R, C, L) float32.
* with a program: ``program_dims`` (C, L) int32, ``program_thresholds`` (C, K-1)
  float16|int8, ``program_lut`` (M, C, K) int8|float16, ``program_scale`` and
  ``program_bias`` (M,) float32.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from learning.atomic import atomic_write_bytes
from learning.errors import HalutError
from learning.model import HalutModel
from learning.program import LUT_FORMATS, THRESHOLD_FORMATS, HardwareProgram, log2_exact

FORMAT_NAME = "halut-model"
FORMAT_VERSION = 1
SUFFIX = ".halut"


@dataclass(frozen=True, eq=False)
class SavedModel:
    """What :func:`load_model` returns: the float model, the program (if saved) and the
    file's header (a dict)."""

    model: HalutModel
    program: HardwareProgram | None
    header: dict[str, Any] = field(default_factory=dict)


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays in name order: for each, its name, dtype string, shape and
    C-order bytes (the ``header`` array is not included)."""
    h = hashlib.sha256()
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
    """The npz archive of ``arrays`` plus ``header`` (with array table and checksum added)."""
    header = dict(header)
    header["arrays"] = {k: {"dtype": v.dtype.str, "shape": list(v.shape)}
                        for k, v in sorted(arrays.items())}
    header["checksum"] = checksum(arrays)
    text = json.dumps(jsonable(header), sort_keys=True)
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


def _read_header(npz: Any, where: str) -> dict[str, Any]:
    if "header" not in npz.files:
        raise HalutError(f"{where} is not a halut model file (no header in the archive)")
    raw = npz["header"]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise HalutError(f"{where}: the header is not a byte array")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HalutError(f"{where}: the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise HalutError(f"{where} is not a halut model file (format {fmt!r}, "
                         f"expected {FORMAT_NAME!r})")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise HalutError(f"{where} has model file format version {version}, but this halut "
                         f"reads version {FORMAT_VERSION}")
    for key in ("C", "K", "D", "M", "arrays", "checksum"):
        if key not in header:
            raise HalutError(f"{where}: the header lacks {key!r}")
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


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_header_types(h: dict[str, Any], where: str) -> None:
    """Every header field has the JSON type :func:`save_model` writes, or one HalutError
    naming the file and the field."""

    def bad(field_name: str, want: str, got: Any) -> HalutError:
        text = json.dumps(got)
        shown = text if len(text) <= 40 else _kind(got)
        return HalutError(f"{where}: header field {field_name!r} must be {want}, "
                          f"got {shown}")

    for key in ("C", "K", "D", "M"):
        if not _is_int(h[key]) or h[key] < 1:
            raise bad(key, "a positive integer", h[key])
    if not isinstance(h["checksum"], str):
        raise bad("checksum", "a string", h["checksum"])
    table = h["arrays"]
    if not isinstance(table, dict):
        raise bad("arrays", "an object (array name -> dtype and shape)", table)
    for name, entry in table.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
                and isinstance(entry.get("shape"), list)
                and all(_is_int(n) for n in entry["shape"])):
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
    if not isinstance(meta, dict):
        raise bad("program", "an object (has_program is true)", meta)
    for key, choices in (("threshold_format", THRESHOLD_FORMATS), ("lut_format", LUT_FORMATS)):
        if meta.get(key) not in choices:
            raise bad(f"program.{key}", "one of " + ", ".join(choices), meta.get(key))
    s = meta.get("input_scale")
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not np.isfinite(s) or s <= 0:
        raise bad("program.input_scale", "a finite number > 0", s)


def load_model(path: str | os.PathLike[str]) -> SavedModel:
    """Load and fully validate a ``.halut`` file; every problem is one HalutError line."""
    where = f"model file {str(path)!r}"
    return load_model_bytes(read_file(path, where), where)


def read_file(path: str | os.PathLike[str], where: str) -> bytes:
    """The bytes of a file the project reads whole (a model file, a bundle); ``where`` names
    it in the one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise HalutError(f"{where} does not exist")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise HalutError(f"{where} cannot be read ({exc.strerror})") from None


def load_model_bytes(data: bytes, where: str) -> SavedModel:
    """:func:`load_model` on the bytes of a ``.halut`` file; ``where`` names it in errors."""
    if data[:2] != b"PK":
        raise HalutError(f"{where} is not a halut model file (not an npz/zip archive)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise HalutError(f"{where} is truncated or its archive directory is damaged "
                         f"({exc})") from None
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises many kinds here
        raise HalutError(f"{where} cannot be opened ({exc})") from None
    with npz:
        header = _read_header(npz, where)
        arrays: dict[str, np.ndarray] = {}
        for name in npz.files:
            if name == "header":
                continue
            try:
                arrays[name] = npz[name]
            except Exception as exc:  # zip CRC errors, short reads, pickled objects
                raise HalutError(f"{where} is corrupt: array {name!r} is unreadable "
                                 f"({exc})") from None
    table = header["arrays"]
    if set(table) != set(arrays):
        raise HalutError(f"{where}: arrays {sorted(arrays)} do not match the header's "
                         f"{sorted(table)}")
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
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise HalutError(f"{where}: array {name!r} holds NaN or inf")
    for required in ("model_dims", "model_thresholds", "model_lut", "model_bias"):
        if required not in arrays:
            raise HalutError(f"{where}: array {required!r} is missing")
    program_arrays = sorted(n for n in arrays if n.startswith("program_"))
    if not header.get("has_program") and program_arrays:
        raise HalutError(f"{where}: the header says there is no program, but the file holds "
                         f"{', '.join(program_arrays)}")
    if checksum(arrays) != header["checksum"]:
        raise HalutError(f"{where} is corrupt: checksum mismatch (the arrays were changed "
                         "after writing)")
    try:
        model = HalutModel(dims=arrays["model_dims"], thresholds=arrays["model_thresholds"],
                           lut=arrays["model_lut"], bias=arrays["model_bias"],
                           D=int(header["D"]), weights=arrays.get("model_weights"),
                           stats=dict(header.get("stats") or {}),
                           counts=arrays.get("model_counts"), calibration=cal)
    except HalutError as exc:
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
        except HalutError as exc:
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
