"""The model card: a markdown page with the metrics table, the sample grid and the lineage."""
from __future__ import annotations

ROWS = (("shape", "shape accuracy"), ("colour", "colour accuracy"), ("fid", "FID (world CLIP features)"),
        ("kid", "KID"), ("clip_score", "CLIP score"))


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else "–"


def model_card(name: str, version: str, metrics: dict, params: dict, lineage: dict[str, str], git_commit: str,
               run_id: str) -> str:
    t, s = metrics["teacher"], metrics["student"]
    lines = [f"# {name} v{version}", "",
             f"Student `{params['distill']['student']}` distilled with Random Conditioning "
             f"(rc_prob {params['distill']['rc_prob']}, {params['distill']['steps']} steps x "
             f"{params['distill']['batch_size']}) from the teacher at `{params['teacher']['path']}`.", "",
             "## Metrics", "", "| set | metric | teacher | student |", "|---|---|---|---|"]
    for set_name in ("seen", "unseen"):
        for key, label in ROWS:
            if key in t.get(set_name, {}):
                lines.append(f"| {set_name} | {label} | {_fmt(t[set_name][key])} | {_fmt(s[set_name].get(key))} |")
    for key, label in (("unet_params", "UNet parameters"), ("ms_per_unet_step", "ms per UNet call"),
                       ("s_per_image", "seconds per image")):
        lines.append(f"| all | {label} | {_fmt(t[key])} | {_fmt(s[key])} |")
    lines += ["", "## Samples", "", "![teacher (top) and student (bottom) rows, seen then unseen](samples.png)", "",
              "## Lineage", "", f"- git commit: `{git_commit}`", f"- MLflow run: `{run_id}`"]
    lines += [f"- `{path}`: DVC md5 `{md5}`" for path, md5 in sorted(lineage.items())]
    lines += ["", "Load it: `mlflow.pyfunc.load_model(\"models:/" + name + "@champion\").predict([\"a red circle\"])`", ""]
    return "\n".join(lines)
