"""The package's layering: no import cycles between project modules or between its top-level
packages, and no project import hidden inside a function (where a cycle would go unnoticed); the
CLI alone imports lazily, to start fast."""
import ast
from pathlib import Path

from rcdistill.code_deps import PACKAGE, SRC, _imports, module_file

PKG_DIR = SRC / PACKAGE
LAZY_OK = {"rcdistill.cli"}  # one subcommand should not import every other's libraries


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG_DIR.rglob("*.py"):
        rel = f.relative_to(SRC).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = f
    return out


def _unit(module: str) -> str:
    """rcdistill.a.b -> rcdistill.a (a top-level package or module)."""
    return ".".join(module.split(".")[:2])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_project_import_inside_a_function():
    hidden = []
    for module, f in _modules().items():
        if module in LAZY_OK:
            continue
        for fn in ast.walk(ast.parse(f.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(PACKAGE)):
                        hidden.append(f"{module}:{node.lineno}")
    assert not hidden, hidden


def test_no_import_cycles_between_modules_or_packages():
    mods = _modules()
    graph = {m: {d for d in _imports(m, f, SRC) if d != m and not m.startswith(d + ".")} for m, f in mods.items()}
    assert _cycle(graph) is None, _cycle(graph)
    units: dict[str, set[str]] = {}
    for m, deps in graph.items():
        units.setdefault(_unit(m), set()).update(_unit(d) for d in deps if _unit(d) not in (_unit(m), PACKAGE))
    assert _cycle(units) is None, _cycle(units)


def test_the_checks_find_a_cycle_and_a_hidden_import():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert module_file("rcdistill.config") is not None
