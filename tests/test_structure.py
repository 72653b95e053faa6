"""The package structure (docs/architecture.md): every module imports alone, dependencies point
one way (``flows -> emulator -> learning``), module-level imports form no cycle, and
``learning`` stays free of torch.

Modules are discovered with :func:`pkgutil.walk_packages` over the packages' folders, so a new
module is checked without anyone listing it here. The import graph is read with :mod:`ast`
from the source (no module is executed for it), including imports inside functions; the
cycle check looks only at imports that run when a module is loaded (top of file, class
bodies, ``try`` blocks; not inside functions and not under ``if TYPE_CHECKING``).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the importable packages, lowest layer first
PACKAGES: tuple[str, ...] = ("learning", "emulator", "flows")
#: which project packages each package may import (itself included)
ALLOWED: dict[str, frozenset[str]] = {
    "learning": frozenset({"learning"}),
    "emulator": frozenset({"learning", "emulator"}),
    "flows": frozenset({"learning", "emulator", "flows"}),
}
#: top-level names in the repository that no package may import (not shipped)
NOT_IMPORTABLE: frozenset[str] = frozenset({"tests", "bench"})
#: modules that need an optional dependency to import at all: module -> dependency
OPTIONAL: dict[str, str] = {"emulator.gpu_kernels": "triton"}
IMPORT_WORKERS = 4
IMPORT_TIMEOUT_S = 180


# ---- discovery -------------------------------------------------------------------------------

@cache
def project_modules() -> dict[str, Path]:
    """Every module of the packages (packages included): dotted name -> source file."""
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        found[pkg] = REPO / pkg / "__init__.py"
        for info in pkgutil.walk_packages([str(REPO / pkg)], prefix=f"{pkg}."):
            base = Path(info.module_finder.path)  # type: ignore[union-attr]
            leaf = info.name.rsplit(".", 1)[-1]
            found[info.name] = base / leaf / "__init__.py" if info.ispkg else base / f"{leaf}.py"
    # walk_packages imports subpackages (flows.hw) by name to walk them: make sure that name
    # resolved to this checkout, not to another installed copy
    stray = [f"{n} ({p})" for n, p in found.items()
             if not p.is_file() or not p.resolve().is_relative_to(REPO / n.split(".")[0])]
    assert not stray, f"discovered modules outside this checkout's packages: {stray}"
    return dict(sorted(found.items()))


# ---- the import graph ------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    """One import statement's target as written (``importer`` at ``line`` imports ``target``)."""

    importer: str
    target: str
    line: int
    at_load: bool  # runs when the module is loaded (not inside a function / TYPE_CHECKING)

    def where(self) -> str:
        return f"{project_modules()[self.importer].relative_to(REPO)}:{self.line}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, is_pkg: bool, level: int, name: str | None) -> str:
    """The absolute module a (possibly relative) ``from`` import names."""
    if level == 0:
        return name or ""
    parts = module.split(".") if is_pkg else module.split(".")[:-1]
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([name] if name else []))


@cache
def _bound_in_init(package: str) -> frozenset[str]:
    """Names a project package's ``__init__`` binds by a module-level import."""
    path = project_modules().get(package)
    if path is None or path.name != "__init__.py":
        return frozenset()
    return frozenset((alias.asname or alias.name).split(".")[0]
                     for node in ast.parse(path.read_text()).body
                     if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names)


def _imports_of(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"

    def visit(node: ast.AST, at_load: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, at_load)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_pkg, node.level, node.module)
            for alias in node.names:
                # ``from pkg import sub`` needs the submodule when there is one, and the
                # package's __init__ when the name is (also) bound there
                sub = f"{base}.{alias.name}"
                if sub in project_modules():
                    yield Import(module, sub, node.lineno, at_load)
                if sub not in project_modules() or alias.name in _bound_in_init(base):
                    yield Import(module, base, node.lineno, at_load)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            yield Import(module, node.args[0].value, node.lineno, at_load)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            at_load = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                yield from visit(stmt, False)
            for stmt in node.orelse:
                yield from visit(stmt, at_load)
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child, at_load)

    yield from visit(tree, True)


@cache
def all_imports() -> tuple[Import, ...]:
    return tuple(imp for name, path in project_modules().items()
                 for imp in _imports_of(name, path))


def _project_target(target: str) -> str | None:
    """The project module an import target lands on (its longest known prefix), or None."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in project_modules():
            return ".".join(parts[:n])
    return None


def load_time_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports when it is loaded."""
    graph: dict[str, set[str]] = {m: set() for m in project_modules()}
    for imp in all_imports():
        dst = _project_target(imp.target) if imp.at_load else None
        if dst is not None and dst != imp.importer:
            graph[imp.importer].add(dst)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle (``a -> b -> ... -> a``) per strongly connected component that has
    one (Tarjan's algorithm, then a path inside the component)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)

    cycles = []
    for comp in components:
        start = min(comp)
        # breadth-first from start back to start, inside the component
        prev: dict[str, str] = {}
        frontier = [start]
        found = None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & comp):
                    if w == start:
                        found = v
                        break
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        assert found is not None
        path = [found]
        while path[-1] != start:
            path.append(prev[path[-1]])
        cycles.append([*reversed(path), start])
    return cycles


# ---- tests: discovery ------------------------------------------------------------------------

def test_module_discovery_finds_every_python_file_of_the_packages() -> None:
    on_disk = {p.resolve() for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    assert on_disk == {p.resolve() for p in project_modules().values()}, (
        "a .py file under the packages is not importable as a module (missing __init__.py?)")
    assert {"flows.hw", "flows.hw.synth", "emulator.runner", "learning.model"} \
        <= set(project_modules())


# ---- tests: every module imports alone -------------------------------------------------------

def _import_alone(name: str) -> tuple[str, int, str]:
    proc = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=REPO,
                          capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    return name, proc.returncode, proc.stderr


def _missing_dependency(module: str) -> str | None:
    dep = OPTIONAL.get(module)
    return dep if dep is not None and importlib.util.find_spec(dep) is None else None


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    names = [m for m in project_modules() if _missing_dependency(m) is None]
    with ThreadPoolExecutor(max_workers=IMPORT_WORKERS) as pool:
        results = list(pool.map(_import_alone, names))
    failed = [(n, rc, err) for n, rc, err in results if rc != 0]
    report = "\n\n".join(
        f"`import {n}` exited {rc}:\n" + "\n".join(err.strip().splitlines()[-12:])
        for n, rc, err in failed)
    assert not failed, f"{len(failed)} of {len(names)} modules fail to import alone:\n{report}"


@pytest.mark.parametrize("module", sorted(OPTIONAL))
def test_a_module_needing_an_optional_dependency_is_left_out_only_when_it_is_missing(
        module: str) -> None:
    assert module in project_modules(), f"{module} in OPTIONAL no longer exists"
    dep = _missing_dependency(module)
    if dep is not None:
        pytest.skip(f"{module} needs {dep}, which is not installed: not import-checked")


# ---- tests: dependency direction and cycles --------------------------------------------------

def test_each_package_imports_only_the_layers_below_it() -> None:
    wrong = []
    for imp in all_imports():
        src = imp.importer.split(".")[0]
        dst_root = imp.target.split(".")[0]
        dst = _project_target(imp.target)
        if dst is not None and dst.split(".")[0] not in ALLOWED[src]:
            wrong.append(f"{imp.where()}: {imp.importer} imports {dst} "
                         f"({src} may import only {', '.join(sorted(ALLOWED[src]))})")
        elif dst is None and dst_root in NOT_IMPORTABLE:
            wrong.append(f"{imp.where()}: {imp.importer} imports {imp.target} "
                         "(tests/ and bench/ are not part of the packages)")
    assert not wrong, "imports against the direction flows -> emulator -> learning:\n" + \
        "\n".join(wrong)


def test_the_import_graph_sees_imports_inside_functions() -> None:
    # a guard for the direction test above: lazy imports are part of the graph
    lazy = [i for i in all_imports() if not i.at_load and _project_target(i.target)]
    assert lazy, "no import inside a function found: the ast walk misses them"


def test_module_level_imports_form_no_cycle() -> None:
    graph = load_time_graph()
    assert sum(len(v) for v in graph.values()) > len(PACKAGES), "the import graph is empty"
    cycles = find_cycles(graph)
    lines = []
    for cyc in cycles:
        hops = []
        for a, b in zip(cyc, cyc[1:], strict=False):
            at = next(i.where() for i in all_imports()
                      if i.importer == a and i.at_load and _project_target(i.target) == b)
            hops.append(f"  {a} -> {b}  ({at})")
        lines.append(" -> ".join(cyc) + "\n" + "\n".join(hops))
    assert not cycles, "module-level import cycles:\n" + "\n".join(lines)


def test_the_cycle_finder_reports_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(find_cycles(graph)) == [["a", "b", "c", "a"], ["e", "e"]]


def test_learning_imports_no_torch_at_module_level() -> None:
    wrong = [f"{i.where()}: {i.importer} imports {i.target}" for i in all_imports()
             if i.importer.split(".")[0] == "learning" and i.at_load
             and i.target.split(".")[0] == "torch"]
    assert not wrong, "learning must not import torch at module level:\n" + "\n".join(wrong)


def test_importing_every_learning_module_does_not_load_torch() -> None:
    names = [m for m in project_modules() if m.split(".")[0] == "learning"]
    code = ("import sys\n" + "".join(f"import {n}\n" for n in names)
            + "print(sorted(m for m in ('torch', 'emulator', 'flows') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=IMPORT_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", (
        f"importing learning loaded {proc.stdout.strip()} (transitively)")
