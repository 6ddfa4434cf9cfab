"""Stage `evaluators`: the world classifier and world CLIP that judge every sample."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..evaluators.stage import run_evaluators_stage
from ..io import atomic_dir, atomic_write_json
from ..stage_table import metrics_file


def run(params: Params, args) -> int:
    if params.prompts.source != "world":  # real models are judged by the user's Inception and open_clip files
        note = {"skipped": "prompts.source is not 'world': no world classifier or world CLIP to train"}
        with atomic_dir(Path(params.evaluators.out_dir)) as tmp:
            atomic_write_json(tmp / "skipped.json", note)
        atomic_write_json(metrics_file("evaluators"), note)
        print(f"evaluators: {note['skipped']}")
        return 0
    metrics = run_evaluators_stage(params)
    print(f"evaluators written to {params.evaluators.out_dir}/ ; accuracies: {metrics}")
    return 0
