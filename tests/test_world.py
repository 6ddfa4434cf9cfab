import torch

from rcdistill.world.captions import TEMPLATES, all_captions, names_concept
from rcdistill.world.render import random_attributes, render_attributes
from rcdistill.world.vocab import ATTRIBUTES, COLOURS, POSITIONS, SHAPES, SIZES


def test_world_is_big_enough():
    assert len(SHAPES) >= 5 and len(COLOURS) >= 6 and len(SIZES) >= 2 and len(POSITIONS) >= 5
    assert len(TEMPLATES) >= 8


def test_renderer_is_deterministic_and_seed_dependent():
    attrs = random_attributes(64, seed=11)
    a = render_attributes(attrs, seed=5)
    b = render_attributes(attrs, seed=5)
    c = render_attributes(attrs, seed=6)
    assert a.dtype == torch.uint8 and a.shape == (64, 3, 32, 32)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # jitter depends on the seed


def test_renderer_is_antialiased_and_shapes_differ():
    n = len(SHAPES)
    attrs = {"shape": torch.arange(n), "colour": torch.zeros(n, dtype=torch.long),
             "size": torch.ones(n, dtype=torch.long), "position": torch.zeros(n, dtype=torch.long)}
    imgs = render_attributes(attrs, seed=0).float()
    red = imgs[:, 0]
    # edge pixels take values strictly between background and shape colour
    assert ((red > 40) & (red < 200)).sum() > 0
    for i in range(n):
        for j in range(i + 1, n):
            assert (imgs[i] - imgs[j]).abs().mean() > 2, (SHAPES[i], SHAPES[j])


def test_other_image_sizes_scale_the_geometry():
    attrs = random_attributes(4, seed=1)
    big = render_attributes(attrs, seed=1, image_size=64).float()
    small = render_attributes(attrs, seed=1, image_size=32).float()
    down = torch.nn.functional.avg_pool2d(big, 2)
    assert (down - small).abs().mean() < 6


def test_all_captions_name_their_attributes():
    caps = all_captions()
    assert len({c.text for c in caps}) == len(caps)
    for c in caps[::97]:
        assert names_concept(c.text, c.shape) and names_concept(c.text, c.colour)
        for attr in ("size", "position"):
            assert getattr(c, attr) is None or getattr(c, attr) in ATTRIBUTES[attr]
