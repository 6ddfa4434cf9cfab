"""Attribute classifier: one CNN, a head per attribute (shape, colour, size, position).

Trained on fresh renders with noise, blur and contrast augmentation, so it reads blurry or
noisy generated images; measures concept accuracy of any image set that has attribute labels.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..images import resize_u8, to_unit
from ..world.render import random_attributes, render_attributes
from ..world.vocab import ATTRIBUTES
from ..training import optimizer_step, report

INPUT_SIZES = (16, 32)  # the classifier reads its world's size; other image sizes are resized to it


class AttributeClassifier(nn.Module):
    def __init__(self, width: int = 32, input_size: int = 32):
        super().__init__()
        if input_size not in INPUT_SIZES:
            raise ValueError(f"classifier input size {input_size}: one of {INPUT_SIZES}")
        w = width
        self.input_size = input_size

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())

        self.features = nn.Sequential(
            block(3, w, 1), block(w, 2 * w, 2), block(2 * w, 2 * w, 1), block(2 * w, 4 * w, 2),
            block(4 * w, 4 * w, 2 if input_size == 32 else 1),
        )  # 32 (or 16) -> 4x4 map keeps position information
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 256), nn.SiLU())
        self.heads = nn.ModuleDict({a: nn.Linear(256, len(v)) for a, v in ATTRIBUTES.items()})
        self.config = {"width": width, "input_size": input_size}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(self.features(x * 2 - 1))
        return {a: head(h) for a, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images_u8: torch.Tensor, batch_size: int = 512) -> dict[str, torch.Tensor]:
        self.eval()
        out: dict[str, list[torch.Tensor]] = {a: [] for a in ATTRIBUTES}
        for s in range(0, len(images_u8), batch_size):
            x = to_unit(resize_u8(images_u8[s: s + batch_size], self.input_size))
            for a, logits in self(x).items():
                out[a].append(logits.argmax(-1))
        return {a: torch.cat(v) for a, v in out.items()}


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Noise, blur and contrast changes of the kind decoders and samplers produce."""
    n = x.shape[0]
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    mix = torch.rand(n, 1, 1, 1, generator=gen)
    x = x * (1 - mix) + blur * mix
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.3
    x = (x - 0.5) * contrast + 0.5
    sigma = torch.rand(n, 1, 1, 1, generator=gen) * 0.08
    return (x + sigma * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def accuracy(pred: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> dict[str, float]:
    return {a: (pred[a] == labels[a]).float().mean().item() for a in labels if a in pred}


def train_classifier(cfg, seed: int, image_size: int, log=None) -> tuple[AttributeClassifier, dict[str, float]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    attrs = random_attributes(cfg.train_images, seed)
    input_size = 16 if image_size <= 16 else 32
    images = resize_u8(render_attributes(attrs, seed, image_size), input_size)
    model = AttributeClassifier(input_size=input_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    model.train()
    for step in (bar := tqdm(range(cfg.steps), desc="classifier")):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        logits = model(augment(to_unit(images[idx]), gen))
        loss = sum(F.cross_entropy(logits[a], attrs[a][idx]) for a in ATTRIBUTES)
        optimizer_step(loss, opt, sched)
        report(step, bar, log, {"classifier/loss": loss.item()})
    test = random_attributes(cfg.eval_images, seed + 1000)
    acc = accuracy(model.predict(render_attributes(test, seed + 1000, image_size)), test)
    return model, acc


def save_classifier(model: AttributeClassifier, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), folder / "classifier.safetensors")
    (folder / "classifier.json").write_text(json.dumps({**model.config, "attributes": ATTRIBUTES}, indent=2))


def load_classifier(folder: str | Path) -> AttributeClassifier:
    folder = Path(folder)
    cfg = json.loads((folder / "classifier.json").read_text())
    if {k: tuple(v) for k, v in cfg["attributes"].items()} != ATTRIBUTES:
        raise ValueError(f"{folder / 'classifier.json'}: attributes differ from this version of the world")
    model = AttributeClassifier(width=cfg["width"], input_size=cfg.get("input_size", 32))
    model.load_state_dict(load_file(folder / "classifier.safetensors"))
    return model.eval()
