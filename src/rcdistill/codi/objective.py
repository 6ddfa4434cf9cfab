"""CoDi (conditional diffusion distillation, Mei et al. 2023) with Random Conditioning, and the
plain diffusion loss it is compared with; both read only the teacher's cached latents and the
conditions derived from them.

The student is a backbone UNet with a condition adapter (`codi.adapter.ConditionedUNet`): `full`
trains both, `adapter` freezes the backbone (CoDi's parameter-efficient mode). Each batch: cached
latents z0 and their conditions, texts from the RC sampler (the caption, or with probability
rc_prob a random RC-pool text), a DDIM-solver step t = t_{n+1} and its predecessor s = t_n.
- ODE point: z_s from z_t = a_t z0 + s_t e by one DDIM step of `ode_from` (the frozen teacher,
  which sees no condition, without CFG as CoDi's public code; or the EMA target or the online
  model, with the condition: the paper); `prev_noise` ("PREv") keeps the true noise e in it.
- consistency: the online model's clean-latent prediction at (z_t, t) against the EMA target's at
  (z_s, s) (`space: x0`), or the noises they imply at z_t (`space: eps`); at s = 0 the target is z_s.
- clean: r |x0_theta(z_t) - z0|^2 only where the text is that latent's own caption (or dropped: the
  condition alone); with an RC text the latent does not show the text, and the teacher alone
  defines the target.
Texts: with `codi.text: colour` (codi/texts.py) the student reads a text's colour word only and
the teacher a whole caption (the latent's own, recoloured), so shape, size and position must come
from the condition.
The reference (`diffusion`) objective is the conditional model's plain denoising loss on the
paired data (no RC text: there is no image of it), sampled with many steps.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel

from ..distill.data import RCBatch, RCSampler, TextBank
from ..distill.loop import make_accelerator, train
from ..precision import frozen_dtype
from ..targets import NoiseScales, clean_and_noise, cond_and_uncond, prediction_target
from .adapter import CoDiAdapter, ConditionedUNet
from .conditions import model_input
from .texts import ViewedSampler


# each run's stage (and objective) name
RUN_NAMES = {"reference": "codi_reference", "full": "codi", "adapter": "codi_adapter"}


def conditioned_student(backbone: UNet2DConditionModel, mode: str, conditioning_channels: int, downscale: int,
                        embedding_channels: int) -> ConditionedUNet:
    """The backbone (copied) with a fresh adapter; `adapter` mode freezes the backbone."""
    unet = copy.deepcopy(backbone).float()
    adapter = CoDiAdapter.from_unet(unet, conditioning_channels, downscale, embedding_channels)
    net = ConditionedUNet(unet, adapter)
    if mode == "adapter":
        net.unet.requires_grad_(False)
    return net


def trainable_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


class _ConditionedObjective:
    ema_warmup = False

    def __init__(self, cfg, student: ConditionedUNet, conditions: torch.Tensor, image_size: int, scheduler_config,
                 device: torch.device):
        self.cfg, self.device = cfg, device
        self.student = student
        # conditions as the adapter reads them, once (small: one per cached latent)
        self.conditions = model_input(conditions, image_size)
        self.noise = DDPMScheduler.from_config(scheduler_config)
        self.kind = self.noise.config.prediction_type
        self.scales = NoiseScales(self.noise, device)

    def condition(self, batch: RCBatch) -> torch.Tensor:
        return self.conditions[batch.index].to(self.device)

    def sync_target(self, ema) -> None:
        pass


class DiffusionObjective(_ConditionedObjective):
    """The reference: the conditional model's own denoising loss on paired latents."""
    name = "codi_reference"

    def loss(self, batch: RCBatch, cond: torch.Tensor, autocast) -> dict[str, torch.Tensor]:
        dev = self.device
        z0, noise, t = batch.latents.to(dev), batch.noise.to(dev), batch.timesteps.to(dev)
        x = self.noise.add_noise(z0, noise, t)
        with autocast():
            out = self.student(x, t, cond, self.condition(batch))
        loss = F.mse_loss(out.float(), prediction_target(self.noise, z0, noise, t))
        return {"total": loss, "diffusion": loss.detach()}


class CoDiObjective(_ConditionedObjective):
    name = "codi"
    # UNet rows per training sample: ODE step, EMA target, online forward and backward
    unet_rows_per_sample = 4

    def __init__(self, cfg, teacher: UNet2DConditionModel, student: ConditionedUNet, conditions: torch.Tensor,
                 image_size: int, scheduler_config, bank: TextBank, device: torch.device):
        super().__init__(cfg, student, conditions, image_size, scheduler_config, device)
        self.bank = bank
        self.teacher = teacher.eval().requires_grad_(False).to(device, frozen_dtype(cfg.teacher_dtype, device))
        self.target = copy.deepcopy(student).eval().requires_grad_(False).to(device)
        self.skip = self.noise.config.num_train_timesteps // cfg.num_ddim_timesteps
        self.solver_t = torch.arange(1, cfg.num_ddim_timesteps + 1, device=device) * self.skip - 1
        self.uncond = bank([""]).to(device)

    def _ode_output(self, x, start, cond, condition, batch: RCBatch) -> torch.Tensor:
        cfg = self.cfg
        if cfg.ode_from == "teacher":
            if batch.teacher_texts is not None:  # the teacher reads whole captions (codi/texts.py)
                cond = self.bank(batch.teacher_texts)
            a, s = self.scales.at(start)
            if cfg.teacher_guidance == 1.0:
                out = self.teacher(x.to(self.teacher.dtype), start, cond.to(self.teacher.dtype)).sample.float()
                return torch.cat(clean_and_noise(self.kind, out, x, a, s), 1)
            (x0_c, eps_c), (x0_u, eps_u) = cond_and_uncond(self.teacher, self.kind, x, start, cond, self.uncond, a, s)
            w = cfg.teacher_guidance - 1.0
            return torch.cat([x0_c + w * (x0_c - x0_u), eps_c + w * (eps_c - eps_u)], 1)
        net = self.target if cfg.ode_from == "ema" else self.student
        out = net(x, start, cond, condition).float()
        return torch.cat(clean_and_noise(self.kind, out, x, *self.scales.at(start)), 1)

    def loss(self, batch: RCBatch, cond: torch.Tensor, autocast) -> dict[str, torch.Tensor]:
        cfg, dev = self.cfg, self.device
        z0, noise = batch.latents.to(dev), batch.noise.to(dev)
        condition = self.condition(batch)
        start = self.solver_t[batch.timesteps.to(dev)]
        prev = (start - self.skip).clamp(min=0)
        a_t, s_t = self.scales.at(start)
        x = a_t * z0 + s_t * noise
        with torch.no_grad():
            x0_hat, eps_hat = self._ode_output(x, start, cond, condition, batch).chunk(2, dim=1)
            if cfg.prev_noise:  # PREv: the ODE point keeps the forward noise
                eps_hat = noise
            x_prev = self.scales.noised(prev, x0_hat, eps_hat)
            out_t = self.target(x_prev, prev, cond, condition).float()
            target_x0, _ = clean_and_noise(self.kind, out_t, x_prev, *self.scales.at(prev))
            at_end = (start < self.skip).view(-1, 1, 1, 1)  # s = 0: the ODE point is the clean latent
            target_x0 = torch.where(at_end, x_prev, target_x0)
        with autocast():
            out = self.student(x, start, cond, condition)
        pred_x0, pred_eps = clean_and_noise(self.kind, out.float(), x, a_t, s_t)
        if cfg.space == "x0":
            consistency = F.mse_loss(pred_x0, target_x0)
        else:
            consistency = F.mse_loss(pred_eps, (x - a_t * target_x0) / s_t)
        # the latent's own caption, or no text (the condition alone): z0 is a valid target; an RC text is not
        paired = batch.paired.to(dev).float()
        per_sample = (pred_x0 - z0).pow(2).mean((1, 2, 3))
        clean = (per_sample * paired).sum() / paired.sum().clamp(min=1)
        total = consistency + cfg.clean_weight * clean
        return {"total": total, "consistency": consistency.detach(), "clean": clean.detach()}

    def sync_target(self, ema) -> None:
        ema.copy_to(self.target.parameters())


def codi_train(cfg, mode: str, teacher_pipe, backbone: UNet2DConditionModel, latents: torch.Tensor,
               conditions: torch.Tensor, captions: list[str], rc_pool: list[str], image_size: int, log=None,
               stop_after: int | None = None, text_view: str = "caption") -> ConditionedUNet:
    """Train the conditional model (`mode`: full | adapter | reference) reading `text_view` of each
    text (codi/texts.py); returns its EMA weights."""
    accelerator = make_accelerator(cfg)
    device = accelerator.device
    text_encoder = teacher_pipe.text_encoder.eval().requires_grad_(False).to(device)
    student = conditioned_student(backbone, "full" if mode == "reference" else mode, conditions.shape[1],
                                  image_size // (latents.shape[-1]), cfg.embedding_channels)
    sched = teacher_pipe.scheduler.config
    if mode == "reference":
        num_t = DDPMScheduler.from_config(sched).config.num_train_timesteps
        rc_prob, t_weights = 0.0, torch.ones(num_t, dtype=torch.float64)
    else:
        rc_prob, t_weights = cfg.rc_prob, torch.ones(cfg.num_ddim_timesteps, dtype=torch.float64)
    sampler = ViewedSampler(RCSampler(latents, captions, rc_pool, rc_prob, cfg.drop_text, t_weights,
                                      cfg.seed + accelerator.process_index), captions, text_view)
    bank = TextBank(text_encoder, teacher_pipe.tokenizer, [*captions, *rc_pool, *sampler.texts()], cfg.text_embeds,
                    device)
    if mode == "reference":
        objective = DiffusionObjective(cfg, student, conditions, image_size, sched, device)
    else:
        objective = CoDiObjective(cfg, teacher_pipe.unet, student, conditions, image_size, sched, bank, device)
    objective.name = RUN_NAMES[mode]  # progress bar and MLflow prefix: the stage's name
    return train(accelerator, cfg, objective, sampler, bank, log, stop_after)
