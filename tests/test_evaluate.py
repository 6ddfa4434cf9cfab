"""Evaluation metrics on inputs with known answers, and the evaluate stage's outputs."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from rcdistill.config import ClipParams
from rcdistill.evaluate.concepts import concept_accuracy
from rcdistill.evaluate.metrics import fid, kid
from rcdistill.evaluators.world_clip import train_world_clip
from rcdistill.world.render import random_attributes, render_attributes
from rcdistill.world.vocab import ATTRIBUTES


def test_fid_and_kid_of_a_set_against_itself_are_zero_and_grow_with_a_shift():
    a = np.random.default_rng(0).normal(size=(400, 16))
    b = np.random.default_rng(1).normal(size=(400, 16))
    same_dist, shifted = fid(a, b), fid(a, b + 1.0)
    assert abs(fid(a, a)) < 1e-6
    assert same_dist < 2.0 and shifted > 12.0, (same_dist, shifted)  # a unit shift in 16 dims adds ~16
    kid_shifted = kid(a, b + 1.0, subsets=20)
    # KID is an unbiased estimate, so a set against itself lands near 0 on either side
    assert abs(kid(a, a, subsets=20)) < 0.01 * kid_shifted and abs(kid(a, b, subsets=20)) < 0.01 * kid_shifted


def _rows(attrs):
    return [{a: ATTRIBUTES[a][int(attrs[a][i])] for a in ATTRIBUTES} for i in range(len(attrs["shape"]))]


def test_rendered_images_score_near_perfect_and_blank_ones_badly(classifier):
    classifier, _ = classifier
    attrs = random_attributes(300, seed=11)
    rows = _rows(attrs)
    per_attr, per_concept = concept_accuracy(classifier.predict(render_attributes(attrs, seed=11)), rows)
    assert per_attr["colour"] > 0.95 and per_attr["shape"] > 0.8, per_attr
    assert {f"shape={s}" for s in ATTRIBUTES["shape"]} <= set(per_concept)
    blank = torch.full((300, 3, 32, 32), 24, dtype=torch.uint8)
    bad, _ = concept_accuracy(classifier.predict(blank), rows)
    assert bad["shape"] < 0.4 and bad["colour"] < 0.35, bad


def test_world_clip_fid_ranks_renders_above_blank_images():
    cfg = ClipParams(embed_dim=32, width=32, layers=1, steps=60, batch_size=64, eval_images=64)
    clip = train_world_clip(cfg, seed=0, image_size=32)[0]
    ref = clip.image_features(render_attributes(random_attributes(300, seed=1), seed=1)).numpy()
    other = clip.image_features(render_attributes(random_attributes(300, seed=2), seed=2)).numpy()
    blank = clip.image_features(torch.full((300, 3, 32, 32), 24, dtype=torch.uint8)).numpy()
    assert abs(fid(ref, ref)) < 1e-6
    assert fid(ref, other) < 0.25 * fid(ref, blank), (fid(ref, other), fid(ref, blank))


def test_evaluate_stage_writes_metrics_plots_and_side_by_side_grids(tiny_project):
    m = json.loads((tiny_project / "metrics/evaluate.json").read_text())
    # tiny params: teacher and student at 4 and 2 DDIM steps (default 4), the few-step student at 2 and 1
    # (default 2), the BOOT student at 1
    expected_steps = {"teacher": ["4", "2"], "student": ["4", "2"], "student_fast": ["2", "1"], "student_boot": ["1"]}
    for model, counts in expected_steps.items():
        assert set(m[model]["steps"]) == set(counts), (model, list(m[model]["steps"]))
        for n in counts:
            entry = m[model]["steps"][n]
            assert entry["ms_per_image"] > 0
            for split in ("seen", "unseen"):
                assert {"fid", "kid", "clip_score", "shape", "colour", "size", "position"} <= set(entry[split])
                assert all(0 <= entry[split][a] <= 1 for a in ATTRIBUTES)
        default = m[model]["steps"][str(m[model]["default_steps"])]
        assert m[model]["unseen"] == default["unseen"] and m[model]["unet_params"] > 0  # top level: default steps
    for model in ("teacher", "student"):
        assert m[model]["ms_per_unet_step"] > 0 and m[model]["s_per_image"] > 0
    assert m["student_fast"]["default_steps"] == 2
    assert 0 < m["student"]["param_ratio"] < 1 and m["student_fast"]["param_ratio"] > m["student"]["param_ratio"]
    assert m["student_fast_vs_teacher"]["ms_per_image"] == pytest.approx(
        m["student_fast"]["ms_per_image"] / m["teacher"]["ms_per_image"])
    rows = list(csv.DictReader((tiny_project / "plots/concept_accuracy.csv").open()))
    assert m["student_boot"]["default_steps"] == 1 and "student_boot_vs_teacher" in m
    for model in expected_steps:  # diversity at the default steps, every model, both sets
        for split in ("seen", "unseen"):
            assert 0 < m[model][split]["diversity"] < 0.5 and m[model][split]["diversity_se"] >= 0, (model, split)
    assert rows and {"concept", "teacher", "student", "student_fast", "student_boot"} == set(rows[0])
    assert any(r["concept"] == "unseen shape=triangle" for r in rows)
    curve = list(csv.DictReader((tiny_project / "plots/quality_vs_steps.csv").open()))
    assert [int(r["steps"]) for r in curve] == [1, 2, 4]
    assert curve[0]["teacher_unseen_shape"] == "" and curve[0]["student_fast_unseen_shape"] != ""
    assert float(curve[2]["student_unseen_shape"]) == pytest.approx(m["student"]["unseen"]["shape"], abs=1e-5)
    w, h = Image.open(tiny_project / "reports/grid_seen.png").size
    assert w == 3 * (4 * 34 + 2) and h == 3 * (4 * 34 + 2)  # 4 prompts; teacher, student, few-step, BOOT rows
    assert ("rows, top to bottom: teacher (4 steps) / student (4 steps) / student_fast (2 steps) / "
            "student_boot (1 steps)") in \
        (tiny_project / "reports/grid_seen.txt").read_text()
    loss = list(csv.DictReader((tiny_project / "plots/distill_loss.csv").open()))
    assert [int(r["step"]) for r in loss] == [1, 2, 3, 4] and all(float(r["total"]) > 0 for r in loss)
    fast_loss = list(csv.DictReader((tiny_project / "plots/consistency_loss.csv").open()))
    assert [int(r["step"]) for r in fast_loss] == [1, 2, 3] and all(float(r["total"]) > 0 for r in fast_loss)


def test_fewest_steps_reads_the_sweep():
    from rcdistill.evaluate.report import fewest_steps

    def entry(shape):
        return {"seen": {"shape": shape, "colour": 1.0}, "unseen": {"shape": shape, "colour": 1.0}}

    model = {**entry(0.9), "steps": {"25": entry(0.9), "15": entry(0.88), "8": entry(0.85), "4": entry(0.5)}}
    assert fewest_steps(model) == 15  # 0.85 < 0.95 x 0.9
    model["steps"]["8"] = entry(0.86)
    assert fewest_steps(model) == 8
    model["steps"] = {"25": entry(0.9), "4": entry(0.2)}
    assert fewest_steps(model) == 25
def test_real_model_judges_refuse_missing_files(workdir):
    import yaml

    from tests.conftest import rcd

    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["evaluate"] = {"fid_features": "inception"}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    r = rcd("params", "check")
    assert r.returncode == 2 and "evaluate.inception_path" in r.stderr


def test_fid_with_fewer_images_than_feature_dimensions():
    """Inception features are 2048-d; a small eval set makes both covariances singular, where
    clean-fid's sqrtm goes complex and raises. The symmetric form gives the same FID where
    clean-fid works and a finite one where it does not."""
    import numpy as np
    from cleanfid import fid as cleanfid

    from rcdistill.evaluate.metrics import _fid_symmetric, fid

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 16)), rng.normal(size=(400, 16)) * 1.3 + 0.2
    assert abs(_fid_symmetric(a, b) - cleanfid.fid_from_feats(a, b)) < 1e-6
    small_a, small_b = rng.normal(size=(4, 2048)), rng.normal(size=(4, 2048)) + 1.0
    far = fid(small_a, small_b)
    assert np.isfinite(far) and far > 2048 * 0.9  # the mean shift alone is 2048
    assert abs(fid(small_a, small_a)) < 1e-2


def test_fid_goes_straight_to_the_symmetric_form_when_covariances_are_singular(monkeypatch):
    """With no more images than dimensions clean-fid is bound to fail (after ~12 s of sqrtm at
    2048-d): it must not be called at all; with more images it still is."""
    import numpy as np
    from cleanfid import fid as cleanfid

    from rcdistill.evaluate.metrics import _fid_symmetric, fid

    calls = []
    real = cleanfid.fid_from_feats
    monkeypatch.setattr(cleanfid, "fid_from_feats", lambda a, b: calls.append(len(a)) or real(a, b))
    rng = np.random.default_rng(2)
    few_a, few_b = rng.normal(size=(64, 64)), rng.normal(size=(64, 64)) + 0.3
    assert fid(few_a, few_b) == _fid_symmetric(few_a, few_b) and calls == []
    fid(rng.normal(size=(65, 64)), rng.normal(size=(65, 64)))
    assert calls == [65]


def test_fid_survives_a_scipy_that_clean_fid_does_not_know(monkeypatch):
    """clean-fid 0.1.35 calls scipy's sqrtm with `disp`, which newer scipy removed (a GPU image
    had one): the FID must still come out, and equal to clean-fid's own where it works."""
    import numpy as np
    from cleanfid import fid as cleanfid

    from rcdistill.evaluate.metrics import fid

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 0.5
    expected = cleanfid.fid_from_feats(a, b)

    def new_scipy_sqrtm(m, **kw):
        if "disp" in kw:
            raise TypeError("sqrtm() got an unexpected keyword argument 'disp'")

    monkeypatch.setattr(cleanfid.linalg, "sqrtm", new_scipy_sqrtm)
    assert abs(fid(a, b) - expected) < 1e-6


def test_seed_spread_is_zero_for_one_image_per_prompt_and_grows_with_seed_noise():
    from rcdistill.evaluate.diversity import diversity_prompts, seed_spread

    texts, seeds = diversity_prompts([{"text": "a", "seed": 7}, {"text": "b", "seed": 8}, {"text": "c", "seed": 9}], 2, 3)
    assert texts == ["a"] * 3 + ["b"] * 3 and seeds[:3] == [7, 100_007, 200_007] and len(set(seeds)) == 6
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, 256, (4, 1, 3, 8, 8), generator=g, dtype=torch.uint8)
    collapsed = prompts.expand(4, 5, 3, 8, 8).reshape(20, 3, 8, 8)  # prompts differ, seeds do not
    assert seed_spread(collapsed, 5) == (0.0, 0.0)
    noisy = (collapsed.float() + torch.randn(20, 3, 8, 8, generator=g) * 20).clamp(0, 255).to(torch.uint8)
    noisier = (collapsed.float() + torch.randn(20, 3, 8, 8, generator=g) * 60).clamp(0, 255).to(torch.uint8)
    assert 0 < seed_spread(noisy, 5)[0] < seed_spread(noisier, 5)[0]
    with pytest.raises(ValueError, match="2 prompts of 5 seeds"):
        seed_spread(collapsed[:7], 5)
