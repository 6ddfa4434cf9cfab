"""Make PyPI's (CUDA-built) torchvision importable beside a CPU torch.

That torchvision registers kernels for `torchvision::nms`/`qnms` but its CUDA extension cannot
load on a CPU torch, so the op schemas are missing and `import torchvision` fails. Declaring
the two schemas first is enough for everything open_clip and clean-fid use. Must run before
anything imports torchvision; a matching torch/torchvision pair (e.g. CUDA + CUDA) is left alone.
Self-contained (standard library and torch only): registered models carry this file with them
(MLflow `code_paths`), so a model server that never imports rcdistill loads them too.
"""
from __future__ import annotations

import sys
from importlib import metadata
from importlib.abc import MetaPathFinder

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # keep the Library object alive: dropping it removes the definitions


def ensure_torchvision_importable() -> None:
    global _library
    if _library is not None or "torchvision" in sys.modules:
        return
    try:
        tv_version = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        return
    import torch

    if torch.version.cuda is not None or "+cpu" in tv_version:
        return  # torch and torchvision are built alike: nothing to fix
    if torch._C._jit_get_schemas_for_operator("torchvision::nms"):
        return  # another copy of this module (e.g. the one shipped with a registered model) did it
    _library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        _library.define(schema)


class _FixBeforeTorchvision(MetaPathFinder):
    """Applies the fix the moment something first imports torchvision, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
            ensure_torchvision_importable()
        return None  # the regular finders locate the module


def fix_torchvision_on_import() -> None:
    """Apply the fix when torchvision is first imported, so that importing rcdistill costs no torch
    import: `rcd params check` and friends start in under a second."""
    if "torchvision" in sys.modules or any(isinstance(f, _FixBeforeTorchvision) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _FixBeforeTorchvision())
