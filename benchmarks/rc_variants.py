"""Random Conditioning variants on the concepts it teaches poorly, against the paper's recipe.

Each variant is a set of params switches (`distill.unpaired.*`, `distill.rc_prob`, distill length,
student size). For every held-out concept and distillation seed it queues the RC arm as a DVC
experiment, `dvc exp run --queue -S 'world.unseen=[X]' -S distill.seed=S -S <switches> distill`,
like benchmarks/heldout_sweep.py, and reads the student's concept check (metrics/distill.json).
The paper's recipe, the no-RC student and the teacher come from the committed held-out sweep
(benchmarks/results/heldout_sweep.json) for the same concept and seed: the switches leave the
no-RC arm as it was (no unpaired samples), so it is not run again.

    .venv/bin/python benchmarks/rc_variants.py --concepts circle --seeds 4 14 --variants t_min_600 weight_3
    .venv/bin/python benchmarks/rc_variants.py --collect-only ...   # tables from finished experiments

Writes benchmarks/results/rc_variants.{json,md}.

The queued experiments run the installed package, which `scripts/setup.sh` installs editable from
this workspace's src/: leave src/ alone until the queue is done (an experiment that starts after an
edit runs the edited code with the queued commit's dvc.yaml).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout_sweep import attribute_of, dvc, experiments, metric, queue_states, start_queue, wait_for_queue  # noqa: E402
from stats import se  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "rc_prob_0.8": ["distill.rc_prob=0.8"],
    "weight_3": ["distill.unpaired.weight=3.0"],
    "t_min_600": ["distill.unpaired.t_min=600"],
    "guided": ["distill.unpaired.target=guided"],
    "matched": ["distill.unpaired.pairing=matched"],
    "steps_900": ["distill.steps=900"],
    "bk_base": ["distill.student=bk_base"],
}
SWEEP = Path("benchmarks/results/heldout_sweep.json")
OUT = Path("benchmarks/results/rc_variants")


def exp_name(variant: str, concept: str, seed: int) -> str:
    return f"var-{variant.replace('.', '_')}-{concept}-s{seed}"


def queue_commands(variants, concepts, seeds) -> list[list[str]]:
    return [["exp", "run", "--queue", "-n", exp_name(v, c, s), "-S", f"world.unseen=[{c}]", "-S", f"distill.seed={s}",
             *[arg for switch in VARIANTS[v] for arg in ("-S", switch)], "distill"]
            for v in variants for c in concepts for s in seeds]


def sweep_reference(path: Path) -> dict[tuple[str, int], dict]:
    """(concept, seed) -> the held-out sweep's row (teacher, paper-recipe RC, no-RC)."""
    if not path.exists():
        raise SystemExit(f"{path}: no held-out sweep results; run benchmarks/heldout_sweep.py --seeds ... first")
    return {(r["concept"], r["seed"]): r for r in json.loads(path.read_text())["rows"] if r.get("status") == "ok"}


def variant_rows(exps: dict[str, dict], states: dict[str, str], variants, concepts, seeds, ref, n: int) -> list[dict]:
    rows = []
    for v in variants:
        for c in concepts:
            attr = attribute_of(c)
            for s in seeds:
                name, base = exp_name(v, c, s), ref.get((c, s))
                if name not in exps and name not in states:
                    continue  # never queued (or removed from the queue): no row
                row = {"variant": v, "switches": VARIANTS[v], "concept": c, "attribute": attr, "seed": s}
                m = metric(exps.get(name) or {}, "metrics/distill.json").get("distill")
                if states.get(name, "Success") != "Success" or not m:
                    rows.append({**row, "status": states.get(name, "missing").lower()})
                    continue
                row.update(status="ok", rc=m["unseen"][attr], rc_seen=m["seen"][attr])
                if base:
                    t, paper, norc = base["teacher"], base["rc"], base["no_rc"]
                    row.update(teacher=t, paper_rc=paper, no_rc=norc, paper_seen=base["rc_seen"],
                               gap_closed=(row["rc"] - norc) / (t - norc) if t - norc > 1e-9 else None,
                               vs_paper=row["rc"] - paper,
                               se_vs_paper=math.hypot(se(row["rc"], n), se(paper, n)))
                    row["finding"] = abs(row["vs_paper"]) >= 2 * row["se_vs_paper"]
                rows.append(row)
    return rows


def fmt(x, digits=3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def markdown(rows: list[dict], n: int) -> str:
    lines = [f"Accuracy on the held-out attribute, {n} prompts per set (± SE). Paper: the default recipe's RC "
             "student from the held-out sweep, same concept and seed.", "",
             "| variant | held out | seed | teacher | no-RC | paper RC | variant RC | vs paper | gap closed | seen (paper / variant) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['variant']} | {r['concept']} | {r['seed']} | {r['status']} | | | | | | |")
            continue
        vs = "" if "vs_paper" not in r else (f"{r['vs_paper']:+.3f} ± {r['se_vs_paper']:.3f}"
                                             + ("" if r["finding"] else " (under 2 SE)"))
        gap = "" if r.get("gap_closed") is None else f"{100 * r['gap_closed']:.0f}%"
        lines.append(f"| {r['variant']} | {r['concept']} | {r['seed']} | {fmt(r.get('teacher'))} | {fmt(r.get('no_rc'))} | "
                     f"{fmt(r.get('paper_rc'))} | {fmt(r['rc'])} ± {se(r['rc'], n):.3f} | {vs} | {gap} | "
                     f"{fmt(r.get('paper_seen'))} / {fmt(r['rc_seen'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["t_min_600", "weight_3", "matched", "guided"],
                    choices=list(VARIANTS))
    ap.add_argument("--concepts", nargs="+", default=["circle"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[4, 14])
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--baseline", nargs="+", default=None,
                    help="commit(s) the experiments derive from (default HEAD; several when a rerun was queued later)")
    ap.add_argument("--poll-s", type=float, default=30.0)
    ap.add_argument("--timeout-s", type=float, default=6 * 3600)
    ap.add_argument("--sweep", type=Path, default=SWEEP, help="held-out sweep results to compare with")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    for c in args.concepts:
        attribute_of(c)
    ref = sweep_reference(args.sweep)
    baselines = [subprocess.check_output(["git", "rev-parse", b], text=True).strip() for b in args.baseline or ["HEAD"]]
    baseline = baselines[0]
    from rcdistill.config import load_params
    n = load_params("params.yaml").teacher.gate.eval_per_set  # the concept check's prompts per set
    meta = {"baseline": baseline, "variants": {v: VARIANTS[v] for v in args.variants}, "concepts": args.concepts,
            "seeds": args.seeds, "eval_per_set": n, **({"baselines": baselines} if len(baselines) > 1 else {}), "sweep_baseline": json.loads(args.sweep.read_text())["meta"]["baseline"]}
    if not args.collect_only:
        for cmd in queue_commands(args.variants, args.concepts, args.seeds):
            dvc("exp", "remove", cmd[3], check=False)
            dvc(*cmd)
        start = time.perf_counter()
        start_queue(1)
        wait_for_queue(args.poll_s, args.timeout_s)
        meta["wall_s"] = round(time.perf_counter() - start, 1)
    exps = {}
    for b in baselines:  # a later baseline's experiment of the same name wins (a rerun)
        exps.update(experiments(json.loads(dvc("exp", "show", "--json", "--no-fetch", "--rev", b)), b))
    rows = variant_rows(exps, queue_states(dvc("queue", "status")), args.variants,
                        args.concepts, args.seeds, ref, n)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rows, n))
    print(markdown(rows, n))


if __name__ == "__main__":
    main()
