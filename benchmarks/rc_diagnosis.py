"""Why Random Conditioning does or does not teach a held-out concept: measurements on the workspace.

Reads what the pipeline left in the workspace (teacher, world classifier, latent cache, RC text
pool, kept eval samples) for its `world.unseen` (one held-out concept). Three measurements:

1. Pairing: how many RC pool texts name the held-out concept, the share of all distillation samples
   that carry it (rc_prob x that share), and which cached concepts those texts land on (a held-out
   text only ever meets latents of other concepts).
2. Teacher signal, for every concept (the teacher knows them all; what is held out only changes
   the cache): a pool text naming the concept put on a cached latent of another concept, noised
   to t in a band; the teacher's predicted clean latent (conditional, and classifier-free guided
   at the sampling guidance) is decoded and classified. The share that shows the concept is what
   an unpaired sample can teach the student about it at that noise level; the held-out sweep says
   how much each concept's RC student learned, so the two can be read side by side.
3. What the student draws: in the teacher's and the RC student's kept eval samples, the accuracy
   on every value of the held-out attribute (those with cached latents on the seen set, the
   held-out one on the unseen set): a concept the student misses as often when its latents are
   cached is limited by the student, not by Random Conditioning. And what the failures of the
   held-out concept turn into (confusion).

    .venv/bin/python benchmarks/rc_diagnosis.py                        # every concept, 160 pairs a band
    .venv/bin/python benchmarks/rc_diagnosis.py --concepts circle diamond --per-band 64

Writes benchmarks/results/rc_diagnosis/teacher_signal_<held-out>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from rcdistill.cache.latents import load_cache  # noqa: E402
from rcdistill.config import load_params  # noqa: E402
from rcdistill.distill.data import timestep_weights  # noqa: E402
from rcdistill.evaluate.concepts import row_labels  # noqa: E402
from rcdistill.evaluators.classifier import load_classifier  # noqa: E402
from rcdistill.io import atomic_write_json, atomic_write_text, read_jsonl  # noqa: E402
from rcdistill.sampling import load_pipeline  # noqa: E402
from rcdistill.stage_table import eval_samples_file  # noqa: E402
from rcdistill.targets import clean_and_noise  # noqa: E402
from rcdistill.teacher.text_encoder import tokenize  # noqa: E402
from rcdistill.teacher.vae import decode  # noqa: E402
from rcdistill.world.vocab import ATTRIBUTES, CONCEPTS  # noqa: E402
from stats import se  # noqa: E402

OUT = Path("benchmarks/results/rc_diagnosis")
BANDS = ((0, 200), (200, 400), (400, 600), (600, 800), (800, 1000))


def pairing(concept: str, attr: str, rc_pool: list[dict], cache_rows: list[dict], rc_prob: float) -> dict:
    """How often an RC sample carries the concept, and the cached concepts it is paired with."""
    naming = sum(r[attr] == concept for r in rc_pool)
    partners = Counter(r[attr] for r in cache_rows)
    total = sum(partners.values())
    return {"pool_texts": len(rc_pool), "pool_texts_naming": naming, "pool_share": naming / len(rc_pool),
            "share_of_all_samples": rc_prob * naming / len(rc_pool),
            "partners": {k: v / total for k, v in sorted(partners.items())}}


@torch.no_grad()
def teacher_signal(pipe, classifier, latents: torch.Tensor, latent_attr: list[str], texts: list[str], attr: str,
                   concept: str, band: tuple[int, int], guidance: float, gen: torch.Generator) -> dict:
    """Share of the teacher's predicted clean latents, decoded, whose `attr` is `concept` / the latent's own."""
    sched = pipe.scheduler
    n = len(latents)
    t = torch.randint(band[0], band[1], (n,), generator=gen)
    noise = torch.randn(latents.shape, generator=gen)
    noisy = sched.add_noise(latents, noise, t)
    cond = pipe.text_encoder(tokenize(pipe.tokenizer, texts))[0]
    uncond = pipe.text_encoder(tokenize(pipe.tokenizer, [""] * n))[0]
    out_c = pipe.unet(noisy, t, cond).sample
    out_u = pipe.unet(noisy, t, uncond).sample
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    kind = sched.config.prediction_type
    values = ATTRIBUTES[attr]
    own = torch.tensor([values.index(v) for v in latent_attr])
    res = {}
    for name, out in (("conditional", out_c), (f"guided_{guidance:g}", out_u + guidance * (out_c - out_u))):
        x0, _ = clean_and_noise(kind, out, noisy, a.sqrt(), (1 - a).sqrt())
        pred = classifier.predict(decode(pipe.vae, x0))[attr]
        res[name] = {"shows_concept": (pred == values.index(concept)).float().mean().item(),
                     "shows_latent": (pred == own).float().mean().item()}
    return res


def band_table(pipe, classifier, latents, cache_attr, rc_pool, attr, concept, per_band, guidance, seed) -> list[dict]:
    """Teacher signal per band for texts naming `concept` on cached latents of every other value."""
    gen = torch.Generator().manual_seed(seed)
    others = [i for i, v in enumerate(cache_attr) if v != concept]
    texts_pool = [r["text"] for r in rc_pool if r[attr] == concept]
    rows = []
    for band in BANDS:
        idx = torch.tensor(others)[torch.randint(len(others), (per_band,), generator=gen)]
        texts = [texts_pool[i] for i in torch.randint(len(texts_pool), (per_band,), generator=gen)]
        res = teacher_signal(pipe, classifier, latents[idx], [cache_attr[i] for i in idx], texts, attr, concept,
                             band, guidance, gen)
        rows.append({"band": list(band), "n": per_band, **res})
    return rows


def kept_predictions(samples_file: str, rows_by_set: dict[str, list[dict]], classifier) -> dict[str, tuple]:
    """Per eval set: its rows and the classifier's predictions (every attribute) on the kept samples,
    one pass over the file for both readings below."""
    if not Path(samples_file).is_file():
        return {}
    kept = load_file(samples_file)
    return {name: (rows[: len(kept[name])], classifier.predict(kept[name]))
            for name, rows in rows_by_set.items() if name in kept}


def confusion(preds: dict[str, tuple], concept: str, attr: str) -> dict | None:
    """What the kept unseen-set samples asking for `concept` are classified as, as shares."""
    if "unseen" not in preds:
        return None
    rows, pred = preds["unseen"]
    asked = row_labels(rows)[attr] == ATTRIBUTES[attr].index(concept)
    counts = Counter(ATTRIBUTES[attr][int(p)] for p in pred[attr][asked])
    n = int(asked.sum())
    return {"n": n, "as": {k: counts.get(k, 0) / n for k in ATTRIBUTES[attr]}}


def band_weights(kind: str, lam: float, num_t: int = 1000) -> list[float]:
    """Share of distillation's timesteps (distill.timestep_sampler) that fall in each band."""
    w = timestep_weights(kind, num_t, lam)
    return [(w[a:b].sum() / w.sum()).item() for a, b in BANDS]


def signal_table(res: dict, mode: str) -> list[str]:
    weights = res["band_weights"]
    lines = ["| concept | " + " | ".join(f"t {a}–{b}" for a, b in BANDS) + " | over distill's t |",
             "|---|" + "---|" * (len(BANDS) + 1)]
    for concept, table in res["signal"].items():
        mark = " (held out here)" if concept == res["held_out"] else ""
        shares = [row[mode]["shows_concept"] for row in table]
        cells = [f"{p:.2f} ± {se(p, row['n']):.2f}" for p, row in zip(shares, table)]
        mean = sum(w * p for w, p in zip(weights, shares))
        lines.append(f"| {concept}{mark} | " + " | ".join(cells) + f" | {mean:.2f} |")
    return lines


def accuracy_by_concept(preds: dict[str, tuple], attr: str) -> dict:
    """Per set and per value of `attr`: share of the kept samples asking for it that show it, and n."""
    out = {}
    for set_name, (rows, pred) in preds.items():
        asked = row_labels(rows)[attr]
        out[set_name] = {v: {"acc": (pred[attr][asked == i] == i).float().mean().item(), "n": int((asked == i).sum())}
                         for i, v in enumerate(ATTRIBUTES[attr]) if (asked == i).any()}
    return out


def accuracy_lines(res: dict) -> list[str]:
    """The student against the teacher on every value of the held-out attribute, seen and unseen."""
    acc = {who: per.get(res["attribute"], {}) for who, per in (res.get("accuracy") or {}).items()}
    if not acc.get("student"):
        return []
    lines = [f"Accuracy on each {res['attribute']} in the kept eval samples (± SE): concepts with cached latents "
             f"(seen set) beside the held-out one (unseen set).", "",
             "| set | concept | n | teacher | student |", "|---|---|---|---|---|"]
    for set_name, per in acc["student"].items():
        for v, m in per.items():
            t = acc.get("teacher", {}).get(set_name, {}).get(v)
            tcell = f"{t['acc']:.3f} ± {se(t['acc'], t['n']):.3f}" if t else "—"
            lines.append(f"| {set_name} | {v} | {m['n']} | {tcell} | {m['acc']:.3f} ± {se(m['acc'], m['n']):.3f} |")
    return lines + [""]


def markdown(res: dict) -> str:
    c, p = res["held_out"], res["pairing"]
    n = next(iter(res["signal"].values()))[0]["n"]
    lines = [f"Workspace: held out {c} ({res['attribute']}); teacher {res['teacher']}.", "",
             f"Pairing: {p['pool_texts_naming']} of {p['pool_texts']} RC pool texts name {c} "
             f"({100 * p['pool_share']:.1f}%), so {100 * p['share_of_all_samples']:.1f}% of all distillation samples "
             f"(rc_prob {res['rc_prob']}) teach it; they land on cached latents of "
             + ", ".join(f"{k} {100 * v:.0f}%" for k, v in p["partners"].items()) + ".", ""]
    for mode in res["modes"]:
        lines += [f"Share of the teacher's predicted clean latents that show the concept ({mode.replace('_', ' ')}), "
                  f"for a text naming it on a cached latent of another concept, by timestep band (n = {n} each, ± SE); "
                  "distillation draws " + ", ".join(f"{100 * w:.0f}%" for w in res["band_weights"]) + " of its timesteps "
                  "from these bands:",
                  "", *signal_table(res, mode), ""]
    lines += accuracy_lines(res)
    for who in ("teacher", "student"):
        conf = res["confusion"].get(who)
        if conf:
            lines.append(f"{who.capitalize()}'s eval samples asking for {c} (n = {conf['n']}) are classified as: "
                         + ", ".join(f"{k} {100 * v:.1f}%" for k, v in conf["as"].items() if v) + ".")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", nargs="+", default=list(CONCEPTS), help="concepts to measure the teacher signal of")
    ap.add_argument("--per-band", type=int, default=160, help="latent/text pairs per timestep band")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    for concept in args.concepts:
        if concept not in CONCEPTS:
            raise SystemExit(f"--concepts: {concept!r} is neither a shape nor a colour ({', '.join(CONCEPTS)})")
    params = load_params("params.yaml")
    if len(params.world.unseen) != 1:
        raise SystemExit(f"world.unseen: the diagnosis reads one held-out concept, params have {params.world.unseen}")
    held_out = params.world.unseen[0]
    attr = CONCEPTS[held_out]
    torch.manual_seed(args.seed)
    pipe = load_pipeline(params.teacher.path, params.sampling.scheduler)
    classifier = load_classifier(params.evaluators.out_dir)
    latents, cache_rows, ident = load_cache(params.cache.out_dir, expect_teacher=params.teacher.path)
    by_text = {r["text"]: r for r in read_jsonl(Path(params.prompts.out_dir) / "cache.jsonl")}
    cache_values = [by_text[r["prompt"]] for r in cache_rows]
    rc_pool = read_jsonl(Path(params.prompts.out_dir) / "rc.jsonl")
    g = params.sampling.guidance_scale
    # the teacher gate and the distill check sample the first teacher.gate.eval_per_set unseen prompts
    rows_by_set = {name: read_jsonl(Path(params.prompts.out_dir) / f"eval_{name}.jsonl")[: params.teacher.gate.eval_per_set]
                   for name in ("seen", "unseen")}
    preds = {who: kept_predictions(eval_samples_file(who), rows_by_set, classifier) for who in ("teacher", "student")}
    signal = {}
    for concept in args.concepts:
        a = CONCEPTS[concept]
        signal[concept] = band_table(pipe, classifier, latents, [v[a] for v in cache_values], rc_pool, a, concept,
                                     args.per_band, g, args.seed)
    res = {"held_out": held_out, "attribute": attr, "teacher": ident["teacher_fingerprint"],
           "rc_prob": params.distill.rc_prob, "guidance_scale": g,
           "band_weights": band_weights(params.distill.timestep_sampler, params.distill.exp_lambda,
                                        pipe.scheduler.config.num_train_timesteps), "modes": list(signal[args.concepts[0]][0])[2:],
           "pairing": pairing(held_out, attr, rc_pool, [{attr: v[attr]} for v in cache_values], params.distill.rc_prob),
           "signal": signal,
           "confusion": {who: confusion(preds[who], held_out, attr) for who in preds},
           "accuracy": {who: {a: accuracy_by_concept(preds[who], a) for a in ("shape", "colour")} for who in preds}}
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"teacher_signal_{held_out}"
    atomic_write_json(args.out / f"{name}.json", res)
    atomic_write_text(args.out / f"{name}.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
