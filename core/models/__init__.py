"""Noise-prediction networks, and the one place that builds them from a config."""

from __future__ import annotations

from torch import nn

from core.config import RunConfig
from core.models.mlp import MLP
from core.models.unet import UNet


def build_model(cfg: RunConfig) -> nn.Module:
    if cfg.model == "mlp":
        return MLP(dim=2, hidden=cfg.hidden, depth=cfg.depth)
    return UNet(
        image_size=cfg.image_size,
        in_channels=cfg.data_channels,
        channels=cfg.channels,
        channel_mult=tuple(cfg.channel_mult),
        num_res_blocks=cfg.num_res_blocks,
        attn_resolutions=tuple(cfg.attn_resolutions),
        dropout=cfg.dropout,
        patch=cfg.patch,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["build_model", "count_parameters", "UNet", "MLP"]
