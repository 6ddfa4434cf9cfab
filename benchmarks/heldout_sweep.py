"""Held-out sweep: how much of the unseen-concept gap does Random Conditioning close, concept by concept?

For each held-out concept (every shape, and colours the teacher draws well) it queues two DVC
experiments on the committed pipeline, RC (`distill.rc_prob` as in params.yaml) and no-RC
(`distill.rc_prob=0`), each `dvc exp run --queue -S 'world.unseen=[X]' distill`: prompts,
teacher gate, latent cache and distillation rerun; evaluators and teacher do not (they know the
whole world). `dvc queue start` runs them; this script waits, then reads every experiment's
`metrics/teacher.json` (teacher gate) and `metrics/distill.json` (student's concept check, same
120 prompts, seeds and sampler) from `dvc exp show --json` and writes a table, a CSV and a plot.

    .venv/bin/python benchmarks/heldout_sweep.py                  # queue, run, collect
    .venv/bin/python benchmarks/heldout_sweep.py --collect-only   # tables from finished experiments

Gap closed = (RC - no-RC) / (teacher - no-RC) on the held-out attribute (shape or colour).
`--seeds 4 14` repeats every cell with those distillation seeds (`distill.seed`); each row then
carries the standard error of RC - no-RC (both accuracies' SEs in quadrature, n = the concept
check's prompts) and says when the difference is under two of them (not a finding).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from rcdistill.world.vocab import CONCEPTS  # noqa: E402  (held-out concept -> its attribute)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats import se  # noqa: E402

DEFAULT_CONCEPTS = ("circle", "square", "triangle", "diamond", "cross", "yellow", "white")
PREFIX = "sweep"
OUT = Path("benchmarks/results/heldout_sweep")


def attribute_of(concept: str) -> str:
    if concept not in CONCEPTS:
        raise SystemExit(f"--concepts: {concept!r} is neither a shape nor a colour ({', '.join(CONCEPTS)})")
    return CONCEPTS[concept]


def exp_name(concept: str, rc: bool, seed: int | None = None) -> str:
    return f"{PREFIX}-{concept}-{'rc' if rc else 'norc'}" + ("" if seed is None else f"-s{seed}")


def dvc(*args: str, check: bool = True, timeout_s: float = 600) -> str:
    """One dvc command (the queue runs experiments in the background: no command itself is long)."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True, timeout=timeout_s)
    if check and proc.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout


def start_queue(jobs: int, timeout_s: float = 120) -> None:
    """`dvc queue start`: its workers live on after it returns and hold whatever output it was given,
    so it gets none (captured pipes would keep `subprocess.run` waiting until the queue is empty)."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout_s)
    if proc.returncode != 0:
        raise SystemExit(f"dvc queue start -j {jobs} failed (exit {proc.returncode}); see `dvc queue logs`")


def queue_commands(concepts, rc_prob: float, seeds=(None,)) -> list[list[str]]:
    """One `dvc exp run --queue` per (concept, RC on/off, seed); target `distill` (consistency and
    evaluate are not needed for the concept check)."""
    cmds = []
    for concept in concepts:
        for seed in seeds:
            for rc in (True, False):
                cmds.append(["exp", "run", "--queue", "-n", exp_name(concept, rc, seed),
                             "-S", f"world.unseen=[{concept}]",
                             "-S", f"distill.rc_prob={rc_prob if rc else 0.0}",
                             *([] if seed is None else ["-S", f"distill.seed={seed}"]), "distill"])
    return cmds


def wait_for_queue(poll_s: float, timeout_s: float) -> None:
    """Until no experiment is queued or running; past `timeout_s` the workers are stopped and it fails."""
    deadline = time.monotonic() + timeout_s
    while re.search(r"\b(Queued|Running)\b", dvc("queue", "status")):
        if time.monotonic() > deadline:
            dvc("queue", "stop", "--kill", check=False)
            raise SystemExit(f"the DVC queue was still busy after {timeout_s:.0f} s (--timeout-s); workers stopped")
        time.sleep(poll_s)


def queue_states(status_text: str) -> dict[str, str]:
    """name -> status (Queued, Running, Success, Failed) from `dvc queue status`; a later line wins."""
    states = {}
    for line in status_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1] in ("Queued", "Running", "Success", "Failed"):
            states[parts[1]] = parts[-1]
    return states


def experiments(exp_show: list[dict], baseline: str) -> dict[str, dict]:
    """name -> data of every experiment on `baseline` in `dvc exp show --json` output."""
    found = {}
    for entry in exp_show:
        if entry.get("rev") != baseline:
            continue
        for exp in entry.get("experiments") or []:
            if (exp.get("executor") or {}).get("state") not in (None, "success"):
                continue  # queued or running: it shows the baseline's metrics, not its own
            rev = exp["revs"][0]
            found[rev.get("name") or exp.get("name")] = rev.get("data") or {}
    return found


def metric(data: dict, path: str) -> dict:
    return ((data.get("metrics") or {}).get(path) or {}).get("data") or {}


def sweep_rows(exps: dict[str, dict], concepts, states: dict[str, str] | None = None, seeds=(None,),
               n_prompts: int | None = None) -> list[dict]:
    """One row per concept and seed; `states` (from the queue) keeps unfinished or failed runs out of
    the numbers (a queued or running experiment shows the baseline's metrics); with `n` (prompts per
    eval set) each row gets the standard error of RC - no-RC."""
    return [_row(exps, concept, seed, states or {}, n_prompts) for concept in concepts for seed in seeds]


def _row(exps: dict[str, dict], concept: str, seed: int | None, states: dict[str, str], n_prompts: int | None) -> dict:
    attr = attribute_of(concept)
    row = {"concept": concept, "attribute": attr, "seed": seed}
    names = (exp_name(concept, True, seed), exp_name(concept, False, seed))
    unfinished = [f"{name} {states[name].lower()}" for name in names if states.get(name, "Success") != "Success"]
    if unfinished:
        return {**row, "status": ", ".join(unfinished)}
    rc, norc = exps.get(names[0]), exps.get(names[1])
    if rc is None or norc is None:
        return {**row, "status": "missing: " + ", ".join(name for name, d in zip(names, (rc, norc)) if d is None)}
    teacher = metric(rc, "metrics/teacher.json").get("teacher", {})
    rc_m = metric(rc, "metrics/distill.json").get("distill", {})
    norc_m = metric(norc, "metrics/distill.json").get("distill", {})
    if not rc_m or not norc_m:
        return {**row, "status": "failed (see `dvc queue logs`)"}
    t, r, n = teacher["unseen"][attr], rc_m["unseen"][attr], norc_m["unseen"][attr]
    row.update(status="ok", teacher_passed=teacher.get("passed"), teacher=t, rc=r, no_rc=n,
               gap_closed=(r - n) / (t - n) if t - n > 1e-9 else None,  # None: nothing was forgotten
               rc_seen=rc_m["seen"][attr], no_rc_seen=norc_m["seen"][attr],
               rc_prob=rc_m.get("rc_prob"))
    if n_prompts:
        row["se_diff"] = math.hypot(se(r, n_prompts), se(n, n_prompts))
        row["within_noise"] = abs(r - n) < 2 * row["se_diff"]
    return row


def fmt(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def markdown(rows: list[dict]) -> str:
    lines = ["| held out | attribute | teacher | RC student | no-RC student | gap RC closes | seen (RC / no-RC) | seed | RC − no-RC ± SE |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['concept']} | {r['attribute']} | {r['status']} | | | | | {r.get('seed') or ''} | |")
            continue
        gap = "no gap (no-RC ≥ teacher)" if r["gap_closed"] is None else f"{100 * r['gap_closed']:.0f}%"
        diff = "" if "se_diff" not in r else (f"{r['rc'] - r['no_rc']:+.3f} ± {r['se_diff']:.3f}"
                                               + (" (under 2 SE: not a finding)" if r["within_noise"] else ""))
        lines.append(f"| {r['concept']} | {r['attribute']} | {fmt(r['teacher'])} | {fmt(r['rc'])} | "
                     f"{fmt(r['no_rc'])} | {gap} | {fmt(r['rc_seen'])} / {fmt(r['no_rc_seen'])} | {r.get('seed') or ''} | {diff} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    tick = lambda r: f"{r['concept']}\n({r['attribute']})" + (f"\nseed {r['seed']}" if r.get("seed") is not None else "")  # noqa: E731
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(ok) + 2), 3.8))
    width = 0.27
    for k, (key, label) in enumerate((("teacher", "teacher"), ("rc", "RC student"), ("no_rc", "no-RC student"))):
        ax.bar([i + (k - 1) * width for i in range(len(ok))], [r[key] for r in ok], width, label=label)
    ax.set_xticks(range(len(ok)), [tick(r) for r in ok], fontsize=7)
    ax.set_ylabel("accuracy on the held-out attribute")
    ax.set_ylim(0, 1.05)
    ax.set_title("Held-out concept: teacher, RC and no-RC students", fontsize=10)
    ax.legend(ncol=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_results(rows: list[dict], meta: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    keys = ["concept", "attribute", "seed", "status", "teacher_passed", "teacher", "rc", "no_rc", "gap_closed",
            "rc_seen", "no_rc_seen", "rc_prob", "se_diff", "within_noise"]
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    out.with_suffix(".md").write_text(markdown(rows))
    if any(r["status"] == "ok" for r in rows):
        plot(rows, out.with_suffix(".png"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", nargs="+", default=list(DEFAULT_CONCEPTS))
    ap.add_argument("--jobs", type=int, default=1, help="queue workers (1 on 2 cores: stages use both)")
    ap.add_argument("--baseline", default=None, help="commit the experiments derive from (default HEAD)")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="distillation seeds (distill.seed) to repeat every cell with (default: params' own, once)")
    ap.add_argument("--poll-s", type=float, default=30.0)
    ap.add_argument("--timeout-s", type=float, default=6 * 3600, help="give up on the queue after this long")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    for concept in args.concepts:
        attribute_of(concept)

    baseline = args.baseline or subprocess.check_output(["git", "rev-parse", "HEAD"], text=True).strip()
    from rcdistill.config import load_params
    params = load_params("params.yaml")
    rc_prob, n = params.distill.rc_prob, params.teacher.gate.eval_per_set  # the concept check's prompts
    seeds = tuple(args.seeds) if args.seeds else (None,)
    meta = {"baseline": baseline, "rc_prob": rc_prob, "concepts": args.concepts, "seeds": args.seeds, "eval_per_set": n}
    if not args.collect_only:
        names = [exp_name(c, rc, s) for c in args.concepts for s in seeds for rc in (True, False)]
        for name in names:   # a rerun replaces the sweep's old experiments
            dvc("exp", "remove", name, check=False)
        for cmd in queue_commands(args.concepts, rc_prob, seeds):
            dvc(*cmd)
        start = time.perf_counter()
        start_queue(args.jobs)
        wait_for_queue(args.poll_s, args.timeout_s)
        meta["wall_s"] = round(time.perf_counter() - start, 1)
        meta["jobs"] = args.jobs
        print(f"sweep: {len(names)} experiments in {meta['wall_s']:.0f} s")
    show = json.loads(dvc("exp", "show", "--json", "--no-fetch", "--rev", baseline))
    rows = sweep_rows(experiments(show, baseline), args.concepts, queue_states(dvc("queue", "status")), seeds, n)
    if args.collect_only and args.out.with_suffix(".json").exists():
        meta = {**json.loads(args.out.with_suffix(".json").read_text())["meta"], **meta}
    write_results(rows, meta, args.out)
    print(markdown(rows))


if __name__ == "__main__":
    main()
