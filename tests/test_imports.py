"""Imports run one way: no cycle between the package's parts, and none between the modules of any package.

The graph is read from the source with ``ast`` (every ``import``/``from ... import``, including
the lazy ones inside functions), so a cycle hidden behind a function-level import still fails.
A *part* is a subpackage (``attention``, ``fusion``, ...) or a top-level module (``models``,
``checkpoint``, ...); ``errors`` and ``__init__``/``__main__`` re-export modules are not parts.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "hybridformer"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of the hybridformer modules ``path`` imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("hybridformer")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("hybridformer"):
                continue
            found.add(target)
            # ``from . import x`` / ``from .pkg import module``: the imported names may be modules
            found |= {f"{target}.{alias.name}" for alias in node.names
                      if (SRC.parent / f"{target}.{alias.name}".replace(".", "/")).with_suffix(".py").exists()
                      or (SRC.parent / f"{target}.{alias.name}".replace(".", "/")).is_dir()}
    return found


def module_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in SRC.rglob("*.py")}


def part_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in ("errors", "__main__"):
        return None  # the root's re-exports and the shared error classes are not layers
    return parts[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in module_graph().items():
        source = part_of(module)
        if source is None:
            continue
        for target in targets:
            dest = part_of(target)
            if dest is not None and dest != source:
                graph.setdefault(source, set()).add(dest)
    return graph


def test_graph_sees_lazy_and_relative_imports() -> None:
    graph = module_graph()
    assert "hybridformer.attention" in graph["hybridformer.models"]
    assert graph["hybridformer.cli"], "cli/__init__ imports its command modules"
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_cycle_between_packages() -> None:
    assert cycles(part_graph()) == []


def test_no_cycle_inside_any_package() -> None:
    """Within each package (the root, ``serve/``, ``interop/hf/``...) its own modules and subpackages import
    one way; a subpackage counts as one node, whichever of its modules is imported."""
    graph = module_graph()
    cyclic = {}
    for package in sorted(m for m in graph if (SRC.parent / m.replace(".", "/")).is_dir()):
        depth = package.count(".") + 1

        def member(module: str, package: str = package, depth: int = depth) -> str | None:
            inside = module.startswith(package + ".")
            return ".".join(module.split(".")[: depth + 1]) if inside else None

        inner: dict[str, set[str]] = {}
        for module, targets in graph.items():
            source = member(module)
            if source is not None:
                inner.setdefault(source, set()).update(
                    dest for dest in map(member, targets) if dest is not None and dest != source)
        if found := cycles(inner):
            cyclic[package] = found
    assert cyclic == {}
