"""`rcd summary`: the pipeline's headline numbers from the metrics files, readable in a terminal."""
from __future__ import annotations

import json
from pathlib import Path


def _load(path: str) -> dict:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else {}


def summary_lines() -> list[str]:
    lines: list[str] = []
    ev, reg = _load("metrics/evaluate.json"), _load("metrics/register.json")
    if not ev:
        return ["no metrics/evaluate.json yet: run `dvc repro`"]
    t, s = ev["teacher"], ev["student"]
    lines.append(f"{'set':<7}{'metric':<14}{'teacher':>9}{'student':>9}")
    for set_name in ("seen", "unseen"):
        for key in ("shape", "colour", "fid", "clip_score"):
            if key in t.get(set_name, {}):
                lines.append(f"{set_name:<7}{key:<14}{t[set_name][key]:>9.3f}{s[set_name][key]:>9.3f}")
    lines.append(f"{'all':<7}{'UNet params':<14}{t['unet_params'] / 1e6:>8.2f}M{s['unet_params'] / 1e6:>8.2f}M")
    lines.append(f"{'all':<7}{'ms/UNet call':<14}{t['ms_per_unet_step']:>9.1f}{s['ms_per_unet_step']:>9.1f}"
                 f"   (student/teacher {s['unet_step_ratio']:.2f}x)")
    if reg:
        verdict = "champion" if reg["promoted"] else "challenger only"
        lines.append(f"registry: {reg['model_name']} v{reg['version']} -> {verdict} ({reg['reason']}); "
                     f"champion is v{reg['champion_version']}")
    return lines
