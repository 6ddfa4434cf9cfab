"""Writes docs/results.md and README's generated blocks from committed files: no number is typed by hand.

Sources: metrics/*.json (the run that wrote dvc.lock), benchmarks/results/first_run.json,
stage_overhead.json, teacher_recipe.json, headlines.json, forgetting.json, heldout_sweep.md,
rc_diagnosis/*.md and rc_variants.md; README's stage table
comes from src/rcdistill/stage_table.py. Rerun it after any of them changes (a fast test runs
`--check`, which fails when the committed text differs from what this writes):

    .venv/bin/python benchmarks/results_doc.py [--check]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codi_variants import fmt as variant_cell  # noqa: E402
from stats import combined_se, se  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from rcdistill.roster import MODEL_NAMES  # noqa: E402
from rcdistill.stage_table import STAGES  # noqa: E402

OUT = Path("docs/results.md")
README = Path("README.md")
RESULTS = Path("benchmarks/results")


def load(path: str | Path) -> dict | None:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else None


def acc(p: float, n: int) -> str:
    return f"{p:.3f} ± {se(p, n):.3f}"


def first_run_section(runs: dict | None) -> list[str]:
    if not runs:
        return ["_No first-run timing recorded (benchmarks/first_run.py)._"]
    earlier = [f"{r['commit'][:7]} ({r['date']}): {r['total_s'] / 60:.1f} min" for r in runs["runs"][:-1]]
    run = runs["runs"][-1]
    rows = [f"| {k} | {v / 60:.1f} |" for k, v in run["stages_s"].items()]
    return [f"`benchmarks/first_run.py`: a fresh clone of {run['commit'][:7]} on {run['date']}, {run['cores']} cores, "
            f"`./scripts/repro.sh` exit code {run['rc']}, **{run['total_s'] / 60:.1f} minutes** in all, set-up included"
            + (f"; other processes took {run['cpu_s']['other'] / 60:.1f} CPU-minutes meanwhile (the run itself "
               f"{run['cpu_s']['own'] / 60:.1f})" if "other" in run.get("cpu_s", {}) else "") + ".",
            "", "| step | minutes |", "|---|---|", *rows,
            *(["", "Earlier first runs: " + "; ".join(earlier) + "."] if earlier else [])]


def teacher_section(teacher: dict | None, checks: dict | None, params: dict) -> list[str]:
    if not teacher:
        return ["_No teacher gate recorded._"]
    t, g = teacher["teacher"], params["teacher"]["gate"]
    n = g["eval_per_set"]
    s = params["sampling"]
    lines = [f"Teacher gate (`metrics/teacher.json`): {n} prompts per set, {s['steps']} {s['scheduler'].upper()} steps, "
             f"guidance {s['guidance_scale']}; floors shape {g['shape']:.2f}, colour {g['colour']:.2f}; "
             f"passed: {t.get('passed')}. Accuracy ± its standard error.", "",
             "| eval set | shape | colour | size | position |", "|---|---|---|---|---|"]
    for name in ("seen", "unseen"):
        if name in t:
            lines.append(f"| {name} | " + " | ".join(acc(t[name][a], n) for a in ("shape", "colour", "size", "position")) + " |")
    if checks:
        c = checks["teacher"].get("checks", {})
        lines += ["", "Step checks (`metrics/teacher_checks.json`): " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(c.items()))]
    return lines


def spread(cell: dict) -> str:
    return f"{cell['diversity']:.4f} ± {cell['diversity_se']:.4f}" if "diversity" in cell else "-"


def evaluate_section(ev: dict | None, params: dict) -> list[str]:
    if not ev:
        return ["_No evaluation recorded._"]
    n = params["evaluate"]["eval_per_set"]
    lines = [f"`metrics/evaluate.json`: {n} prompts per set, the same prompts and seeds for every model "
             "(accuracy ± standard error; FID on world-CLIP features; diversity: pixel spread across "
             f"{params['evaluate'].get('diversity_seeds', '-')} seeds per prompt at the default steps, ± SE over prompts).", "",
             "| model | steps | seen shape | seen colour | unseen shape | unseen colour | unseen FID | ms / image "
             "| unseen diversity |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model in MODEL_NAMES:
        if model not in ev:
            continue
        for k, cell in sorted(ev[model]["steps"].items(), key=lambda kv: -int(kv[0])):
            lines.append(f"| {model} | {k} | " + " | ".join(acc(cell[s][a], n) for s, a in
                         (("seen", "shape"), ("seen", "colour"), ("unseen", "shape"), ("unseen", "colour")))
                         + f" | {cell['unseen']['fid']:.3f} | {cell['ms_per_image']:.1f} | {spread(cell['unseen'])} |")
    st = ev.get("student", {})
    if st:
        lines += ["", f"Student UNet: {st['unet_params'] / 1e6:.2f}M parameters ({st['param_ratio']:.2f}× the teacher), "
                  f"{st['unet_step_ratio']:.2f}× the teacher's time per UNet step."]
    return lines


def recipe_section(rec: dict | None) -> list[str]:
    if not rec:
        return ["_No teacher recipes recorded._"]
    rows = [r for r in rec["recipes"] if "by_steps" in r]
    lines = ["`benchmarks/teacher_recipe.py` trains each candidate with the teacher stage's own code and judges it with the "
             "gate's own function at several DDIM step counts; drift = largest minus smallest accuracy across them.",
             *([rec["note"]] if rec.get("note") else []), "",
             "| recipe | prediction | Min-SNR γ | VAE steps | UNet steps × batch | wall (s) | DDIM steps | seen shape | seen colour | unseen shape | unseen colour | largest drift |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        u, n = r.get("teacher_unet", {}), r["eval_per_set"]
        for k, cell in sorted(r["by_steps"].items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {r['name']} | {u.get('prediction_type', '?')} | {u.get('snr_gamma', '?')} | {r.get('vae_steps', '?')} | "
                         f"{u.get('steps', r['unet_steps'])} × {u.get('batch_size', '?')} | {r['total_s']:.0f} | {k} | "
                         + " | ".join(acc(cell[s][a], n) for s, a in
                                      (("seen", "shape"), ("seen", "colour"), ("unseen", "shape"), ("unseen", "colour")))
                         + f" | {max(r['drift'].values()):.3f} |")
    lines += ["", *paired_differences(rows)]
    return lines


def paired_differences(rows: list[dict]) -> list[str]:
    """One sentence per pair of recipes that differ in exactly one teacher.unet setting (same VAE)."""
    out = []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            ua, ub = a.get("teacher_unet"), b.get("teacher_unet")
            if not ua or not ub or a.get("vae") != b.get("vae"):
                continue
            diff = [k for k in ua if ua[k] != ub.get(k)]
            if len(diff) == 1:
                k = diff[0]
                out.append(f"- Only `teacher.unet.{k}` differs between `{a['name']}` ({ua[k]}) and `{b['name']}` ({ub[k]}): "
                           f"largest drift across step counts {max(a['drift'].values()):.3f} vs {max(b['drift'].values()):.3f}.")
    return out


def forgetting_section(data: dict | None) -> list[str]:
    if not data:
        return ["_benchmarks/forgetting.py has not run._"]
    lines = ["`benchmarks/forgetting.py`: the stage's own `distill()` on the workspace's cache, an RC student "
             "(rc_prob 0.5) and a no-RC student per recipe, judged on the eval sets at the default sampling settings. "
             f"{data.get('cores', '?')} cores, {data.get('threads', '?')} torch thread(s) per run.", "",
             "| recipe | overrides | rc_prob | seen shape | unseen shape | unseen colour | train (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in data["recipes"]:
        n, m = r["n_unseen"], r["n_seen"]
        lines.append(f"| {r['name']} | {', '.join(f'`{o}`' for o in r['overrides']) or '(params.yaml)'} | {r['rc_prob']} | "
                     f"{acc(r['seen']['shape'], m)} | {acc(r['unseen']['shape'], n)} | {acc(r['unseen']['colour'], n)} | "
                     f"{r['train_s']:.0f} |")
    lines += ["", "The headline test per recipe: the no-RC student at least 0.30 below the RC student on the held-out "
              "shape, and the RC student at least 0.9x the teacher's held-out shape accuracy (`metrics/teacher.json`); "
              "SE of the difference: both SEs in quadrature.", "",
              *forgetting_pairs(data)]
    return lines


def forgetting_pairs(data: dict) -> list[str]:
    """A table row per recipe with both an RC and a no-RC student: the gap, its SE and the two verdicts."""
    lines = ["| recipe | overrides | RC unseen shape | no-RC unseen shape | RC - no-RC | SE | gap >= 0.30 | RC >= 0.9x teacher |",
             "|---|---|---|---|---|---|---|---|"]
    teacher = (load("metrics/teacher.json") or {}).get("teacher", {}).get("unseen", {}).get("shape")
    pairs: dict[str, dict] = {}
    for r in data["recipes"]:
        pairs.setdefault(r["name"], {})["rc" if r["rc_prob"] > 0 else "norc"] = r
    for name, pair in pairs.items():
        if set(pair) != {"rc", "norc"}:
            continue
        a, b = pair["rc"]["unseen"]["shape"], pair["norc"]["unseen"]["shape"]
        err = combined_se(se(a, pair["rc"]["n_unseen"]), se(b, pair["norc"]["n_unseen"]))
        gap = verdict(a - b - 0.30, err)
        vs_teacher = verdict(a - 0.9 * teacher, se(a, pair["rc"]["n_unseen"])) if teacher is not None else "?"
        sets = ", ".join(f"`{o}`" for o in pair["rc"]["overrides"]) or "(params.yaml)"
        lines.append(f"| {name} | {sets} | {a:.3f} | {b:.3f} | {a - b:+.3f} | {err:.3f} | {gap} | {vs_teacher} |")
    return lines


def verdict(margin: float, err: float) -> str:
    """'yes' by more than 2 SE, 'within noise' inside 2 SE either side, else '**no**'."""
    if margin > 2 * err:
        return "yes"
    return "within noise" if margin >= -2 * err else "**no**"


def stages_block() -> list[str]:
    lines = ["| stage | command | reads params | writes | what it does |", "|---|---|---|---|---|"]
    for row in STAGES:
        writes = ", ".join(f"`{w}`" for w in row.outs + row.metrics + row.plots)
        lines.append(f"| `{row.name}` | `{row.command}` | {', '.join(row.params)} | {writes} | {row.summary} |")
    return lines


def headlines_block(head: dict | None) -> list[str]:
    """The default chain's headlines (the full list, with the second teacher seed, is in docs/results.md)."""
    if not head:
        return ["_benchmarks/headlines.py has not run._"]
    rows = [c for c in head["checks"] if c["headline"].startswith(("default:", "teacher seed 3:"))]
    lines = [f"Eval sets of {head['eval_per_set']} prompts; value ± standard error; 'with margin': by more than 2 SE "
             "(`benchmarks/headlines.py`).", "", "| headline | value | target | holds |", "|---|---|---|---|"]
    for c in rows:
        holds = "yes, with margin" if c["with_margin"] else ("yes, within noise" if c["holds"] else "**no**")
        lines.append(f"| {c['headline'].split(': ', 1)[1]} | {c['value']:.3f} ± {c['se']:.3f} | {c['target']:.3f} | {holds} |")
    forgetting = load(RESULTS / "forgetting.json")
    if forgetting:
        lines += ["", "The no-RC gap depends on the student's start (`benchmarks/forgetting.py`, held-out shape, "
                  "`distill.init`: teacher = BK-SDM's copy of the teacher's blocks, random = from scratch):", "",
                  *forgetting_pairs(forgetting)]
    return lines


def fill_blocks(text: str, blocks: dict[str, list[str]]) -> str:
    """Replace each `<!-- generated: NAME ... -->` ... `<!-- end generated: NAME -->` block's body."""
    for name, lines in blocks.items():
        pattern = re.compile(rf"(<!-- generated: {name}\b[^>]*-->\n).*?(<!-- end generated: {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{README}: no generated block named {name!r}")
        text = pattern.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text)
    return text


def overhead_section(data: dict | None) -> list[str]:
    if not data:
        return ["_benchmarks/stage_overhead.py has not run._"]
    text = (f"`benchmarks/stage_overhead.py` ({data['date']}, {data['cores']} cores): seconds a stage spends importing "
            f"its code in a fresh process before any work (median of {data['repeats']}; the CLI alone "
            f"{data['cli_import_s']:.1f} s). Every stage pays it once per `dvc repro`: {data['all_stages_s']:.0f} s for "
            f"the whole pipeline, {data['heldout_reruns_s']:.0f} s for the stages a held-out experiment reruns "
            f"({', '.join(data['heldout_reruns'])}).")
    uncached = data.get("stage_import_uncached_s")
    if not uncached:
        return [text, "", "| stage | import s |", "|---|---|", *(f"| {k} | {v:.1f} |" for k, v in data["stage_import_s"].items())]
    text += (f" Compiling every module in every process instead (no cached bytecode: uv installs none, and "
             f"PYTHONDONTWRITEBYTECODE=1 kept Python from writing it) costs {data['all_stages_uncached_s']:.0f} s and "
             f"{data['heldout_reruns_uncached_s']:.0f} s.")
    rows = [f"| {k} | {v:.1f} | {uncached[k]:.1f} | {uncached[k] / v:.1f}x |" for k, v in data["stage_import_s"].items()]
    return [text, "", "| stage | import s, cached bytecode | compiling | ratio |", "|---|---|---|---|", *rows]


def cached_measure(diagnosis: dict | None, concept: str, attribute: str) -> dict | None:
    """The default workspace's RC student on `concept` where its latents are cached (seen set): {acc, n}."""
    return (((diagnosis or {}).get("accuracy") or {}).get("student", {}).get(attribute, {}).get("seen", {})).get(concept)


def reach_gap(cached: dict | None, rc: float, norc: float, norc_se: float) -> str:
    """RC against what the student reaches with the concept's latents cached (its own ceiling): the
    gap RC can close is (cached - no-RC), not (teacher - no-RC), when the student stays below the teacher."""
    if not cached:
        return "—"
    gap, gap_se = cached["acc"] - norc, combined_se(se(cached["acc"], cached["n"]), norc_se)
    if gap <= 2 * gap_se:
        return f"{gap:+.3f} ± {gap_se:.3f}: none over 2 SE"
    return f"{gap:+.3f} ± {gap_se:.3f}: {100 * (rc - norc) / gap:.0f}% closed"


def rc_by_concept(sweep: dict | None, diagnosis: dict | None) -> list[str]:
    """Per held-out concept, over the sweep's seeds: RC against the teacher and the no-RC student, and
    the target (RC >= 0.9x the teacher; >= 80% of any gap over 2 SE closed); beside it, what the
    student reaches on the concept when its latents are cached (`diagnosis`: the default workspace)
    and the gap to that reach."""
    if not sweep:
        return ["_benchmarks/heldout_sweep.py has not run._"]
    n = sweep["meta"]["eval_per_set"]
    by: dict[str, list[dict]] = {}
    for r in sweep["rows"]:
        if r.get("status") == "ok":
            by.setdefault(r["concept"], []).append(r)
    lines = [f"Mean over distillation seeds (k per concept; {n} prompts per eval set, SE of a k-seed mean "
             "sqrt(p(1-p)/(k n))):", "",
             "| held out | k | teacher | RC | no-RC | gap (teacher − no-RC) | closed by RC | RC ≥ 0.9× teacher | target "
             "| student with the concept cached | gap (cached − no-RC) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    verdicts: list[str] = []
    for concept, rows in by.items():
        k = len(rows)
        t, rc, norc = (sum(r[key] for r in rows) / k for key in ("teacher", "rc", "no_rc"))
        gap, gap_se = t - norc, combined_se(se(t, n), se(norc, k * n))
        real_gap = gap > 2 * gap_se
        closed = (rc - norc) / gap if gap > 1e-9 else None
        ratio_ok = rc >= 0.9 * t
        target = ratio_ok and (not real_gap or (closed is not None and closed >= 0.8))
        cached = cached_measure(diagnosis, concept, rows[0]["attribute"])
        cached_text = f"{cached['acc']:.3f} ± {se(cached['acc'], cached['n']):.3f} (n {cached['n']})" if cached else "—"
        if not target and cached:
            verdicts.append(why_missed(concept, t, rc, se(rc, k * n), cached))
        lines.append(f"| {concept} | {k} | {t:.3f} | {rc:.3f} ± {se(rc, k * n):.3f} | {norc:.3f} ± {se(norc, k * n):.3f} | "
                     f"{gap:+.3f} ± {gap_se:.3f}{'' if real_gap else ' (under 2 SE)'} | "
                     f"{'—' if closed is None else f'{100 * closed:.0f}%'} | {'yes' if ratio_ok else '**no**'} | "
                     f"{'met' if target else '**not met**'} | "
                     f"{cached_text} | "
                     f"{reach_gap(cached, rc, norc, se(norc, k * n))} |")
    return lines + ["", *verdicts] if verdicts else lines


def why_missed(concept: str, teacher: float, rc: float, rc_se: float, cached: dict) -> str:
    """One line on a concept that misses the target, from the numbers beside it."""
    c, c_se = cached["acc"], se(cached["acc"], cached["n"])
    if rc >= c - 2 * combined_se(c_se, rc_se):
        return (f"- **{concept}:** RC draws it at {rc:.3f}, as well as (within 2 SE) or better than the same student with its "
                f"latents cached ({c:.3f} ± {c_se:.3f}), against the teacher's {teacher:.3f}: the shortfall comes with "
                "distillation itself (real latents do no better), not with Random Conditioning; the capacity runs "
                "below try a longer distillation and a larger student.")
    return (f"- **{concept}:** RC {rc:.3f} stays below the student with its latents cached ({c:.3f} ± {c_se:.3f}): "
            "Random Conditioning leaves part of this concept untaught.")


def rc_concepts_section(params: dict) -> list[str]:
    """The teacher's signal per concept (benchmarks/rc_diagnosis.py) and the RC variants (rc_variants.py)."""
    # The cached column reads the diagnosis run in the default workspace (params.yaml's held-out concept);
    # a params file without a world section has none.
    default_held_out = ((params.get("world") or {}).get("unseen") or [None])[0]
    diagnosis = load(RESULTS / "rc_diagnosis" / f"teacher_signal_{default_held_out}.json") if default_held_out else None
    out = ["### Which concepts RC teaches", "", *rc_by_concept(load(RESULTS / "heldout_sweep.json"), diagnosis), "",
           f"\"Student with the concept cached\" is the RC student of the default workspace (held out: "
           f"{default_held_out}) on the seen eval set, where the concept's latents are cached: what the student "
           "reaches with real latents (`benchmarks/rc_diagnosis.py`); the last column is the gap RC can close "
           "when the student, not the teacher, is the ceiling.", "",
           "### What the teacher's prediction carries", "",
           "What an unpaired sample can teach: `benchmarks/rc_diagnosis.py` puts a text naming a concept on a "
           "cached latent of another concept, noises it, and classifies the teacher's predicted clean latent "
           "(the target the student is pulled towards); the last column weighs the bands as distillation draws its "
           "timesteps. Read it beside the held-out sweep above.", ""]
    for path in sorted((RESULTS / "rc_diagnosis").glob("teacher_signal_*.md")):
        out += [path.read_text().rstrip(), ""]
    variants, capacity = RESULTS / "rc_variants.md", RESULTS / "rc_capacity.md"
    out += ["### Variants (`benchmarks/rc_variants.py`, switches under `distill.unpaired`)", "",
            variants.read_text().rstrip() if variants.exists() else "_not run_", "",
            "### Student capacity: a longer distillation and a larger student (`rc_variants.py --variants "
            "steps_900 bk_base --out benchmarks/results/rc_capacity`)", "",
            capacity.read_text().rstrip() if capacity.exists() else "_not run_", "",
            "### A concept of your own", "",
            "1. Hold it out and distill with and without RC (the teacher and evaluators stay):", "",
            "   ```bash", "   dvc exp run -n mine-rc -S 'world.unseen=[X]'",
            "   dvc exp run -n mine-norc -S 'world.unseen=[X]' -S distill.rc_prob=0",
            "   dvc exp show --only-changed --md   # metrics/distill.json unseen.<attribute> against metrics/teacher.json",
            "   ```", "",
            "2. A difference under two standard errors (sqrt(p(1-p)/n) each, n = `teacher.gate.eval_per_set`) is "
            "not a finding: repeat with another `-S distill.seed=...`.",
            "3. When RC and no-RC both stay below the teacher, look at what the student draws where it *has* "
            "cached latents: `benchmarks/rc_diagnosis.py` in that workspace (`dvc exp apply mine-rc`) lists the "
            "student's accuracy on every value of the attribute. A concept the student misses as often when "
            "cached is limited by the student (`-S distill.steps=900`, `-S distill.student=bk_base`), not by "
            "Random Conditioning.",
            "4. When the teacher's prediction shows the concept weakly (the table above), try the unpaired "
            "variants one at a time, e.g. `-S distill.unpaired.pairing=matched` or "
            "`-S distill.unpaired.weight=3.0`, and keep one only if it beats the paper's recipe by two "
            "standard errors on two seeds."]
    return out


CODI_BASELINES = (("(a) reference, plain diffusion loss", "reference", None), ("(b) reference", "reference", 4),
                  ("(c) CoDi, full", "full", 4), ("(d) CoDi, adapter only", "adapter", 4), ("(e) CoDi, full", "full", 1))
CODI_MEASURES = {"edge": ("edge_f1", "psnr", "colour", "shape"), "lowres": ("psnr", "lowres_psnr", "shape", "colour")}


def _codi_cell(cell: dict, key: str) -> str:
    if key in ("shape", "colour"):
        return acc(cell[key], cell["n"])
    digits = 1 if "psnr" in key else 3
    return f"{cell[key]:.{digits}f} ± {cell[key + '_se']:.{digits}f}"


def codi_section(ev: dict | None, params: dict) -> list[str]:
    if not ev:
        return ["_No conditional model evaluated (stage codi_eval)._"]
    ev = ev["codi_eval"]
    task, models = ev["task"], ev["models"]
    measures = CODI_MEASURES[task]
    ref_steps = str(params["codi"]["reference"]["default_steps"])
    rows, cells = [], {}
    for label, run, steps in CODI_BASELINES:
        key = ref_steps if steps is None else str(steps)
        cell = models.get(run, {}).get("steps", {}).get(key)
        if cell is None:
            continue
        info = load(f"metrics/{'codi' if run == 'full' else 'codi_' + run}.json") or {}
        info = next(iter(info.values()), {})
        trained = f"{info['trainable_params'] / 1e6:.2f}M" if "trainable_params" in info else "-"
        cells[label[:3]] = cell
        for name in ("seen", "unseen", "seen_swapped", "unseen_swapped"):
            if name in cell:
                rows.append(f"| {label} | {key} | {trained} | {name} | "
                            + " | ".join(_codi_cell(cell[name], m) for m in measures) + " |")
    text = next(iter(models.values())).get("text", "caption")
    if text == "colour":
        reads = ("the colour word of its caption (`codi.text: colour`: the condition alone gives shape, size and "
                 "position, so the own-text shape accuracy is the condition's doing). `_swapped` sets: each condition "
                 "with the colour of the next row that names another colour, scored against the condition's shape, "
                 "size and position and the text's colour: a model that reads both keeps its scores there.")
    else:
        reads = ("its whole caption (`codi.text: caption`). `_swapped` sets: each condition with the caption of the "
                 "next row that names another shape, scored against the condition's shape, size and position and the "
                 "caption's colour: a model that reads its condition keeps the edge F1 and shape of its own-caption "
                 "row there; one that follows only its caption (which names the shape too) drops.")
    n = next(iter(next(iter(models.values()))["steps"].values()))["seen"]["n"]
    out = [f"Task `{task}` (`metrics/codi_eval.json`): {n} teacher eval images per set turned into conditions, one "
           "image per condition and text, same seeds for every model; mean ± standard error over the images. "
           f"Each model reads {reads}", "",
           "| model | steps | trained params | set | " + " | ".join(measures) + " |",
           "|---|---|---|---|" + "---|" * len(measures), *rows]
    a, b, c, d = (cells.get(k) for k in ("(a)", "(b)", "(c)", "(d)"))
    if a and c:
        ratios = [f"{name} {m} {c[name][m] / a[name][m]:.2f}x" for name in ("seen", "unseen") if name in a
                  for m in measures if a[name][m]]
        out += ["", "CoDi full at 4 steps against the reference at its many steps (target >= 0.95x each): "
                + ", ".join(ratios) + "."]
    if a and b and d:
        closed = []
        for name in ("seen", "unseen"):
            for m in measures:
                gap = a[name][m] - b[name][m]
                noise = combined_se(a[name][f"{m}_se"], b[name][f"{m}_se"])
                if gap == 0 or abs(gap) < 2 * noise:  # a difference under two standard errors is not a gap
                    closed.append(f"{name} {m}: no gap beyond noise ({gap:+.3f} ± {noise:.3f})")
                else:
                    closed.append(f"{name} {m}: {(d[name][m] - b[name][m]) / gap:.0%} of {gap:+.3f} ± {noise:.3f}")
        out += ["", "Adapter only at 4 steps: share of the gap from (b) to (a) it closes (target >= 50%); "
                "a gap under two standard errors is none: " + "; ".join(closed) + "."]
    shown = [lab for lab in ("(a)", "(c)", "(d)") if lab in cells and "seen_swapped" in cells[lab]]
    if shown and text == "colour":
        teacher = (load("metrics/teacher.json") or {}).get("teacher", {}).get("seen", {}).get("shape")
        ceiling = f", against {teacher:.3f} for the teacher's own images (`metrics/teacher.json`)" if teacher else ""
        shape = ", ".join(f"{lab} {cells[lab]['seen']['shape']:.3f} ± {cells[lab]['seen']['shape_se']:.3f}" for lab in shown)
        swap = ", ".join(f"{lab} colour {cells[lab]['seen_swapped']['colour']:.3f}, shape "
                         f"{cells[lab]['seen_swapped']['shape']:.3f}" for lab in shown)
        out += ["", "Does it read its condition? The text names no shape, so the seen shape accuracy is the edge "
                f"map's doing: {shape}{ceiling}. With another row's colour (swapped): {swap}."]
    elif shown:
        follow = [f"{lab} {cells[lab]['seen']['edge_f1']:.3f} -> {cells[lab]['seen_swapped']['edge_f1']:.3f}"
                  for lab in shown]
        out += ["", "Does it read its condition? Seen edge F1, own caption -> another shape's caption: "
                + ", ".join(follow) + "."]
    if c and "unseen" in c:
        held = [f"{m} {c['unseen'][m] / c['seen'][m]:.2f}x" for m in ("shape", "colour") if c["seen"].get(m)]
        out += ["", "Held-out against seen, CoDi full at 4 steps (target >= 0.9x): " + ", ".join(held) + "."]
    for shape in params["world"]["unseen"]:
        read = [f"{lab} {concept_cell(by)}" for lab in ("(a)", "(c)", "(d)")
                if (by := cells.get(lab, {}).get("unseen", {}).get("by_concept", {}).get("shape", {}).get(shape))]
        if read:
            out += ["", f"The held-out {shape} conditions (no training condition shows one): shape accuracy, and "
                    "what the classifier read instead: " + "; ".join(read) + "."]
    variants = RESULTS / "codi_variants.md"
    out += ["", "### CoDi's switches and its second task", "",
            variants.read_text().rstrip() if variants.exists() else "_benchmarks/codi_variants.py has not run._"]
    return out + codi_variant_findings(load(RESULTS / "codi_variants.json"))


def concept_cell(c: dict) -> str:
    read = ", ".join(f"{v} {k}" for k, v in sorted(c["read_as"].items(), key=lambda kv: -kv[1]))
    return f"{c['acc']:.3f} ± {c['acc_se']:.3f} of {c['n']}" + (f" (read as: {read})" if read else "")


def codi_variant_findings(result: dict | None) -> list[str]:
    """The variants' answers to the issue's held-out questions, read from their rows."""
    if not result:
        return []
    rows = {(r["variant"], r["model"][:3]): r for r in result["rows"]}
    out = []
    held = []
    for variant, what in (("codi-heldout-yellow", "with CoDi's RC texts"),
                          ("codi-heldout-yellow-no-rc", "without them (`codi.method.rc_prob=0`)")):
        cells = [f"{lab} {variant_cell(r, 'unseen.colour')} vs {variant_cell(r, 'seen.colour')} "
                 f"({r['unseen.colour'] / r['seen.colour']:.2f}x)"
                 for lab in ("(a)", "(c)", "(d)", "(e)") if (r := rows.get((variant, lab))) and "unseen.colour" in r]
        if cells:
            held.append(f"{what}: " + ", ".join(cells))
    cached = [f"{lab} {concept_cell(by)}" for lab in ("(a)", "(c)", "(d)")
              if (by := rows.get(("codi-heldout-yellow", lab), {}).get("seen.by_concept", {}).get("shape", {})
                  .get("triangle"))]
    if cached:
        out += ["", "The same triangle outlines' shape accuracy when triangles are cached (variant "
                "`codi-heldout-yellow`, which holds out yellow instead, so its seen set has triangles): "
                + "; ".join(cached) + "."]
    diffs = []
    for lab in ("(a)", "(c)", "(d)", "(e)"):
        w, wo = rows.get(("codi-heldout-yellow", lab)), rows.get(("codi-heldout-yellow-no-rc", lab))
        if w and wo and "unseen.colour" in w and "unseen.colour" in wo:
            d = w["unseen.colour"] - wo["unseen.colour"]
            noise = combined_se(w["unseen.colour_se"], wo["unseen.colour_se"])
            verdict = " (under 2 SE: not a finding)" if abs(d) < 2 * noise else ""
            diffs.append(f"{lab} {d:+.3f} ± {noise:.3f}{verdict}")
    if diffs:
        held.append("held-out colour with minus without: " + ", ".join(diffs))
    if held:
        out += ["", "A held-out colour (variants `codi-heldout-yellow*`, `world.unseen=[yellow]`: no cached latent "
                "and so no training condition is yellow, and the unseen set is all yellow), colour accuracy held-out "
                "vs seen (target >= 0.9x); " + "; ".join(held) + "."]
    caption = [f"{lab} own caption {variant_cell(r, 'unseen.shape')}, seen swapped "
               f"{variant_cell(r, 'seen_swapped.shape')} (own {variant_cell(r, 'seen.shape')})"
               for lab in ("(a)", "(c)", "(d)") if (r := rows.get(("codi-captions", lab))) and "unseen.shape" in r]
    if caption:
        out += ["", "A held-out shape when the text names it (variant `codi-captions`, whole captions): held-out "
                "shape accuracy with the own caption, and seen shape accuracy (scored against the condition) when "
                "the caption names another shape: " + "; ".join(caption) + "."]
    return out


def results_text() -> str:
    params = yaml.safe_load(Path("params.yaml").read_text())
    parts = ["# Results", "",
             "Generated by `benchmarks/results_doc.py` from the committed results files; do not edit by hand. "
             "Every accuracy is a proportion over an eval set and carries its standard error sqrt(p(1-p)/n).", "",
             "## First run from a fresh clone", "", *first_run_section(load(RESULTS / "first_run.json")), "",
             "### Fixed cost of a stage", "", *overhead_section(load(RESULTS / "stage_overhead.json")), "",
             "## Teacher", "", *teacher_section(load("metrics/teacher.json"), load("metrics/teacher_checks.json"), params), "",
             "## Teacher recipes", "", *recipe_section(load(RESULTS / "teacher_recipe.json")), "",
             "## Teacher and students", "", *evaluate_section(load("metrics/evaluate.json"), params), "",
             "## Headlines", ""]
    head = RESULTS / "headlines.md"
    parts += [head.read_text().rstrip() if head.exists() else "_benchmarks/headlines.py has not run._", ""]
    boot = RESULTS / "boot_texts.md"
    parts += ["## One step from noise and texts alone (BOOT)", "",
              boot.read_text().rstrip() if boot.exists() else "_benchmarks/boot_texts.py has not run._", ""]
    parts += ["## Image-conditioned few-step students (CoDi)", "", *codi_section(load("metrics/codi_eval.json"), params), ""]
    sweep = RESULTS / "heldout_sweep.md"
    parts += ["## Held-out sweep", "", sweep.read_text().rstrip() if sweep.exists() else "_not run_", "",
              "## Random Conditioning, concept by concept", "", *rc_concepts_section(params), "",
              "## When a no-RC student forgets", "", *forgetting_section(load(RESULTS / "forgetting.json")), ""]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a committed file differs from what this writes")
    args = ap.parse_args(argv)
    blocks = {"stages": stages_block(), "headlines": headlines_block(load(RESULTS / "headlines.json"))}
    wanted = {OUT: results_text()}
    if README.exists():  # (a results folder without the project around it has only docs/results.md)
        wanted[README] = fill_blocks(README.read_text(), blocks)
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if args.check:
        if stale:
            raise SystemExit(f"out of date: {', '.join(map(str, stale))}; run `.venv/bin/python benchmarks/results_doc.py`")
        print("docs/results.md and README's generated blocks are up to date")
        return
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path])
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
