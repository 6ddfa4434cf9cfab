"""benchmarks/headlines.py and benchmarks/first_run.py: the checks and timings they compute."""
import importlib.util
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


headlines = load("headlines")
first_run = load("first_run")


def cells(shape_seen, colour_seen, shape_unseen, colour_unseen):
    return {"seen": {"shape": shape_seen, "colour": colour_seen}, "unseen": {"shape": shape_unseen, "colour": colour_unseen}}


def evaluation(student_unseen_shape: float, fast_unseen_shape_4: float) -> dict:
    teacher = cells(0.95, 0.95, 1.0, 0.95)
    fast = {str(k): cells(0.9, 0.9, fast_unseen_shape_4 if k == 4 else 0.9, 0.9) for k in (1, 2, 4, 8)}
    return {"teacher": {**teacher, "steps": {"25": teacher}},
            "student": cells(0.9, 0.9, student_unseen_shape, 0.9),
            "student_fast": {"steps": fast}}


def test_check_margin_is_measured_in_standard_errors():
    c = headlines.check("x", 0.95, 0.90, 0.01, "min")
    assert c["holds"] and c["with_margin"] and math.isclose(c["margin"], 0.05)
    c = headlines.check("x", 0.915, 0.90, 0.01, "min")
    assert c["holds"] and not c["with_margin"]          # 1.5 SE: holds, but inside the noise
    c = headlines.check("x", 0.50, 0.40, 0.01, "max")   # a ceiling: 0.5 is above 0.4
    assert not c["holds"] and c["margin"] < 0
    assert math.isclose(headlines.se(0.5, 625), 0.02)


def test_chain_checks_find_a_failed_headline():
    n = 640
    good = headlines.chain_checks(evaluation(0.98, 0.97), evaluation(0.20, 0.10), n, "x")
    assert all(c["holds"] for c in good) and len(good) == 1 + 8 + 2
    # RC student under 0.9x the teacher, and a no-RC student that did not forget
    bad = headlines.chain_checks(evaluation(0.80, 0.97), evaluation(0.75, 0.90), n, "x")
    failed = [c["headline"] for c in bad if not c["holds"]]
    assert any("RC student unseen shape >= 0.9x" in h for h in failed)
    assert any("no-RC student unseen shape" in h for h in failed)
    assert any("no-RC few-step" in h for h in failed)


def test_first_run_stage_times_split_the_log_at_each_stage():
    stamped = [(0.0, "start"), (5.0, "setup: ready"), (60.0, "Running stage 'prompts':"), (62.0, "x"),
               (70.0, "Running stage 'teacher':"), (300.0, "done")]
    times = first_run.stage_times(stamped, end=310.0)
    assert times == {"setup": 60.0, "prompts": 10.0, "teacher": 240.0}


def test_first_run_sees_the_machine_busy():
    import time

    before = first_run.busy_cpu_s()
    if before is None:
        pytest.skip("no /proc/stat here")
    t = time.process_time()
    while time.process_time() - t < 0.3:   # 0.3 s of this process's own CPU
        pass
    assert first_run.busy_cpu_s() - before >= 0.25


def test_results_doc_is_generated_from_the_results_files(tmp_path, monkeypatch):
    import json

    import yaml

    results_doc = load("results_doc")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "teacher": {"gate": {"shape": 0.9, "colour": 0.9, "eval_per_set": 100}},
        "sampling": {"steps": 25, "scheduler": "ddim", "guidance_scale": 3.0}, "evaluate": {"eval_per_set": 100}}))
    results_doc.main([])
    text = (tmp_path / "docs/results.md").read_text()
    assert "_No teacher gate recorded._" in text and "do not edit by hand" in text
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/teacher.json").write_text(json.dumps({"teacher": {"passed": True, "seen": {
        "shape": 0.91, "colour": 0.99, "size": 1.0, "position": 1.0}}}))
    unet = {"prediction_type": "epsilon", "snr_gamma": 5.0, "steps": 10, "batch_size": 8}
    row = {"name": "a", "overrides": [], "unet_steps": 10, "total_s": 1.0, "eval_per_set": 100, "vae": {},
           "teacher_unet": unet, "drift": {"seen.colour": 0.2},
           "by_steps": {"4": {"seen": {"shape": 0.9, "colour": 0.9}, "unseen": {"shape": 0.9, "colour": 0.9}}}}
    (tmp_path / "benchmarks/results").mkdir(parents=True)
    (tmp_path / "benchmarks/results/teacher_recipe.json").write_text(json.dumps({"recipes": [
        row, {**row, "name": "b", "teacher_unet": {**unet, "prediction_type": "v_prediction"}, "drift": {"seen.colour": 0.01}}]}))
    results_doc.main([])
    text = (tmp_path / "docs/results.md").read_text()
    assert "| seen | 0.910 ± 0.029 | 0.990 ± 0.010 |" in text       # SE = sqrt(p(1-p)/n), n = 100
    assert "Only `teacher.unet.prediction_type` differs between `a` (epsilon) and `b` (v_prediction)" in text
    assert "0.200 vs 0.010" in text


def test_running_experiments_are_not_read(monkeypatch):
    """A running experiment shows the baseline's metrics in `dvc exp show`: it must not count as run."""
    import json
    import types

    def exp(name, state):
        return {"name": name, "executor": state and {"state": state},
                "revs": [{"name": name, "data": {"metrics": {"metrics/evaluate.json": {"data": {"x": name}}}}}]}

    show = [{"rev": "head", "experiments": [exp("norc", None), exp("seed2", "running"), exp("seed2-norc", "queued")]}]
    monkeypatch.setattr(headlines, "dvc", lambda *a: json.dumps(show))
    monkeypatch.setattr(headlines.subprocess, "run", lambda *a, **k: types.SimpleNamespace(stdout="head\n"))
    assert headlines.experiments_on_head() == {"norc": {"metrics/evaluate.json": {"x": "norc"}}}


def test_markdown_says_where_an_experiments_time_goes():
    result = {"eval_per_set": 640, "gate_eval_per_set": 640, "checks": [], "few_step_registry": {},
              "experiment_wall_s": {"heldout-cross": 300.0}, "missing": [],
              "experiment_stages_s": {"heldout-cross": {"setup": 4.0, "prompts": 3.2, "distill": 100.4}}}
    md = headlines.markdown(result)
    assert "heldout-cross 5.0 min" in md
    assert "Where heldout-cross's time goes (s): setup 4, prompts 3, distill 100." in md
