"""A ControlNet-style condition adapter for any UNet2DConditionModel layout, BK-SDM's included.

diffusers' ControlNetModel needs a mid block, which BK-SDM small/tiny drop. This adapter is a
trainable copy of the UNet's input, time embedding and down path (built from the UNet's own
config, so every layout works), plus a small network that brings the condition image to the
latent grid. Each down-path output goes through a zero-initialised 1x1 conv and is added to the
matching skip connection of the UNet; the mid residual is zero (a UNet without a mid block adds
it straight to its innermost features). At initialisation the adapted UNet is the UNet.
"""
from __future__ import annotations

import math

import torch
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn


def _zero_conv(ch: int) -> nn.Conv2d:
    conv = nn.Conv2d(ch, ch, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def residual_channels(unet: UNet2DConditionModel) -> list[int]:
    """Channels of each skip connection the down path hands to the up path, in order."""
    chans = [unet.conv_in.out_channels]
    for block in unet.down_blocks:
        chans += [r.out_channels for r in block.resnets]
        if block.downsamplers is not None:
            chans += [block.resnets[-1].out_channels] * len(block.downsamplers)
    return chans


class CoDiAdapter(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, unet_config: dict, conditioning_channels: int = 3, downscale: int = 4,
                 embedding_channels: int = 16):
        super().__init__()
        if downscale < 1 or downscale & (downscale - 1):
            raise ValueError(f"downscale {downscale}: the image-to-latent factor must be a power of two")
        encoder = UNet2DConditionModel.from_config(unet_config)
        # the down path only: the rest is the UNet's
        encoder.up_blocks, encoder.mid_block = None, None
        encoder.conv_norm_out, encoder.conv_act, encoder.conv_out = None, None, None
        self.encoder = encoder
        layers: list[nn.Module] = [nn.Conv2d(conditioning_channels, embedding_channels, 3, padding=1), nn.SiLU()]
        for _ in range(int(math.log2(downscale))):
            layers += [nn.Conv2d(embedding_channels, embedding_channels, 3, padding=1, stride=2), nn.SiLU()]
        out = nn.Conv2d(embedding_channels, encoder.conv_in.out_channels, 3, padding=1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.condition_embedding = nn.Sequential(*layers, out)
        self.zero_convs = nn.ModuleList(_zero_conv(c) for c in residual_channels(encoder))

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, conditioning_channels: int, downscale: int,
                  embedding_channels: int = 16) -> "CoDiAdapter":
        """An adapter whose down path starts as a copy of `unet`'s (ControlNet's initialisation)."""
        config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
        adapter = cls(config, conditioning_channels, downscale, embedding_channels)
        missing, _ = adapter.encoder.load_state_dict(unet.state_dict(), strict=False)
        if missing:
            raise ValueError(f"adapter weights not found in the UNet: {missing[:4]}")
        return adapter.to(unet.device)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                condition: torch.Tensor, scale: float = 1.0) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """(down residuals, mid residual) for UNet2DConditionModel's ControlNet inputs."""
        enc = self.encoder
        emb = enc.time_embedding(enc.get_time_embed(sample=sample, timestep=timestep))
        h = enc.conv_in(sample) + self.condition_embedding(condition.to(sample.dtype))
        skips = (h,)
        for block in enc.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=encoder_hidden_states)
            else:
                h, res = block(hidden_states=h, temb=emb)
            skips += res
        down = tuple(conv(s) * scale for conv, s in zip(self.zero_convs, skips))
        return down, h.new_zeros(())


class ConditionedUNet(nn.Module):
    """UNet + adapter as one network: what a CoDi objective trains (both, or the adapter alone)."""

    def __init__(self, unet: UNet2DConditionModel, adapter: CoDiAdapter):
        super().__init__()
        self.unet, self.adapter = unet, adapter

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def forward(self, sample, timestep, encoder_hidden_states, condition):
        down, mid = self.adapter(sample, timestep, encoder_hidden_states, condition)
        return self.unet(sample, timestep, encoder_hidden_states, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample
