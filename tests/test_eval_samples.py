"""Eval samples kept by the checking stages: evaluate scores them only when they are exactly what it
would draw, and scoring them gives the metrics that drawing them again gives."""
import json
import shutil

import torch

from rcdistill.eval_samples import EvalSamples, keep_samples, reuse_samples, sampling_key
from rcdistill.sampling import load_pipeline
from rcdistill.config import SamplingParams

from conftest import rcd


def test_kept_samples_come_back_only_under_the_key_they_were_drawn_with(tiny_pipeline, tmp_path):
    pipe = load_pipeline(str(tiny_pipeline), "ddim")
    rows = [{"text": "a red circle", "seed": 0}, {"text": "a blue square", "seed": 1}]
    sampling = SamplingParams(steps=4, guidance_scale=3.0, batch_size=8)
    images = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    path = tmp_path / "teacher.safetensors"
    keep_samples(path, pipe, tiny_pipeline, {"seen": EvalSamples(rows, images)}, sampling)

    key = sampling_key(pipe, tiny_pipeline, rows, 4, 3.0, 8)
    assert torch.equal(reuse_samples(path, "seen", key), images)
    assert reuse_samples(path, "unseen", key) is None                      # a set never kept
    for other in (sampling_key(pipe, tiny_pipeline, rows, 2, 3.0, 8),      # other steps
                  sampling_key(pipe, tiny_pipeline, rows, 4, 1.0, 8),      # other guidance
                  sampling_key(pipe, tiny_pipeline, rows[::-1], 4, 3.0, 8),  # other prompt order
                  sampling_key(pipe, tiny_pipeline, [{**rows[0], "seed": 5}, rows[1]], 4, 3.0, 8)):
        assert other != key and reuse_samples(path, "seen", other) is None

    weights = tmp_path / "other_weights"
    shutil.copytree(tiny_pipeline, weights)
    unet = next((weights / "unet").glob("*.safetensors"))
    unet.write_bytes(unet.read_bytes()[:-1] + b"\0")                      # one byte of the UNet differs
    assert sampling_key(pipe, weights, rows, 4, 3.0, 8) != key

    keep_samples(path, None, tiny_pipeline, {}, sampling)                 # a stage that drew nothing
    assert reuse_samples(path, "seen", key) is None


def test_evaluate_scores_the_kept_samples_exactly_as_drawing_them_again(tiny_project, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(tiny_project, ws, symlinks=True)
    reused = rcd("evaluate", cwd=ws)
    assert reused.returncode == 0, reused.stderr[-2000:]
    for model in ("teacher", "student", "student_fast"):
        assert f"{model} " in reused.stdout and "scored the samples its checking stage drew" in reused.stdout
    with_kept = json.loads((ws / "metrics/evaluate.json").read_text())

    shutil.rmtree(ws / "data/eval_samples")
    drawn = rcd("evaluate", cwd=ws)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert "scored the samples" not in drawn.stdout
    fresh = json.loads((ws / "metrics/evaluate.json").read_text())
    for model in ("teacher", "student", "student_fast"):
        default = str(fresh[model]["default_steps"])
        for split in ("seen", "unseen"):
            assert with_kept[model]["steps"][default][split] == fresh[model]["steps"][default][split], (model, split)
