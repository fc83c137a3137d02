"""The structure stays as the README draws it: layers that depend one way, no circles.

Every import counts, also one inside a function: an import moved into a function to dodge a
circle is still a circle. A lower layer that must call up registers a callback at start-up
(`newsletters.events`, `jobs.on_work_queued`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "newsletters"

# Lowest first. A module may import its own layer (without a circle) and those below.
LAYERS: dict[str, int] = {
    # foundation
    "config": 0,
    "extensions": 0,
    "tokens": 0,
    "timeutil": 0,
    "jobs": 0,
    "events": 0,
    "columns": 0,
    "busy": 0,
    "inputs": 0,
    "labels": 0,
    "names": 0,
    "urls": 0,
    "outbound": 0,
    "spreadsheet": 0,
    "i18n": 0,
    "templating": 0,
    "errors": 0,
    "security": 0,
    "assets": 0,
    "bulk": 0,
    # mail leaves the process
    "mailing": 1,
    # what people ask for, who the staff are
    "catalog": 2,
    "subscriptions": 2,
    "staff": 2,
    # what is sent
    "editions": 3,
    # what feeds editions, reacts to sends, runs the house
    "feeds": 4,
    "bounces": 4,
    "admin": 4,
    "audit": 4,
    "reports": 4,
    "webhooks": 4,
    "api": 4,
}
WIRING = 5
LAYER_NAMES = [
    "foundation",
    "mailing",
    "catalog/subscriptions/staff",
    "editions",
    "feeds/bounces/admin/audit",
    "wiring",
]
# Web and CLI modules of a feature are wiring: they turn requests and commands into calls of
# the feature's services, and may use any feature below the wiring.
WIRING_MODULES = {"routes", "staff_routes", "cli", "forms", "web"}
WIRING_TOP = {"", "cli", "worker", "tasks", "models", "migrations"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def layer_of(module: str) -> int:
    parts = module.split(".")[1:]
    if not parts or parts[0] in WIRING_TOP:
        return WIRING
    if parts[-1] in WIRING_MODULES and len(parts) > 1:
        return WIRING
    if parts[0] not in LAYERS:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return LAYERS[parts[0]]


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = ".".join(base[: len(base) - (node.level - 1)] + [node.module or ""])
                stem = stem.rstrip(".")
            else:
                stem = node.module or ""
            names = [f"{stem}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            while parts:
                candidate = ".".join(parts)
                if candidate in known:
                    out.add(candidate)
                    break
                parts.pop()
    out.discard(module)
    # A package's __init__ handing on its submodules is not a dependency of theirs on it.
    return {m for m in out if not (module.startswith(m + ".") and _is_empty_init(known, m))}


def _is_empty_init(known: set[str], module: str) -> bool:
    path = _modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return all(isinstance(n, ast.Expr | ast.ImportFrom | ast.Import) for n in tree.body)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(m, p, known) for m, p in modules.items()}


def test_no_module_imports_a_higher_layer(graph: dict[str, set[str]]) -> None:
    upward = [
        f"{module} ({LAYER_NAMES[layer_of(module)]}) imports {target} "
        f"({LAYER_NAMES[layer_of(target)]})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    circles = _circles(graph)
    assert not circles, "circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_checks_see_a_circle_and_an_upward_import() -> None:
    """The checks themselves can fail: a made-up graph with both faults is caught."""
    fake = {
        "newsletters.mailing.outbox": {"newsletters.subscriptions.services"},
        "newsletters.subscriptions.services": {"newsletters.mailing.outbox"},
    }
    assert _circles(fake) == [["newsletters.mailing.outbox", "newsletters.subscriptions.services"]]
    assert layer_of("newsletters.subscriptions.services") > layer_of("newsletters.mailing.outbox")


def test_only_editions_builds_edition_rows() -> None:
    """No module outside editions/ constructs an Edition or EditionItem."""
    builders = []
    for module, path in _modules().items():
        if module.startswith("newsletters.editions"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name | ast.Attribute)
                and getattr(node.func, "id", getattr(node.func, "attr", None))
                in {"Edition", "EditionItem"}
            ):
                builders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not builders, "Edition rows built outside editions/:\n" + "\n".join(builders)
