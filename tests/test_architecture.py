"""The shape of the package, checked from its source (docs/architecture.md describes it).

- No import cycle among pushwire's modules, counting every import: at module top, inside a
  function (a lazy import cannot hide a cycle) and under `TYPE_CHECKING` (which is not used).
- Layers: each module imports only from its own layer or the layers below it, and the two
  kinds of top (the native server, the app) never import each other.
- No module over 500 lines, Python or the JavaScript sources of the browser client.
- Tests share helpers through helper modules and fixtures, never by importing a test module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "pushwire"
MAX_LINES = 500

#: Layers from the bottom up: a module may import from its own layer and those below.
#: The names are module paths under `pushwire`; a package name covers its modules.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "foundation",
        {
            "errors",
            "config",
            "clock",
            "message",
            "http11",
            "parsing",
            "guard",
            "version",
            "logs",
            "ratelimit",
        },
    ),
    ("codecs and policies", {"envelope", "presence", "origin"}),
    ("the Python clients", {"client", "api"}),
    ("broker", {"broker"}),
    ("authentication and rules", {"auth"}),
    ("core", {"core"}),
    ("endpoints", {"endpoint"}),
    ("app interface", {"web"}),
    ("transports", {"transports"}),
    ("cluster and API", {"routing", "httpapi", "metrics", "admin"}),
    ("front doors and the app", {"server", "asgiapp", "app"}),
    (
        "process",
        {
            "serve",
            "embed",
            "cli",
            "doctor",
            "configfile",
            "options",
            "__init__",
            "__main__",
            "chat",
        },
    ),
]
#: Groups that share a layer but must not import each other.
APART: list[tuple[str, str]] = [("server", "app"), ("asgiapp", "app"), ("asgiapp", "server")]
#: The Python client is the other side of the wire: it shares only the codecs, and only the
#: process layer (the terminal chat, the command line) uses it.
CLIENT_MAY_IMPORT = {"client", "envelope", "errors", "message"}
CLIENT_USERS = {"client", "chat", "cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name (under pushwire) a `from ... import` names."""
    if node.level == 0:
        return (node.module or "").removeprefix("pushwire").lstrip(".")
    base = module.split(".") if is_package else module.split(".")[:-1]
    if module == "__init__":
        base = []
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """Every pushwire module `module` imports, with the line, wherever the import stands."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    if is_package:
        module = module.removesuffix(".__init__")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "pushwire" or alias.name.startswith("pushwire."):
                    yield (
                        _known(alias.name.removeprefix("pushwire").lstrip("."), known),
                        node.lineno,
                    )
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and not (node.module or "").startswith("pushwire"):
                continue
            target = _resolve(module, is_package, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                yield _known(sub if _exists(sub, known) else target, known), node.lineno


def _exists(name: str, known: set[str]) -> bool:
    return name in known or f"{name}.__init__" in known


def _known(name: str, known: set[str]) -> str:
    return name if name in known else f"{name}.__init__" if f"{name}.__init__" in known else name


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module] = {target for target, _ in _imports(module, path, known)} - {module}
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
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def _group(module: str) -> str:
    return module.split(".")[0]


def _layer(module: str) -> int:
    group = _group(module)
    for rank, (_, groups) in enumerate(LAYERS):
        if group in groups:
            return rank
    raise AssertionError(f"module {module} is in no layer: add its group to LAYERS")


def test_the_import_graph_is_read_from_the_source() -> None:
    graph = _graph()
    # A known arrow of each kind (relative, parent-relative, package): the reader works.
    assert "core.hub" in graph["app"] or "core.__init__" in graph["app"]
    assert "errors" in graph["transports.websocket.handshake"]
    assert "web" in graph["server.listener"]


def test_there_is_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_hides_an_import_behind_type_checking() -> None:
    users = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if "TYPE_CHECKING" in path.read_text()
    ]
    assert users == []


def test_every_module_imports_only_its_own_layer_and_those_below() -> None:
    modules = _modules()
    known = set(modules)
    wrong = []
    for module, path in modules.items():
        rank = _layer(module)
        for target, line in _imports(module, path, known):
            if _group(target) == "client" and _group(module) not in CLIENT_USERS:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports the client ({target})")
            if _layer(target) > rank:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} (a higher layer)")
            for one, other in APART:
                if {_group(module), _group(target)} == {one, other}:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({other})")
    assert wrong == []


def test_the_client_shares_only_the_codecs_with_the_server() -> None:
    modules = _modules()
    known = set(modules)
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for module, path in modules.items()
        if _group(module) == "client"
        for target, line in _imports(module, path, known)
        if _group(target) not in CLIENT_MAY_IMPORT
    ]
    assert wrong == []


def _generated(path: Path) -> bool:
    """A build's output (it says so in its first lines), not a source."""
    return "generated by" in path.read_text()[:1000].lower()


def test_no_module_is_over_500_lines() -> None:
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "clients").glob("*/src/**/*.js")]
    sources += (ROOT / "clients").glob("*/demo/**/*.js")
    sources += [p for p in (PACKAGE / "static").glob("*.js") if not _generated(p)]
    long = {
        str(path.relative_to(ROOT)): lines
        for path in sources
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize("path", sorted((ROOT / "tests").rglob("*.py")), ids=str)
def test_tests_share_helpers_not_test_modules(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    imported = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests")
    ]
    wrong = [
        name
        for name in imported
        if name.split(".")[-1].startswith("test_") or name.split(".")[-1] == "conftest"
    ]
    assert wrong == []
