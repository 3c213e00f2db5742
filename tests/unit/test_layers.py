"""The daemon's shape: packages by role, each importing only the layers below it,
no import circles, a handful of top-level modules, and a client that never
imports the daemon. Reads the sources (ast); imports nothing of the daemon."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DAEMON = ROOT / "daemon" / "linkband_historyd"
CLIENT = ROOT / "client" / "linkband_history"
# higher imports lower, never the reverse
LAYERS = {"processes": 5, "commands": 4, "trends": 4, "collector": 4, "http": 4, "query": 3,
          "storage": 2, "rollups": 2, "archive": 2, "dataset": 2,
          "security": 1}
TOP_LEVEL = {"__init__", "__main__", "config", "harness", "settings", "values", "writer_client"}


def _modules(base: Path, package: str) -> dict[str, Path]:
    out = {}
    for p in base.rglob("*.py"):
        rel = p.relative_to(base).with_suffix("").parts
        name = ".".join((package,) + rel)
        out[name.removesuffix(".__init__")] = p
    return out


def _imports(path: Path, known: dict) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules(DAEMON, "linkband_historyd")
    return {m: {d for d in _imports(p, mods) if d in mods and d != m and not m.startswith(d + ".")}
            for m, p in mods.items()}


def _layer(module: str):
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 2 else None


def test_no_module_imports_one_of_a_higher_layer():
    bad = [(m, d) for m, deps in _graph().items() for d in deps
           if _layer(m) is not None and _layer(d) is not None and _layer(d) > _layer(m)]
    assert bad == []


def test_there_are_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, path):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_daemon_package_holds_a_handful_of_top_level_modules_and_packages_by_role():
    top = {p.stem for p in DAEMON.glob("*.py")}
    assert top == TOP_LEVEL
    packages = {p.name for p in DAEMON.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS)
    for name in packages:                       # each says what it holds
        assert ast.get_docstring(ast.parse((DAEMON / name / "__init__.py").read_text()))


def test_every_module_opens_with_a_docstring_and_stays_under_600_lines():
    for base, package in ((DAEMON, "linkband_historyd"), (CLIENT, "linkband_history")):
        for name, path in _modules(base, package).items():
            text = path.read_text(encoding="utf-8")
            if name.endswith("__main__"):
                continue
            assert ast.get_docstring(ast.parse(text)), name
            assert text.count("\n") <= 600, f"{name}: {text.count(chr(10))} lines"


def test_the_client_never_imports_the_daemon():
    for name, path in _modules(CLIENT, "linkband_history").items():
        assert not any(i.startswith("linkband_historyd") for i in _imports(path, {})), name
