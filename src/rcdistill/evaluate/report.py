"""What `evaluate` derives from its raw numbers: ratios to the teacher, the fewest steps that keep
quality, and the CSV tables for `dvc plots`."""
from __future__ import annotations

import csv
import io

ACCURACY = ("shape", "colour")
CURVE_METRICS = ("unseen_shape", "seen_shape", "unseen_colour", "seen_colour", "unseen_fid", "seen_fid",
                 "ms_per_image")


def vs_teacher(model: dict, teacher: dict) -> dict:
    """Accuracy and time ratios of a model (at its reference steps and at each step count) to the
    teacher at its reference steps."""
    def ratios(entry: dict) -> dict:
        r = {f"{set_name}.{k}": entry[set_name][k] / teacher[set_name][k]
             for set_name in ("seen", "unseen") if set_name in entry and set_name in teacher
             for k in ACCURACY if teacher[set_name].get(k)}
        if teacher.get("ms_per_image"):
            r["ms_per_image"] = entry["ms_per_image"] / teacher["ms_per_image"]
        return r

    return {**ratios(model), "steps": {n: ratios(e) for n, e in model["steps"].items()}}


def fewest_steps(model: dict, keep: float = 0.95) -> int | None:
    """The fewest sampled steps at which every seen/unseen shape and colour accuracy stays at least
    `keep` x the model's own at its reference steps."""
    ok = [int(n) for n, e in model["steps"].items()
          if all(e[s][k] >= keep * model[s][k] for s in ("seen", "unseen") if s in model for k in ACCURACY
                 if k in model[s])]
    return min(ok) if ok else None


def quality_vs_steps_csv(results: dict[str, dict]) -> str:
    """One row per step count, a column per model and metric (empty where a model was not sampled
    at that count), so `dvc plots` draws one line per model."""
    counts = sorted({int(n) for r in results.values() for n in r["steps"]})
    cols = [f"{m}_{k}" for k in CURVE_METRICS for m in results]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["steps", *cols])
    for n in counts:
        row = [n]
        for k in CURVE_METRICS:
            set_name, _, metric = k.partition("_") if k != "ms_per_image" else ("", "", k)
            for m, r in results.items():
                e = r["steps"].get(str(n))
                v = None if e is None else (e.get(metric) if not set_name else e.get(set_name, {}).get(metric))
                row.append("" if v is None else f"{v:.6g}")
        w.writerow(row)
    return buf.getvalue()


def concept_csv(per_concept: dict[str, dict[str, dict[str, float]]]) -> str:
    """One row per (set, concept), one column per model."""
    models = list(per_concept)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["concept", *models])
    first = per_concept[models[0]]
    for set_name, concepts in first.items():
        for concept, _ in concepts.items():
            w.writerow([f"{set_name} {concept}", *(f"{per_concept[m][set_name][concept]:.4f}" for m in models)])
    return buf.getvalue()
