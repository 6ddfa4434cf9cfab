import math

import pytest
import torch
from scipy import stats

from rcdistill.config import LossWeights
from rcdistill.distill.data import RCSampler, timestep_weights
from rcdistill.distill.losses import distill_losses

T = 1000


def sampler(rc_prob=0.5, drop_text=0.0, kind="uniform", lam=5.0, seed=0):
    latents = torch.randn(10, 4, 2, 2)
    captions = [f"cached {i}" for i in range(10)]
    pool = [f"random {i}" for i in range(50)]
    return RCSampler(latents, captions, pool, rc_prob, drop_text, timestep_weights(kind, T, lam), seed)


@pytest.mark.parametrize("rc_prob", [0.0, 0.3, 0.75, 1.0])
def test_pairing_ratio_is_close_to_rc_prob(rc_prob):
    s = sampler(rc_prob)
    n, unpaired = 0, 0
    for _ in range(40):
        b = s.sample(100)
        n += 100
        unpaired += int((~b.paired).sum())
        for text, paired in zip(b.texts, b.paired):
            assert text.startswith("cached" if paired else "random")
    sd = math.sqrt(n * rc_prob * (1 - rc_prob))
    assert abs(unpaired - n * rc_prob) <= 4 * sd + 1e-9


def test_text_drop_rate():
    b = sampler(drop_text=0.2).sample(4000)
    frac = sum(t == "" for t in b.texts) / 4000
    assert abs(frac - 0.2) < 0.03


def test_exp_timestep_sampler_matches_its_distribution():
    lam = 5.0
    s = sampler(kind="exp", lam=lam)
    t = torch.cat([s.sample(5000).timesteps for _ in range(4)]).double()
    # continuous reference p(x) ∝ exp(-λ(1-x)) on [0, 1): its CDF against the empirical one (KS test)
    cdf = lambda x: (torch.exp(-lam * (1 - torch.as_tensor(x))) - math.exp(-lam)) / (1 - math.exp(-lam))
    ks = stats.kstest(((t + 0.5) / T).numpy(), lambda x: cdf(x).numpy())
    assert ks.pvalue > 1e-3, ks
    assert t.mean() / T > 0.75  # biased to high noise
    uniform = sampler(kind="uniform").sample(20000).timesteps.double()
    assert stats.kstest(((uniform + 0.5) / T).numpy(), "uniform").pvalue > 1e-3


def test_unpaired_samples_add_nothing_to_the_task_loss():
    torch.manual_seed(0)
    student_out = torch.randn(6, 4, 2, 2, requires_grad=True)
    target, teacher_out = torch.randn(6, 4, 2, 2), torch.randn(6, 4, 2, 2)
    paired = torch.tensor([True, False, True, False, False, True])
    losses = distill_losses(student_out, teacher_out, target, paired, [], [], LossWeights(task=1, out=0, feat=0))
    losses["total"].backward()
    grad = student_out.grad.flatten(1).abs().sum(1)
    assert torch.all(grad[~paired] == 0) and torch.all(grad[paired] > 0)
    # and the value is the mean over paired samples only
    expect = ((student_out - target) ** 2).flatten(1).mean(1)[paired].mean()
    assert torch.allclose(losses["task"], expect)


def test_sampler_state_round_trip_replays_the_same_batches():
    s = sampler(rc_prob=0.5, drop_text=0.1, kind="exp")
    s.sample(8)
    state = s.state_dict()
    a = s.sample(8)
    s.load_state_dict(state)
    b = s.sample(8)
    assert a.texts == b.texts and torch.equal(a.timesteps, b.timesteps) and torch.equal(a.noise, b.noise)
