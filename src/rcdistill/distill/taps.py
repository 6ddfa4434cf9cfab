"""Forward hooks that keep the outputs of named blocks for feature distillation."""
from __future__ import annotations

import torch


def _as_tensor(output) -> torch.Tensor:
    if isinstance(output, tuple):  # down blocks return (hidden, skip states)
        output = output[0]
    return getattr(output, "sample", output)  # transformer blocks return an output object


class FeatureTaps:
    def __init__(self, model: torch.nn.Module, names: list[str]):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise KeyError(f"no module named {missing[0]!r} to tap")
        self.names = names
        self.features: dict[str, torch.Tensor] = {}
        self.handles = [modules[n].register_forward_hook(self._keep(n)) for n in names]

    def _keep(self, name: str):
        def hook(_module, _inputs, output):
            self.features[name] = _as_tensor(output)
        return hook

    def take(self) -> list[torch.Tensor]:
        out = [self.features[n] for n in self.names]
        self.features = {}
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
