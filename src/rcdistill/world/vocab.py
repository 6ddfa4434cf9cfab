"""The shapes world's attributes: the single source of names for renderer, captions and evaluators."""
from __future__ import annotations

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple", "white")
SIZES = ("small", "large")
POSITIONS = ("center", "top left", "top right", "bottom left", "bottom right")

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "size": SIZES,
    "position": POSITIONS,
}

# Held-out concepts are named by shape or colour (the attributes a caption always names).
CONCEPTS: dict[str, str] = {name: attr for attr in ("shape", "colour") for name in ATTRIBUTES[attr]}

# Hues kept far apart: a diffusion model's colour errors are mixtures of neighbours (a cyan
# between green and blue was the teacher's most confused colour), so white replaces cyan.
RGB = {
    "red": (225, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 245),
    "yellow": (240, 215, 30),
    "purple": (190, 45, 210),
    "white": (235, 235, 235),
}
BACKGROUND_RGB = (22, 22, 26)
