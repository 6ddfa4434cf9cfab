"""The model card: a markdown page with the metrics table, the sample grid and the lineage."""
from __future__ import annotations

from ..roster import REFERENCE

ROWS = (("shape", "shape accuracy"), ("colour", "colour accuracy"), ("fid", "FID (world CLIP features)"),
        ("kid", "KID"), ("clip_score", "CLIP score"))


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else "–"


def model_card(entry, version: str, metrics: dict, params: dict, lineage: dict[str, str], git_commit: str,
               run_id: str) -> str:
    t, s = metrics[REFERENCE.name], metrics[entry.key]
    lines = [f"# {entry.model_name} v{version}", "",
             f"{entry.description}, from the teacher at `{params['teacher']['path']}`. Samples by default with "
             f"{entry.steps} steps, guidance {entry.guidance_scale}.", "",
             "## Metrics", "", f"Teacher at {t.get('default_steps', '?')} steps, this model at {entry.steps} steps.", "",
             "| set | metric | teacher | this model |", "|---|---|---|---|"]
    for set_name in ("seen", "unseen"):
        for key, label in ROWS:
            if key in t.get(set_name, {}):
                lines.append(f"| {set_name} | {label} | {_fmt(t[set_name][key])} | {_fmt(s[set_name].get(key))} |")
    for key, label in (("unet_params", "UNet parameters"), ("ms_per_unet_step", "ms per UNet call"),
                       ("ms_per_image", "ms per image (whole pipeline)")):
        lines.append(f"| all | {label} | {_fmt(t.get(key))} | {_fmt(s.get(key))} |")
    if s.get("steps"):
        lines += ["", "### Across sampling steps", "", "| steps | seen shape | unseen shape | unseen FID | ms per image |",
                  "|---|---|---|---|---|"]
        for n, e in sorted(s["steps"].items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {n} | {_fmt(e.get('seen', {}).get('shape'))} | {_fmt(e.get('unseen', {}).get('shape'))} | "
                         f"{_fmt(e.get('unseen', {}).get('fid'))} | {_fmt(e.get('ms_per_image'))} |")
    # the MLflow UI shows the description at its root: this relative link is its own artifact endpoint
    image = f"get-artifact?path=samples.png&run_uuid={run_id}"
    lines += ["", "## Samples", "", f"![one row per model (teacher, student, few-step student), seen then unseen]({image})",
              "", "(`samples.png` among the run's artifacts)", "",
              "## Lineage", "", f"- git commit: `{git_commit}`", f"- MLflow run: `{run_id}`"]
    lines += [f"- `{path}`: DVC md5 `{md5}`" for path, md5 in sorted(lineage.items())]
    lines += ["", "Load it: `mlflow.pyfunc.load_model(\"models:/" + entry.model_name
              + "@champion\").predict([\"a red circle\"])`", ""]
    return "\n".join(lines)
