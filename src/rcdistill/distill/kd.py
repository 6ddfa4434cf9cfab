"""Random Conditioning knowledge distillation (BK-SDM): the student matches the frozen teacher's
output and stage features on every sample, and the true target on paired samples only."""
from __future__ import annotations

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from ..students import build_student, feature_pairs, init_from_teacher
from ..precision import frozen_dtype
from ..targets import prediction_target
from .data import RCBatch, RCSampler, TextBank, timestep_weights
from .loop import make_accelerator, train
from .losses import distill_losses
from .taps import FeatureTaps


class KDObjective:
    name = "distill"
    ema_warmup = True

    def __init__(self, cfg, teacher: UNet2DConditionModel, scheduler_config, device: torch.device,
                 uncond: torch.Tensor | None = None):
        self.cfg, self.device = cfg, device
        self.uncond = uncond  # the empty text's encoder states: the guided target's unconditional pass
        self.teacher = teacher.eval().requires_grad_(False)
        self.student = build_student(teacher.config, cfg.student)
        if cfg.init == "teacher":
            init_from_teacher(self.student, self.teacher, cfg.student)
        self.teacher.to(device, frozen_dtype(cfg.teacher_dtype, device))
        self.noise_sched = DDPMScheduler.from_config(scheduler_config)  # same betas and prediction type
        pairs = feature_pairs(self.teacher, self.student, cfg.student) if cfg.loss.feat > 0 else []
        self.t_taps = FeatureTaps(self.teacher, [t for t, _ in pairs])
        self.s_taps = FeatureTaps(self.student, [s for _, s in pairs])

    def loss(self, batch: RCBatch, cond: torch.Tensor, autocast) -> dict[str, torch.Tensor]:
        z0, noise = batch.latents.to(self.device), batch.noise.to(self.device)
        t = batch.timesteps.to(self.device)
        noisy = self.noise_sched.add_noise(z0, noise, t)
        with torch.no_grad():
            t_out = self.teacher(noisy.to(self.teacher.dtype), t, cond.to(self.teacher.dtype)).sample
        t_feats = self.t_taps.take()
        paired = batch.paired.to(self.device)
        unpaired = ~paired
        if self.cfg.unpaired.target == "guided" and unpaired.any():
            t_out = self.guided_target(t_out, noisy, t, unpaired)
        with autocast():
            s_out = self.student(noisy, t, cond).sample
        s_feats = self.s_taps.take()
        return distill_losses(s_out, t_out, prediction_target(self.noise_sched, z0, noise, t),
                              paired, s_feats, t_feats, self.cfg.loss,
                              self.cfg.unpaired.weight)

    @torch.no_grad()
    def guided_target(self, t_out: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor,
                      unpaired: torch.Tensor) -> torch.Tensor:
        """The teacher's classifier-free guided output on unpaired samples: uncond + w (cond - uncond),
        which pushes further towards the text than the conditional output the latent pulls back from.
        Their feature targets stay the conditional pass's."""
        x = noisy[unpaired].to(self.teacher.dtype)
        uncond = self.uncond.to(self.teacher.dtype).expand(len(x), -1, -1)
        u = self.teacher(x, t[unpaired], uncond).sample
        self.t_taps.take()  # the unconditional pass's features are not targets
        out = t_out.clone()
        out[unpaired] = u + self.cfg.unpaired.guidance_scale * (t_out[unpaired] - u)
        return out

    def sync_target(self, ema) -> None:
        pass  # the teacher is the only target

    def close(self) -> None:
        self.t_taps.remove()
        self.s_taps.remove()


def distill(cfg, pipe, latents: torch.Tensor, captions: list[str], rc_pool: list[str], log=None,
            stop_after: int | None = None, partners: list[torch.Tensor] | None = None) -> UNet2DConditionModel:
    """Train a student of `pipe.unet`; returns it (EMA weights when cfg.ema). `stop_after` simulates a
    kill. `partners`: which cached latents each pool text may meet (distill.unpaired.pairing: matched)."""
    accelerator = make_accelerator(cfg)
    device = accelerator.device
    text_encoder = pipe.text_encoder.eval().requires_grad_(False).to(device)
    bank = TextBank(text_encoder, pipe.tokenizer, list(captions) + list(rc_pool), cfg.text_embeds, device)
    objective = KDObjective(cfg, pipe.unet, pipe.scheduler.config, device, bank([""]))
    num_t = objective.noise_sched.config.num_train_timesteps
    sampler = RCSampler(latents, captions, rc_pool, cfg.rc_prob, cfg.drop_text,
                        timestep_weights(cfg.timestep_sampler, num_t, cfg.exp_lambda),
                        cfg.seed + accelerator.process_index,  # each data-parallel process draws its own batches
                        cfg.unpaired.t_min, partners)
    try:
        return train(accelerator, cfg, objective, sampler, bank, log, stop_after)
    finally:
        objective.close()
