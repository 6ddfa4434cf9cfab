"""Caption templates for the shapes world: varied wording and word order.

A caption is built from attribute names; templates may leave size or position out
(then the image may show any value of it). Shape and colour are always named, so a
caption names a held-out concept exactly when its shape or colour is held out.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass

from .vocab import COLOURS, POSITIONS, SHAPES, SIZES

SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
# Phrases placing the shape: "in" phrases read after a noun, "short" ones stand alone.
POSITION_IN = {
    "center": ("in the center", "in the middle", "at the centre"),
    "top left": ("in the top left corner", "at the top left", "in the upper left"),
    "top right": ("in the top right corner", "at the top right", "in the upper right"),
    "bottom left": ("in the bottom left corner", "at the bottom left", "in the lower left"),
    "bottom right": ("in the bottom right corner", "at the bottom right", "in the lower right"),
}
POSITION_SHORT = {
    "center": ("center", "centered", "middle"),
    "top left": ("top left", "upper left"),
    "top right": ("top right", "upper right"),
    "bottom left": ("bottom left", "lower left"),
    "bottom right": ("bottom right", "lower right"),
}

# {s} size word, {c} colour, {h} shape, {p} position-in phrase, {q} short position.
FULL_TEMPLATES = (
    "a {s} {c} {h} {p}",
    "{s} {c} {h}, {q}",
    "{q}: a {s} {c} {h}",
    "there is a {s} {h} in {c} {p}",
    "a {c} {h} that is {s}, {p}",
    "a picture of a {s} {c} {h} {p}",
    "{c} {h} ({s}) {p}",
    "the {h} is {c} and {s}, {p}",
    "a {s} {h} coloured {c}, {q}",
    "{p}, one {s} {c} {h}",
)
PARTIAL_TEMPLATES = (  # name shape and colour only, or leave out one attribute
    "a {c} {h}",
    "a {s} {c} {h}",
    "{c} {h} {p}",
    "an image of a {c} {h}",
)
TEMPLATES = FULL_TEMPLATES + PARTIAL_TEMPLATES


@dataclass(frozen=True)
class Caption:
    text: str
    shape: str
    colour: str
    size: str | None  # None: the caption does not say
    position: str | None

    def to_json(self) -> dict:
        return asdict(self)


def _fill(template: str, shape: str, colour: str, size: str, position: str, s: str, p: str, q: str) -> Caption:
    text = template.format(s=s, c=colour, h=shape, p=p, q=q)
    return Caption(
        text=text,
        shape=shape,
        colour=colour,
        size=size if "{s}" in template else None,
        position=position if ("{p}" in template or "{q}" in template) else None,
    )


def caption(shape: str, colour: str, size: str, position: str, rng: random.Random, full: bool = False) -> Caption:
    """One random caption of these attributes (full=True: it names all four)."""
    template = rng.choice(FULL_TEMPLATES if full else TEMPLATES)
    return _fill(
        template, shape, colour, size, position,
        rng.choice(SIZE_WORDS[size]), rng.choice(POSITION_IN[position]), rng.choice(POSITION_SHORT[position]),
    )


def all_captions(shapes=SHAPES, colours=COLOURS) -> list[Caption]:
    """Every distinct caption the templates can say for these shapes and colours (sorted, deduplicated)."""
    seen: dict[str, Caption] = {}
    for h, c, size, pos, t in itertools.product(shapes, colours, SIZES, POSITIONS, TEMPLATES):
        for s in SIZE_WORDS[size] if "{s}" in t else (SIZE_WORDS[size][0],):
            ps = POSITION_IN[pos] if "{p}" in t else (POSITION_IN[pos][0],)
            qs = POSITION_SHORT[pos] if "{q}" in t else (POSITION_SHORT[pos][0],)
            for p, q in itertools.product(ps, qs):
                cap = _fill(t, h, c, size, pos, s, p, q)
                seen.setdefault(cap.text, cap)
    return [seen[k] for k in sorted(seen)]


def names_concept(text: str, concept: str) -> bool:
    """Word-level check that a text names a concept (used to audit the pools)."""
    words = text.replace(",", " ").replace(":", " ").replace("(", " ").replace(")", " ").split()
    return concept in words
