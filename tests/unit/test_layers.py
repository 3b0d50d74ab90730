"""Layers one way: connectors use only the gateway's public contracts, the gateway names no
protocol, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "connectors")
CONTRACTS = {
    "gateway.cycle",
    "gateway.devices",
    "gateway.errors",
    "gateway.events",
    "gateway.plugins",
    "gateway.protocols",
    "gateway.reading",
    "gateway.schedule",
    "gateway.status",
    "gateway.tags",
}
"""What a protocol plugin may import from the gateway."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every module of the two packages and the modules of the two packages it imports, at
    any level (a lazy import inside a function counts too)."""
    modules = {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found.update(t for t in targets if t in modules and t != name)
        graph[name] = found
    return graph


def test_the_gateway_imports_no_connector() -> None:
    offenders = {
        module: sorted(t for t in targets if t.startswith("connectors"))
        for module, targets in imports().items()
        if module.startswith("gateway")
    }
    assert {m: t for m, t in offenders.items() if t} == {}


def test_connectors_import_only_the_public_contracts() -> None:
    offenders = {
        module: sorted(t for t in targets if t.startswith("gateway.") and t not in CONTRACTS)
        for module, targets in imports().items()
        if module.startswith("connectors")
    }
    assert {m: t for m, t in offenders.items() if t} == {}


def test_the_contracts_import_only_each_other() -> None:
    graph = imports()
    leaks = {m: sorted(graph[m] - CONTRACTS) for m in CONTRACTS}
    assert {m: t for m, t in leaks.items() if t} == {}


def test_the_import_graph_has_no_cycle() -> None:
    graph = imports()
    # Packages' __init__ modules are empty here; an edge to a package is not an import cycle.
    graph = {m: {t for t in ts if t not in PACKAGES} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
