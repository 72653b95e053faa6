"""Resumable cells: each finished (row tile, column tile) cell of a long layer run is one file
in ``resume_dir``.

A tile file ``tile_<lo>_<hi>.npz`` (``tile_<lo>_<hi>_m<c0>_<c1>.npz`` for one column tile of
several) holds the tile's arrays (``y``, ``acc``) and a JSON
header (``header``, a uint8 array) that binds it to its run: the run key (a SHA-256 over
the program, the input, the backend and its options, and the row tiling), the tile bounds,
the cycle reports, and a SHA-256 checksum over the header (without ``checksum``, canonical
JSON) and the arrays' bytes (version 4; version 3 left the header out, so an edited cycle
report went unnoticed). A file from another run, a partial file or a corrupted one fails
these checks and its tile is recomputed; why is one short line in
:attr:`TileStore.rejected`. Reading is strict (:mod:`learning.strict`): one npz archive as
numpy writes it and nothing else, every ``.npy`` header checked against its member's size
before anything is allocated, the header strict JSON of the right types. Files are written
atomically (learning.atomic), so an interrupt leaves either the whole tile or none. The
format is npz with a JSON header (no pickle).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from emulator.cycles import CycleReport
from learning.atomic import atomic_write_bytes
from learning.errors import HalutError
from learning.program import HardwareProgram
from learning.strict import (
    canonical_json,
    clip,
    is_int,
    parse_json,
    read_file,
    read_npz,
    shown,
)

TILE_FORMAT = "halut-tile"
TILE_VERSION = 4  # 4: the checksum covers the header; 3: cycle reports of the job stream
_MAX_TILE_HEADER = 1 << 16  # bytes of a tile's JSON header
_ACC_DTYPES = ("<i4", "<i8", "<f4", "<f8")  # what an ``acc`` array may hold
_CYCLE_FIELDS = tuple(f.name for f in fields(CycleReport))
_HEADER_KEYS = frozenset({"format", "version", "run", "lo", "hi", "cols", "cycles",
                          "checksum"})


def _update_array(h: Any, name: str, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
    h.update(a.tobytes())


def program_digest(program: HardwareProgram) -> str:
    """SHA-256 over every field of the program that changes its outputs."""
    h = hashlib.sha256()
    for name in ("dims", "thresholds", "lut", "scale", "bias"):
        _update_array(h, name, getattr(program, name))
    h.update(json.dumps([program.D, program.threshold_format, program.lut_format,
                         repr(program.input_scale)]).encode())
    return h.hexdigest()


def run_key(*, program: HardwareProgram | None, A: np.ndarray, backend: str,
            options: dict[str, Any], row_tile: int, extra: dict[str, Any] | None = None) -> str:
    """The identity of one layer run: program, input rows, backend + options, tiling."""
    h = hashlib.sha256()
    h.update(b"program:" + (program_digest(program) if program is not None else "-").encode())
    _update_array(h, "A", A)
    h.update(json.dumps({"backend": backend, "options": options, "row_tile": row_tile,
                         "extra": extra or {}}, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def _checksum(arrays: dict[str, np.ndarray], header: dict[str, Any]) -> str:
    """SHA-256 over the header without ``checksum`` (canonical JSON) and the arrays."""
    h = hashlib.sha256()
    h.update(canonical_json({k: v for k, v in header.items() if k != "checksum"}) + b"\n")
    for name in sorted(arrays):
        _update_array(h, name, arrays[name])
    return h.hexdigest()


@dataclass
class TileRecord:
    """One finished cell: rows ``[lo, hi)`` of one column tile of the layer's matrix."""

    lo: int
    hi: int
    y: np.ndarray  # (hi-lo, M) float32
    acc: np.ndarray | None  # (hi-lo, M) int32 | float32, None for the float backend
    cycles: CycleReport | None = None
    resumed: bool = False


@dataclass
class TileStore:
    """Tile files of one run (``key``) in ``directory``."""

    directory: Path
    key: str
    #: tiles whose file existed but failed a check, with the reason (recomputed)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise HalutError(f"resume directory {self.directory} exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, lo: int, hi: int, cols: tuple[int, int] | None = None) -> Path:
        """``tile_<lo>_<hi>.npz``; a cell of one column tile adds ``_m<c0>_<c1>``."""
        tail = "" if cols is None else f"_m{cols[0]:06d}_{cols[1]:06d}"
        return self.directory / f"tile_{lo:010d}_{hi:010d}{tail}.npz"

    def save(self, rec: TileRecord, cols: tuple[int, int] | None = None) -> Path:
        arrays: dict[str, np.ndarray] = {"y": np.ascontiguousarray(rec.y)}
        if rec.acc is not None:
            arrays["acc"] = np.ascontiguousarray(rec.acc)
        header: dict[str, Any] = {
            "format": TILE_FORMAT, "version": TILE_VERSION, "run": self.key,
            "lo": rec.lo, "hi": rec.hi, "cols": list(cols) if cols else None,
            "cycles": rec.cycles.to_dict() if rec.cycles else None}
        header["checksum"] = _checksum(arrays, header)
        buf = io.BytesIO()
        payload = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays}
        np.savez(buf, **payload)  # type: ignore[arg-type]
        path = self.path(rec.lo, rec.hi, cols)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def load(self, lo: int, hi: int, M: int, cols: tuple[int, int] | None = None
             ) -> TileRecord | None:
        """The finished cell ``[lo, hi)`` x ``cols`` (``M`` columns), or None if absent or
        not valid for this run (then :attr:`rejected` says why, in one short line)."""
        path = self.path(lo, hi, cols)
        if not os.path.lexists(path):
            return None
        try:
            return read_tile(path, self.key, lo, hi, M, cols)
        except HalutError as exc:
            self.rejected.append((path.name, clip(str(exc), 200)))
            return None


def read_tile(path: Path, key: str, lo: int, hi: int, M: int,
              cols: tuple[int, int] | None = None) -> TileRecord:
    """The tile file at ``path`` for cell ``[lo, hi)`` x ``cols`` (``M`` columns) of run
    ``key``, fully checked; any problem is one HalutError line (``the file ...``: the caller
    names the file)."""
    where = "the file"
    rows = hi - lo
    # the largest file a valid tile can be: y and acc of 8 bytes a value, headers, directory
    most = 16 * rows * M + _MAX_TILE_HEADER + 4096
    data = read_file(path, where, max_bytes=most)
    try:
        members = read_npz(data, where, "halut tile file", max_members=3)
    except MemoryError:
        raise HalutError(f"{where} cannot be loaded (out of memory)") from None
    raw = members.pop("header", None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise HalutError(f"{where} is not a tile file (no header)")
    header = parse_json(raw.tobytes(), where, max_bytes=_MAX_TILE_HEADER, max_depth=4)
    if not isinstance(header, dict):
        raise HalutError(f"{where} is not a tile file (its header is a JSON "
                         f"{type(header).__name__}, not an object)")
    if header.get("format") != TILE_FORMAT or not is_int(header.get("version")) \
            or header["version"] != TILE_VERSION:
        raise HalutError(f"{where} is not a tile file of this version (format "
                         f"{shown(header.get('format'), 30)}, version "
                         f"{shown(header.get('version'), 20)}; this halut writes version "
                         f"{TILE_VERSION})")
    if not isinstance(header.get("checksum"), str):
        raise HalutError(f"{where} is corrupt: its header has no checksum")
    if set(header) != _HEADER_KEYS:
        odd = sorted(set(header) ^ _HEADER_KEYS)
        raise HalutError(f"{where} is corrupt: its header lacks or adds the field "
                         f"{shown(odd[0])}")
    if header.get("run") != key:
        raise HalutError(f"{where} belongs to another run")
    bounds = [header.get("lo"), header.get("hi"), header.get("cols")]
    if not _same_ints(bounds, [lo, hi, list(cols) if cols else None]):
        raise HalutError(f"{where} has the wrong tile bounds")
    if _checksum(members, header) != header["checksum"]:
        raise HalutError(f"{where} is corrupt: checksum mismatch")
    if set(members) not in ({"y"}, {"y", "acc"}):
        raise HalutError(f"{where} holds the arrays {sorted(members)[:4]}, not y (and acc)")
    y, acc = members["y"], members.get("acc")
    if y.dtype.str != "<f4" or y.shape != (rows, M):
        raise HalutError(f"{where}: y is {y.dtype} {y.shape}, expected float32 {(rows, M)}")
    if acc is not None and (acc.dtype.str not in _ACC_DTYPES or acc.shape != (rows, M)):
        raise HalutError(f"{where}: acc is {acc.dtype} {acc.shape}, expected (int32, int64, "
                         f"float32 or float64) {(rows, M)}")
    return TileRecord(lo=lo, hi=hi, y=y, acc=acc, cycles=_cycles(header.get("cycles"), where),
                      resumed=True)


def _same_ints(got: Any, want: Any) -> bool:
    """``got`` (parsed JSON) is ``want`` (ints, lists of them, None), booleans not ints."""
    if isinstance(want, list):
        return (isinstance(got, list) and len(got) == len(want)
                and all(_same_ints(g, w) for g, w in zip(got, want, strict=True)))
    return got is None if want is None else is_int(got) and got == want


def _cycles(d: Any, where: str) -> CycleReport | None:
    """The header's ``cycles`` (null, or an object of non-negative integers: the
    :class:`CycleReport` fields and their ``total``)."""
    if d is None:
        return None
    want = {*_CYCLE_FIELDS, "total"}
    if not isinstance(d, dict) or set(d) != want or not all(
            is_int(v) and 0 <= v < 1 << 62 for v in d.values()):
        raise HalutError(f"{where}: its cycle report is malformed (an object of "
                         f"non-negative integers {', '.join(sorted(want))} expected)")
    report = CycleReport(**{name: d[name] for name in _CYCLE_FIELDS})
    if report.total != d["total"]:
        raise HalutError(f"{where}: its cycle report does not add up (total {d['total']}, "
                         f"parts {report.total})")
    return report
