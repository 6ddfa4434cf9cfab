"""Flow parameters -> params.yaml: gather the overrides and write them in place, comments kept."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml


def collect_overrides(rc_prob: float | None, steps: int | None, student: str | None,
                      overrides: dict[str, Any] | None, consistency_rc_prob: float | None = None,
                      consistency_steps: int | None = None, consistency_init: str | None = None) -> dict[str, Any]:
    out = dict(overrides or {})
    for key, value in {"distill.rc_prob": rc_prob, "distill.steps": steps, "distill.student": student,
                       "consistency.rc_prob": consistency_rc_prob, "consistency.steps": consistency_steps,
                       "consistency.init": consistency_init}.items():
        if value is not None:
            out[key] = value
    return out


def _get(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


def _set(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        data = data.setdefault(p, {})
    data[leaf] = value


_SCALAR = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^']|'')*'|[^,}\]#\n]*?(?=\s*(?:#|,|\}|\]|$))")


def _edit_in_place(text: str, changes: dict[str, Any]) -> str | None:
    """Replace each changed scalar where it stands (comments and layout untouched); None if unsure."""
    from ruamel.yaml import YAML

    doc = YAML().load(text)
    lines = text.splitlines(keepends=True)
    spots = []
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = doc
        for p in parents:
            node = node.get(p) if hasattr(node, "get") else None
            if node is None:
                return None
        if not hasattr(node, "lc") or leaf not in node or isinstance(node[leaf], (dict, list)):
            return None
        line, col = node.lc.value(leaf)
        spots.append((line, col, json.dumps(value)))
    for line, col, new in sorted(spots, reverse=True):
        m = _SCALAR.match(lines[line], col)
        if m is None or m.end() == col:
            return None
        lines[line] = lines[line][:col] + new + lines[line][m.end():]
    return "".join(lines)


def apply_overrides(params_path: Path, overrides: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Write the overrides into params.yaml atomically; return {key: (old, new)} of what changed."""
    text = params_path.read_text()
    data = yaml.safe_load(text) or {}
    changes = {k: v for k, v in overrides.items() if _get(data, k) != v}
    if not changes:
        return {}
    expected = yaml.safe_load(text) or {}
    for k, v in changes.items():
        _set(expected, k, v)
    new_text = _edit_in_place(text, changes)
    if new_text is None or yaml.safe_load(new_text) != expected:
        import io

        from ruamel.yaml import YAML  # keeps comments; may re-wrap long flow mappings
        ry = YAML()
        ry.preserve_quotes = True
        ry.width = 4096
        doc = ry.load(text)
        for k, v in changes.items():
            _set(doc, k, v)
        buf = io.StringIO()
        ry.dump(doc, buf)
        new_text = buf.getvalue()
        if yaml.safe_load(new_text) != expected:
            raise RuntimeError(f"could not write overrides into {params_path} faithfully")
    tmp = params_path.with_name(f".{params_path.name}.{os.getpid()}.tmp")
    tmp.write_text(new_text)
    os.replace(tmp, params_path)
    return {k: (None if _get(data, k) is KeyError else _get(data, k), v) for k, v in changes.items()}
