"""Every format halut reads back, fuzzed: the ``.halut`` model file, the ``.halutnet`` bundle,
resume tiles and the hardware flows' JSON records.

A seeded fuzz per format (bit flips, overwrites, truncations, inserted, appended and prepended
bytes, zeroed, deleted and repeated blocks, a second file appended, edits of the JSON header,
of the ``.npy`` headers and of the zip members): every mutation either loads to exactly what
was written or is refused in one short line (a HalutError; for a resume tile, a rejected tile
with its reason), never another exception. Then one explicit test per crash of the issue
that asked for this (damage inside the header member, deep nesting, huge integers, object
arrays, members that are no ``.npy``, sizes declared but not held, the header outside the
checksum, booleans and floats for the version, a second model appended, raw bytes in
messages, a bad end record, special files, crafted tile headers).

``bench/bench_fuzz.py`` runs the same mutations by the thousand (and imports this module).
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from learning.errors import HalutError
from learning.strict import MAX_MESSAGE, same_json

# ---- mutations -------------------------------------------------------------------------------

_SPECIAL_VALUES: list[Any] = [True, False, None, 0, 1, -1, 1.0, 2.0, 0.5, 1e308, -1e308, "",
                              "x", [], {}, [1], {"a": 1}, 2 ** 63, 2 ** 31 + 1, "halut-model"]
_TEXT_EDITS = ("deep", "bigint", "nan", "dup", "garbage", "bom", "truncate", "binary")


def mutate_bytes(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One byte-level mutation of ``data``: (its name, the mutated bytes)."""
    b = bytearray(data)
    n = len(b)
    i = int(rng.integers(0, n))
    k = int(rng.integers(1, 33))
    op = int(rng.integers(0, 11))
    if op == 0:
        b[i] ^= 1 << int(rng.integers(0, 8))
        return "bit flip", bytes(b)
    if op == 1:
        b[i:i + k] = rng.integers(0, 256, min(k, n - i), dtype=np.uint8).tobytes()
        return "overwrite", bytes(b)
    if op == 2:
        return "truncate", bytes(b[:i])
    if op == 3:
        b[i:i] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
        return "insert", bytes(b)
    if op == 4:
        del b[i:i + k]
        return "delete block", bytes(b)
    if op == 5:
        b[i:i + k] = bytes(min(k, n - i))
        return "zero block", bytes(b)
    if op == 6:
        return "append", bytes(b) + rng.integers(0, 256, k, dtype=np.uint8).tobytes()
    if op == 7:
        return "prepend", rng.integers(0, 256, k, dtype=np.uint8).tobytes() + bytes(b)
    if op == 8:
        return "append itself", bytes(b) + data
    if op == 9:
        j = int(rng.integers(0, n))
        b[j:j] = b[i:i + k]
        return "repeat block", bytes(b)
    b[i:i + 4] = rng.choice([b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"\xff\xff\xff\xff",
                             b"\x93NUM"]).tobytes()  # a zip or npy signature
    return "signature", bytes(b)


def npz_members(data: bytes) -> list[tuple[str, bytes]]:
    """The (name, bytes) of each member of a well-formed npz."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def build_npz(members: list[tuple[str, bytes]]) -> bytes:
    """A stored zip of ``members`` (duplicates allowed), with valid CRCs."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name"
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for name, raw in members:
                zf.writestr(name, raw)
    return buf.getvalue()


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def _npy_parts(raw: bytes) -> tuple[bytes, bytes]:
    """(the header dict text, the data) of a version 1.0 ``.npy``."""
    hlen = struct.unpack("<H", raw[8:10])[0]
    return raw[10:10 + hlen], raw[10 + hlen:]


def _with_npy_header(raw: bytes, text: bytes) -> bytes:
    _, body = _npy_parts(raw)
    return raw[:8] + struct.pack("<H", len(text)) + text + body


def _json_paths(x: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(x, dict):
        for k, v in x.items():
            out += _json_paths(v, (*path, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out += _json_paths(v, (*path, i))
    return out


def _edit_json(obj: Any, rng: np.random.Generator) -> tuple[str, Any]:
    """A structural edit of a parsed JSON value (a copy): a value replaced, nudged, its type
    changed, a key removed or added."""
    obj = json.loads(json.dumps(obj))
    paths = [p for p in _json_paths(obj) if p]
    if not paths:
        return "replace all", _SPECIAL_VALUES[int(rng.integers(0, len(_SPECIAL_VALUES)))]
    path = paths[int(rng.integers(0, len(paths)))]
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    old = parent[key]
    op = int(rng.integers(0, 5))
    if op == 0 and isinstance(parent, dict):
        del parent[key]
        return f"delete {path}", obj
    if op == 1 and isinstance(parent, dict):
        parent[f"{key}_x"] = 1
        return f"add beside {path}", obj
    if op == 2 and isinstance(old, (int, float)) and not isinstance(old, bool):
        parent[key] = old + (1 if isinstance(old, int) else old * 1e-6 + 1e-30)
        return f"nudge {path}", obj
    if op == 3 and isinstance(old, int) and not isinstance(old, bool):
        parent[key] = [float(old), bool(old), str(old), [old]][int(rng.integers(0, 4))]
        return f"retype {path}", obj
    parent[key] = _SPECIAL_VALUES[int(rng.integers(0, len(_SPECIAL_VALUES)))]
    return f"replace {path}", obj


def _edit_json_text(text: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """An edit of JSON text that no JSON writer makes."""
    op = _TEXT_EDITS[int(rng.integers(0, len(_TEXT_EDITS)))]
    if op == "deep":
        return op, b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    if op == "bigint":
        return op, text[:1] + b'"C": ' + b"7" * 5000 + b", " + text[1:]
    if op == "nan":
        return op, text[:1] + b'"stats_x": NaN, ' + text[1:]
    if op == "dup":
        return op, text[:1] + b'"format_version": 2, ' + text[1:]
    if op == "garbage":
        return op, text + b" }"
    if op == "bom":
        return op, b"\xef\xbb\xbf" + text
    if op == "truncate":
        return op, text[:int(rng.integers(0, len(text)))]
    return op, bytes(rng.integers(0, 256, 64, dtype=np.uint8)) * 200  # 12.8 KB of binary


def mutate_npz(data: bytes, rng: np.random.Generator, *, json_member: str = "header.npy",
               other: bytes | None = None) -> tuple[str, bytes]:
    """One mutation of a well-formed npz ``data`` whose ``json_member`` holds JSON as uint8:
    byte-level (half of them), or an edit of the JSON (structural or textual, the archive
    rebuilt with valid CRCs, so only the format's own checks can catch it), of a ``.npy``
    header, or of the zip members; ``other``: another valid file of the format (appended,
    or a member of it swapped in)."""
    kind = int(rng.integers(0, 10))
    if kind < 5:
        return mutate_bytes(data, rng)
    members = npz_members(data)
    names = [n for n, _ in members]
    if kind in (5, 6):  # the JSON header
        j = names.index(json_member)
        raw = members[j][1]
        text = np.load(io.BytesIO(raw)).tobytes()
        if kind == 5:
            what, obj = _edit_json(json.loads(text), rng)
            new = json.dumps(obj).encode()
        else:
            what, new = _edit_json_text(text, rng)
        members[j] = (json_member, npy_bytes(np.frombuffer(new, np.uint8)))
        return f"json: {what}", build_npz(members)
    if kind == 7:  # a .npy header
        j = int(rng.integers(0, len(members)))
        name, raw = members[j]
        head, body = _npy_parts(raw)
        op = int(rng.integers(0, 9))
        if op in (0, 1):
            dim = b"1099511627776" if op == 0 else b"2"
            head = (head.replace(b"'shape': ()", b"'shape': (" + dim + b",)")
                    if b"'shape': ()" in head else
                    head.replace(b"'shape': (", b"'shape': (" + dim + b", "))
            new_raw = _with_npy_header(raw, head)
        elif op == 2:
            new_raw = raw[:len(raw) - 1 - int(rng.integers(0, max(1, len(body))))]
        elif op == 3:
            new_raw = npy_bytes(np.array([{"a": 1}, None], dtype=object))
        elif op == 4:
            new_raw = raw.replace(b"'fortran_order': False", b"'fortran_order': True ")
        elif op == 5:
            for d in (b"<f4", b"|u1", b"<i4", b"<f2", b"|i1", b"<i8"):
                if d in head:
                    alts = [b">f4", b"<c8", b"|O8", b"<U1", b"<f8", b"|b1", b"<m8", b"|V4"]
                    new_raw = raw.replace(d, alts[int(rng.integers(0, len(alts)))], 1)
                    break
            else:
                new_raw = raw
        elif op == 6:
            new_raw = raw[:6] + bytes([int(rng.integers(0, 5)), int(rng.integers(0, 2))]) + raw[8:]
        elif op == 7:
            new_raw = b"hello, not an npy" * int(rng.integers(0, 4))
        else:
            new_raw = raw[:8] + struct.pack("<H", int(rng.integers(0, 1 << 16))) + raw[10:]
        members[j] = (name, new_raw)
        return f"npy header of {name} ({op})", build_npz(members)
    if kind == 8:  # the zip members
        op = int(rng.integers(0, 6))
        j = int(rng.integers(0, len(members)))
        name, raw = members[j]
        if op == 0:
            members[j] = (rng.choice([name[:-4], name + "x", "x/" + name, name.upper(),
                                      "\u00e9" + name]).item(), raw)
        elif op == 1:
            del members[j]
        elif op == 2:
            members.append((name, raw))  # the same name twice
        elif op == 3:
            members.append(("extra.npy", npy_bytes(np.zeros(3, np.float32))))
        elif op == 4:
            members.reverse()
        else:
            members[j], members[-1 - j] = members[-1 - j], members[j]
            members[j] = (names[j], members[j][1])  # one member's bytes under another's name
        return f"members ({op})", build_npz(members)
    if other is not None and rng.integers(0, 2):
        return "another file appended", data + other
    if other is not None:
        theirs = dict(npz_members(other))
        j = int(rng.integers(0, len(members)))
        name = members[j][0]
        if name in theirs and theirs[name] != members[j][1]:
            members[j] = (name, theirs[name])
            return f"member {name} of another file", build_npz(members)
    return "file repeated", data + data


def mutate_json_file(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One mutation of a JSON text file: byte-level, structural or textual."""
    kind = int(rng.integers(0, 4))
    if kind < 2:
        return mutate_bytes(data, rng)
    if kind == 2:
        what, obj = _edit_json(json.loads(data), rng)
        return f"json: {what}", json.dumps(obj, indent=2).encode()
    what, text = _edit_json_text(data, rng)
    return f"json text: {what}", text


def _forge_arrays(arrays: dict[str, np.ndarray], rng: np.random.Generator) -> str:
    """Change one array of ``arrays`` in place (dtype, shape, size, a NaN, a value)."""
    name = sorted(arrays)[int(rng.integers(0, len(arrays)))]
    a = arrays[name]
    op = int(rng.integers(0, 6))
    if op == 0:
        dtypes = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8,
                  np.bool_]
        arrays[name] = a.astype(dtypes[int(rng.integers(0, len(dtypes)))])
    elif op == 1:
        arrays[name] = a.reshape(-1)
    elif op == 2:
        arrays[name] = a.reshape(-1)[:max(0, a.size - 1)]
    elif op == 3 and a.dtype.kind == "f" and a.size:
        b = a.copy()
        b.reshape(-1)[int(rng.integers(0, a.size))] = [np.nan, np.inf, -np.inf][
            int(rng.integers(0, 3))]
        arrays[name] = b
    elif op == 4 and a.size:
        b = a.copy()
        flat = b.reshape(-1)
        i = int(rng.integers(0, a.size))
        flat[i] = (flat[i] + 1) if a.dtype.kind != "b" else not flat[i]
        if a.dtype.kind == "i":
            flat[i] = np.iinfo(a.dtype).max if rng.integers(0, 2) else -1
        arrays[name] = b
    else:
        arrays[name] = np.zeros((0,) + a.shape[1:], a.dtype)
    return f"array {name} ({op})"


def forge_model(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """A crafted model file with a valid checksum: the header edited (structurally) or an
    array changed, then the checksum recomputed (half the time the array table too): what
    an author of a bad file, not damage, produces. Must never crash."""
    from learning import modelfile

    with np.load(io.BytesIO(data)) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "header"}
        header = json.loads(npz["header"].tobytes())
    if rng.integers(0, 2):
        what, header = _edit_json(header, rng)
    else:
        what = _forge_arrays(arrays, rng)
        if rng.integers(0, 2):
            header["arrays"] = {k: {"dtype": v.dtype.str, "shape": list(v.shape)}
                                for k, v in arrays.items()}
    if isinstance(header, dict) and isinstance(header.get("checksum"), str):
        legacy = header.get("format_version") == 1
        header["checksum"] = modelfile.checksum(arrays, None if legacy else header)
    payload = {**arrays, "header": np.frombuffer(json.dumps(header).encode(), np.uint8)}
    buf = io.BytesIO()
    np.savez(buf, **payload)
    return f"forged {what}", buf.getvalue()


def forge_tile(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """A crafted tile with a valid checksum (header edited or an array changed)."""
    from emulator import checkpoint

    with np.load(io.BytesIO(data)) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "header"}
        header = json.loads(npz["header"].tobytes())
    if rng.integers(0, 2):
        what, header = _edit_json(header, rng)
    else:
        what = _forge_arrays(arrays, rng)
    if isinstance(header, dict) and isinstance(header.get("checksum"), str):
        header["checksum"] = checkpoint._checksum(arrays, header)
    payload = {**arrays, "header": np.frombuffer(json.dumps(header).encode(), np.uint8)}
    buf = io.BytesIO()
    np.savez(buf, **payload)
    return f"forged {what}", buf.getvalue()


# ---- the formats -----------------------------------------------------------------------------


@dataclass
class Format:
    """One format under fuzz: the good bytes, where the fuzzed file goes, how to load it
    (returns the loaded value, or raises HalutError, or returns None when it refused it in a
    line it reports through ``refusal``), how to compare it with the original, and how to
    mutate it."""

    name: str
    good: bytes
    path: Path
    load: Callable[[Path], Any]
    same: Callable[[Any], bool]
    mutate: Callable[[bytes, np.random.Generator], tuple[str, bytes]]
    refusal: Callable[[], str | None] = lambda: None


@dataclass
class Outcome:
    kind: str  # "clean", "same", "different", "crash"
    what: str
    message: str = ""


def one_line(message: str) -> bool:
    return "\n" not in message and "\r" not in message and len(message) <= MAX_MESSAGE \
        and message.isprintable()


def try_one(fmt: Format, data: bytes, what: str) -> Outcome:
    """Load ``data`` as ``fmt``: refused in one line (clean), loaded equal to the original
    (same) or different (different), or anything else (crash)."""
    fmt.path.write_bytes(data)
    try:
        got = fmt.load(fmt.path)
    except HalutError as exc:
        msg = str(exc)
        named = fmt.path.name in msg
        return Outcome("clean" if one_line(msg) and named else "crash", what, msg)
    except Exception as exc:  # noqa: BLE001 - a crash is what is counted
        return Outcome("crash", what, f"{type(exc).__name__}: {str(exc)[:200]}")
    if got is None:
        reason = fmt.refusal() or ""
        ok = one_line(reason) and fmt.path.name in reason
        return Outcome("clean" if ok else "crash", what, reason)
    return Outcome("same" if fmt.same(got) else "different", what)


def fuzz(fmt: Format, n: int, seed: int) -> dict[str, list[Outcome]]:
    """``n`` seeded mutations of ``fmt``, by outcome."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Outcome]] = {"clean": [], "same": [], "different": [], "crash": []}
    for _ in range(n):
        what, data = fmt.mutate(fmt.good, rng)
        o = try_one(fmt, data, what)
        out[o.kind].append(o)
    return out


def _arrays_same(a: Any, b: Any, names: tuple[str, ...]) -> bool:
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        if (x is None) != (y is None):
            return False
        if x is not None and (x.dtype != y.dtype or x.shape != y.shape
                              or x.tobytes() != y.tobytes()):
            return False
    return True


_MODEL_ARRAYS = ("dims", "thresholds", "lut", "bias", "weights", "counts", "calibration")
_PROGRAM_ARRAYS = ("dims", "thresholds", "lut", "scale", "bias")


def same_saved(a: Any, b: Any) -> bool:
    """Two SavedModels hold the same model, program and header."""
    if not _arrays_same(a.model, b.model, _MODEL_ARRAYS) or a.model.D != b.model.D:
        return False
    if (a.program is None) != (b.program is None):
        return False
    if a.program is not None:
        p, q = a.program, b.program
        if not _arrays_same(p, q, _PROGRAM_ARRAYS) or (
                p.D, p.threshold_format, p.lut_format, p.input_scale) != (
                q.D, q.threshold_format, q.lut_format, q.input_scale):
            return False
    return same_json(a.header, b.header) and same_json(a.model.stats, b.model.stats)


def small_model(seed: int = 2, legacy: bool = False) -> bytes:
    """The bytes of a small ``.halut`` file with a program (``legacy``: format version 1)."""
    from learning import learn, quantize
    from learning.datasets import synthetic
    from learning.modelfile import _arrays_of, archive_bytes, model_bytes

    A, _, B = synthetic(n_train=400, n_test=10, D=16, M=3, seed=seed)
    model = learn(A, B, 4, 4, bias=np.arange(3, dtype=np.float32))
    program = quantize(model)
    if not legacy:
        return model_bytes(model, program)
    data = model_bytes(model, program)
    with np.load(io.BytesIO(data)) as npz:
        header = json.loads(npz["header"].tobytes())
    header["format_version"] = 1
    return archive_bytes(_arrays_of(model, program), header)


def model_format(tmp: Path, legacy: bool = False) -> Format:
    from learning.modelfile import load_model, load_model_bytes

    good = small_model(legacy=legacy)
    other = small_model(seed=3, legacy=legacy)
    want = load_model_bytes(good, "the original")
    return Format("model_file_v1" if legacy else "model_file", good, tmp / "fuzz.halut",
                  load_model, lambda got: same_saved(want, got),
                  lambda d, rng: mutate_npz(d, rng, other=other))


def small_bundle(seed: int = 0) -> Any:
    from emulator.vectors import random_program
    from learning.bundle import BundleLayer, NetworkBundle, source_checksum
    from learning.model import HalutModel
    from learning.modelfile import SavedModel

    rng = np.random.default_rng(seed)

    def unit(C: int, M: int, D: int) -> SavedModel:
        program = random_program(rng, C, 4, M, D)
        model = HalutModel(dims=program.dims, thresholds=program.thresholds.astype(np.float32),
                           lut=program.lut.astype(np.float32), bias=program.bias, D=D)
        return SavedModel(model=model, program=program)

    layers = (BundleLayer("features.0", "conv2d", (unit(3, 4, 9),),
                          {"in_channels": 1, "kernel_size": [3, 3], "groups": 1}),
              BundleLayer("classifier", "linear", (unit(4, 10, 16), unit(2, 10, 16))))
    return NetworkBundle(layers=layers, source=source_checksum({"w": np.ones(2, np.float32)}),
                         config={"C": 3, "K": 4},
                         floats={"fc.weight": rng.standard_normal((4, 3)).astype(np.float32),
                                 "bn.n": np.array(7, np.int64)})


def same_bundle(a: Any, b: Any) -> bool:
    if [(x.name, x.kind, len(x.units)) for x in a.layers] != [
            (x.name, x.kind, len(x.units)) for x in b.layers]:
        return False
    for x, y in zip(a.layers, b.layers, strict=True):
        if not same_json(x.geometry, y.geometry):
            return False
        for u, v in zip(x.units, y.units, strict=True):
            if not same_saved(u, v):
                return False
    if list(a.floats) != list(b.floats) or any(
            a.floats[k].dtype != b.floats[k].dtype or a.floats[k].shape != b.floats[k].shape
            or a.floats[k].tobytes() != b.floats[k].tobytes() for k in a.floats):
        return False
    return a.source == b.source and same_json(a.header, b.header)


def bundle_format(tmp: Path) -> Format:
    from learning.bundle import bundle_bytes, load_bundle

    good = bundle_bytes(small_bundle())
    other = bundle_bytes(small_bundle(seed=1))
    (tmp / "want.halutnet").write_bytes(good)
    want = load_bundle(tmp / "want.halutnet")
    return Format("network_bundle", good, tmp / "fuzz.halutnet", load_bundle,
                  lambda got: same_bundle(want, got),
                  lambda d, rng: mutate_npz(d, rng, other=other))


TILE_KEY = "ab" * 32


def tile_format(tmp: Path) -> Format:
    """A resume tile (rows 8..20 of 5 columns, with acc and a cycle report): loaded through
    :meth:`TileStore.load`; a refused tile is None with one line in ``rejected``."""
    from emulator.checkpoint import TileRecord, TileStore
    from emulator.cycles import CycleReport

    rng = np.random.default_rng(0)
    store = TileStore(tmp / "resume", TILE_KEY)
    rec = TileRecord(lo=8, hi=20, y=rng.standard_normal((12, 5)).astype(np.float32),
                     acc=rng.integers(-999, 999, (12, 5)).astype(np.int32),
                     cycles=CycleReport(config=3, stream=48, stall=2, drain=9, writes=40,
                                        preload=0))
    path = store.save(rec)
    good = path.read_bytes()
    other = TileStore(tmp / "other", TILE_KEY).save(
        TileRecord(lo=8, hi=20, y=np.zeros((12, 5), np.float32), acc=None, cycles=None))

    def load(_: Path) -> Any:
        return store.load(8, 20, 5)

    def refusal() -> str | None:
        if not store.rejected:
            return None
        name, why = store.rejected.pop()
        return f"{name}: {why}"

    def same(got: Any) -> bool:
        return (got.lo, got.hi, got.cycles) == (rec.lo, rec.hi, rec.cycles) and _arrays_same(
            got, rec, ("y", "acc"))

    return Format("resume_tile", good, path, load, same,
                  lambda d, rng: mutate_npz(d, rng, other=other.read_bytes()), refusal)


def _record_files(tmp: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """A ``sweep.json``, a ``point.json`` and a ``synth.json`` as the flows write them."""
    from emulator.params import RtlParams
    from flows.hw.common import params_dict, read_record, write_json
    from flows.hw.sweep import GridAxis, SweepPoint, SweepResult, SweepRow, SweepSettings
    from flows.hw.synth import SynthResult

    params = RtlParams(C=2, K=4, M=2)
    settings = SweepSettings(period_ns=10.0, io_fraction=0.2, pnr=False, rtl_digest="d" * 64)
    point = SweepPoint(params=params_dict(params), settings=settings, area=1234.5, cells=321,
                       flip_flops=40, fmax_mhz=250.25, wns_ns=1.5, power_w=0.001, seconds=3.2)
    rows = [SweepRow.from_point({"M": str(m)}, point.to_dict(), reused=False) for m in (2, 4)]
    sweep = SweepResult(base=["C=2", "K=4"], grid=[GridAxis(name="M", values=["2", "4"])],
                        settings=settings, rows=rows, run_dir=str(tmp / "run"),
                        plots=[str(tmp / "run" / "area_vs_M.png")])
    synth_dir = tmp / "synth"
    synth_dir.mkdir(exist_ok=True)
    for f in ("netlist.v", "generic.v"):
        (synth_dir / f).write_text("")
    synth = SynthResult(params=params_dict(params), area=1234.5, sequential_area=500.0,
                        cells=321, flip_flops=40, cell_types={"NAND2X1": 200, "DFFPOSX1": 40},
                        modules=[{"module": "halut_accel", "instances": 1, "area_each": 1234.5,
                                  "local_area_total": 100.0, "cells_total": 30, "share": 0.08}],
                        netlist=str(synth_dir / "netlist.v"),
                        generic=str(synth_dir / "generic.v"), liberty=str(tmp / "cells.lib"),
                        period_ns=10.0, seconds=1.0, run_dir=str(synth_dir), log="synth.log",
                        extra={"hierarchical_area": 1300.0}, sources_digest="e" * 64)
    out = {}
    for name, folder, obj in (("sweep.json", tmp / "run", sweep.to_dict()),
                              ("point.json", tmp / "point", point.to_dict()),
                              ("synth.json", synth_dir, synth.to_dict())):
        folder.mkdir(exist_ok=True)
        write_json(folder / name, obj)
        out[name] = (folder / name, read_record(folder / name))  # as read back: unsigned
    return out


def record_format(tmp: Path, which: str) -> Format:
    """A flow's JSON record read back: ``sweep.json`` by ``halut hw report`` (the page is
    rendered), ``point.json`` by a resumed sweep, ``synth.json`` by a reused synthesis. A
    refused cache record (None) is recomputed: clean when the record is not the original."""
    from emulator.params import RtlParams
    from flows.hw.common import read_json, read_record
    from flows.hw.report import render
    from flows.hw.sweep import SweepSettings, _finished
    from flows.hw.synth import reusable

    files = _record_files(tmp)
    path, want = files[which]
    params = RtlParams(C=2, K=4, M=2)
    settings = SweepSettings(period_ns=10.0, io_fraction=0.2, pnr=False, rtl_digest="d" * 64)
    refused: list[str] = []

    def load(p: Path) -> Any:
        if which == "sweep.json":
            render(p.parent)
            return read_record(p)
        got = (_finished(p.parent, params, settings) if which == "point.json" else
               None if (r := reusable(read_json(p), params, 10.0, tmp / "cells.lib", "e" * 64,
                                      False, p.parent)) is None else r.to_dict())
        if got is None:
            refused.append(f"{p.name}: not reused (recomputed)")
        return got

    def refusal() -> str | None:
        return refused.pop() if refused else None

    return Format(f"run_record:{which}", path.read_bytes(), path, load,
                  lambda got: same_json(got, want), mutate_json_file, refusal)


def sweep_record_format(tmp: Path) -> Format:
    """A ``halut sweep`` / ``halut convergence`` record (flows.sweep.RecordStore) read back
    by a resumed run: taken, or refused (None) and computed again."""
    from flows.sweep import RECORD_FIELDS, RecordStore

    record = {name: None for name in RECORD_FIELDS}
    record.update(mode="single", encoder="maddness", C_requested=4, C=4, K=16,
                  threshold_format="fp16", lut_format="int8", layer_index=0, layer="fc",
                  kind="linear", D=8, M=3, groups=1, rows_per_image=1, layers_replaced=1,
                  nmse=0.125, accuracy=0.75, accuracy_drop=0.25, lut_bytes=192,
                  cycles_per_image=70, runs_on_accelerator=True, nmse_calibration=0.1,
                  learn_seconds=0.5, eval_seconds=0.25)
    key = {"point": 0, "layer": 0}
    store = RecordStore(tmp, "f" * 64)
    name = store.record_name(0, 0)
    store.save(name, key, record)
    assert store.load(name, key, RECORD_FIELDS) == record

    def load(p: Path) -> Any:
        return store.load(p.name, key, RECORD_FIELDS)

    return Format("sweep_record", store.path(name).read_bytes(), store.path(name), load,
                  lambda got: same_json(got, record), mutate_json_file,
                  lambda: f"{name}: not taken (computed again)")


def batch_record_format(tmp: Path) -> Format:
    """A ``halut net eval --resume`` batch record (emulator.network) read back by a resumed
    run: taken, or refused (None) and run again."""
    from emulator.network import _Batch, _EvalStore

    rec = _Batch(lo=0, hi=2, pred=[3, 1], digests={"fc": ["ab" * 16, "cd" * 16]},
                 shapes={"fc": [[8], [3]]}, cycles={"fc": {"config": 4, "stream": 16}},
                 err={"fc": [0.5, 2.0]})
    store = _EvalStore(tmp, "f" * 64)
    store.save("rtl", rec)
    path = store._path("rtl", 0, 2)

    def load(p: Path) -> Any:
        return store.load("rtl", 0, 2, ["fc"])

    return Format("batch_record", path.read_bytes(), path, load,
                  lambda got: got.to_dict() == rec.to_dict(), mutate_json_file,
                  lambda: f"{path.name}: not taken (run again)")


# ---- the seeded fuzz, per format --------------------------------------------------------------

N_MUTATIONS = 300


def _check(fmt: Format, seed: int, allow_different: bool = False) -> dict[str, list[Outcome]]:
    res = fuzz(fmt, N_MUTATIONS, seed)
    crashes = [(o.what, o.message) for o in res["crash"]]
    assert not crashes, f"{fmt.name}: {len(crashes)} crashes, first {crashes[:3]}"
    if not allow_different:
        diff = [o.what for o in res["different"]]
        assert not diff, f"{fmt.name}: accepted with different contents: {diff[:5]}"
    assert len(res["clean"]) > N_MUTATIONS // 2
    return res


def test_fuzz_model_file(tmp_path: Path) -> None:
    _check(model_format(tmp_path), seed=101)


def test_fuzz_network_bundle(tmp_path: Path) -> None:
    _check(bundle_format(tmp_path), seed=202)


def test_fuzz_resume_tile(tmp_path: Path) -> None:
    _check(tile_format(tmp_path), seed=303)


def test_fuzz_sweep_record(tmp_path: Path) -> None:
    _check(sweep_record_format(tmp_path), seed=606)


def test_fuzz_eval_batch_record(tmp_path: Path) -> None:
    _check(batch_record_format(tmp_path), seed=707)


@pytest.mark.parametrize("forge", [forge_model, forge_tile])
def test_forged_files_with_a_valid_checksum_never_crash(tmp_path: Path, forge: Any) -> None:
    """Strict types behind the checksum: a crafted file (checksum recomputed) loads or is
    one line; what it loads may differ (it was made to)."""
    fmt = model_format(tmp_path) if forge is forge_model else tile_format(tmp_path)
    fmt.mutate = forge
    res = fuzz(fmt, 150, seed=505)
    crashes = [(o.what, o.message) for o in res["crash"]]
    assert not crashes, crashes[:3]
    assert len(res["clean"]) > 50


@pytest.mark.parametrize("which", ["sweep.json", "point.json", "synth.json"])
def test_fuzz_run_records_never_crash(tmp_path: Path, which: str) -> None:
    """A JSON record carries no checksum (its writer adds none), so an edit that keeps the
    JSON well-typed (a digit changed) is read as written; everything else is one line (or,
    for a cache record, recomputed), and nothing crashes."""
    res = _check(record_format(tmp_path, which), seed=404, allow_different=True)
    for o in res["different"]:
        assert o.what  # (counted by bench/bench_fuzz.py)


# ---- the crashes of the issue, one by one -----------------------------------------------------


@pytest.fixture
def good_model(tmp_path: Path) -> Path:
    path = tmp_path / "m.halut"
    path.write_bytes(small_model())
    return path


def _refused(path: Path, match: str = "") -> str:
    from learning.modelfile import load_model

    with pytest.raises(HalutError) as err:
        load_model(path)
    msg = str(err.value)
    assert one_line(msg) and path.name in msg and match in msg, msg
    return msg


def _member_span(data: bytes, name: str) -> tuple[int, int, int]:
    """(local header offset, data start, data end) of member ``name``."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
    off = info.header_offset
    nlen, elen = struct.unpack("<HH", data[off + 26:off + 30])
    start = off + 30 + nlen + elen
    return off, start, start + info.compress_size


def _replace_member(data: bytes, name: str, raw: bytes) -> bytes:
    return build_npz([(n, raw if n == name else r) for n, r in npz_members(data)])


def _header_of(data: bytes) -> dict[str, Any]:
    with np.load(io.BytesIO(data)) as npz:
        return json.loads(npz["header"].tobytes())


def _with_header_text(data: bytes, text: bytes) -> bytes:
    return _replace_member(data, "header.npy", npy_bytes(np.frombuffer(text, np.uint8)))


def test_damage_inside_the_header_member_is_one_line(good_model: Path) -> None:
    data = good_model.read_bytes()
    off, start, end = _member_span(data, "header.npy")
    b = bytearray(data)
    b[(start + end) // 2] ^= 0x04  # a bit flip in the JSON: the CRC-32 no longer matches
    good_model.write_bytes(bytes(b))
    _refused(good_model, "array 'header' is unreadable (CRC-32 mismatch)")
    b = bytearray(data)
    b[off:off + 4] = b"PK\x07\x08"  # bad magic number of its local header
    good_model.write_bytes(bytes(b))
    _refused(good_model, "'header' is not where the archive directory says")
    b = bytearray(data)
    b[off + 30] ^= 0x20  # 'header.npy' -> 'Header.npy' in the local header only
    good_model.write_bytes(bytes(b))
    _refused(good_model, "local header of array 'header' does not match")


@pytest.mark.parametrize(("text", "match"), [
    (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"C": ' + b"7" * 5000 + b"}", "an integer of 5000 digits"),
    (b'{"C": 1, "C": 2}', "the key 'C' is repeated"),
    (b'{"C": NaN}', "NaN is not allowed"),
    (b'{"C": 1e999}', "out of range"),
    (b"\xff\xfe binary \x00\x01" * 5000, "not UTF-8"),
    (b"[1, 2]", "not a halut model file (format null"),
])
def test_header_json_that_crashed_or_flooded_is_one_short_line(good_model: Path, text: bytes,
                                                               match: str) -> None:
    good_model.write_bytes(_with_header_text(good_model.read_bytes(), text))
    msg = _refused(good_model, match)
    assert len(msg) < 300


def test_an_object_array_and_a_member_that_is_no_npy_are_one_line(good_model: Path) -> None:
    data = good_model.read_bytes()
    obj = npy_bytes(np.array([{"format": "halut-model"}], dtype=object))
    good_model.write_bytes(_replace_member(data, "header.npy", obj))
    _refused(good_model, "array 'header' has dtype '|O'")
    good_model.write_bytes(_replace_member(data, "model_lut.npy", b"not an npy at all"))
    _refused(good_model, "array 'model_lut' is not a .npy array")


@pytest.mark.parametrize("shape", [b"(1099511627776,)", b"(4, 4, 100)"])
def test_an_npy_declaring_more_than_it_holds_is_refused_before_allocating(
        good_model: Path, shape: bytes) -> None:
    data = good_model.read_bytes()
    raw = dict(npz_members(data))["model_bias.npy"]
    head, body = _npy_parts(raw)
    head = head.replace(b"'shape': (3,)", b"'shape': " + shape)
    good_model.write_bytes(_replace_member(data, "model_bias.npy",
                                           _with_npy_header(raw, head) + body))
    _refused(good_model, "array 'model_bias' declares")


def test_the_header_is_covered_by_the_checksum(good_model: Path) -> None:
    data = good_model.read_bytes()
    header = _header_of(data)
    header["program"]["input_scale"] *= 2  # outputs would change silently
    good_model.write_bytes(_with_header_text(data, json.dumps(header, sort_keys=True).encode()))
    _refused(good_model, "checksum mismatch (the header or arrays were changed")
    for stats in ({}, {"nmse_train": 0.5}):
        header = _header_of(data)
        header["stats"] = stats
        good_model.write_bytes(_with_header_text(data, json.dumps(header).encode()))
        _refused(good_model, "checksum mismatch")


@pytest.mark.parametrize("version", [True, 1.0, 2.0, "2", None, [2]])
def test_the_version_must_be_an_integer(good_model: Path, version: Any) -> None:
    data = good_model.read_bytes()
    header = _header_of(data)
    header["format_version"] = version
    good_model.write_bytes(_with_header_text(data, json.dumps(header).encode()))
    _refused(good_model, f"format version {json.dumps(version)}, but this halut reads")


def test_bytes_or_a_second_model_around_the_archive_are_refused(good_model: Path,
                                                               tmp_path: Path) -> None:
    data = good_model.read_bytes()
    second = small_model(seed=5)
    good_model.write_bytes(data + second)
    _refused(good_model, "second archive")
    good_model.write_bytes(second + data)
    _refused(good_model, "second archive")
    good_model.write_bytes(b"#!" + data)
    _refused(good_model, "not an npz/zip archive, or bytes before it")
    good_model.write_bytes(data + b"\n")
    _refused(good_model, "bytes after its archive")


def test_a_bad_end_record_names_the_file(good_model: Path) -> None:
    data = bytearray(good_model.read_bytes())
    data[-6:-2] = struct.pack("<I", 0xFFFFFF00)  # the directory's offset
    good_model.write_bytes(bytes(data))
    _refused(good_model, "archive directory is damaged")
    data = bytearray(small_model())
    data[-12:-8] = b"\x00\x00\x00\x00"  # no entries
    good_model.write_bytes(bytes(data))
    _refused(good_model, "archive directory is damaged")


def test_messages_carry_no_raw_bytes(good_model: Path) -> None:
    data = good_model.read_bytes()
    header = _header_of(data)
    header["format"] = "\x00\x01\x02 binary \u202e" * 3000
    good_model.write_bytes(_with_header_text(data, json.dumps(header).encode()))
    msg = _refused(good_model, "not a halut model file")
    assert len(msg) < 300


def test_special_files_are_one_line(tmp_path: Path) -> None:
    from learning.modelfile import load_model

    (tmp_path / "dir.halut").mkdir()
    (tmp_path / "empty.halut").write_bytes(b"")
    os.mkfifo(tmp_path / "fifo.halut")
    (tmp_path / "null.halut").symlink_to(os.devnull)
    (tmp_path / "dangling.halut").symlink_to(tmp_path / "nowhere")
    for name, match in (("dir.halut", "not a regular file"), ("fifo.halut", "not a regular"),
                        ("null.halut", "not a regular file"), ("empty.halut", "not an npz"),
                        ("dangling.halut", "does not exist"), ("none.halut", "does not exist")):
        with pytest.raises(HalutError, match=match) as err:
            load_model(tmp_path / name)
        assert one_line(str(err.value)) and name in str(err.value)


def test_halut_info_and_run_print_one_line_for_damage_in_the_header(good_model: Path,
                                                                    tmp_path: Path) -> None:
    from click.testing import CliRunner

    from flows.cli import main

    data = good_model.read_bytes()
    _, start, end = _member_span(data, "header.npy")
    b = bytearray(data)
    b[start + 200] ^= 1
    good_model.write_bytes(bytes(b))
    acts = tmp_path / "a.npy"
    np.save(acts, np.zeros((3, 16), np.float32))
    for args in (["info", str(good_model)],
                 ["run", str(good_model), "-a", str(acts), "--backend", "golden"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: model file") and \
            "CRC-32" in lines[0], res.stderr
        assert "Traceback" not in res.output


def test_a_version_1_file_still_loads_and_is_verified_the_old_way(tmp_path: Path) -> None:
    from learning.modelfile import load_model, load_model_bytes

    data = small_model(legacy=True)
    path = tmp_path / "old.halut"
    path.write_bytes(data)
    old = load_model(path)
    assert old.header["format_version"] == 1 and old.program is not None
    new = load_model_bytes(small_model(), "new")
    assert _arrays_same(old.program, new.program, _PROGRAM_ARRAYS)
    members = npz_members(data)
    lut = dict(members)["model_lut.npy"]
    changed = lut[:-1] + bytes([lut[-1] ^ 1])
    path.write_bytes(_replace_member(data, "model_lut.npy", changed))
    _refused(path, "checksum mismatch (the arrays were changed")
    # a version 2 file relabelled as version 1 does not pass as one
    data2 = small_model()
    header = _header_of(data2)
    header["format_version"] = 1
    path.write_bytes(_with_header_text(data2, json.dumps(header, sort_keys=True).encode()))
    _refused(path, "checksum mismatch")


# ---- resume tiles ----------------------------------------------------------------------------


def _tile_header_edit(fmt: Format, edit: Callable[[dict[str, Any]], Any], reseal: bool) -> bytes:
    from emulator import checkpoint

    members = npz_members(fmt.good)
    header = json.loads(np.load(io.BytesIO(dict(members)["header.npy"])).tobytes())
    new = edit(header)
    new = header if new is None else new
    if reseal and isinstance(new, dict) and isinstance(new.get("checksum"), str):
        arrays = {n[:-4]: np.load(io.BytesIO(r)) for n, r in members if n != "header.npy"}
        new["checksum"] = checkpoint._checksum(arrays, new)
    text = new if isinstance(new, bytes) else json.dumps(new).encode()
    return _replace_member(fmt.good, "header.npy", npy_bytes(np.frombuffer(text, np.uint8)))


@pytest.mark.parametrize(("edit", "match"), [
    (lambda h: [h], "its header is a JSON list, not an object"),
    (lambda h: h.update(cycles="lots"), "cycle report is malformed"),
    (lambda h: h.update(cycles={"stream": 5}), "cycle report is malformed"),
    (lambda h: h["cycles"].update(stall=-1), "cycle report is malformed"),
    (lambda h: h["cycles"].update(stall=True), "cycle report is malformed"),
    (lambda h: h["cycles"].update(stall=h["cycles"]["stall"] + 1), "does not add up"),
    (lambda h: h.update(lo=True), "wrong tile bounds"),
    (lambda h: h.update(version=4.0), "not a tile file of this version"),
    (lambda h: h.update(checksum=None), "no checksum"),
    (lambda h: b'{"x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "nested too deeply"),
    (lambda h: b"[" * 5000, "nested too deeply"),
    (lambda h: b"[" * 100_000, "too large"),
])
def test_crafted_tile_headers_are_rejected_in_one_line(tmp_path: Path, edit: Any,
                                                       match: str) -> None:
    fmt = tile_format(tmp_path)
    fmt.path.write_bytes(_tile_header_edit(fmt, edit, reseal=True))
    assert fmt.load(fmt.path) is None
    reason = fmt.refusal()
    assert reason is not None and one_line(reason) and match in reason, reason
    assert reason.startswith(fmt.path.name)


def test_an_edited_cycle_report_is_caught_by_the_checksum(tmp_path: Path) -> None:
    fmt = tile_format(tmp_path)
    fmt.path.write_bytes(_tile_header_edit(
        fmt, lambda h: h["cycles"].update(stream=h["cycles"]["stream"] + 1,
                                          total=h["cycles"]["total"] + 1), reseal=False))
    assert fmt.load(fmt.path) is None
    assert "checksum mismatch" in (fmt.refusal() or "")


def test_crafted_tiles_in_a_resume_folder_are_recomputed_on_golden(tmp_path: Path) -> None:
    from emulator.layers import LayerModel, run_linear
    from emulator.vectors import random_activations, random_program

    rng = np.random.default_rng(3)
    program = random_program(rng, 4, 16, 6, 24)
    layer = LayerModel(program=program, weights=rng.standard_normal((24, 6)).astype(
        np.float32), bias=program.bias)
    X = random_activations(rng, program, 30)
    first = run_linear(layer, X, "golden", row_tile=10, resume_dir=tmp_path)
    files = sorted(tmp_path.glob("tile_*.npz"))
    for f, text in zip(files, (b"[1, 2]", b'{"format": "halut-tile", "version": 4, "cycles": '
                               b'"x"}', b"[" * 100_000), strict=True):
        members = npz_members(f.read_bytes())
        f.write_bytes(build_npz([(n, npy_bytes(np.frombuffer(text, np.uint8))
                                  if n == "header.npy" else r) for n, r in members]))
    res = run_linear(layer, X, "golden", row_tile=10, resume_dir=tmp_path)
    assert (res.resumed, res.computed) == (0, 3)
    assert len(res.info["rejected_tile_files"]) == 3
    assert all(one_line(r) for r in res.info["rejected_tile_files"])
    np.testing.assert_array_equal(res.y, first.y)
    again = run_linear(layer, X, "golden", row_tile=10, resume_dir=tmp_path)
    assert again.resumed == 3 and "rejected_tile_files" not in again.info


# ---- run records -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "match"), [
    (b"[" * 100_000, "nested too deeply"),
    (b'{"rows": ' + b"[" * 100 + b"]" * 100 + b"}", "nested too deeply"),
    (b'{"area": ' + b"9" * 5000 + b"}", "an integer of 5000 digits"),
    (b'{"a": 1, "a": 2}', "repeated"),
    (b"\xff\xfe\x00binary" * 1000, "not UTF-8"),
])
def test_bad_run_records_are_one_line_in_the_report(tmp_path: Path, text: bytes,
                                                    match: str) -> None:
    from flows.hw.report import render

    (tmp_path / "sweep.json").write_bytes(text)
    with pytest.raises(HalutError, match=match) as err:
        render(tmp_path)
    assert one_line(str(err.value)) and "sweep.json" in str(err.value)


def test_a_fifo_or_folder_named_like_a_record_is_one_line(tmp_path: Path) -> None:
    from flows.hw.common import read_json
    from flows.hw.report import render

    os.mkfifo(tmp_path / "lint.json")  # would block a plain read forever
    with pytest.raises(HalutError, match="lint.json is not a regular file"):
        render(tmp_path)
    assert read_json(tmp_path / "lint.json") is None
    os.unlink(tmp_path / "lint.json")
    (tmp_path / "sta.json").mkdir()
    with pytest.raises(HalutError, match="sta.json is not a regular file"):
        render(tmp_path)


def test_cache_records_with_wrong_types_are_recomputed(tmp_path: Path) -> None:
    from emulator.params import RtlParams
    from flows.hw.common import params_dict, read_json
    from flows.hw.sweep import SweepSettings, _finished
    from flows.hw.synth import reusable

    files = _record_files(tmp_path)
    params = RtlParams(C=2, K=4, M=2)
    settings = SweepSettings(period_ns=10.0, io_fraction=0.2, pnr=False, rtl_digest="d" * 64)
    point_path, point = files["point.json"]
    assert _finished(point_path.parent, params, settings) is not None
    for change in ({"cells": 321.5}, {"area": "big"}, {"flip_flops": True},
                   {"params": {**params_dict(params), "C": 2.0, "banks": True}
                    if isinstance(params_dict(params).get("banks"), int) else
                    {**params_dict(params), "C": True}}):
        point_path.write_text(json.dumps({**point, **change}))
        assert _finished(point_path.parent, params, settings) is None, change
    synth_path, synth = files["synth.json"]
    args = (params, 10.0, tmp_path / "cells.lib", "e" * 64, False, synth_path.parent)
    assert reusable(read_json(synth_path), *args) is not None
    for change2 in ({"modules": [{"module": "m"}]}, {"cell_types": {"X": "1"}},
                    {"modules": [1]}, {"params": {**synth["params"], "C": True}}):
        synth_path.write_text(json.dumps({**synth, **change2}))
        assert reusable(read_json(synth_path), *args) is None, change2


def test_nan_in_a_record_is_kept(tmp_path: Path) -> None:
    """The flows' writer allows NaN (``json.dumps``' default), so the reader must too."""
    from flows.hw.common import read_record, write_json

    write_json(tmp_path / "sta.json", {"wns_ns": math.nan, "power_w": {"total": math.inf}})
    assert "NaN" in (tmp_path / "sta.json").read_text()
    got = read_record(tmp_path / "sta.json")
    assert math.isnan(got["wns_ns"]) and got["power_w"]["total"] == math.inf
