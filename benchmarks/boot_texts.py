"""BOOT's text pool: what Random Conditioning's texts teach a student that never sees a latent.

Runs from a complete, up-to-date workspace (after `dvc repro`): the workspace's BOOT student learned
from the RC pool (`boot.text_pool: rc`, held-out concepts included); one DVC experiment, in a temp
folder so the workspace stays as it is, retrains it from the cache captions only
(`-S boot.text_pool=cache`, seen concepts only) and evaluates it on the same prompts and seeds. Both are read from `metrics/evaluate.json` beside the teacher, the RC student
and the few-step student at 1 step, with standard errors.

    .venv/bin/python benchmarks/boot_texts.py            # runs the experiment (about 4 min on 2 cores)
    .venv/bin/python benchmarks/boot_texts.py --collect-only

Writes benchmarks/results/boot_texts.{json,md}.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout_sweep import dvc, experiments, metric  # noqa: E402
from stats import combined_se, se  # noqa: E402

EXP = "boot-texts-cache"
OUT = Path("benchmarks/results/boot_texts")
CELLS = [(s, a) for s in ("seen", "unseen") for a in ("shape", "colour")]
EVAL = "metrics/evaluate.json"


def cells(entry: dict) -> dict[str, float]:
    return {f"{s}.{a}": entry[s][a] for s, a in CELLS if s in entry}


def rows(workspace: dict, cache_exp: dict | None) -> list[dict]:
    """Teacher, RC student, few-step student at 1 step, BOOT (RC texts), BOOT (cache texts)."""
    out = [{"model": "teacher", **cells(workspace["teacher"])},
           {"model": "student (RC, 25 steps)", **cells(workspace["student"])}]
    fast = workspace.get("student_fast", {}).get("steps", {}).get("1")
    if fast:
        out.append({"model": "student_fast (LCM, 1 step)", **cells(fast)})
    out.append({"model": "student_boot, RC texts (1 step)", **cells(workspace["student_boot"])})
    if cache_exp:
        out.append({"model": "student_boot, cache texts only (1 step)", **cells(cache_exp["student_boot"])})
    return out


def markdown(table: list[dict], n: int, verdict: list[str]) -> str:
    head = "| model | " + " | ".join(f"{s} {a}" for s, a in CELLS) + " |"
    lines = [head, "|---|" + "---|" * len(CELLS)]
    teacher = table[0]
    for r in table:
        vals = []
        for s, a in CELLS:
            v = r.get(f"{s}.{a}")
            ratio = "" if r is teacher or v is None else f" ({v / teacher[f'{s}.{a}']:.2f}x)"
            vals.append("-" if v is None else f"{v:.3f} ± {se(v, n):.3f}{ratio}")
        lines.append(f"| {r['model']} | " + " | ".join(vals) + " |")
    return "\n".join(lines + [""] + [f"- {v}" for v in verdict]) + "\n"


def verdict(table: list[dict], n: int) -> list[str]:
    by = {r["model"]: r for r in table}
    teacher, rc = table[0], by["student_boot, RC texts (1 step)"]
    lines = []
    for s, a in CELLS:
        need = 0.85 if a == "shape" else 0.8
        ratio = rc[f"{s}.{a}"] / teacher[f"{s}.{a}"]
        lines.append(f"BOOT (RC texts) {s} {a} vs teacher: {ratio:.2f}x (target >= {need}x): "
                     f"{'met' if ratio >= need else 'missed'}")
    cache = by.get("student_boot, cache texts only (1 step)")
    if cache:
        d = rc["unseen.shape"] - cache["unseen.shape"]
        e = combined_se(se(rc["unseen.shape"], n), se(cache["unseen.shape"], n))
        lines.append(f"held-out shape, RC texts - cache texts: {d:+.3f} ± {e:.3f} (target >= +0.30: "
                     f"{'met' if d >= 0.30 else 'missed'}; {'more' if abs(d) >= 2 * e else 'less'} than 2 SE)")
    return lines


def training_cost(params: dict) -> list[dict]:
    """UNet rows per sample, samples, and measured throughput of the BOOT and consistency stages."""
    out = []
    for stage in ("boot", "consistency"):
        m = json.loads(Path(f"metrics/{stage}.json").read_text())[stage]
        cfg = params[stage]
        rates = sorted(float(r["samples_per_s"]) for r in csv.DictReader(Path(f"plots/{stage}_loss.csv").open())
                       if r.get("samples_per_s"))
        rate = rates[len(rates) // 2] if rates else None
        samples, per = cfg["steps"] * cfg["batch_size"], m["unet_rows_per_sample"]
        out.append({"stage": stage, "unet_rows_per_sample": per, "steps": cfg["steps"],
                    "batch_size": cfg["batch_size"], "unet_rows": samples * per,
                    "samples_per_s_median": rate, "train_s": samples / rate if rate else None,
                    "reads_cached_latents": stage != "boot"})
    return out


def cost_markdown(cost: list[dict]) -> str:
    lines = ["| stage | UNet rows / sample | steps x batch | UNet rows in all | samples / s (median) | training s "
             "| reads cached latents |", "|---|---|---|---|---|---|---|"]
    for c in cost:
        rate = "-" if c["samples_per_s_median"] is None else f"{c['samples_per_s_median']:.0f}"
        secs = "-" if c["train_s"] is None else f"{c['train_s']:.0f}"
        lines.append(f"| {c['stage']} | {c['unet_rows_per_sample']} | {c['steps']} x {c['batch_size']} | "
                     f"{c['unet_rows']:,} | {rate} | {secs} | {'yes' if c['reads_cached_latents'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collect-only", action="store_true", help="read the finished experiment, run nothing")
    ap.add_argument("--timeout-s", type=float, default=1800)
    args = ap.parse_args()
    t0 = time.time()
    # the RC-pool student is the workspace's own: its metrics count only when the workspace is up to date
    if not dvc("status").strip().endswith("up to date."):
        raise SystemExit("dvc status: the workspace is not up to date; run `dvc repro` first")
    if not args.collect_only:
        dvc("exp", "remove", EXP, check=False)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # stages call rcd
        subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "--temp", "-n", EXP, "-S", "boot.text_pool=cache"],
                       check=True, timeout=args.timeout_s, env=env)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    exps = experiments(json.loads(dvc("exp", "show", "--json", "--force")), head)
    cache_exp = metric(exps[EXP], EVAL) if EXP in exps else None
    workspace = json.loads(Path(EVAL).read_text())
    params = yaml.safe_load(Path("params.yaml").read_text())
    n = params["evaluate"]["eval_per_set"]  # prompts per eval set
    table = rows(workspace, cache_exp)
    cost = training_cost(params)
    result = {"meta": {"commit": head, "experiment": EXP, "n_prompts_per_set": n, "wall_s": round(time.time() - t0, 1),
                       "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count()},
              "rows": table, "verdict": verdict(table, n), "training_cost": cost}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    OUT.with_suffix(".md").write_text(markdown(table, n, result["verdict"]) + "\nTraining cost, measured in the same "
                                      "workspace (2 cores unless stated in the JSON):\n\n" + cost_markdown(cost))
    print(OUT.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
