import pytest
import torch

from rcdistill.config import DistillParams
from rcdistill.distill.kd import distill
from rcdistill.distill.loop import checkpoints
from rcdistill.sampling import load_pipeline


def _cfg(work_dir, **kw):
    base = dict(student="bk_small", work_dir=str(work_dir), steps=6, batch_size=4, lr=1e-3, warmup_steps=2,
                checkpoint_every=2, keep_checkpoints=2, rc_prob=0.5, ema=True, ema_decay=0.9, log_every=1)
    return DistillParams(**{**base, **kw})


def _data():
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(8, 4, 8, 8, generator=g)
    captions = [f"a red circle number {i}" for i in range(8)]
    pool = [f"a blue triangle number {i}" for i in range(20)]
    return latents, captions, pool


def _weights(unet):
    return {k: v.detach().clone() for k, v in unet.state_dict().items()}


def test_killed_and_resumed_run_ends_with_the_same_weights(tiny_pipeline, tmp_path):
    latents, captions, pool = _data()
    straight = _weights(distill(_cfg(tmp_path / "a"), load_pipeline(str(tiny_pipeline)), latents, captions, pool))

    cfg = _cfg(tmp_path / "b")
    distill(cfg, load_pipeline(str(tiny_pipeline)), latents, captions, pool, stop_after=4)  # "killed" after step 4
    assert [s for s, _ in checkpoints(tmp_path / "b")] == [2, 4]
    resumed = _weights(distill(cfg, load_pipeline(str(tiny_pipeline)), latents, captions, pool))
    assert [s for s, _ in checkpoints(tmp_path / "b")] == [4, 6]  # keep_checkpoints prunes the oldest
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    assert not list((tmp_path / "b").glob(".checkpoint-*"))  # no half-written checkpoint left


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_student_learns_and_handles_prediction_types(tmp_path, prediction_type):
    from tests.conftest import build_tiny_pipeline

    folder = build_tiny_pipeline(tmp_path / prediction_type, prediction_type=prediction_type)
    pipe = load_pipeline(str(folder))
    assert pipe.scheduler.config.prediction_type == prediction_type
    latents, captions, pool = _data()
    before = _weights(pipe.unet)
    untrained = distill(_cfg(tmp_path / "w0", steps=1, lr=1e-12, warmup_steps=0, ema=False), pipe, latents, captions, pool)
    # output distillation alone, so "learns" has one meaning: closer to the teacher (a random tiny
    # teacher is no denoiser, so the task loss would pull elsewhere)
    student = distill(_cfg(tmp_path / "w", steps=40, lr=3e-3, warmup_steps=2, ema=False, text_embeds="off",
                           loss={"task": 0.0, "out": 1.0, "feat": 0.0}), pipe, latents, captions, pool)
    assert student.mid_block is None
    # the teacher stays frozen and untouched
    assert all(torch.equal(before[k], v) for k, v in pipe.unet.state_dict().items())
    # it learned: closer to the teacher on fresh noise than the same student untrained
    g = torch.Generator().manual_seed(1)
    noisy, t = torch.randn(8, 4, 8, 8, generator=g), torch.randint(0, 1000, (8,), generator=g)
    with torch.no_grad():
        cond = pipe.text_encoder(pipe.tokenizer(captions, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                                                truncation=True, return_tensors="pt").input_ids)[0]
        target = pipe.unet(noisy, t, cond).sample
        gap = [torch.nn.functional.mse_loss(m(noisy, t, cond).sample, target).item() for m in (untrained, student)]
    assert gap[1] < 0.7 * gap[0], gap


@pytest.mark.parametrize("rc_prob", [0.5, 0.0])
def test_random_conditioning_reaches_the_loss(tiny_pipeline, tmp_path, monkeypatch, rc_prob):
    """What the KD loss sees in a real run: with rc_prob 0.5 about half the samples carry an RC-pool
    text and are unpaired (no task loss); with 0, none. Fails if RC is switched off anywhere on the way."""
    from rcdistill.distill import kd

    seen = []
    real_loss = kd.KDObjective.loss

    def spy(self, batch, cond, autocast):
        seen.append((list(batch.texts), batch.paired.clone()))
        return real_loss(self, batch, cond, autocast)

    monkeypatch.setattr(kd.KDObjective, "loss", spy)
    latents, captions, pool = _data()
    distill(_cfg(tmp_path / "w", steps=12, batch_size=8, rc_prob=rc_prob, drop_text=0.0, ema=False), load_pipeline(
        str(tiny_pipeline)), latents, captions, pool)
    texts = [t for ts, _ in seen for t in ts]
    paired = torch.cat([p for _, p in seen])
    assert len(seen) == 12 and len(texts) == 96
    from_pool = torch.tensor([t in pool for t in texts])
    assert torch.equal(from_pool, ~paired)  # every RC text, and only those, is unpaired
    share = from_pool.float().mean().item()
    if rc_prob:
        assert 0.3 < share < 0.7, share  # 96 draws at p = 0.5: SE 0.05, so +-4 SE
    else:
        assert share == 0.0


def test_loops_of_different_precision_run_in_one_process(tiny_pipeline, tmp_path):
    """accelerate's state is a process-wide singleton that pins mixed_precision; each loop resets it."""
    latents, captions, pool = _data()
    for i, precision in enumerate(("no", "bf16", "no")):
        cfg = _cfg(tmp_path / f"{i}-{precision}", steps=1, warmup_steps=0, mixed_precision=precision, checkpoint_every=10)
        student = distill(cfg, load_pipeline(str(tiny_pipeline)), latents, captions, pool)
        assert all(torch.isfinite(p).all() for p in student.parameters())
