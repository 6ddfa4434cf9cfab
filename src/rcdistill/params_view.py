"""What a stage may read of the params: the keys its stage-table row declares to DVC (its `params`
and the `${...}` paths of its deps and outs). A stage that reads anything else fails at once with the
key's name, instead of running with a value DVC does not track (a change to it would never rerun it)."""
from __future__ import annotations

import re

from pydantic import BaseModel

from .errors import ParamsError
from .stage_table import Stage

_INTERPOLATED = re.compile(r"\$\{([^}]+)\}")
# Where a stage's MLflow run is logged, not what the stage computes: readable by every stage and
# never a reason to rerun one.
UNTRACKED = ("tracking",)


def declared_keys(row: Stage) -> frozenset[str]:
    paths = " ".join(row.deps + row.outs)
    return frozenset(row.params) | frozenset(_INTERPOLATED.findall(paths)) | frozenset(UNTRACKED)


class ParamsView:
    """Read-only attribute access to `model` limited to `allowed` dotted keys below `prefix`."""

    def __init__(self, model: BaseModel, allowed: frozenset[str], stage: str, prefix: str = ""):
        self._model, self._allowed, self._stage, self._prefix = model, allowed, stage, prefix

    def _whole(self, key: str) -> bool:
        """The key is declared, or lies inside a declared section."""
        return key in self._allowed or any(key.startswith(a + ".") for a in self._allowed)

    def _part(self, key: str) -> bool:
        """Some key inside this section is declared."""
        return any(a.startswith(key + ".") for a in self._allowed)

    def __getattr__(self, name: str):
        if name not in type(self._model).model_fields:  # methods and properties of the model itself
            return getattr(self._model, name)
        key = f"{self._prefix}{name}"
        value = getattr(self._model, name)
        if self._whole(key):
            return value
        if isinstance(value, BaseModel) and self._part(key):
            return ParamsView(value, self._allowed, self._stage, key + ".")
        raise ParamsError(f"stage {self._stage} reads params key {key}, which its stage-table row does not declare "
                        "(src/rcdistill/stage_table.py): DVC would not rerun it when the key changes")

    def model_dump(self) -> dict:
        """The declared keys only (what the stage's MLflow run logs)."""
        out = {}
        for name in type(self._model).model_fields:
            key = f"{self._prefix}{name}"
            if self._whole(key):
                value = getattr(self._model, name)
                out[name] = value.model_dump() if isinstance(value, BaseModel) else value
            elif self._part(key):
                out[name] = getattr(self, name).model_dump()
        return out


def stage_params(params: BaseModel, row: Stage) -> ParamsView:
    return ParamsView(params, declared_keys(row), row.name)
