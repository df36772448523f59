"""The import rules of the architecture, checked on the source (nothing is imported):

* a plugin imports from ftx only its public API (``ftx.api``, ``ftx.errors``, ``ftx.testing``);
* core modules never import one another in a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"
PUBLIC_MODULES = ("ftx.api", "ftx.errors", "ftx.testing")


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """Every module an AST imports (function-level imports included), relative ones resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield node.lineno, name
            for alias in node.names:  # `from ftx import api` imports ftx.api
                yield node.lineno, f"{name}.{alias.name}"


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _plugin_sources() -> list[Path]:
    return sorted(p for pattern in ("plugins/*/src", "examples/*/src") for p in ROOT.glob(f"{pattern}/**/*.py"))


def test_plugins_import_only_the_public_api() -> None:
    sources = _plugin_sources()
    assert sources, "no plugin sources found"
    offences = []
    for path in sources:
        src_root = next(parent for parent in path.parents if parent.name == "src")
        module, is_package = _module_name(path, src_root)
        for line, name in _imports(ast.parse(path.read_text(encoding="utf-8")), module, is_package):
            if name == "ftx" or not name.startswith("ftx."):
                continue
            if not any(name == public or name.startswith(public + ".") for public in PUBLIC_MODULES):
                where = f"{path.relative_to(ROOT)}:{line}"
                if not any(o.startswith(where + " ") for o in offences):  # `from ftx.x import a` once, as ftx.x
                    offences.append(f"{where} imports {name}")
    assert not offences, "plugins may import only " + ", ".join(PUBLIC_MODULES) + " from ftx:\n" + "\n".join(offences)


def _core_graph() -> dict[str, set[str]]:
    modules = {_module_name(p, CORE)[0]: p for p in (CORE / "ftx").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        deps = {name for _, name in _imports(ast.parse(path.read_text(encoding="utf-8")), module, is_package)}
        # a submodule importing its own package's __init__ is how Python loads it, not a cycle
        graph[module] = {d for d in deps if d in modules and d != module and not module.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_core_modules_import_no_cycle() -> None:
    graph = _core_graph()
    assert "ftx.runner" in graph and "ftx.recipe.loader" in graph
    cycles = _cycles(graph)
    detail = ["  " + " <-> ".join(c) + ": " + "; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) for c in cycles]
    assert not cycles, "core modules that import each other in a circle:\n" + "\n".join(detail)


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
