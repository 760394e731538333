"""No import circle between the modules of ``synthetic_btad`` and ``rgi_anomalib`` (issue 34).

The graph is built from the source with ``ast`` (nothing is imported): one node per module file,
one edge per ``import``/``from ... import`` naming another module of the two packages, relative
imports resolved against the importing module. ``from pkg import name`` points at the submodule
``pkg.name`` when that file exists, else at ``pkg`` itself. The implicit import of a parent
package (importing ``a.b.c`` first runs ``a/__init__``) is not an edge: every submodule would
otherwise form a circle with a package ``__init__`` that re-exports it.

What counts as an edge, and why:
- imports under ``if TYPE_CHECKING:`` count: a circle that only type checkers see is still two
  modules that cannot be read (or moved) one without the other; the ``build``/``summary``/
  ``writer`` circle of issue 34 was one of these;
- imports inside functions count too: deferring an import is how a circle is hidden, not
  removed, and it turns into an ``ImportError`` as soon as someone hoists the import. Lazy imports
  for start-up cost (torch, anomalib, the benchmark) stay allowed: they are only a problem
  when the imported module imports its importer back, which is what this test reports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("synthetic_btad", "rgi_anomalib")


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement may refer to (modules or module attributes)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    return [f"{source}.{alias.name}" for alias in node.names] + [source]


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` (under ``root``) it imports, at any depth."""
    files = {
        _module_name(root, path): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        edges = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = _imported_names(module, path.name == "__init__.py", node)
            if isinstance(node, ast.ImportFrom):
                # ``from pkg import sub`` is an edge to pkg.sub when it is a module, else to pkg.
                found = [n for n in names[:-1] if n in files]
                names = found if len(found) == len(names) - 1 else [*found, names[-1]]
            for name in names:
                while name not in files and "." in name:  # ``import a.b.attr`` -> a.b
                    name = name.rsplit(".", 1)[0]
                if name in files and name != module:
                    edges.add(name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per back edge met by a depth-first search (empty: the graph is acyclic)."""
    cycles: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def test_the_checker_sees_circles_through_relative_type_checking_and_function_imports(
    tmp_path: Path,
) -> None:
    """The check itself can fail: each kind of import that counts closes a circle here."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.build import build\n",
            "pkg/build.py": "from .summary import summary\n",
            "pkg/summary.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import writer\n"
            ),
            "pkg/writer.py": "def f():\n    from pkg.build import build\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/leaf.py": "from .. import other\n",
            "pkg/other.py": "import pkg.sub.leaf\n",
        },
    )
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg"] == {"pkg.build"}
    assert graph["pkg.sub.leaf"] == {"pkg.other"}
    assert graph["pkg.sub"] == set()  # the parent-package import is not an edge
    cycles = {tuple(c) for c in find_cycles(graph)}
    assert cycles == {
        ("pkg.build", "pkg.summary", "pkg.writer", "pkg.build"),
        ("pkg.other", "pkg.sub.leaf", "pkg.other"),
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle(package: str) -> None:
    graph = import_graph(REPO_ROOT, (package,))
    assert len(graph) > 5, f"found only {sorted(graph)} under {REPO_ROOT / package}"
    cycles = find_cycles(graph)
    assert not cycles, f"import circles in {package} (move what both sides need to a module " + (
        "of its own):\n" + "\n".join(" -> ".join(c) for c in cycles)
    )


def test_no_import_circle_between_the_packages() -> None:
    """``rgi_anomalib`` uses ``synthetic_btad``; the generator must never import the models."""
    graph = import_graph(REPO_ROOT, PACKAGES)
    assert any(dst.startswith("synthetic_btad") for edges in graph.values() for dst in edges)
    assert not find_cycles(graph)
    leaks = {
        f"{src} -> {dst}"
        for src, edges in graph.items()
        if src.startswith("synthetic_btad")
        for dst in edges
        if dst.startswith("rgi_anomalib")
    }
    assert not leaks, f"synthetic_btad imports rgi_anomalib: {sorted(leaks)}"
