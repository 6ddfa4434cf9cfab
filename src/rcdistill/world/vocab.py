"""The shapes world's attributes: the single source of names for renderer, captions and evaluators."""
from __future__ import annotations

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple", "cyan")
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

RGB = {
    "red": (222, 45, 45),
    "green": (50, 185, 70),
    "blue": (40, 85, 245),
    "yellow": (240, 215, 35),
    "purple": (195, 50, 215),
    "cyan": (35, 205, 215),
}
BACKGROUND_RGB = (22, 22, 26)
