"""The import graph of the mmrec package: no cycle, and a bottom that reaches nowhere up.

Every module of ``mmrec/`` (and the CLI, installed as ``mmrec.cli``) is parsed with
``ast``. Module-level imports (``if TYPE_CHECKING:`` blocks excluded: they never run)
must form no cycle. The bottom modules, the shared vocabulary every other module uses,
may import only one another, at module level or inside a function.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOTTOM = {"mmrec.errors", "mmrec.version", "mmrec.enums", "mmrec.vectors", "mmrec.atomic",
          "mmrec.artifacts"}


def module_files(root: Path) -> dict[str, Path]:
    """``{dotted name: file}`` of the mmrec package under ``root`` (cli/ is mmrec.cli)."""
    found = {}
    for base, prefix in ((root / "mmrec", "mmrec"), (root / "cli", "mmrec.cli")):
        for path in sorted(base.rglob("*.py")) if base.is_dir() else []:
            parts = [prefix, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_package: bool,
             modules: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = name.split(".") if is_package else name.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join([*package, *([base] if base else [])])
    # ``from mmrec import align`` imports the module mmrec.align where there is one
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def imports(root: Path) -> dict[str, dict[str, set[str]]]:
    """``{module: {"module": {...}, "function": {...}}}``: the mmrec modules each one imports."""
    files = module_files(root)
    modules = set(files)
    graph = {}
    for name, path in files.items():
        edges: dict[str, set[str]] = {"module": set(), "function": set()}
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, level in _import_nodes(tree, "module"):
            for target in _targets(node, name, path.name == "__init__.py", modules):
                if target == "mmrec" or target.startswith("mmrec."):
                    edges[level].add(target)
        graph[name] = edges
    return graph


def _import_nodes(node: ast.AST, level: str) -> Iterator[tuple[ast.AST, str]]:
    """Every import under ``node`` with "module" or "function" (inside a def) level."""
    for child in ast.iter_child_nodes(node):
        if _is_type_checking(child):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, level
        inner = "function" if isinstance(
            child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else level
        yield from _import_nodes(child, inner)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` as a list of nodes, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := walk(start)):
            return cycle
    return None


def reaches_up(graph: dict[str, dict[str, set[str]]]) -> list[str]:
    """``"bottom -> other (level)"`` for every import of a bottom module outside the bottom."""
    return sorted(f"{name} -> {target} ({level})"
                  for name in BOTTOM & set(graph)
                  for level, targets in graph[name].items()
                  for target in targets if target not in BOTTOM)


@pytest.fixture(scope="module")
def graph():
    return imports(ROOT)


def test_every_bottom_module_exists(graph):
    assert BOTTOM <= set(graph)


def test_no_cycle_among_module_level_imports(graph):
    assert find_cycle({m: e["module"] for m, e in graph.items()}) is None


def test_bottom_modules_import_nothing_above_them(graph):
    assert reaches_up(graph) == []


def test_the_checks_see_a_cycle_and_a_reach_upward(tmp_path):
    """The graph builder itself: a known-bad package is caught on both counts."""
    pkg = tmp_path / "mmrec"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from mmrec import sub\n__version__ = '0'\n")
    (pkg / "sub" / "__init__.py").write_text("from . import a\n")
    (pkg / "sub" / "a.py").write_text("from mmrec.artifacts import x\n")
    (pkg / "artifacts.py").write_text(
        "from typing import TYPE_CHECKING\nfrom mmrec import __version__\n"
        "if TYPE_CHECKING:\n    from mmrec.sub import a\n"
        "def f():\n    from mmrec.store import Store\n")
    (pkg / "store.py").write_text("from mmrec.artifacts import f\n")
    bad = imports(tmp_path)
    assert bad["mmrec.sub"]["module"] == {"mmrec.sub.a"}
    assert find_cycle({m: e["module"] for m, e in bad.items()}) == [
        "mmrec", "mmrec.sub", "mmrec.sub.a", "mmrec.artifacts", "mmrec"]
    assert reaches_up(bad) == ["mmrec.artifacts -> mmrec (module)",
                               "mmrec.artifacts -> mmrec.store (function)"]
