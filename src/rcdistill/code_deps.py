"""The project modules a stage runs: the import closure of its entry module, read from the source.

Every `import` counts, including those inside functions (a lazy import is still code the stage
may run), and importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` too. Over-counting is
safe (a stage reruns when it need not); under-counting is what this exists to prevent.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = "rcdistill"
SRC = Path(__file__).resolve().parent.parent   # the folder that holds the package


def module_file(module: str, src: Path = SRC) -> Path | None:
    """`rcdistill.x.y` -> its .py file (module or package), None when it is not a project module."""
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(module: str, file: Path) -> str:
    return module if file.name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str, file: Path, src: Path) -> set[str]:
    """Project modules that `module` imports (absolute names)."""
    found: set[str] = set()
    pkg = _package_of(module, file)
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            # `from pkg import name`: name may be a submodule
            found.update(f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}", src))
    project = {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}
    # importing a.b.c runs the __init__ of a and a.b
    parents = {".".join(m.split(".")[:i]) for m in project for i in range(1, m.count(".") + 1)}
    return {m for m in project | parents if module_file(m, src)}


@lru_cache(maxsize=None)
def closure(entry: str, src: Path = SRC) -> tuple[str, ...]:
    """Every project module `entry` may run, itself included, sorted."""
    seen: set[str] = set()
    todo = [entry, *(".".join(entry.split(".")[:i]) for i in range(1, entry.count(".") + 1))]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        file = module_file(m, src)
        if file is None:
            raise ModuleNotFoundError(f"{m}: no such project module under {src}")
        seen.add(m)
        todo.extend(_imports(m, file, src) - seen)
    return tuple(sorted(seen))


def closure_files(entry: str, root: Path, src: Path = SRC) -> list[str]:
    """The closure as file paths relative to `root` (the repository), as dvc.yaml lists them."""
    return sorted(module_file(m, src).relative_to(root).as_posix() for m in closure(entry, src))
