"""The network bundle (``.halutnet``): every replaced layer of one network, in one file, no
pickle.

A zip archive (written by numpy's ``savez``) with:

* ``header``: uint8 array holding UTF-8 JSON: ``format`` ``"halut-net"``, ``format_version``
  1, ``source`` (sha256 of the source model's parameters, :func:`source_checksum`),
  ``config`` (the learning configuration, free-form JSON), ``layers`` (in network order:
  ``name``, ``kind``, ``geometry`` (free-form JSON), ``units``: the number of MADDNESS
  problems of the layer, one per group of a grouped convolution), ``created`` and
  ``checksum``; optionally ``floats`` (``name``, ``dtype``, ``shape`` of each float array,
  written only when there are any);
* ``unit_<i>``: uint8 arrays, each the bytes of one ``.halut`` model file
  (:mod:`learning.modelfile`, the float model and its program), units in layer order;
* ``float_<i>``: the parameters and buffers that stay in float and were trained (retraining),
  by their name in the folded, swapped model, in the header's order (plain ``.npy``).

The checksum is sha256 over the header without its ``checksum`` field (canonical JSON),
every unit's bytes and every float array's bytes (a bundle without floats hashes exactly as
before they existed), so nothing that affects results can change unnoticed; each unit is then
validated as a model file of its own. The archive must be exactly what the writer wrote: no
bytes before or after it (a second archive appended is refused). Every problem is one
``HalutError`` line naming the file.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import itertools
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from learning.atomic import atomic_write_bytes
from learning.errors import HalutError
from learning.model import HalutModel
from learning.modelfile import (
    SavedModel,
    jsonable,
    load_model_bytes,
    model_bytes,
    read_file,
)
from learning.program import HardwareProgram
from learning.strict import json_depth, scan_npz

FORMAT_NAME = "halut-net"
FORMAT_VERSION = 1
SUFFIX = ".halutnet"
LAYER_KINDS = ("linear", "conv1d", "conv2d")
FLOAT_DTYPES = ("float16", "float32", "float64", "int64")  # what a ``float_<i>`` may hold
_MAX_HEADER = 16 << 20  # bytes of JSON a bundle header may hold
_MAX_DEPTH = 32  # nesting of the header's JSON
_MAX_FLOATS = 1 << 20  # float arrays a bundle may list
_MAX_NAME = 1000  # characters of a float array's name
_MAX_NDIM = 32  # dimensions of a float array


@dataclass(frozen=True)
class BundleLayer:
    """One replaced layer: its qualified name in the network, kind (``linear``, ``conv1d``,
    ``conv2d``), geometry (JSON) and one (model, program) unit per group."""

    name: str
    kind: str
    units: tuple[SavedModel, ...]
    geometry: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise HalutError(f"a bundle layer needs a name, got {self.name!r}")
        if self.kind not in LAYER_KINDS:
            raise HalutError(f"layer {self.name!r}: kind must be one of {LAYER_KINDS}, "
                             f"got {self.kind!r}")
        if not self.units:
            raise HalutError(f"layer {self.name!r} has no units")
        for u in self.units:
            if not isinstance(u.model, HalutModel) or not isinstance(u.program, HardwareProgram):
                raise HalutError(f"layer {self.name!r}: every unit needs a HalutModel and its "
                                 "HardwareProgram")


@dataclass(frozen=True)
class NetworkBundle:
    """What :func:`load_bundle` returns (and :func:`save_bundle` writes). ``floats``:
    parameter/buffer name in the folded, swapped model -> its trained float value (dtype one of
    :data:`FLOAT_DTYPES`), for the layers that stay in float."""

    layers: tuple[BundleLayer, ...]
    source: str
    config: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)
    floats: Mapping[str, np.ndarray] = field(default_factory=dict)

    def layer(self, name: str) -> BundleLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise HalutError(f"the bundle has no layer {name!r}; it has "
                         f"{', '.join(layer.name for layer in self.layers)}")


def source_checksum(params: Mapping[str, np.ndarray]) -> str:
    """sha256 over a model's parameters (name, dtype, shape, bytes, in name order): what a
    bundle records of the network it was learned from (pass ``state_dict`` as numpy)."""
    h = hashlib.sha256()
    for name in sorted(params):
        a = np.ascontiguousarray(params[name])
        h.update(f"{name}|{a.dtype.str}|{list(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _digest(header: dict[str, Any], units: Sequence[bytes],
            floats: Sequence[np.ndarray] = ()) -> str:
    h = hashlib.sha256()
    body = {k: v for k, v in header.items() if k != "checksum"}
    h.update(json.dumps(body, sort_keys=True).encode("utf-8"))
    for u in itertools.chain(units, (a.tobytes() for a in floats)):  # one at a time
        h.update(len(u).to_bytes(8, "little"))
        h.update(u)
    return h.hexdigest()


def _check_float(name: str, a: np.ndarray, where: str) -> None:
    """One line when a float array is not a finite array of an allowed dtype."""
    if a.dtype.name not in FLOAT_DTYPES:
        raise HalutError(f"{where}float {name[:80]!r} has dtype {a.dtype}, not one of "
                         f"{', '.join(FLOAT_DTYPES)}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise HalutError(f"{where}float {name[:80]!r} holds NaN or infinite values")


def _float_arrays(floats: Mapping[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    out = []
    for name, a in floats.items():
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
            raise HalutError(f"a bundle float needs a name (a string of 1 to {_MAX_NAME} "
                             f"characters), got {str(name)[:80]!r}")
        if not isinstance(a, np.ndarray):
            raise HalutError(f"float {name[:80]!r} is a {type(a).__name__}, not a numpy array")
        _check_float(name, a, "")
        if a.ndim > _MAX_NDIM:
            raise HalutError(f"float {name[:80]!r} has {a.ndim} dimensions, more than "
                             f"{_MAX_NDIM}")
        out.append((name, a.astype(a.dtype.name, order="C", copy=False)))  # native order
    if len(out) > _MAX_FLOATS:
        raise HalutError(f"a bundle holds at most {_MAX_FLOATS} floats, got {len(out)}")
    return out


def bundle_bytes(bundle: NetworkBundle) -> bytes:
    """The bytes of the ``.halutnet`` file of ``bundle``."""
    if not isinstance(bundle, NetworkBundle):
        raise HalutError(f"save_bundle needs a NetworkBundle, got {type(bundle).__name__}")
    if not bundle.layers:
        raise HalutError("a network bundle needs at least one layer")
    names = [layer.name for layer in bundle.layers]
    if len(set(names)) != len(names):
        raise HalutError(f"layer names repeat in the bundle: {names}")
    units = [model_bytes(u.model, u.program) for layer in bundle.layers for u in layer.units]
    floats = _float_arrays(bundle.floats)
    header: dict[str, Any] = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "source": str(bundle.source),
        "config": bundle.config,
        "layers": [{"name": layer.name, "kind": layer.kind, "geometry": layer.geometry,
                    "units": len(layer.units)} for layer in bundle.layers],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if floats:  # absent when empty: such a bundle is byte for byte what it was before floats
        header["floats"] = [{"name": n, "dtype": a.dtype.name, "shape": list(a.shape)}
                            for n, a in floats]
    header = jsonable(header)
    header["checksum"] = _digest(header, units, [a for _, a in floats])
    payload = {f"unit_{i}": np.frombuffer(u, dtype=np.uint8) for i, u in enumerate(units)}
    payload.update({f"float_{i}": a for i, (_, a) in enumerate(floats)})
    payload["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"),
                                      dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **payload)  # type: ignore[arg-type]
    return buf.getvalue()


def save_bundle(path: str | os.PathLike[str], bundle: NetworkBundle) -> Path:
    """Write ``bundle`` to ``path`` atomically (an interrupted write leaves any previous file
    intact)."""
    atomic_write_bytes(path, bundle_bytes(bundle))
    return Path(path)


def _check_container(data: bytes, where: str) -> None:
    """The bytes are one npz archive exactly as numpy writes it and nothing else
    (:func:`learning.strict.scan_npz`: nothing before, between or after the members, CRC-32s
    intact, every ``.npy`` header declaring exactly the bytes its member holds)."""
    scan_npz(data, where, "halut network bundle")


def _depth(x: Any) -> int:
    return json_depth(x, _MAX_DEPTH)


def _check_header(h: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(h, dict) or h.get("format") != FORMAT_NAME:
        fmt = h.get("format") if isinstance(h, dict) else None
        raise HalutError(f"{where} is not a halut network bundle (format {str(fmt)[:40]!r})")
    v = h.get("format_version")
    if type(v) is not int or v != FORMAT_VERSION:
        raise HalutError(f"{where} has bundle format version {str(v)[:20]}, but this halut "
                         f"reads version {FORMAT_VERSION}")
    for key, kind in (("source", str), ("checksum", str), ("config", dict), ("layers", list)):
        if not isinstance(h.get(key), kind):
            raise HalutError(f"{where}: the header's {key!r} is missing or not a "
                             f"{kind.__name__}")
    layers = h["layers"]
    if not layers:
        raise HalutError(f"{where}: the bundle lists no layers")
    seen = set()
    for i, layer in enumerate(layers):
        ok = (isinstance(layer, dict) and isinstance(layer.get("name"), str)
              and layer.get("kind") in LAYER_KINDS and isinstance(layer.get("geometry"), dict)
              and type(layer.get("units")) is int and 1 <= layer["units"] <= 1 << 16)
        if not ok:
            raise HalutError(f"{where}: layer entry {i} of the header is malformed")
        if layer["name"] in seen:
            raise HalutError(f"{where}: layer {layer['name'][:80]!r} is listed twice")
        seen.add(layer["name"])
    return layers


def _check_floats_header(h: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The header's optional ``floats`` table (absent: none; the writer never writes it empty)."""
    if "floats" not in h:
        return []
    floats = h["floats"]
    if not isinstance(floats, list) or not 1 <= len(floats) <= _MAX_FLOATS:
        raise HalutError(f"{where}: the header's 'floats' is not a list of 1 to {_MAX_FLOATS} "
                         "entries")
    seen = set()
    for i, f in enumerate(floats):
        shape = f.get("shape") if isinstance(f, dict) else None
        ok = (isinstance(f, dict) and isinstance(f.get("name"), str)
              and 1 <= len(f["name"]) <= _MAX_NAME and f.get("dtype") in FLOAT_DTYPES
              and isinstance(shape, list) and len(shape) <= _MAX_NDIM
              and all(type(n) is int and 0 <= n < 1 << 40 for n in shape))
        if not ok:
            raise HalutError(f"{where}: float entry {i} of the header is malformed")
        if f["name"] in seen:
            raise HalutError(f"{where}: float {f['name'][:80]!r} is listed twice")
        seen.add(f["name"])
    return floats


def load_bundle(path: str | os.PathLike[str], *, source: str | None = None) -> NetworkBundle:
    """Load and fully validate a ``.halutnet`` file; ``source``: the checksum of the model it
    must belong to (:func:`source_checksum`), checked when given. Every problem is one
    HalutError line naming the file."""
    where = f"network bundle {str(path)!r}"
    data = read_file(path, where)
    _check_container(data, where)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            if "header.npy" not in names:
                raise HalutError(f"{where} is not a halut network bundle (no header)")
            if zf.getinfo("header.npy").file_size > _MAX_HEADER:
                raise HalutError(f"{where}: the header is implausibly large")
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        with npz:
            raw = npz["header"]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise HalutError(f"{where}: the header is not a byte array")
            header = json.loads(raw.tobytes().decode("utf-8"))
            if _depth(header) > _MAX_DEPTH:
                raise HalutError(f"{where}: the header is nested too deeply")
            layers = _check_header(header, where)
            float_entries = _check_floats_header(header, where)
            n_units = sum(layer["units"] for layer in layers)
            want = {"header", *(f"unit_{i}" for i in range(n_units)),
                    *(f"float_{i}" for i in range(len(float_entries)))}
            if set(npz.files) != want:
                missing = sorted(want - set(npz.files))
                extra = sorted(set(npz.files) - want)
                raise HalutError(f"{where}: the archive's members do not match its header "
                                 f"(missing {missing[:5]}, unexpected {extra[:5]})")
            units: list[bytes] = []
            for i in range(n_units):
                arr = npz[f"unit_{i}"]
                if arr.dtype != np.uint8 or arr.ndim != 1:
                    raise HalutError(f"{where}: unit {i} is not a byte array")
                units.append(arr.tobytes())
            floats: list[np.ndarray] = []
            for i, f in enumerate(float_entries):
                arr = npz[f"float_{i}"]
                if arr.dtype != np.dtype(f["dtype"]) or list(arr.shape) != f["shape"]:
                    raise HalutError(f"{where}: float {f['name'][:80]!r} is {arr.dtype} "
                                     f"{list(arr.shape)} in the archive, {f['dtype']} "
                                     f"{f['shape']} in its header")
                floats.append(arr)
    except HalutError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise HalutError(f"{where}: the header is not valid JSON ({type(exc).__name__})"
                         ) from None
    except Exception as exc:  # zip CRC errors, short reads, npy header damage, MemoryError
        raise HalutError(f"{where} is corrupt ({type(exc).__name__}: {str(exc)[:120]})"
                         ) from None
    if _digest(header, units, floats) != header["checksum"]:
        raise HalutError(f"{where} is corrupt: checksum mismatch (changed after writing)")
    for f, arr in zip(float_entries, floats, strict=True):
        _check_float(f["name"], arr, f"{where}: ")
    if source is not None and header["source"] != source:
        raise HalutError(f"{where} was learned from another model (its source checksum "
                         f"{header['source'][:12]}... is not this model's {source[:12]}...)")
    out: list[BundleLayer] = []
    k = 0
    for layer in layers:
        saved = []
        for g in range(layer["units"]):
            unit = load_model_bytes(units[k], f"{where}, layer {layer['name'][:80]!r} unit {g}")
            if unit.program is None:
                raise HalutError(f"{where}: layer {layer['name'][:80]!r} unit {g} holds no "
                                 "hardware program")
            saved.append(unit)
            k += 1
        out.append(BundleLayer(name=layer["name"], kind=layer["kind"], units=tuple(saved),
                               geometry=layer["geometry"]))
    return NetworkBundle(layers=tuple(out), source=header["source"], config=header["config"],
                         header=header,
                         floats={f["name"]: a for f, a in zip(float_entries, floats, strict=True)})
