"""`rcd summary`: the pipeline's headline numbers from the metrics files, readable in a terminal."""
from __future__ import annotations

import json
from pathlib import Path

from .roster import MODEL_NAMES, REFERENCE, STUDENTS
from .stage_table import metrics_file



def _load(path: str) -> dict:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else {}


def _registry_line(reg: dict) -> str:
    verdict = "champion" if reg["promoted"] else "challenger only"
    return (f"registry: {reg['model_name']} v{reg['version']} -> {verdict} ({reg['reason']}); "
            f"champion is v{reg['champion_version']}")


def summary_lines() -> list[str]:
    ev, reg = _load(metrics_file("evaluate")), _load(metrics_file("register"))
    if not ev:
        return [f"no {metrics_file('evaluate')} yet: run `dvc repro`"]
    models = [m for m in MODEL_NAMES if m in ev]
    t = ev[REFERENCE.name]
    lines = [f"{'set':<7}{'metric':<14}" + "".join(f"{m:>14}" for m in models),
             f"{'':<7}{'(steps)':<14}" + "".join(f"{ev[m].get('default_steps', ''):>14}" for m in models)]
    for set_name in ("seen", "unseen"):
        for key in ("shape", "colour", "fid", "clip_score"):
            if key in t.get(set_name, {}):
                lines.append(f"{set_name:<7}{key:<14}" + "".join(f"{ev[m][set_name][key]:>14.3f}" for m in models))
    lines.append(f"{'all':<7}{'UNet params':<14}" + "".join(f"{ev[m]['unet_params'] / 1e6:>13.2f}M" for m in models))
    lines.append(f"{'all':<7}{'ms/image':<14}" + "".join(f"{ev[m]['ms_per_image']:>14.1f}" for m in models))
    first = STUDENTS[0].name
    s = ev[first]
    lines.append(f"{'all':<7}{'ms/UNet call':<14}{t['ms_per_unet_step']:>14.1f}{s['ms_per_unet_step']:>14.1f}"
                 f"   ({first}/{REFERENCE.name} {s['unet_step_ratio']:.2f}x)")
    # the world's headline is unseen shape accuracy; real models (no world classifier) show FID
    key = next((k for k in ("shape", "fid", "clip_score") if k in t.get("unseen", {})), None)
    if key:
        lines.append(f"unseen {key} by sampling steps:")
    for m in models if key else ():
        steps = sorted(ev[m]["steps"].items(), key=lambda kv: int(kv[0]))
        curve = "  ".join(f"{n}: {e['unseen'][key]:.3f}" for n, e in steps if key in e.get("unseen", {}))
        lines.append(f"  {m:<13}{curve}")
    if s.get("fewest_steps_95"):
        lines.append(f"{first} keeps >= 0.95x its {s['default_steps']}-step accuracy down to {s['fewest_steps_95']} steps")
    if reg:
        lines.append(_registry_line(reg))
        lines += [_registry_line(reg[m.name]) for m in STUDENTS[1:] if reg.get(m.name)]
    return lines
