"""The models that grade images: FID features, CLIP score, attribute classifier.

Default world: the world CLIP (features and score) and the world classifier, all trained by the
`evaluators` stage. Real models (prompts.source: files): clean-fid's Inception from a local
file, an open_clip model from a local checkpoint; concept accuracy needs the world classifier
and is skipped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import Params
from ..errors import UserError
from ..evaluators.classifier import load_classifier
from ..evaluators.world_clip import WorldClip
from ..images import u8_to_pil


class InceptionFeatures:
    """clean-fid's torchscript Inception (pool3, 2048-d) from `evaluate.inception_path`; never downloaded."""

    def __init__(self, path: str):
        from cleanfid.inception_torchscript import InceptionV3W

        file = Path(path)
        if file.name != "inception-2015-12-05.pt" or not file.is_file():
            raise UserError(f"evaluate.inception_path: {path} is not clean-fid's inception-2015-12-05.pt file")
        from cleanfid.resize import build_resizer

        self.model = InceptionV3W(str(file.parent), download=False, resize_inside=False).eval()
        self.resize = build_resizer("clean")  # clean-fid's own PIL bicubic to 299: FIDs comparable with its numbers

    @torch.no_grad()
    def __call__(self, images_u8: torch.Tensor) -> np.ndarray:
        feats = []
        hwc = images_u8.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)
        for s in range(0, len(hwc), 64):
            x = torch.from_numpy(np.stack([self.resize(img) for img in hwc[s: s + 64]]).transpose(0, 3, 1, 2))
            feats.append(self.model(x.float()).numpy())
        return np.concatenate(feats)


class OpenClipScore:
    """CLIP score with a user-given open_clip model: 100 * max(cos, 0), averaged."""

    def __init__(self, name: str, checkpoint: str):
        import open_clip

        if not Path(checkpoint).is_file():
            raise UserError(f"evaluate.clip_checkpoint: {checkpoint} not found")
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(name, pretrained=checkpoint)
        self.tokenizer = open_clip.get_tokenizer(name)
        self.model.eval()

    @torch.no_grad()
    def __call__(self, images_u8: torch.Tensor, texts: list[str]) -> float:
        x = torch.stack([self.preprocess(im) for im in u8_to_pil(images_u8)])
        img = self.model.encode_image(x, normalize=True)
        txt = self.model.encode_text(self.tokenizer(texts), normalize=True)
        return (100 * (img * txt).sum(-1).clamp(min=0)).mean().item()


class Judges:
    def __init__(self, params: Params):
        cfg, folder = params.evaluate, params.evaluators.out_dir
        world = params.prompts.source == "world"
        self.world_clip = WorldClip.load(folder) if world else None
        self.classifier = load_classifier(folder) if world else None
        if cfg.fid_features == "inception":
            self.features = InceptionFeatures(cfg.inception_path)
        elif world:
            self.features = lambda images: self.world_clip.image_features(images).numpy()
        else:
            self.features = None  # no reference images to compare against without Inception
        if cfg.clip_model:
            self.clip_score = OpenClipScore(cfg.clip_model, cfg.clip_checkpoint)
        elif world:
            self.clip_score = self.world_clip.clip_score
        else:
            self.clip_score = None
