"""GPU efficiency switches of a training loop (params: compile, channels_last, fused_adam, tf32,
gradient_checkpointing; teacher_dtype: rcdistill/precision.py). `auto` means on for CUDA and off on CPU,
so the CPU path, its numbers and its tests stay exactly as they were.

Measured on one H200 for an SD-v1-sized teacher and bk_small (README, GPU efficiency): compile
is the big one; channels_last made the step slower there, so it stays off by default.
"""
from __future__ import annotations

import torch


def enabled(value, device: torch.device) -> bool:
    """`auto` -> on for CUDA only; booleans as given."""
    return device.type == "cuda" if value == "auto" else bool(value)


def set_tf32(cfg, device: torch.device) -> None:
    # TF32 only touches fp32 matmuls/convs on Ampere and newer (the teacher when kept in fp32)
    if device.type == "cuda" and enabled(cfg.tf32, device):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def make_optimizer(cfg, params, device: torch.device) -> torch.optim.Optimizer:
    fused = enabled(cfg.fused_adam, device)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **({"fused": True} if fused else {}))


def prepare_networks(cfg, objective) -> None:
    """Memory layout, checkpointing and compilation of the objective's networks, before training.

    `nn.Module.compile()` compiles in place: parameters, state_dict keys, EMA and checkpoints are
    those of the plain module, so saving and resuming are unchanged."""
    trained = objective.student
    frozen = [m for m in (getattr(objective, "teacher", None), getattr(objective, "target", None)) if m is not None]
    if cfg.gradient_checkpointing:
        trained.enable_gradient_checkpointing()
    if cfg.channels_last:
        for net in (trained, *frozen):
            net.to(memory_format=torch.channels_last)
    if cfg.compile:
        for net in (trained, *frozen):
            net.compile()
