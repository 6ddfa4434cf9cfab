"""Latent consistency distillation with Random Conditioning: solver, boundary, resume, the few-step pipeline."""
import pytest
import torch
from diffusers import DDIMScheduler, LCMScheduler

from rcdistill.config import ConsistencyParams, load_params
from rcdistill.distill.consistency import (ConsistencyObjective, consistency_distill, guidance_embedding,
                                           lcm_scheduler, with_guidance_input)
from rcdistill.distill.loop import checkpoints
from rcdistill.errors import ParamsError
from rcdistill.sampling import load_pipeline


def _cfg(work_dir, **kw):
    base = dict(work_dir=str(work_dir), steps=6, batch_size=4, lr=1e-3, warmup_steps=2, checkpoint_every=2,
                keep_checkpoints=2, rc_prob=0.5, num_ddim_timesteps=10, time_cond_proj_dim=16, log_every=1)
    return ConsistencyParams(**{**base, **kw})


def _data():
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(8, 4, 8, 8, generator=g)
    return latents, [f"a red circle number {i}" for i in range(8)], [f"a blue triangle number {i}" for i in range(20)]


def _weights(unet):
    return {k: v.detach().clone() for k, v in unet.state_dict().items()}


def _objective(pipe, cfg):
    uncond = pipe.text_encoder(pipe.tokenizer([""], padding="max_length", return_tensors="pt").input_ids)[0]
    return ConsistencyObjective(cfg, pipe.unet, pipe.unet, pipe.scheduler.config, uncond, torch.device("cpu"))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_solver_step_is_ddims_step_on_the_lcm_grid(tmp_path, prediction_type):
    """Without guidance (w = 0) the teacher's solver step equals diffusers' DDIM step between the
    same two timesteps of the grid LCMScheduler samples on (t_n = (n + 1) k - 1, skip k)."""
    from tests.conftest import build_tiny_pipeline

    pipe = load_pipeline(str(build_tiny_pipeline(tmp_path / "p", prediction_type=prediction_type)))
    obj = _objective(pipe, _cfg(tmp_path / "w"))
    lcm = lcm_scheduler(pipe.scheduler.config, 10)
    lcm.set_timesteps(10)
    assert sorted(obj.solver_t.tolist()) == sorted(lcm.timesteps.tolist())  # the same grid
    ddim = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    ddim.set_timesteps(10)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = pipe.text_encoder(pipe.tokenizer(["a red circle"] * 2, padding="max_length", return_tensors="pt").input_ids)[0]
    for i in (0, 4):  # ddim.timesteps run from high noise to low
        start = ddim.timesteps[i]
        prev = start - obj.skip
        ours = obj.solver_step(x, torch.full((2,), int(start)), torch.full((2,), int(prev)), cond, torch.zeros(2, 1, 1, 1))
        out = pipe.unet(x, start, cond).sample
        theirs = ddim.step(out, start, x).prev_sample
        assert torch.allclose(ours, theirs, atol=1e-5), (i, (ours - theirs).abs().max())


def test_boundary_condition_and_zero_initialised_guidance_input(tiny_pipeline, tmp_path):
    pipe = load_pipeline(str(tiny_pipeline))
    obj = _objective(pipe, _cfg(tmp_path / "w"))
    x, out = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    # f(x, 0) = x: at t = 0 the consistency function returns its input whatever the UNet says
    assert torch.allclose(obj._boundary(out, x, torch.zeros(3, dtype=torch.long)), x)
    assert not torch.allclose(obj._boundary(out, x, torch.full((3,), 500)), x)
    # the added guidance input starts at zero, so the new UNet starts as the one it copies
    unet = with_guidance_input(pipe.unet, 16)
    cond = torch.randn(3, 16, pipe.unet.config.cross_attention_dim)
    t = torch.full((3,), 300)
    w_emb = guidance_embedding(torch.tensor([1.0, 2.0, 3.0]), 16)
    assert torch.allclose(unet(x, t, cond, timestep_cond=w_emb).sample, pipe.unet(x, t, cond).sample, atol=1e-6)


def test_killed_and_resumed_run_ends_with_the_same_weights(tiny_pipeline, tmp_path):
    latents, captions, pool = _data()
    pipe = load_pipeline(str(tiny_pipeline))
    teacher_before = _weights(pipe.unet)
    straight = _weights(consistency_distill(_cfg(tmp_path / "a"), pipe, pipe.unet, latents, captions, pool))
    assert all(torch.equal(teacher_before[k], v) for k, v in pipe.unet.state_dict().items())  # frozen teacher
    assert any(not torch.equal(straight[k], v) for k, v in teacher_before.items())  # the student did learn

    cfg = _cfg(tmp_path / "b")
    consistency_distill(cfg, load_pipeline(str(tiny_pipeline)), pipe.unet, latents, captions, pool, stop_after=4)
    assert [s for s, _ in checkpoints(tmp_path / "b")] == [2, 4]
    resumed = _weights(consistency_distill(cfg, load_pipeline(str(tiny_pipeline)), pipe.unet, latents, captions, pool))
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k


def test_params_refuse_a_reversed_guidance_range_and_a_target_without_ema(workdir):
    import yaml

    for bad, word in (({"w_min": 5.0, "w_max": 2.0}, "w_min"), ({"ema": False}, "ema"),
                      ({"init": "nobody"}, "init"), ({"time_cond_proj_dim": 15}, "time_cond_proj_dim")):
        params = yaml.safe_load((workdir / "params.yaml").read_text())
        params["consistency"] = bad
        (workdir / "params.yaml").write_text(yaml.safe_dump(params))
        with pytest.raises(ParamsError, match=word):
            load_params()


def test_stage_writes_a_few_step_pipeline_that_samples_without_cfg(tiny_project):
    """The stage's folder loads with its own LCMScheduler and samples in n steps with n UNet calls
    on the prompt batch itself (no unconditional half)."""
    import json

    from rcdistill.sampling import folder_defaults, generate

    folder = tiny_project / "models/student_fast"
    assert folder_defaults(folder) == {"steps": 2, "guidance_scale": 3.0}
    pipe = load_pipeline(str(folder), None)
    assert isinstance(pipe.scheduler, LCMScheduler) and pipe.unet.config.time_cond_proj_dim == 16
    student = load_pipeline(str(tiny_project / "models/student"))
    assert pipe.unet.config.block_out_channels == student.unet.config.block_out_channels  # initialised from it
    calls = []
    pipe.unet.register_forward_hook(lambda m, args, kw, out: calls.append(len(args[0]) if args else len(kw["sample"])),
                                    with_kwargs=True)
    for n in (1, 2, 4):
        calls.clear()
        images = generate(pipe, ["a red circle", "a blue square"], [0, 1], n, 3.0)
        assert images.shape == (2, 3, 32, 32) and images.dtype == torch.uint8
        assert calls == [2] * n, calls
    m = json.loads((tiny_project / "metrics/consistency.json").read_text())["consistency"]
    assert m["init"] == "student" and {"seen", "unseen"} <= set(m)
