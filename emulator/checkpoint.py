"""Resumable cells: each finished (row tile, column tile) cell of a long layer run is one file
in ``resume_dir``.

A tile file ``tile_<lo>_<hi>.npz`` (``tile_<lo>_<hi>_m<c0>_<c1>.npz`` for one column tile of
several) holds the tile's arrays (``y``, ``acc``) and a JSON
header (``header``, a uint8 array) that binds it to its run: the run key (a SHA-256 over
the program, the input, the backend and its options, and the row tiling), the tile bounds,
the cycle reports, and a SHA-256 checksum of the arrays' bytes. A file from another run, a
partial file or a corrupted one fails these checks and its tile is recomputed. Files are
written atomically (learning.atomic), so an interrupt leaves either the whole tile or none.
The format is npz with a JSON header (no pickle).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emulator.cycles import CycleReport
from learning.atomic import atomic_write_bytes
from learning.errors import HalutError
from learning.program import HardwareProgram

TILE_FORMAT = "halut-tile"
TILE_VERSION = 3  # 3: cycle reports of the job stream (config = exposed, writes, preload)


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


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
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
        header = {"format": TILE_FORMAT, "version": TILE_VERSION, "run": self.key,
                  "lo": rec.lo, "hi": rec.hi, "cols": list(cols) if cols else None,
                  "checksum": _checksum(arrays),
                  "cycles": rec.cycles.to_dict() if rec.cycles else None}
        buf = io.BytesIO()
        payload = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays}
        np.savez(buf, **payload)  # type: ignore[arg-type]
        path = self.path(rec.lo, rec.hi, cols)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def load(self, lo: int, hi: int, M: int, cols: tuple[int, int] | None = None
             ) -> TileRecord | None:
        """The finished cell ``[lo, hi)`` x ``cols`` (``M`` columns), or None if absent or
        not valid for this run."""
        path = self.path(lo, hi, cols)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                arrays = {name: z[name] for name in z.files if name != "header"}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError,
                UnicodeDecodeError) as exc:
            self.rejected.append((path.name, f"unreadable ({type(exc).__name__})"))
            return None
        problem = None
        if header.get("format") != TILE_FORMAT or header.get("version") != TILE_VERSION:
            problem = "not a tile file of this version"
        elif header.get("run") != self.key:
            problem = "belongs to another run"
        elif (header.get("lo"), header.get("hi"), header.get("cols")) != (
                lo, hi, list(cols) if cols else None):
            problem = "wrong tile bounds"
        elif header.get("checksum") != _checksum(arrays):
            problem = "checksum mismatch"
        elif "y" not in arrays or arrays["y"].shape != (hi - lo, M):
            problem = "wrong shape"
        if problem:
            self.rejected.append((path.name, problem))
            return None
        cyc = header.get("cycles")
        return TileRecord(lo=lo, hi=hi, y=arrays["y"], acc=arrays.get("acc"),
                          cycles=CycleReport.from_dict(cyc) if cyc else None, resumed=True)
