"""The package's imports: no cycles anywhere, and the rooms' dependencies flow one way.

Every ``import`` statement counts, including the lazy ones inside functions:
a cycle through a lazy import is still a cycle (engines → train → sampling →
engines was one). The source files are read with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# where each installed package's source lives (pyproject's package-dir mapping)
SOURCES = {
    "scenestream": ROOT / "scenestream",
    "scenestream.agents": ROOT / "agents",
    "scenestream.schemas": ROOT / "schemas",
    "scenestream.topics": ROOT / "topics",
    "scenestream.ops": ROOT / "ops",
}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if package == "scenestream" and parts and parts[0] in ("agents", "schemas", "topics", "ops"):
                continue  # not in the scenestream folder, but guard against a stray copy
            found[".".join([package, *parts])] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (anywhere in the file)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name in known:
                out.add(name)
                break
        else:
            continue
    # ``from pkg.mod import x`` names pkg.mod.x (a module when x is one) and pkg.mod: keep the most specific
    return {name for name in out if not any(other.startswith(name + ".") for other in out)}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, known) - {name} for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_lazy_imports():
    edges = graph()
    # engines imports base_model only inside functions
    assert "scenestream.agents.decoder.base_model" in edges["scenestream.agents.decoder.engines"]


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def room(module: str) -> str:
    """The room a module belongs to (see the README's architecture)."""
    rooms = (
        ("scenestream.cli", "cli"),
        ("scenestream.__main__", "cli"),
        ("scenestream.commands", "commands"),
        ("scenestream.api", "api"),
        ("scenestream.ops", "ops"),
        ("scenestream.training", "training"),
        ("scenestream.agents", "agents"),
        ("scenestream.schemas", "base"),
        ("scenestream.topics", "base"),
        ("scenestream.settings", "base"),
        ("scenestream.topology", "base"),
        ("scenestream.backbone", "backbone"),
        ("scenestream.answered", "backbone"),
        ("scenestream.kafka", "backbone"),
        ("scenestream.app", "backbone"),
    )
    for prefix, name in rooms:
        if module == prefix or module.startswith(prefix + "."):
            return name
    return "client"  # runtime, client, broker, offline, ask, audit, outputs …


# which rooms a room may import (imports flow one way: left to right in the README's picture)
ALLOWED = {
    "cli": {"commands", "base"},
    "commands": {"api", "ops", "training", "client", "backbone", "agents", "base"},
    "api": {"api", "client", "backbone", "agents", "base"},
    "ops": {"training", "client", "backbone", "agents", "base"},
    "training": {"client", "agents", "base"},
    "client": {"client", "backbone", "agents", "base"},
    "backbone": {"backbone", "base"},
    "agents": {"agents", "backbone", "base"},
    "base": {"base"},
}


def test_rooms_import_one_way():
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            if room(target) != room(module) and room(target) not in ALLOWED[room(module)]:
                wrong.append(f"{module} ({room(module)}) imports {target} ({room(target)})")
    assert wrong == []


@pytest.mark.parametrize(
    "serving", ["engines", "prompt", "multilora", "fast_decode", "vllm_cpu_ops", "transform", "agent", "base_model"]
)
def test_serving_never_imports_training(serving):
    edges = graph()
    reach, todo = set(), [f"scenestream.agents.decoder.{serving}"]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in reach:
                reach.add(nxt)
                todo.append(nxt)
    assert not [m for m in reach if m.startswith("scenestream.training")]
