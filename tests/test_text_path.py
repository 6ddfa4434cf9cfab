"""The text path works end to end: a UNet overfit on a handful of prompts reproduces each one's latent.

This is the check that catches a conditioning bug (prompts ignored, CFG miswired): sampling
through the real StableDiffusionPipeline must land nearest to the prompt's own target.
"""
import torch

from rcdistill.config import TextEncoderParams, UnetParams, VaeParams
from rcdistill.teacher.pipeline import assemble
from rcdistill.teacher.text_encoder import build_text_encoder, encode_texts
from rcdistill.teacher.tokenizer import build_tokenizer
from rcdistill.teacher.unet import cond_uncond_gap, train_unet
from rcdistill.teacher.vae import build_vae

PROMPTS = ["a large red circle in the center", "a small blue square, top left",
           "a yellow cross at the bottom right", "a green diamond in the upper right"]


def test_overfit_handful_of_prompts_and_cond_differs_from_uncond():
    torch.manual_seed(0)
    tok = build_tokenizer(16)
    te = build_text_encoder(TextEncoderParams(hidden_size=32, layers=1, heads=2), tok).eval()
    targets = torch.randn(len(PROMPTS), 4, 8, 8, generator=torch.Generator().manual_seed(1)).sign()
    embeds = encode_texts(te, tok, PROMPTS)
    empty = encode_texts(te, tok, [""])[0]
    cfg = UnetParams(block_out_channels=[32, 32], layers_per_block=1, attention_head_dim=8, steps=300,
                     batch_size=16, lr=3e-3, drop_text=0.1, ema_decay=0.9)
    latents = targets.repeat(16, 1, 1, 1)
    index = torch.arange(len(PROMPTS)).repeat(16)
    unet = train_unet(cfg, latents, index, embeds, empty, seed=0)

    vae = build_vae(VaeParams(block_out_channels=[16, 16, 16], latent_channels=4), 32)
    pipe = assemble(vae, te, tok, unet)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(PROMPTS, num_inference_steps=20, guidance_scale=3.0, height=32, width=32, output_type="latent",
               generator=torch.Generator().manual_seed(2)).images
    dist = torch.cdist(out.flatten(1), targets.flatten(1))
    assert torch.equal(dist.argmin(1), torch.arange(len(PROMPTS))), dist

    assert cond_uncond_gap(unet, targets, embeds, empty) > 0.05
