"""Latent consistency distillation (LCM) with Random Conditioning: a few-step student, no images.

Each batch: cached teacher latents z0 noised to a DDIM-solver start step t_{n+k} (k = T /
num_ddim_timesteps), texts from the RC sampler (caption, or a random RC-pool text, or ""). The
frozen teacher runs with and without the text, mixes them with a guidance w ~ U[w_min, w_max]
and takes one DDIM step to t_n. The student sees (x_{t_{n+k}}, t_{n+k}, w) and must agree with
the EMA target network at (x_{t_n}, t_n, w); both outputs go through the boundary scalings
c_skip/c_out (so f(x, 0) = x), Huber loss. w enters the UNet through `time_cond_proj_dim`, so the
student needs no CFG pass when it samples with LCMScheduler.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMScheduler, LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel

from ..config import Params
from ..errors import UserError
from ..fingerprint import folder_digest
from ..precision import frozen_dtype
from ..targets import NoiseScales, clean_and_noise, cond_and_uncond
from .data import RCBatch, RCSampler, TextBank
from .loop import make_accelerator, train


def guidance_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    # the very function StableDiffusionPipeline applies to (guidance_scale - 1) when the UNet has a
    # time_cond_proj_dim; it does not use `self`
    return StableDiffusionPipeline.get_guidance_scale_embedding(None, w, embedding_dim=dim)


def with_guidance_input(unet: UNet2DConditionModel, dim: int) -> UNet2DConditionModel:
    """A copy of `unet` with a guidance embedding input, which starts at zero (so it starts as `unet`)."""
    cfg = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    new = UNet2DConditionModel.from_config({**cfg, "time_cond_proj_dim": dim})
    missing, unexpected = new.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or any(not k.startswith("time_embedding.cond_proj") for k in missing):
        raise ValueError(f"cannot add a guidance input: missing {missing}, unexpected {unexpected}")
    torch.nn.init.zeros_(new.time_embedding.cond_proj.weight)
    return new


def lcm_scheduler(scheduler_config, num_ddim_timesteps: int) -> LCMScheduler:
    """The sampler of a consistency student: same betas and prediction type, the solver's grid."""
    return LCMScheduler.from_config(scheduler_config, original_inference_steps=num_ddim_timesteps)


def huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    return (torch.sqrt((a.float() - b.float()) ** 2 + c ** 2) - c).mean()


class ConsistencyObjective:
    name = "consistency"
    ema_warmup = False  # the target network's EMA ramps straight to its decay (LCM: 0.95)
    # UNet rows per training sample: the teacher with and without the text, the EMA target, the
    # student (forward and backward): the training cost BOOT's is compared with
    unet_rows_per_sample = 4

    def __init__(self, cfg, teacher: UNet2DConditionModel, init: UNet2DConditionModel, scheduler_config,
                 uncond: torch.Tensor, device: torch.device):
        self.cfg, self.device = cfg, device
        self.teacher = teacher.eval().requires_grad_(False).to(device, frozen_dtype(cfg.teacher_dtype, device))
        self.student = with_guidance_input(init, cfg.time_cond_proj_dim)
        self.target = with_guidance_input(init, cfg.time_cond_proj_dim).eval().requires_grad_(False).to(device)
        noise = DDPMScheduler.from_config(scheduler_config)
        self.kind = noise.config.prediction_type
        self.boundary = lcm_scheduler(scheduler_config, cfg.num_ddim_timesteps)
        num_t = noise.config.num_train_timesteps
        self.skip = num_t // cfg.num_ddim_timesteps
        # the DDIM solver's grid, as LCMScheduler builds it: t_n = (n + 1) k - 1
        self.solver_t = torch.arange(1, cfg.num_ddim_timesteps + 1, device=device) * self.skip - 1
        self.scales = NoiseScales(noise, device)
        self.uncond = uncond.to(device)

    def _boundary(self, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """f(x, t) = c_skip(t) x + c_out(t) x0(x, t): the consistency function's parametrisation."""
        x0, _ = clean_and_noise(self.kind, out.float(), x, *self.scales.at(t))
        c_skip, c_out = self.boundary.get_scalings_for_boundary_condition_discrete(t)
        return c_skip.view(-1, 1, 1, 1) * x + c_out.view(-1, 1, 1, 1) * x0

    @torch.no_grad()
    def solver_step(self, x: torch.Tensor, start: torch.Tensor, prev: torch.Tensor, cond: torch.Tensor,
                    w: torch.Tensor) -> torch.Tensor:
        """The teacher's guided DDIM step from `start` to `prev`: cond + w (cond - uncond) on x0 and eps."""
        (x0_c, eps_c), (x0_u, eps_u) = cond_and_uncond(self.teacher, self.kind, x, start, cond, self.uncond,
                                                       *self.scales.at(start))
        x0, eps = x0_c + w * (x0_c - x0_u), eps_c + w * (eps_c - eps_u)
        return self.scales.noised(prev, x0, eps)

    def loss(self, batch: RCBatch, cond: torch.Tensor, autocast) -> dict[str, torch.Tensor]:
        cfg, dev = self.cfg, self.device
        z0, noise = batch.latents.to(dev), batch.noise.to(dev)
        n = batch.timesteps.to(dev)                      # solver index of the start step
        start = self.solver_t[n]
        prev = (start - self.skip).clamp(min=0)
        x = self.scales.noised(start, z0, noise)
        w = cfg.w_min + (cfg.w_max - cfg.w_min) * batch.uniform  # drawn with the batch: replayed on resume
        w_emb = guidance_embedding(w, cfg.time_cond_proj_dim).to(dev)
        w = w.to(dev).view(-1, 1, 1, 1)
        with torch.no_grad():
            x_prev = self.solver_step(x, start, prev, cond, w)
            target = self._boundary(self.target(x_prev, prev, cond, timestep_cond=w_emb).sample, x_prev, prev)
        with autocast():
            out = self.student(x, start, cond, timestep_cond=w_emb).sample
        pred = self._boundary(out, x, start)
        loss = huber(pred, target, cfg.huber_c)
        return {"total": loss, "huber": loss.detach(), "mse": torch.nn.functional.mse_loss(pred.float(), target).detach()}

    def sync_target(self, ema) -> None:
        ema.copy_to(self.target.parameters())

    def close(self) -> None:
        pass


def consistency_distill(cfg, pipe, init_unet: UNet2DConditionModel, latents: torch.Tensor, captions: list[str],
                        rc_pool: list[str], log=None, stop_after: int | None = None) -> UNet2DConditionModel:
    """Few-step student of the frozen `pipe.unet`, starting from `init_unet`; returns its EMA (target) weights."""
    accelerator = make_accelerator(cfg)
    device = accelerator.device
    text_encoder = pipe.text_encoder.eval().requires_grad_(False).to(device)
    bank = TextBank(text_encoder, pipe.tokenizer, list(captions) + list(rc_pool), cfg.text_embeds, device)
    objective = ConsistencyObjective(cfg, pipe.unet, init_unet, pipe.scheduler.config, bank([""]), device)
    sampler = RCSampler(latents, captions, rc_pool, cfg.rc_prob, cfg.drop_text,
                        torch.ones(cfg.num_ddim_timesteps, dtype=torch.float64),  # uniform over solver steps
                        cfg.seed + accelerator.process_index)
    return train(accelerator, cfg, objective, sampler, bank, log, stop_after)


def init_unet(params: Params, teacher) -> tuple[UNet2DConditionModel, str]:
    """The network the few-step student starts from, and its identity (for resuming)."""
    if params.consistency.init == "teacher":
        return teacher.unet, f"teacher:{folder_digest(Path(params.teacher.path) / 'unet')}"
    folder = Path(params.distill.out_dir) / "unet"
    if not (folder / "config.json").exists():
        raise UserError(f"consistency.init is 'student' but {folder} holds no UNet; run the distill stage first")
    unet = UNet2DConditionModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    return unet, f"student:{folder_digest(folder)}"
