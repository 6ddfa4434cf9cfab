"""Step 2 of the toy teacher: a tiny CLIPTextModel, pretrained then frozen (as in Stable Diffusion).

Pretraining objective: read every attribute a caption names off the pooled (end-of-text)
state. This gives the UNet a well-separated conditioning from its first step; the encoder is
frozen afterwards, so the UNet never co-adapts with a moving text representation.
"""
from __future__ import annotations

import random

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..world.captions import caption
from ..world.vocab import ATTRIBUTES
from ..training import optimizer_step, report


def build_text_encoder(cfg, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.hidden_size * 2,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        max_position_embeddings=cfg.max_length,
        projection_dim=cfg.hidden_size,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def tokenize(tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    """Exactly what StableDiffusionPipeline does with a prompt."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def hidden_states(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, texts: list[str], device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    """What a UNet cross-attends to for these texts, on `device` in `dtype`."""
    return text_encoder(tokenize(tokenizer, texts).to(device))[0].to(dtype)


@torch.no_grad()
def encode_texts(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, texts: list[str], batch_size: int = 1024) -> torch.Tensor:
    text_encoder.eval()
    out = [text_encoder(tokenize(tokenizer, texts[s: s + batch_size]))[0] for s in range(0, len(texts), batch_size)]
    return torch.cat(out)


def _caption_batch(rng: random.Random, n: int) -> tuple[list[str], dict[str, torch.Tensor]]:
    texts, labels = [], {a: [] for a in ATTRIBUTES}
    for _ in range(n):
        attrs = {a: rng.choice(v) for a, v in ATTRIBUTES.items()}
        cap = caption(attrs["shape"], attrs["colour"], attrs["size"], attrs["position"], rng)
        texts.append(cap.text)
        for a, values in ATTRIBUTES.items():
            named = getattr(cap, a)
            labels[a].append(values.index(named) if named is not None else -100)  # -100: not said
    return texts, {a: torch.tensor(v) for a, v in labels.items()}


def train_text_encoder(cfg, tokenizer: CLIPTokenizer, seed: int, log=None) -> tuple[CLIPTextModel, dict[str, float]]:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = build_text_encoder(cfg, tokenizer).train()
    heads = nn.ModuleDict({a: nn.Linear(cfg.hidden_size, len(v)) for a, v in ATTRIBUTES.items()})
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    for step in (bar := tqdm(range(cfg.steps), desc="teacher text encoder")):
        texts, labels = _caption_batch(rng, cfg.batch_size)
        pooled = model(tokenize(tokenizer, texts)).pooler_output
        loss = sum(F.cross_entropy(heads[a](pooled), labels[a], ignore_index=-100) for a in ATTRIBUTES)
        optimizer_step(loss, opt, sched)
        report(step, bar, log, {"text_encoder/loss": loss.item()})
    model.eval()
    texts, labels = _caption_batch(random.Random(seed + 1), 2000)
    with torch.no_grad():
        pooled = model(tokenize(tokenizer, texts)).pooler_output
        acc = {a: ((heads[a](pooled).argmax(-1) == labels[a]).float().sum() / (labels[a] != -100).sum()).item()
               for a in ATTRIBUTES}
    model.requires_grad_(False)
    return model, acc
