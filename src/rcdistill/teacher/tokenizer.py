"""A real CLIP BPE tokenizer, offline: vocab.json/merges.txt built from open_clip's bundled BPE file."""
from __future__ import annotations

import gzip

from transformers import CLIPTokenizer

N_MERGES = 49152 - 256 - 2  # the merges CLIP uses; gives the standard 49408-token vocabulary


def clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's 49408-token vocabulary and BPE merges, rebuilt from open_clip's bundled file."""
    import open_clip.tokenizer as oct

    lines = gzip.open(oct.default_bpe()).read().decode("utf-8").split("\n")[1: N_MERGES + 1]
    merges = [tuple(m.split()) for m in lines]
    units = list(oct.bytes_to_unicode().values())  # GPT-2/CLIP's reversible byte -> character table
    tokens = units + [u + "</w>" for u in units] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def build_tokenizer(max_length: int) -> CLIPTokenizer:
    vocab, merges = clip_vocab()
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
    assert len(tok) == 49408, f"CLIP vocabulary should hold 49408 tokens, got {len(tok)}"
    return tok
