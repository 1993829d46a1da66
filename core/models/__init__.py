"""Noise-prediction networks, and the one place that builds them from a config."""

from __future__ import annotations

import torch
from torch import nn

from core.config import RunConfig
from core.models.mlp import MLP, EmbedMLP
from core.models.unet import UNet
from core.models.unet1d import UNet1D


def build_model(cfg: RunConfig) -> nn.Module:
    """The network a config names, on the CPU in the default memory layout (see
    :func:`place_model` for the device and layout it trains in)."""
    if cfg.model == "mlp":
        return MLP(dim=2, hidden=cfg.hidden, depth=cfg.depth)
    if cfg.model == "mlp_embed":
        return EmbedMLP(dim=2, hidden=cfg.hidden, depth=cfg.depth, T=cfg.T)
    if cfg.model == "unet1d":
        return UNet1D(
            length=cfg.seq_length, in_channels=cfg.seq_channels, channels=cfg.channels, channel_mult=tuple(cfg.channel_mult),
            num_res_blocks=cfg.num_res_blocks, attn_resolutions=tuple(cfg.attn_resolutions), dropout=cfg.dropout,
        )  # fmt: skip
    net = UNet(
        image_size=cfg.image_size,
        in_channels=cfg.data_channels,
        channels=cfg.channels,
        channel_mult=tuple(cfg.channel_mult),
        num_res_blocks=cfg.num_res_blocks,
        attn_resolutions=tuple(cfg.attn_resolutions),
        dropout=cfg.dropout,
        patch=cfg.patch,
        num_classes=cfg.num_classes if cfg.cond == "class" else 0,
        time_embedding=cfg.time_embedding,
        num_timesteps=cfg.T,
        self_condition=cfg.self_condition,
        learned_variance=cfg.learned_variance,
    )
    return net


def place_model(net: nn.Module, device: torch.device, autocast: torch.dtype | None = None) -> nn.Module:
    """Move a network to its device, in the layout measured to be faster there for the
    precision it trains in (``autocast``: the dtype :func:`core.devices.autocast_dtype` chose,
    None for fp32). bench/layout.py measures each layout on the host at hand.

    On the CPU in fp32, channels-last weights let oneDNN's convolutions skip layout
    conversions. Under CPU bf16 autocast the opposite holds: every GroupNorm runs in fp32
    between bf16 convolutions, and on channels-last tensors each one converts the layout, so
    the network stays NCHW. On CUDA the U-Net stays NCHW: its GroupNorms have no
    channels-last kernels either; channels-last there waits for a GPU measurement.
    """
    net = net.to(device)
    if device.type == "cpu" and autocast is None:
        net = net.to(memory_format=torch.channels_last)
    return net


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["build_model", "place_model", "count_parameters", "UNet", "UNet1D", "MLP", "EmbedMLP"]
