"""The unpaired-sample variants of Random Conditioning (distill.unpaired): each does what it says,
and the defaults leave the paper's recipe as it was."""
import torch

from rcdistill.config import DistillParams, LossWeights
from rcdistill.distill.data import RCSampler, matched_partners, timestep_weights
from rcdistill.distill.kd import KDObjective
from rcdistill.distill.losses import distill_losses
from rcdistill.sampling import load_pipeline

T = 1000


def _sampler(**kw):
    latents = torch.randn(10, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    captions = [f"cached {i}" for i in range(10)]
    pool = [f"random {i}" for i in range(50)]
    return RCSampler(latents, captions, pool, 0.5, 0.0, timestep_weights("uniform", T, 5.0), 3, **kw)


def test_defaults_draw_the_batches_of_the_plain_sampler():
    a, b = _sampler().sample(64, 7), _sampler(unpaired_t_min=0, partners=None).sample(64, 7)
    assert a.texts == b.texts and torch.equal(a.timesteps, b.timesteps) and torch.equal(a.latents, b.latents)


def test_t_min_moves_only_unpaired_samples_to_high_noise():
    plain, high = _sampler().sample(4000, 1), _sampler(unpaired_t_min=600).sample(4000, 1)
    assert high.texts == plain.texts  # same pairing, same texts
    assert high.timesteps[~high.paired].min() >= 600
    assert torch.equal(high.timesteps[high.paired], plain.timesteps[plain.paired])
    assert plain.timesteps[~plain.paired].min() < 600  # without it they reach low noise


def test_matched_partners_share_the_most_attributes():
    pool = [{"shape": "triangle", "colour": "red", "size": "small"},
            {"shape": "circle", "colour": "blue", "size": "large"}]
    cache = [{"shape": "square", "colour": "red", "size": "small"},     # 2 shared with pool[0]
             {"shape": "circle", "colour": "red", "size": "large"},     # 1 with pool[0], 2 with pool[1]
             {"shape": "square", "colour": "red", "size": "large"},     # 1 with pool[0]
             {"shape": "circle", "colour": "blue", "size": "large"}]    # 3 with pool[1]: its own caption
    partners = matched_partners(pool, cache, ("shape", "colour", "size"))
    assert partners[0].tolist() == [0] and partners[1].tolist() == [3]


def test_matched_pairing_puts_each_text_on_one_of_its_partners():
    partners = [torch.tensor([j % 10]) for j in range(50)]  # pool text j may only meet latent j % 10
    s = _sampler(partners=partners)
    b = s.sample(256, 0)
    for text, paired, z in zip(b.texts, b.paired, b.latents):
        if not paired:
            assert torch.equal(z, s.latents[int(text.split()[1]) % 10])


def test_unpaired_weight_scales_their_share_of_the_output_loss():
    torch.manual_seed(0)
    s_out, t_out, target = torch.randn(6, 4, 2, 2), torch.randn(6, 4, 2, 2), torch.randn(6, 4, 2, 2)
    paired = torch.tensor([True, False, True, False, False, True])
    w = LossWeights(task=0, out=1, feat=0)
    per = ((s_out - t_out) ** 2).flatten(1).mean(1)
    plain = distill_losses(s_out, t_out, target, paired, [], [], w)["out"]
    assert torch.allclose(plain, per.mean())
    assert torch.allclose(distill_losses(s_out, t_out, target, paired, [], [], w, 1.0)["out"], plain)
    assert torch.allclose(distill_losses(s_out, t_out, target, paired, [], [], w, 0.0)["out"], per[paired].mean())
    two = distill_losses(s_out, t_out, target, paired, [], [], w, 2.0)["out"]
    assert torch.allclose(two, (per[paired].sum() + 2 * per[~paired].sum()) / (3 + 2 * 3))


def test_guided_target_is_the_teachers_cfg_output_on_unpaired_samples(tiny_pipeline):
    pipe = load_pipeline(str(tiny_pipeline))
    ids = lambda texts: pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length,  # noqa: E731
                                       truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        cond, uncond = pipe.text_encoder(ids(["a red circle"] * 4))[0], pipe.text_encoder(ids([""]))[0]
    cfg = DistillParams(student="bk_small", unpaired={"target": "guided", "guidance_scale": 4.0}, loss={"feat": 0.0})
    obj = KDObjective(cfg, pipe.unet, pipe.scheduler.config, torch.device("cpu"), uncond)
    g = torch.Generator().manual_seed(0)
    noisy, t = torch.randn(4, 4, 8, 8, generator=g), torch.randint(0, T, (4,), generator=g)
    unpaired = torch.tensor([False, True, False, True])
    with torch.no_grad():
        c = pipe.unet(noisy, t, cond).sample
        u = pipe.unet(noisy, t, uncond.expand(4, -1, -1)).sample
    guided = obj.guided_target(c, noisy, t, unpaired)
    assert torch.equal(guided[~unpaired], c[~unpaired])  # paired samples keep the conditional target
    assert torch.allclose(guided[unpaired], (u + 4.0 * (c - u))[unpaired], atol=1e-5)
    assert not torch.allclose(guided[unpaired], c[unpaired], atol=1e-3)
    obj.close()
