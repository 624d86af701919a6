"""The engine does not know the applications: it never imports quantscan.apps, its text names no
application, and the package has no import cycles."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "workflow" / "quantscan"

#: the plug-in host: validates the config by asking every application to check its section
HOST = {"quantscan.config"}
#: the engine packages and modules that must not name an application
ENGINE = ["runtime", "compress", "export", "tasks", "train.py", "summary.py", "data.py"]
APP_WORDS = re.compile(r"sweep|viral|neutral|table ?6|seed ?00\d", re.IGNORECASE)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported quantscan module, at module level?) of every import in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            if t == "quantscan" or t.startswith("quantscan."):
                out.append((t, id(node) in top))
    return out


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(target: str) -> str | None:
    """The module a dotted import target names (``pkg.mod.func`` -> ``pkg.mod``)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def test_the_engine_never_imports_an_application():
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("quantscan.apps") or name in HOST:
            continue
        for target, _ in imports(path):
            if target.startswith("quantscan.apps"):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("part", ENGINE)
def test_engine_text_names_no_application(part):
    root = PACKAGE / part
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    assert files, f"no engine files under {root}"
    hits = [
        f"{f.relative_to(PACKAGE)}:{i}: {line.strip()}"
        for f in files
        for i, line in enumerate(f.read_text().splitlines(), 1)
        if APP_WORDS.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_no_import_cycles_at_module_level():
    graph = {
        name: {m for t, top in imports(path) if top and (m := resolve(t)) and m != name}
        for name, path in MODULES.items()
    }
    # a package's __init__ importing its own submodules is not a cycle of the submodule
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt) :] + [nxt]
                if not all(n == cycle[0] or cycle[0].startswith(n + ".") for n in cycle[1:-1]):
                    cycles.append(" -> ".join(cycle))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "\n".join(cycles)


def test_the_import_graph_is_read():
    """The checks above see real imports (guards against a parser that finds nothing)."""
    assert ("quantscan.atomic", True) in [
        (resolve(t), top) for t, top in imports(PACKAGE / "summary.py")
    ]
    assert any(t.startswith("quantscan.apps") for t, _ in imports(PACKAGE / "config.py"))
