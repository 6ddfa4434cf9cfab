"""BOOT with Random Conditioning texts: the bootstrap target, the one-step readout, resume, and a
stage that reads no latent."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rcdistill.config import BootParams, load_params
from rcdistill.distill.boot import BootObjective, NoiseBatch, TextNoiseSampler, boot_distill, signal_scheduler
from rcdistill.distill.loop import checkpoints
from rcdistill.errors import ParamsError
from rcdistill.sampling import load_pipeline


def _cfg(work_dir, **kw):
    base = dict(work_dir=str(work_dir), steps=6, batch_size=4, lr=1e-3, warmup_steps=2, checkpoint_every=2,
                keep_checkpoints=2, num_grid_steps=10, log_every=1, boundary_prob=0.3)
    return BootParams(**{**base, **kw})


def _encode(pipe, texts):
    return pipe.text_encoder(pipe.tokenizer(texts, padding="max_length", return_tensors="pt").input_ids)[0]


def _weights(unet):
    return {k: v.detach().clone() for k, v in unet.state_dict().items()}


TEXTS = [f"a {c} circle number {i}" for c in ("red", "blue") for i in range(6)]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_bootstrap_target_is_the_teachers_ddim_step_in_signal_space(tmp_path, prediction_type):
    """y_s* = y_t + delta (f - y_t) is the signal of diffusers' DDIM step from x_t = alpha_t y_t + sigma_t eps
    (guided x0 f); a boundary sample's target is the teacher's guided x0 from pure noise."""
    from diffusers import DDIMScheduler

    from tests.conftest import build_tiny_pipeline

    pipe = load_pipeline(str(build_tiny_pipeline(tmp_path / "p", prediction_type=prediction_type)))
    cfg = _cfg(tmp_path / "w", guidance_scale=1.0)  # unguided: diffusers' DDIM step is the reference
    obj = BootObjective(cfg, pipe.unet, pipe.unet, pipe.scheduler.config, _encode(pipe, [""]), torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    eps = torch.randn(3, 4, 8, 8, generator=g)
    cond = _encode(pipe, ["a red circle", "a blue square", "a green cross"])
    batch = NoiseBatch(eps, torch.tensor([3, 7, 10]), ["x"] * 3, torch.tensor([False, False, True]))
    s, target, weight = obj.targets(batch, cond)
    grid = obj.grid
    assert grid[0] == 0 and grid[-1] == 999 and s.tolist() == [int(grid[2]), int(grid[6]), int(grid[-1])]

    ddim = DDIMScheduler.from_config(pipe.scheduler.config)
    ddim.set_timesteps(10)  # only its x0 reading is used: that does not depend on the step count
    a, sig = obj.scales.alphas, obj.scales.sigmas
    for i, n in ((0, 3), (1, 7)):
        t, s_i = grid[n], grid[n - 1]
        with torch.no_grad():
            y_t = obj.student(eps[i:i + 1], t.view(1), cond[i:i + 1]).sample
            x_t = a[t] * y_t + sig[t] * eps[i:i + 1]
            out = pipe.unet(x_t, t, cond[i:i + 1]).sample
        x0 = ddim.step(out, int(t), x_t).pred_original_sample
        eps_hat = (x_t - a[t] * x0) / sig[t]
        x_s = a[s_i] * x0 + sig[s_i] * eps_hat  # DDIM (eta 0) from t to s_i
        expected = (x_s - sig[s_i] * eps[i:i + 1]) / a[s_i]
        assert torch.allclose(target[i:i + 1], expected, atol=1e-4), (n, (target[i] - expected).abs().max())
        delta = 1 - a[t] * sig[s_i] / (sig[t] * a[s_i])
        assert torch.isclose(weight[i].flatten()[0], 1 / delta.clamp(min=cfg.delta_min) ** 2)
    with torch.no_grad():
        x0_top = obj.teacher_x0(eps[2:], grid[-1].view(1), cond[2:])
    assert torch.allclose(target[2:], x0_top, atol=1e-5) and weight[2].flatten()[0] == 1.0


def test_one_step_readout_returns_the_unets_signal(tiny_pipeline):
    pipe = load_pipeline(str(tiny_pipeline))
    sched = signal_scheduler(pipe.scheduler.config)
    sched.set_timesteps(1)
    assert sched.timesteps.tolist() == [0]  # the student is read at t = 0: y_0, the sample itself
    y, x = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert torch.allclose(sched.step(y, 0, x).prev_sample, y)


def test_sampler_draws_texts_and_noise_only_and_replays_a_step():
    sampler = TextNoiseSampler(TEXTS, (4, 8, 8), grid_size=11, boundary_prob=0.5, seed=3)
    a, b = sampler.sample(16, 5), sampler.sample(16, 5)
    assert torch.equal(a.noise, b.noise) and a.texts == b.texts and torch.equal(a.timesteps, b.timesteps)
    assert not torch.equal(a.noise, sampler.sample(16, 6).noise)
    assert 1 <= int(a.timesteps.min()) and int(a.timesteps.max()) <= 10 and set(a.texts) <= set(TEXTS)
    assert 0 < int(a.boundary.sum()) < 16 and not hasattr(a, "latents")


def test_killed_and_resumed_run_ends_with_the_same_weights(tiny_pipeline, tmp_path):
    pipe = load_pipeline(str(tiny_pipeline))
    teacher_before = _weights(pipe.unet)
    straight, _ = boot_distill(_cfg(tmp_path / "a"), pipe, pipe.unet, TEXTS)
    straight = _weights(straight)
    assert all(torch.equal(teacher_before[k], v) for k, v in pipe.unet.state_dict().items())  # frozen teacher
    cfg = _cfg(tmp_path / "b")
    boot_distill(cfg, load_pipeline(str(tiny_pipeline)), pipe.unet, TEXTS, stop_after=4)
    assert [s for s, _ in checkpoints(tmp_path / "b")] == [2, 4]
    resumed, _ = boot_distill(cfg, load_pipeline(str(tiny_pipeline)), pipe.unet, TEXTS)
    for k, v in _weights(resumed).items():
        assert torch.equal(straight[k], v), k


def _boundary_loss(obj, pipe) -> float:
    """The student's distance to the teacher's guided x0 from pure noise (a fixed target) on fixed draws."""
    eps = torch.randn(8, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    texts = TEXTS[:2] * 4
    batch = NoiseBatch(eps, torch.ones(8, dtype=torch.long), texts, torch.ones(8, dtype=torch.bool))
    with torch.no_grad():
        cond = _encode(pipe, texts)
        s, target, _ = obj.targets(batch, cond)
        return torch.nn.functional.mse_loss(obj.student(eps, s, cond).sample, target).item()


def test_student_learns_the_teachers_one_step_target(tmp_path):
    """Forty steps on two texts bring a student that starts elsewhere (another network) much closer
    to the teacher's guided x0 from noise (a v-prediction teacher, as the default world's)."""
    from tests.conftest import build_tiny_pipeline

    pipe = load_pipeline(str(build_tiny_pipeline(tmp_path / "p", prediction_type="v_prediction")))
    other = load_pipeline(str(build_tiny_pipeline(tmp_path / "q", seed=1))).unet
    cfg = _cfg(tmp_path / "l", steps=40, lr=3e-3, batch_size=8, checkpoint_every=100, ema=False, boundary_prob=0.9)
    before = _boundary_loss(BootObjective(cfg, pipe.unet, other, pipe.scheduler.config, _encode(pipe, [""]),
                                          torch.device("cpu")), pipe)
    _, trained = boot_distill(cfg, pipe, other, TEXTS[:2])
    after = _boundary_loss(trained, pipe)
    assert after < 0.5 * before, (before, after)


def test_bk_init_cuts_blocks_from_the_start_unet_and_copies_the_rest(tiny_pipeline):
    from rcdistill.students import load_init_unet
    from rcdistill.students import weight_mapping

    pipe = load_pipeline(str(tiny_pipeline))
    whole, whole_id = load_init_unet(str(tiny_pipeline), str(tiny_pipeline), pipe)
    assert whole is pipe.unet and "+" not in whole_id
    small, small_id = load_init_unet(str(tiny_pipeline), str(tiny_pipeline), pipe, "bk_small")
    assert small_id == f"{whole_id}+bk_small"
    n = lambda u: sum(p.numel() for p in u.parameters())  # noqa: E731
    assert n(small) < n(whole)
    teacher = pipe.unet.state_dict()
    mapping = weight_mapping(pipe.unet, small, "bk_small")
    assert len(mapping) == len(small.state_dict())  # BK-SDM: every surviving tensor has a teacher twin
    assert all(torch.equal(v, teacher[mapping[k]]) for k, v in small.state_dict().items())


def test_params_refuse_a_multi_step_boot_student_and_an_empty_start(workdir):
    import yaml

    good = yaml.safe_load((workdir / "params.yaml").read_text())
    for section, bad, word in (("evaluate", {"steps": {"student_boot": [2]}}, "one step"),
                               ("boot", {"init_dir": " "}, "init_dir"), ("boot", {"text_pool": "eval"}, "text_pool"),
                               ("boot", {"student": "bk_huge"}, "unknown student"),
                               ("registry", {"boot_model_name": "rcdistill-student"}, "must differ")):
        params = {**good, section: {**good.get(section, {}), **bad}}
        (workdir / "params.yaml").write_text(yaml.safe_dump(params))
        with pytest.raises(ParamsError, match=word):
            load_params()


def test_stage_reads_no_latent_and_writes_a_one_step_pipeline(tiny_project, tmp_path):
    """`dvc repro boot` in a copy of the tiny project without data/latents; the folder is a plain
    StableDiffusionPipeline that samples in one step without a CFG pass, and `rcd sample` draws it."""
    from diffusers import StableDiffusionPipeline

    from rcdistill.sampling import folder_defaults
    from rcdistill.stage_table import stage
    from tests.conftest import rcd

    assert not any("latents" in d or "cache.out_dir" in d for d in stage("boot").deps)
    ws = tmp_path / "ws"
    shutil.copytree(tiny_project, ws, ignore=shutil.ignore_patterns("mlruns", "latents"))
    assert not (ws / "data/latents").exists()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, "-m", "dvc", "repro", "-s", "-f", "boot"], cwd=ws, capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert not (ws / "data/latents").exists()
    metrics = json.loads((ws / "metrics/boot.json").read_text())["boot"]
    assert metrics["n_cached_latents"] == 0 and metrics["text_pool"] == "rc" and metrics["unet_rows_per_sample"] == 4
    folder = ws / "models/student_boot"
    assert folder_defaults(folder) == {"steps": 1, "guidance_scale": 1.0, "baked_guidance_scale": 3.0}
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)  # diffusers' own loader
    calls = []
    pipe.unet.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    pipe.set_progress_bar_config(disable=True)
    pipe(["a red circle", "a blue square"], num_inference_steps=1, guidance_scale=1.0, height=32, width=32,
         output_type="latent")
    assert calls == [2]  # one UNet call on the two prompts, no unconditional half
    r = rcd("sample", "--model", str(folder), "-o", str(tmp_path / "s.png"), "a red circle", cwd=ws)
    assert r.returncode == 0 and (tmp_path / "s.png").exists(), r.stderr[-2000:]
