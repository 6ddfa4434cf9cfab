"""CoDi's switches and its second task, each measured against the workspace's default run.

Runs from a complete, up-to-date workspace (after `dvc repro`). Each variant is one DVC
experiment in a temp folder (the workspace stays as it is), scored by the codi_eval stage on the
same conditions, prompts and seeds:

- `codi-captions`: the models read whole captions (`codi.text=caption`) instead of colour words;
- `codi-lowres`: the x4 super-resolution task instead of edge maps (`codi.task=lowres`);
- `codi-no-rc`: no Random Conditioning text (`codi.method.rc_prob=0`);
- `codi-ode-ema`: the ODE point from the EMA model with the condition (the paper) instead of the
  frozen teacher (the public code);
- `codi-prev`: "PREv", the ODE point keeps the true forward noise;
- `codi-heldout-yellow`: yellow held out instead of triangle (`world.unseen=[yellow]`): no cached
  latent, hence no training condition, is yellow, and only Random Conditioning texts name it; the
  unseen eval set is then all yellow, so its colour accuracy is the held-out colour's (reruns the
  stages from the prompts on, not the teacher: about 15 min);
- `codi-heldout-yellow-no-rc`: the same without CoDi's Random Conditioning texts
  (`codi.method.rc_prob=0`): what CoDi's RC adds to what the RC student it starts from knows.

    .venv/bin/python benchmarks/codi_variants.py [--only NAME ...]   # 3-5 min per variant on 2 cores
    .venv/bin/python benchmarks/codi_variants.py --collect-only

Writes benchmarks/results/codi_variants.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout_sweep import dvc, experiments, metric  # noqa: E402

VARIANTS = {
    "codi-captions": (["codi.text=caption"], "whole captions instead of colour words"),
    "codi-lowres": (["codi.task=lowres"], "x4 super-resolution instead of edge maps"),
    "codi-no-rc": (["codi.method.rc_prob=0.0"], "no Random Conditioning text (rc_prob 0)"),
    "codi-ode-ema": (["codi.method.ode_from=ema"], "ODE point from the EMA model with the condition"),
    "codi-prev": (["codi.method.prev_noise=true"], "PREv: the ODE point keeps the true noise"),
    "codi-heldout-yellow": (["world.unseen=[yellow]"], "yellow held out instead of triangle"),
    "codi-heldout-yellow-no-rc": (["world.unseen=[yellow]", "codi.method.rc_prob=0.0"],
                                  "yellow held out, no Random Conditioning text in CoDi"),
}
OUT = Path("benchmarks/results/codi_variants")
EVAL = "metrics/codi_eval.json"
# the baselines the results table shows for each run: (label, run, steps; None = its default)
SHOWN = (("(a) reference", "reference", None), ("(b) reference", "reference", "4"), ("(c) CoDi full", "full", "4"),
         ("(d) CoDi adapter", "adapter", "4"), ("(e) CoDi full", "full", "1"))
MEASURES = ("edge_f1", "psnr", "lowres_psnr", "shape", "colour")
# with each condition given another row's text (codi_eval's `<set>_swapped`): does a model read both?
SWAPPED = ("edge_f1", "shape", "colour")


def table_rows(name: str, ev: dict) -> list[dict]:
    out = []
    for label, run, steps in SHOWN:
        entry = ev["models"].get(run)
        if not entry:
            continue
        key = steps or max(entry["steps"], key=int)
        cell = entry["steps"].get(key)
        if cell:
            out.append({"variant": name, "task": ev["task"], "model": label, "steps": int(key),
                        "text": entry.get("text", "caption"),
                        **{f"{s}.{m}": cell[s][m] for s in cell for m in MEASURES if m in cell[s]},
                        **{f"{s}.{m}_se": cell[s][f"{m}_se"] for s in cell for m in MEASURES if m in cell[s]},
                        **{f"{s}.by_concept": cell[s]["by_concept"] for s in ("seen", "unseen")
                           if "by_concept" in cell.get(s, {})}})
    return out


def fmt(row: dict, key: str) -> str:
    if key not in row:
        return "-"
    digits = 1 if "psnr" in key else 3
    return f"{row[key]:.{digits}f} ± {row[key + '_se']:.{digits}f}"


def markdown(rows: list[dict]) -> str:
    cols = [f"{s}.{m}" for s in ("seen", "unseen") for m in MEASURES] + [f"seen_swapped.{m}" for m in SWAPPED]
    lines = ["| variant | task | text | model | steps | " + " | ".join(c.replace(".", " ") for c in cols) + " |",
             "|---|---|---|---|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['task']} | {r['text']} | {r['model']} | {r['steps']} | "
                     + " | ".join(fmt(r, c) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collect-only", action="store_true", help="read the finished experiments, run nothing")
    ap.add_argument("--only", nargs="*", choices=list(VARIANTS), help="run these variants only")
    ap.add_argument("--timeout-s", type=float, default=2400, help="per experiment")
    args = ap.parse_args()
    t0 = time.time()
    if not dvc("status").strip().endswith("up to date."):
        raise SystemExit("dvc status: the workspace is not up to date; run `dvc repro` first")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # stages call rcd
    timings = {}
    if not args.collect_only:
        for name in args.only or VARIANTS:
            dvc("exp", "remove", name, check=False)
            sets = [x for kv in VARIANTS[name][0] for x in ("-S", kv)]
            start = time.time()
            subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "--temp", "-n", name, *sets], check=True,
                           timeout=args.timeout_s, env=env)
            timings[name] = round(time.time() - start, 1)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    exps = experiments(json.loads(dvc("exp", "show", "--json", "--force")), head)
    rows = table_rows("default", json.loads(Path(EVAL).read_text())["codi_eval"])
    for name in VARIANTS:
        if name in exps and metric(exps[name], EVAL):
            rows += table_rows(name, metric(exps[name], EVAL)["codi_eval"])
    result = {"meta": {"commit": head, "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
                       "wall_s": round(time.time() - t0, 1), "experiment_s": timings,
                       "variants": {k: {"set": v[0], "what": v[1]} for k, v in VARIANTS.items()}},
              "rows": rows}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    what = "\n".join(f"- `{k}`: {v[1]} (`-S {' -S '.join(v[0])}`)" for k, v in VARIANTS.items())
    OUT.with_suffix(".md").write_text(f"Variants (`benchmarks/codi_variants.py`, each a `dvc exp run --temp` from the "
                                      f"workspace of commit {head[:7]}; mean ± standard error over the eval images):\n\n"
                                      f"{what}\n\n" + markdown(rows))
    print(OUT.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
