"""Strict readers shared by the project's file formats (the ``.halut`` model file, the
``.halutnet`` bundle, resume tiles, the hardware flows' JSON records).

* :func:`scan_npz` / :func:`read_npz`: one zip archive of ``.npy`` members exactly as numpy's
  ``savez`` writes it (stored, no encryption, no data descriptors, members back to back, the
  central directory right after them and the end record last, with no comment): nothing before
  it, between its members or after it, so a second archive joined to it is refused. Every
  member's CRC-32 is checked, and its ``.npy`` header must be one numpy writes, for a plain
  little-endian number dtype in C order, declaring exactly the bytes the member holds, all
  before anything is allocated (a member cannot ask for a terabyte).
* :func:`parse_json`: UTF-8 JSON with a size limit, a nesting limit, no duplicate keys, no
  integers of more than 40 digits and (unless asked) no NaN or infinities.
* :func:`clip` and :func:`shown`: messages stay one short printable line.

Every problem is a :class:`~learning.errors.HalutError` whose message starts with ``where``
(the file, named by the caller)."""

from __future__ import annotations

import json
import math
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from learning.errors import HalutError

MAX_MESSAGE = 360  # characters of a loader's one-line error
MAX_DEPTH = 32  # nesting of a header's JSON
MAX_INT_DIGITS = 40  # characters of an integer in a header's JSON
MAX_FILE = (1 << 32) - 1  # bytes of a file read whole (the zip end record holds 32-bit offsets)
_LOCAL = b"PK\x03\x04"  # zip local file header
_CENTRAL = b"PK\x01\x02"  # zip central directory entry
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record
_NPY_MAGIC = b"\x93NUMPY"
_MAX_NPY_HEADER = 1 << 16
#: the dtypes a member may hold (what the project writes: plain little-endian numbers)
NPY_DTYPES = frozenset({"|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8",
                        "<f2", "<f4", "<f8"})
# the .npy header dict exactly as numpy writes it (keys sorted, a trailing ", "), then spaces
_DIM = rb"(?:0|[1-9][0-9]{0,18})"
_NPY_HEADER = re.compile(
    rb"\{'descr': '([<>|=][a-zA-Z][0-9]{0,2})', 'fortran_order': (False|True), "
    rb"'shape': \((|" + _DIM + rb",|" + _DIM + rb"(?:, " + _DIM + rb")+)\), \} *\n")


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one printable line of at most ``limit`` characters (control and other
    unprintable characters become ``?``)."""
    line = "".join(c if c.isprintable() else "?" for c in text)
    return line if len(line) <= limit else line[:limit - 3] + "..."


def shown(x: Any, limit: int = 40) -> str:
    """A short printable rendering of a JSON value for a message (``true``, ``1.0``,
    ``"abc"``, ``[1, 2]``; anything longer is cut with ``...``)."""
    try:
        text = json.dumps(x, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = type(x).__name__
    return clip(text, limit)


def short_path(path: str | os.PathLike[str], limit: int = 160) -> str:
    """``repr`` of a path for messages, its tail kept when it is long."""
    text = repr(str(path))
    return text if len(text) <= limit else "'..." + text[-(limit - 4):]


def read_file(path: str | os.PathLike[str], where: str, max_bytes: int = MAX_FILE) -> bytes:
    """The bytes of a file the project reads whole; ``where`` names it in the one-line errors
    (missing, not a regular file (a folder, a FIFO, a device), larger than ``max_bytes``,
    unreadable)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise HalutError(f"{where} does not exist") from None
    except OSError as exc:
        raise HalutError(f"{where} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise HalutError(f"{where} is not a regular file")
    if st.st_size > max_bytes:
        raise HalutError(f"{where} is too large ({st.st_size} bytes, at most {max_bytes})")
    try:
        with open(p, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise HalutError(f"{where} cannot be read ({exc.strerror})") from None
    except MemoryError:
        raise HalutError(f"{where} cannot be read (out of memory)") from None
    if len(data) > max_bytes:
        raise HalutError(f"{where} is too large (more than {max_bytes} bytes)")
    return data


# ---- zip of .npy members ---------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One ``.npy`` member of an archive: its name without ``.npy``, dtype string, shape, and
    where its array data lies in the archive's bytes."""

    name: str
    descr: str
    shape: tuple[int, ...]
    start: int
    end: int

    def array(self, data: bytes | memoryview) -> np.ndarray:
        """The member's array (a writable copy)."""
        count = math.prod(self.shape)
        flat = np.frombuffer(data, dtype=np.dtype(self.descr), count=count, offset=self.start)
        return flat.reshape(self.shape).copy()


def _member_name(raw: bytes, where: str, i: int) -> str:
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        name = ""
    if (not name.endswith(".npy") or len(name) > 255 or "/" in name or "\\" in name
            or not name.isprintable() or len(name) < 5):
        raise HalutError(f"{where} is corrupt: member {i} of the archive has the name "
                         f"{clip(repr(raw), 60)}, not NAME.npy")
    return name[:-4]


def _npy(mv: memoryview, start: int, end: int, name: str, where: str
         ) -> tuple[str, tuple[int, ...], int]:
    """The dtype string, shape and data offset of the ``.npy`` in ``mv[start:end]``."""
    bad = f"{where} is corrupt: array {name!r}"
    head = bytes(mv[start:min(end, start + 12)])
    if head[:6] != _NPY_MAGIC or len(head) < 10:
        raise HalutError(f"{bad} is not a .npy array")
    major, minor = head[6], head[7]
    if (major, minor) == (1, 0):
        hlen, hstart = struct.unpack("<H", head[8:10])[0], start + 10
    elif (major, minor) in ((2, 0), (3, 0)) and len(head) >= 12:
        hlen, hstart = struct.unpack("<I", head[8:12])[0], start + 12
    else:
        raise HalutError(f"{bad} has .npy version {major}.{minor}, not 1.0, 2.0 or 3.0")
    if hlen > _MAX_NPY_HEADER or hstart + hlen > end:
        raise HalutError(f"{bad} has a damaged .npy header (length {hlen})")
    m = _NPY_HEADER.fullmatch(bytes(mv[hstart:hstart + hlen]))
    if m is None:
        raise HalutError(f"{bad} has a damaged .npy header (not one numpy writes)")
    descr = m.group(1).decode()
    if descr not in NPY_DTYPES:
        raise HalutError(f"{bad} has dtype {descr!r}; halut files hold only plain "
                         "little-endian numbers")
    if m.group(2) != b"False":
        raise HalutError(f"{bad} is stored in Fortran order (halut writes C order)")
    dims = m.group(3).replace(b" ", b"").rstrip(b",")
    shape = tuple(int(d) for d in dims.split(b",")) if dims else ()
    if len(shape) > 32:
        raise HalutError(f"{bad} has {len(shape)} dimensions, more than 32")
    data_start = hstart + hlen
    want = math.prod(shape) * int(descr[2:])
    if want != end - data_start:
        raise HalutError(f"{bad} declares {shape} {np.dtype(descr).name} ({want} bytes) but "
                         f"holds {end - data_start} bytes")
    return descr, shape, data_start


def scan_npz(data: bytes, where: str, what: str, *, archive: str = "a zip archive",
             max_members: int = 1 << 16) -> dict[str, Member]:
    """Check that ``data`` is one npz archive as numpy's ``savez`` writes it and nothing else
    (see the module's description), every member's CRC-32 and ``.npy`` header included, and
    return its members by name (without ``.npy``), in archive order. ``what`` names the
    format (``"halut model file"``) and ``archive`` the container in the messages."""
    mv = memoryview(data)
    n = len(data)
    if data[:4] != _LOCAL:
        raise HalutError(f"{where} is not a {what} (not {archive}, or bytes before it)")
    if n < 22 or data[-22:-18] != _EOCD:
        raise HalutError(f"{where} is truncated, or has bytes after its archive")
    disk, cd_disk, n_disk, n_total, cd_size, cd_off, comment = struct.unpack(
        "<HHHHIIH", data[-18:])
    if cd_off + cd_size != n - 22:
        raise HalutError(f"{where}: its archive directory is damaged, or a second archive "
                         "is joined to it")
    damaged = f"{where} is corrupt: its archive directory is damaged"
    if disk or cd_disk or comment or n_disk != n_total or not 1 <= n_total <= max_members:
        raise HalutError(f"{damaged} (end record)")
    entries = []
    pos, cd_end = cd_off, n - 22
    for i in range(n_total):
        if pos + 46 > cd_end or data[pos:pos + 4] != _CENTRAL:
            raise HalutError(f"{damaged} (entry {i})")
        (flags, method, crc, csize, usize, nlen, elen, clen, mdisk,
         off) = struct.unpack("<4xHH4xIIIHHHH6xI", data[pos + 4:pos + 46])
        name_raw = data[pos + 46:pos + 46 + nlen]
        pos += 46 + nlen + elen + clen
        if pos > cd_end:
            raise HalutError(f"{damaged} (entry {i})")
        name = _member_name(name_raw, where, i)
        if flags or method or csize != usize or mdisk:
            raise HalutError(f"{where} is corrupt: array {name!r} is compressed, encrypted or "
                             "stored in a way halut does not write")
        entries.append((name, name_raw, crc, csize, off))
    if pos != cd_end:
        raise HalutError(f"{damaged} (its size)")
    members: dict[str, Member] = {}
    expect = 0
    for name, name_raw, crc, size, off in entries:
        if name in members:
            raise HalutError(f"{where} is corrupt: array {name!r} is in the archive twice")
        if off != expect or off + 30 > cd_off or data[off:off + 4] != _LOCAL:
            raise HalutError(f"{where} is corrupt: array {name!r} is not where the archive "
                             "directory says (bytes inserted, lost or changed)")
        (flags, method, crc_local, nlen, elen) = struct.unpack(
            "<2xHH4xI8xHH", data[off + 4:off + 30])
        start = off + 30 + nlen + elen
        end = start + size
        if (data[off + 30:off + 30 + nlen] != name_raw or flags or method
                or crc_local != crc or end > cd_off):
            raise HalutError(f"{where} is corrupt: the local header of array {name!r} does "
                             "not match the archive directory")
        if zlib.crc32(mv[start:end]) != crc:
            raise HalutError(f"{where} is corrupt: array {name!r} is unreadable (CRC-32 "
                             "mismatch)")
        descr, shape, data_start = _npy(mv, start, end, name, where)
        members[name] = Member(name, descr, shape, data_start, end)
        expect = end
    if expect != cd_off:
        raise HalutError(f"{where} is corrupt: bytes between its last array and its archive "
                         "directory")
    return members


def read_npz(data: bytes, where: str, what: str, *, archive: str = "a zip archive",
             max_members: int = 1 << 16) -> dict[str, np.ndarray]:
    """:func:`scan_npz`, then every member's array (writable copies), by name in archive
    order."""
    members = scan_npz(data, where, what, archive=archive, max_members=max_members)
    try:
        return {name: m.array(data) for name, m in members.items()}
    except MemoryError:
        raise HalutError(f"{where} cannot be loaded (out of memory)") from None


# ---- JSON ------------------------------------------------------------------------------------


class _Refused(ValueError):
    """A JSON text that is valid JSON but not allowed (a hook refused it)."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not allowed")


def _int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text)} digits")
    return int(text)


def _finite(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise _Refused(f"the number {clip(text, 20)} is out of range")
    return x


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"the key {clip(repr(key), 40)} is repeated")
        out[key] = value
    return out


def json_depth(x: Any, limit: int = MAX_DEPTH, level: int = 0) -> int:
    """The nesting depth of a parsed JSON value, counted up to ``limit + 1``."""
    if level > limit:
        return level
    if isinstance(x, dict):
        return max([level, *(json_depth(v, limit, level + 1) for v in x.values())])
    if isinstance(x, list):
        return max([level, *(json_depth(v, limit, level + 1) for v in x)])
    return level


def parse_json(raw: bytes, where: str, *, what: str = "the header", max_bytes: int = 16 << 20,
               max_depth: int = MAX_DEPTH, allow_nan: bool = False) -> Any:
    """Strict UTF-8 JSON: at most ``max_bytes`` and ``max_depth`` levels, no repeated keys,
    no integer of more than :data:`MAX_INT_DIGITS` digits, and no NaN or infinity unless
    ``allow_nan``. ``what`` names the text in the one-line errors (``"{where}: {what} is not
    valid JSON (...)"``; empty: ``"{where} is not valid JSON (...)"``)."""
    subject = f"{where}: {what}" if what else where
    if len(raw) > max_bytes:
        raise HalutError(f"{subject} is implausibly large ({len(raw)} bytes, at most "
                         f"{max_bytes})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HalutError(f"{subject} is not valid JSON (not UTF-8 at byte {exc.start})"
                         ) from None
    kwargs: dict[str, Any] = {"parse_int": _int, "object_pairs_hook": _no_duplicates}
    if not allow_nan:
        kwargs.update(parse_constant=_refuse_constant, parse_float=_finite)
    try:
        value = json.loads(text, **kwargs)
    except json.JSONDecodeError as exc:
        raise HalutError(f"{subject} is not valid JSON ({clip(exc.msg, 60)} at character "
                         f"{exc.pos})") from None
    except _Refused as exc:
        raise HalutError(f"{subject} is not valid halut JSON ({clip(str(exc), 80)})"
                         ) from None
    except RecursionError:
        raise HalutError(f"{subject} is nested too deeply") from None
    except ValueError as exc:  # e.g. Python's limit on the digits of an integer
        raise HalutError(f"{subject} is not valid JSON ({clip(str(exc), 80)})") from None
    if json_depth(value, max_depth) > max_depth:
        raise HalutError(f"{subject} is nested too deeply (more than {max_depth} levels)")
    return value


def same_json(a: Any, b: Any) -> bool:
    """``a == b`` for parsed JSON values, except that a boolean equals only a boolean (in
    Python ``True == 1``, so a ``true`` would pass for a ``1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(same_json(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return (isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(same_json(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(b, (dict, list, tuple)):
        return False
    return bool(a == b)


def canonical_json(x: Any) -> bytes:
    """The bytes a checksum covers for a JSON value: sorted keys, default separators."""
    return json.dumps(x, sort_keys=True).encode("utf-8")


def is_int(x: Any) -> TypeGuard[int]:
    """An integer that is not a boolean (JSON ``true`` is no integer here)."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x: Any) -> TypeGuard[int | float]:
    """An int or float that is not a boolean."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)
