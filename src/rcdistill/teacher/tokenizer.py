"""A real CLIP BPE tokenizer, offline: vocab.json/merges.txt built from open_clip's bundled BPE file."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from transformers import CLIPTokenizer

N_MERGES = 49152 - 256 - 2  # the merges CLIP uses; gives the standard 49408-token vocabulary


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_vocab(folder: Path) -> tuple[Path, Path]:
    import open_clip.tokenizer as oct

    bpe = Path(oct.default_bpe())
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1: N_MERGES + 1]
    merges = [tuple(m.split()) for m in merges]
    units = list(_bytes_to_unicode().values())
    vocab = units + [u + "</w>" for u in units] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    merges_file.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return vocab_file, merges_file


def build_tokenizer(workdir: Path, max_length: int) -> CLIPTokenizer:
    vocab_file, merges_file = write_clip_vocab(workdir)
    tok = CLIPTokenizer(
        vocab_file=str(vocab_file),
        merges_file=str(merges_file),
        model_max_length=max_length,
        pad_token="<|endoftext|>",
    )
    assert len(tok) == 49408, f"CLIP vocabulary should hold 49408 tokens, got {len(tok)}"
    return tok
