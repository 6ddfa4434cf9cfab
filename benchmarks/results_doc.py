"""Writes docs/results.md from the committed results files: no number in it is typed by hand.

Sources: metrics/*.json (the run that wrote dvc.lock), benchmarks/results/first_run.json,
teacher_recipe.json, headlines.json and heldout_sweep.md. Rerun it after any of them changes:

    .venv/bin/python benchmarks/results_doc.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats import se  # noqa: E402

OUT = Path("docs/results.md")
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
            f"`./scripts/repro.sh` exit code {run['rc']}, **{run['total_s'] / 60:.1f} minutes** in all, set-up included.",
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


def evaluate_section(ev: dict | None, params: dict) -> list[str]:
    if not ev:
        return ["_No evaluation recorded._"]
    n = params["evaluate"]["eval_per_set"]
    lines = [f"`metrics/evaluate.json`: {n} prompts per set, the same prompts and seeds for every model "
             "(accuracy ± standard error; FID on world-CLIP features).", "",
             "| model | steps | seen shape | seen colour | unseen shape | unseen colour | unseen FID | ms / image |",
             "|---|---|---|---|---|---|---|---|"]
    for model in ("teacher", "student", "student_fast"):
        if model not in ev:
            continue
        for k, cell in sorted(ev[model]["steps"].items(), key=lambda kv: -int(kv[0])):
            lines.append(f"| {model} | {k} | " + " | ".join(acc(cell[s][a], n) for s, a in
                         (("seen", "shape"), ("seen", "colour"), ("unseen", "shape"), ("unseen", "colour")))
                         + f" | {cell['unseen']['fid']:.3f} | {cell['ms_per_image']:.1f} |")
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
             "| recipe | prediction | Min-SNR γ | UNet steps × batch | wall (s) | DDIM steps | seen shape | seen colour | unseen shape | unseen colour | largest drift |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        u, n = r.get("teacher_unet", {}), r["eval_per_set"]
        for k, cell in sorted(r["by_steps"].items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {r['name']} | {u.get('prediction_type', '?')} | {u.get('snr_gamma', '?')} | "
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


def main() -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    parts = ["# Results", "",
             "Generated by `benchmarks/results_doc.py` from the committed results files; do not edit by hand. "
             "Every accuracy is a proportion over an eval set and carries its standard error sqrt(p(1-p)/n).", "",
             "## First run from a fresh clone", "", *first_run_section(load(RESULTS / "first_run.json")), "",
             "## Teacher", "", *teacher_section(load("metrics/teacher.json"), load("metrics/teacher_checks.json"), params), "",
             "## Teacher recipes", "", *recipe_section(load(RESULTS / "teacher_recipe.json")), "",
             "## Teacher and students", "", *evaluate_section(load("metrics/evaluate.json"), params), "",
             "## Headlines", ""]
    head = RESULTS / "headlines.md"
    parts += [head.read_text().rstrip() if head.exists() else "_benchmarks/headlines.py has not run._", ""]
    sweep = RESULTS / "heldout_sweep.md"
    parts += ["## Held-out sweep", "", sweep.read_text().rstrip() if sweep.exists() else "_not run_", ""]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(parts) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
