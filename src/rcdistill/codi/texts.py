"""What a conditional model's text says (`codi.text`).

`caption`: the whole caption. `colour`: only its colour word. In the edge task the condition
gives shape, size and position; a caption that names them too leaves the condition path nothing
to learn (measured: with whole captions every model drew the caption's shape, not the edge
map's). With `colour` the student reads "red" while the frozen teacher, which sees no condition,
still takes its ODE step with a whole caption: the cached latent's own, recoloured to the text's
colour, so a Random Conditioning text varies the colour only and the teacher's target keeps the
shape the condition shows.
"""
from __future__ import annotations

import dataclasses
import re

import torch

from ..distill.data import RCBatch
from ..world import COLOURS

def text_view(params) -> str:
    """`codi.text`, with `auto` resolved: colour with the world's prompts, caption with prompt files."""
    if params.codi.text != "auto":
        return params.codi.text
    return "colour" if params.prompts.source == "world" else "caption"


_COLOUR = re.compile(r"\b(" + "|".join(COLOURS) + r")\b", re.IGNORECASE)


def colour_of(text: str) -> str | None:
    m = _COLOUR.search(text)
    return m[1].lower() if m else None


def view_text(text: str, view: str) -> str:
    """The text a model with this view reads ("" stays "": no text)."""
    if view == "caption" or not text:
        return text
    colour = colour_of(text)
    if colour is None:
        raise ValueError(f"{text!r} names no colour ({', '.join(COLOURS)}); this model reads only the colour of its "
                         "prompt (shape, size and position come from its condition)")
    return colour


def recoloured(caption: str, colour: str) -> str:
    return _COLOUR.sub(colour, caption)


class ViewedSampler:
    """An RC sampler whose batches carry the student's view of each text and, in `teacher_texts`,
    what the frozen teacher reads for it (with `caption` both are the sampler's texts)."""

    def __init__(self, sampler, captions: list[str], view: str):
        self.sampler, self.captions, self.view = sampler, captions, view

    def sample(self, batch_size: int, step: int | None = None) -> RCBatch:
        batch = self.sampler.sample(batch_size, step)
        if self.view == "caption":
            return batch
        own = [self.captions[i] for i in batch.index.tolist()]
        colours = [colour_of(t) if t else None for t in batch.texts]
        teacher = [recoloured(o, c) if c else "" for o, c in zip(own, colours)]
        # an RC text of the latent's own colour pairs it with its own caption again: the clean term applies
        same = torch.tensor([c is not None and c == colour_of(o) for o, c in zip(own, colours)])
        return dataclasses.replace(batch, texts=[c or "" for c in colours], teacher_texts=teacher,
                                   paired=batch.paired | same)

    def texts(self) -> list[str]:
        """Every text a batch can carry (for a text bank that encodes them once)."""
        if self.view == "caption":
            return []
        return [*COLOURS, *(recoloured(c, colour) for c in set(self.captions) for colour in COLOURS)]
