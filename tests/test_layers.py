"""The server's import floors, checked over the source (docs/architecture.md §1: imports run one way).

The graph is built with `ast` from every file under webapp/ (static/ excepted), counting
module-level and function-level imports alike: a lazy import is still a dependency. A "part"
is a subpackage (`webapp.crm`) or a top-level module (`webapp.signin`); `webapp` itself is
`webapp/__init__.py`. Floors, lowest first; a part imports its own floor or lower, never higher:

- base: `db`, `config`, `jsonvalues`, `ratelimit`, `sameorigin`, `headers`, `httperror`,
  `shell`, `metrics` — they import nothing of webapp but each other (the HTTP helpers among
  them are wired in by the app factory or used by api/ and sync/, so they stay below both).
- crm: `crm/`, which knows no HTTP, socket or signed-in user.
- security: `security/`; `cookies` (the session cookie, over security.accounts); `demo` (the
  demo organisation, written through crm and security only).
- sync: `sync/` (it is handed the app's database, registry and hub — `sync/wiring.py`'s
  Protocol — by the app factory, and looks nothing up); `services` (the app's long-lived
  objects; it names the hub, so it sits here, above `sync/` which never imports it; request
  handlers in api/ and admin/ reach it through `services(current_app)`); `schema` and
  `migrations` (they create the fixed tables of every part, sync's included).
- web: `api/` and `admin/` (siblings: neither imports the other); `signin` (the sign-in
  throttle both use).
- app: `webapp/__init__.py` (create_app wires everything, inside the function, so importing
  any part of webapp loads nothing else); `serving` (gunicorn's hooks around the built app).
- cli: `cli`, the `outpost` command.

Also: no cycle between parts (none excepted), the listener and the hub do not import each other, the
benchmarks stand without tests/, the installed code never edits sys.path, and
`import webapp.crm.metadata` in a fresh interpreter loads neither Flask, argon2 nor the hub.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEBAPP = ROOT / "webapp"

FLOORS: list[tuple[str, set[str]]] = [
    (
        "base",
        {
            "webapp.db",
            "webapp.config",
            "webapp.jsonvalues",
            "webapp.ratelimit",
            "webapp.sameorigin",
            "webapp.headers",
            "webapp.httperror",
            "webapp.shell",
            "webapp.metrics",
            "webapp.admission",
        },
    ),
    ("crm", {"webapp.crm"}),
    ("security", {"webapp.security", "webapp.cookies", "webapp.demo"}),
    ("sync", {"webapp.sync", "webapp.services", "webapp.schema", "webapp.migrations"}),
    ("web", {"webapp.api", "webapp.admin", "webapp.signin"}),
    ("app", {"webapp", "webapp.serving"}),
    ("cli", {"webapp.cli"}),
]
FLOOR = {part: i for i, (_, parts) in enumerate(FLOORS) for part in parts}
SIBLINGS = [("webapp.api", "webapp.admin")]  # same floor, and neither may import the other

Edge = tuple[str, str, str]  # (importing module, imported module, "file:line")


def module_name(path: Path) -> str:
    """`webapp/sync/hub.py` → `webapp.sync.hub`; a package's `__init__.py` → the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "static" not in p.relative_to(folder).parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, int]]:
    """Every module an import statement names, anywhere in the file (functions included).

    `from a import b` yields `a.b` (which may be a module) and `a`; the caller keeps the
    longest name that is a module."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def import_graph() -> tuple[set[str], list[Edge]]:
    """The modules of webapp/ and every import between them."""
    files = source_files(WEBAPP)
    modules = {module_name(p) for p in files}
    edges: list[Edge] = []
    for path in files:
        src = module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        for name, line in imported_names(tree, src, path.name == "__init__.py"):
            while name not in modules and "." in name:
                name = name.rpartition(".")[0]
            if name in modules and name != src:
                edges.append((src, name, f"{path.relative_to(ROOT)}:{line}"))
    return modules, edges


def part(module: str) -> str:
    """The part a module belongs to: `webapp.sync.hub` → `webapp.sync`; `webapp` → `webapp`."""
    return ".".join(module.split(".")[:2])


def climbing(edges: Iterable[Edge]) -> list[str]:
    """The imports that go to a higher floor (or between siblings), as readable lines."""
    out = []
    for src, dst, where in edges:
        a, b = part(src), part(dst)
        if FLOOR[a] < FLOOR[b]:
            out.append(f"{where}: {src} ({FLOORS[FLOOR[a]][0]}) imports {dst} ({FLOORS[FLOOR[b]][0]})")
        elif (a, b) in SIBLINGS or (b, a) in SIBLINGS:
            out.append(f"{where}: {src} imports its sibling {dst}")
    return out


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
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


# --- the checks ----------------------------------------------------------------------------------


def test_every_part_of_webapp_sits_on_exactly_one_floor() -> None:
    modules, _ = import_graph()
    parts = {part(m) for m in modules}
    listed = [p for _, members in FLOORS for p in members]
    assert len(listed) == len(set(listed)), "a part is listed on two floors"
    assert sorted(parts - set(listed)) == [], "place each new part on a floor (and say why in the docstring)"
    assert sorted(set(listed) - parts) == [], "a floor lists a part that no longer exists"


def test_no_import_climbs_a_floor() -> None:
    _, edges = import_graph()
    assert climbing(edges) == []


def test_no_cycle_between_parts() -> None:
    _, edges = import_graph()
    between = {(part(a), part(b)) for a, b, _ in edges if part(a) != part(b)}
    assert cycles(between) == []


def test_the_sync_layer_is_handed_its_services_not_a_locator() -> None:
    _, edges = import_graph()
    assert sorted(a for a, b, _ in edges if part(a) == "webapp.sync" and b == "webapp.services") == []
    assert ("webapp.sync.channel", "webapp.sync.wiring") in {(a, b) for a, b, _ in edges}


def test_the_listener_and_the_hub_do_not_import_each_other() -> None:
    _, edges = import_graph()
    pairs = {(a, b) for a, b, _ in edges}
    assert ("webapp.sync.hub", "webapp.sync.notify") in pairs  # the hub starts the listener...
    assert ("webapp.sync.notify", "webapp.sync.hub") not in pairs  # ...which knows only a Receiver


def test_the_graph_counts_function_level_and_from_package_imports() -> None:
    """Guards the checks above against passing on an empty or partial graph."""
    _, edges = import_graph()
    pairs = {(a, b) for a, b, _ in edges}
    assert ("webapp", "webapp.admin") in pairs  # inside create_app
    assert ("webapp.sync.replay", "webapp.ratelimit") in pairs  # inside over_rate only
    assert ("webapp.admin", "webapp.admin.people") in pairs  # `from webapp.admin import people`


def test_the_checks_catch_a_climbing_import_a_sibling_import_and_a_cycle() -> None:
    up = ("webapp.crm.records", "webapp.sync.hub", "webapp/crm/records.py:1")
    side = ("webapp.api.data", "webapp.admin.context", "webapp/api/data.py:1")
    down = ("webapp.sync.hub", "webapp.crm.records", "webapp/sync/hub.py:1")
    assert climbing([up, side, down]) == [
        "webapp/crm/records.py:1: webapp.crm.records (crm) imports webapp.sync.hub (sync)",
        "webapp/api/data.py:1: webapp.api.data imports its sibling webapp.admin.context",
    ]
    assert cycles([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == [["a", "b", "c"]]


def test_importing_the_metadata_loads_neither_flask_argon2_nor_the_hub() -> None:
    probe = "import json, sys, webapp.crm.metadata; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert "webapp.crm.metadata" in loaded
    heavy = {m for m in loaded if m.split(".")[0] in {"flask", "werkzeug", "argon2", "flask_sock"}}
    assert sorted(heavy) == []
    assert sorted(m for m in loaded if m.startswith("webapp.sync")) == []


def test_the_benchmarks_stand_without_tests() -> None:
    bad = []
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        name = module_name(path)
        for imported, line in imported_names(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            if imported == "tests" or imported.startswith("tests."):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {imported}")
    assert bad == []


def test_the_installed_code_never_edits_sys_path() -> None:
    bad = []
    for path in source_files(WEBAPP):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "path"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            ):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bad == []
