"""Stage `teacher` (teacher.source: toy): classifier-checked VAE -> frozen text encoder -> UNet.

Each part proves itself before the next is built: the VAE's reconstructions must classify
correctly, the text encoder must read the captions, conditional and unconditional UNet
predictions must differ, and the assembled pipeline must reload from disk. The quality gate on
the `seen` and `unseen` eval sets is the next stage (`teacher/gate.py`).
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from ..config import Params
from ..errors import GateFailed, UserError
from ..evaluators.classifier import accuracy, load_classifier
from ..fingerprint import teacher_fingerprint
from ..floors import floor_failures
from ..io import atomic_dir, atomic_write_json
from ..sampling import load_pipeline
from ..stage_table import TEACHER_DIR, metrics_file
from ..tracking import stage_run
from ..training import timed
from ..world.captions import caption
from ..world.render import random_attributes, render_attributes
from ..world.vocab import ATTRIBUTES
from .pipeline import assemble, save
from .text_encoder import encode_texts, train_text_encoder
from .tokenizer import build_tokenizer
from .unet import cond_uncond_gap, train_unet
from .vae import decode, encode, train_vae

CHECKS_FILE = Path(metrics_file("teacher"))
CHECKS_NAME = "training_checks.json"   # kept inside the teacher folder too


def train_toy_teacher(params: Params, out_dir: Path, log, seconds: dict[str, float] | None = None) -> dict:
    """Trains and saves the teacher; its step checks are returned, each phase's wall time is added
    to `seconds` (render, vae, text_encoder, encode, unet, save)."""
    cfg, seed = params.teacher, params.teacher.seed
    seconds = {} if seconds is None else seconds
    classifier = load_classifier(params.evaluators.out_dir)
    checks: dict[str, float] = {}

    # World data: every concept, held-out ones included (the teacher must know them).
    with timed(seconds, "render"):
        attrs = random_attributes(cfg.unet.train_images, seed)
        images = render_attributes(attrs, seed, params.world.image_size)
        rng = random.Random(seed)
        names = {a: [ATTRIBUTES[a][i] for i in attrs[a].tolist()] for a in ATTRIBUTES}
        texts = [caption(names["shape"][i], names["colour"][i], names["size"][i], names["position"][i], rng).text
                 for i in range(len(images))]

    with timed(seconds, "vae"):
        vae = train_vae(cfg.vae, images[: max(2048, len(images) // 2)], seed, log)
        test = random_attributes(1000, seed + 7)
        test_images = render_attributes(test, seed + 7, params.world.image_size)
        recon = accuracy(classifier.predict(decode(vae, encode(vae, test_images))), test)
    checks.update({f"vae_recon_{a}": v for a, v in recon.items()})

    with timed(seconds, "text_encoder"):
        tokenizer = build_tokenizer(cfg.text_encoder.max_length)
        text_encoder, text_acc = train_text_encoder(cfg.text_encoder, tokenizer, seed, log)
    checks.update({f"text_{a}": v for a, v in text_acc.items()})

    with timed(seconds, "encode"):
        vocab = sorted(set(texts))
        row_of = {t: i for i, t in enumerate(vocab)}
        text_embeds = encode_texts(text_encoder, tokenizer, vocab)
        empty = encode_texts(text_encoder, tokenizer, [""])[0]
        latents = encode(vae, images, generator=torch.Generator().manual_seed(seed))
        text_index = torch.tensor([row_of[t] for t in texts])
    with timed(seconds, "unet"):
        unet = train_unet(cfg.unet, latents, text_index, text_embeds, empty, seed, log)
    checks["cond_uncond_gap"] = cond_uncond_gap(unet, latents[:256], text_embeds[text_index[:256]], empty)
    log({f"checks.{k}": v for k, v in checks.items()})

    with timed(seconds, "save"):
        save(assemble(vae, text_encoder, tokenizer, unet, cfg.unet.prediction_type), out_dir)
    log({f"seconds.{k}": v for k, v in seconds.items()})
    return checks


def check_failures(checks: dict[str, float], floors) -> list[str]:
    """The step checks against teacher.checks: `vae_recon_<attr>` and `text_<attr>` by their lowest
    attribute, `cond_uncond_gap` as it is."""
    grouped: dict = {"cond_uncond_gap": checks.get("cond_uncond_gap")}
    for prefix in ("vae_recon", "text"):
        grouped[prefix] = {k.removeprefix(prefix + "_"): v for k, v in checks.items() if k.startswith(prefix + "_")}
    return floor_failures(grouped, floors.model_dump())


def register_pretrained(params: Params) -> dict:
    """teacher.source: pretrained: prove the pipeline loads offline and record which one it is."""
    pipe = load_pipeline(params.teacher.path, None)  # its own scheduler: sampling settings are not the teacher's
    info = {"source": "pretrained", "path": params.teacher.path,
            "fingerprint": teacher_fingerprint(params.teacher.path),
            "unet_params": sum(p.numel() for p in pipe.unet.parameters())}
    with atomic_dir(Path(TEACHER_DIR)) as tmp:
        atomic_write_json(tmp / "pretrained.json", info)
    atomic_write_json(CHECKS_FILE, {"teacher": {"unet_params": info["unet_params"]}})
    return info


def run_teacher_stage(params: Params) -> dict:
    """Train the toy teacher into its pipeline folder. It depends on no eval set and no held-out
    list (it learns the whole world), so trying another `world.unseen` never retrains it; the
    `teacher_gate` stage judges it on the current eval sets."""
    if params.teacher.source == "pretrained":
        return register_pretrained(params)
    if Path(params.teacher.path) != Path(TEACHER_DIR):
        raise UserError(f"teacher.path: {params.teacher.path} is not {TEACHER_DIR}, the teacher stage's DVC output; "
                        "the toy teacher is trained there (a pretrained teacher may live anywhere)")
    with stage_run(params, "teacher", ("world", "teacher")) as log, atomic_dir(Path(params.teacher.path)) as tmp:
        checks = train_toy_teacher(params, tmp, log)
        failures = check_failures(checks, params.teacher.checks)
        atomic_write_json(CHECKS_FILE, {"teacher": {"checks": checks, "passed": not failures, "failures": failures}})
        if failures:  # raised inside atomic_dir: the candidate is discarded, the previous teacher stays
            raise GateFailed("teacher step checks failed: " + "; ".join(failures) + " (teacher.checks)")
        load_pipeline(str(tmp), None)  # prove the folder loads offline
        atomic_write_json(tmp / CHECKS_NAME, checks)
    return checks
