"""The shapes world: attributes, renderer, captions."""
from .vocab import ATTRIBUTES, COLOURS, CONCEPTS, POSITIONS, SHAPES, SIZES  # noqa: F401
