"""Random-weight stand-ins for the judge files a real-model run takes from its user: clean-fid's
Inception torchscript (`evaluate.inception_path`) and an open_clip checkpoint
(`evaluate.clip_checkpoint`). Same architectures, same file formats, same call paths; the scores
they give mean nothing. For profiles/sd-random, which runs the real-model path without downloads.
"""
from __future__ import annotations

from pathlib import Path

import torch

INCEPTION_FILE = "inception-2015-12-05.pt"  # the only name clean-fid's InceptionV3W loads


class _InceptionTorchscript(torch.nn.Module):
    """The interface clean-fid uses: `.layers(x)` maps [-1, 1] images at 299x299 to pool3 (2048)."""

    def __init__(self):
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=False, init_weights=True, transform_input=False)
        net.dropout, net.fc = torch.nn.Identity(), torch.nn.Identity()
        self.layers = net.eval()

    def forward(self, x):
        return self.layers(x)


def write_random_inception(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = _InceptionTorchscript().eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.zeros(1, 3, 299, 299), check_trace=False)
    path = folder / INCEPTION_FILE
    traced.save(str(path))
    return path


def write_random_open_clip(folder: Path, name: str, seed: int) -> Path:
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    path = folder / f"open_clip_{name.replace('/', '_')}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path
