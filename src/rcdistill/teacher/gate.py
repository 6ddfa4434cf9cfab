"""Stage `teacher_gate`: the teacher's quality gate, on the current `seen` and `unseen` eval sets
with the shared sampling settings. Its own stage, so changing the held-out concepts re-judges the
teacher (seconds) instead of retraining it; nothing downstream runs on a teacher that failed."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import Params
from ..errors import GateFailed
from ..eval_samples import EvalSamples, keep_samples
from ..evaluate.concepts import sampled_accuracy
from ..evaluators.classifier import load_classifier
from ..images import grid
from ..io import atomic_write_json, read_jsonl
from ..teacher_verdict import write_verdict
from ..sampling import load_pipeline
from ..roster import REFERENCE
from ..stage_table import eval_samples_file, metrics_file
from ..tracking import stage_run

METRICS_FILE = Path(metrics_file("teacher_gate"))
SAMPLES_FILE = eval_samples_file(REFERENCE.name)  # the evaluate stage scores these teacher samples
GATED = ("shape", "colour")


def gate_failures(metrics: dict, gate) -> list[str]:
    return [f"{name} {a} {metrics[name][a]:.3f} < {getattr(gate, a):.2f}"
            for name in ("seen", "unseen") if name in metrics for a in GATED
            if metrics[name][a] < getattr(gate, a) - 1e-6]  # 108/120 in float32 is 0.8999999


def judge_teacher(pipe, params: Params, classifier, log=None) -> tuple[dict, list[str], dict[str, EvalSamples]]:
    """The gate's verdict on a teacher pipeline: accuracies on each eval set and `passed`; the failed
    floors, one line each; and each set's prompts and samples."""
    gate, prompts = params.teacher.gate, Path(params.prompts.out_dir)
    metrics: dict = {}
    sets: dict[str, EvalSamples] = {}
    for name in ("seen", "unseen"):
        rows = read_jsonl(prompts / f"eval_{name}.jsonl")[: gate.eval_per_set]
        if not rows:
            continue
        metrics[name], images = sampled_accuracy(pipe, rows, classifier, params, f"teacher gate ({name})")
        sets[name] = EvalSamples(rows, images)
        if log:
            log({f"gate.{name}.{a}": v for a, v in metrics[name].items()})
    failures = gate_failures(metrics, gate)
    return {**metrics, "passed": not failures}, failures, sets


def run_teacher_gate(params: Params) -> dict:
    if params.teacher.source == "pretrained" or params.prompts.source != "world":
        metrics = {"passed": True, "reason": "no world classifier judges this teacher"}
        atomic_write_json(METRICS_FILE, {"teacher": metrics})
        write_verdict(True)
        keep_samples(SAMPLES_FILE, None, params.teacher.path, {}, params.sampling)
        return metrics
    pipe = load_pipeline(params.teacher.path, params.sampling.scheduler)
    classifier = load_classifier(params.evaluators.out_dir)
    with stage_run(params, "teacher_gate", ("sampling", "teacher")) as log:
        metrics, failures, sets = judge_teacher(pipe, params, classifier, log)
        log.image(grid(torch.cat([e.images[:20] for e in sets.values()]), ncol=10, scale=3), "teacher_samples.png")
        keep_samples(SAMPLES_FILE, pipe, params.teacher.path, sets, params.sampling)
        atomic_write_json(METRICS_FILE, {"teacher": metrics})  # written either way: it says why
        write_verdict(metrics["passed"])
    if failures:
        raise GateFailed("teacher quality gate failed: " + "; ".join(failures)
                         + f" (the candidate stays in {params.teacher.path}; nothing downstream runs on it)")
    return metrics
