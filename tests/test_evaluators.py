import pytest
import torch

from rcdistill.config import ClipParams
from rcdistill.evaluators.classifier import accuracy
from rcdistill.evaluators.world_clip import WorldClip, train_world_clip
from rcdistill.world.render import random_attributes, render_attributes
from rcdistill.world.vocab import ATTRIBUTES


def test_classifier_reads_fresh_renders(classifier):
    model, acc = classifier
    assert acc["colour"] > 0.95 and acc["shape"] > 0.8 and acc["position"] > 0.95, acc
    test = random_attributes(300, seed=77)
    fresh = accuracy(model.predict(render_attributes(test, seed=77)), test)
    assert fresh["colour"] > 0.95 and fresh["shape"] > 0.8, fresh


def test_classifier_is_not_fooled_by_blank_or_noise(classifier):
    model, _ = classifier
    test = random_attributes(600, seed=78)
    blank = torch.full((600, 3, 32, 32), 24, dtype=torch.uint8)
    noise = torch.randint(0, 256, (600, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for images in (blank, noise):
        acc = accuracy(model.predict(images), test)
        for attr in ("shape", "colour"):
            chance = 1 / len(ATTRIBUTES[attr])
            assert acc[attr] < chance + 0.12, (attr, acc)


def test_world_clip_trains_saves_and_loads(tmp_path):
    cfg = ClipParams(embed_dim=16, width=32, layers=1, steps=5, batch_size=16, eval_images=64)
    clip, acc = train_world_clip(cfg, seed=0, image_size=32)
    assert set(acc) == {"shape", "colour"}
    clip.save(tmp_path)
    again = WorldClip.load(tmp_path)
    images = render_attributes(random_attributes(8, seed=1), seed=1)
    assert torch.allclose(clip.image_features(images), again.image_features(images), atol=1e-6)
    texts = ["a red circle"] * 8
    # the definition: mean of 100 * max(cos(image, text), 0) over the pairs
    cos = (again.image_features(images) * again.text_features(texts)).sum(-1)
    assert again.clip_score(images, texts) == pytest.approx((100 * cos.clamp(min=0)).mean().item(), rel=1e-5)
