"""A small CLIP for the shapes world, trained with open_clip's ClipLoss.

A separate model from the teacher's text encoder (another architecture, another seed), so it
can grade teacher and students alike: CLIP score, zero-shot attributes, and the image
features clean-fid uses for FID/KID on this world.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..images import resize_u8, to_unit
from ..world.captions import caption
from ..world.render import random_attributes, render_attributes
from ..world.vocab import ATTRIBUTES, COLOURS, SHAPES
from ..training import optimizer_step, report

CONTEXT_LENGTH = 24
MIN_INPUT_SIZE = 32  # the ModifiedResNet pools 32x down: smaller worlds are upsampled to this


def clip_config(cfg, image_size: int) -> dict:
    return {
        "embed_dim": cfg.embed_dim,
        # a small ModifiedResNet: convolutions pick up shape far sooner than a ViT at this scale
        "vision_cfg": {"image_size": image_size, "layers": [1, 1, 1, 1], "width": cfg.width // 2, "head_width": 32},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": cfg.width, "heads": 4,
                     "layers": cfg.layers, "mlp_ratio": 2.0},
    }


class WorldClip:
    """open_clip model + tokenizer + the preprocessing it was trained with."""

    def __init__(self, config: dict, model: open_clip.CLIP | None = None):
        self.config = config
        self.model = model or open_clip.CLIP(**config)
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=config["text_cfg"]["context_length"])
        self.image_size = config["vision_cfg"]["image_size"]
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def preprocess(self, images_u8: torch.Tensor) -> torch.Tensor:
        return to_unit(resize_u8(images_u8, self.image_size)) * 2 - 1

    @torch.no_grad()
    def image_features(self, images_u8: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        # evaluate asks twice for the same images (FID features, then CLIP score): the last answer is kept
        if self._last is not None and self._last[0] is images_u8:
            return self._last[1]
        self.model.eval()
        feats = torch.cat([self.model.encode_image(self.preprocess(images_u8[s: s + batch_size]), normalize=True)
                           for s in range(0, len(images_u8), batch_size)])
        self._last = (images_u8, feats)
        return feats

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        self.model.eval()
        return self.model.encode_text(self.tokenizer(texts), normalize=True)

    def clip_score(self, images_u8: torch.Tensor, texts: list[str]) -> float:
        """Mean of 100 * max(cos(image, text), 0), the usual CLIP score convention."""
        cos = (self.image_features(images_u8) * self.text_features(texts)).sum(-1)
        return (100 * cos.clamp(min=0)).mean().item()

    def zero_shot(self, images_u8: torch.Tensor, attribute: str) -> torch.Tensor:
        """Predict an attribute by nearest class text (prompt-ensembled over the other attribute)."""
        values = ATTRIBUTES[attribute]
        if attribute == "shape":
            prompts = [[f"a {c} {v}" for c in COLOURS] for v in values]
        else:
            prompts = [[f"a {v} {s}" for s in SHAPES] for v in values]
        classes = torch.stack([F.normalize(self.text_features(p).mean(0), dim=-1) for p in prompts])
        return (self.image_features(images_u8) @ classes.T).argmax(-1)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.model.state_dict(), folder / "world_clip.safetensors")
        (folder / "world_clip.json").write_text(json.dumps(self.config, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> "WorldClip":
        folder = Path(folder)
        clip = cls(json.loads((folder / "world_clip.json").read_text()))
        clip.model.load_state_dict(load_file(folder / "world_clip.safetensors"))
        clip.model.eval()
        return clip


def train_world_clip(cfg, seed: int, image_size: int, log=None) -> tuple[WorldClip, dict[str, float]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    clip = WorldClip(clip_config(cfg, max(MIN_INPUT_SIZE, image_size)))
    n = cfg.batch_size * 40  # a fixed pool of renders; captions are redrawn every step
    attrs = random_attributes(n, seed)
    images = render_attributes(attrs, seed, image_size)
    names = {a: [ATTRIBUTES[a][i] for i in attrs[a].tolist()] for a in ATTRIBUTES}
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(clip.model.parameters(), lr=cfg.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    clip.model.train()
    for step in (bar := tqdm(range(cfg.steps), desc="world clip")):
        idx = torch.randint(n, (cfg.batch_size,), generator=gen).tolist()
        texts = [caption(names["shape"][i], names["colour"][i], names["size"][i], names["position"][i], rng).text
                 for i in idx]
        img_f = clip.model.encode_image(clip.preprocess(images[idx]), normalize=True)
        txt_f = clip.model.encode_text(clip.tokenizer(texts), normalize=True)
        loss = loss_fn(img_f, txt_f, clip.model.logit_scale.exp())
        optimizer_step(loss, opt, sched)
        with torch.no_grad():
            clip.model.logit_scale.clamp_(0, 4.6052)  # CLIP's cap: temperature >= 0.01
        report(step, bar, log, {"clip/loss": loss.item()})
    clip.model.eval()
    test = random_attributes(cfg.eval_images, seed + 1000)
    test_images = render_attributes(test, seed + 1000, image_size)
    acc = {a: (clip.zero_shot(test_images, a) == test[a]).float().mean().item() for a in ("shape", "colour")}
    return clip, acc
