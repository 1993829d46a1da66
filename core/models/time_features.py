"""How a U-Net sees the diffusion step: sinusoidal features or Fourier features of t.

``sinusoidal`` is the Transformer's embedding of the step number (DDPM's choice, and the
default). The Fourier kinds are random Fourier features (Tancik et al. 2020) of the step as a
fraction of the chain, ``cos(2 pi f t / T)`` and ``sin(2 pi f t / T)`` with frequencies drawn
once from N(0, 16^2): score-SDE's ``GaussianFourierProjection`` (scale 16) and k-diffusion's
``FourierFeatures``. ``random_fourier`` keeps the frequencies fixed (a buffer, so a checkpoint
carries the draw); ``learned_fourier`` starts from the same draw and trains them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.choices import TIME_EMBEDDINGS

FOURIER_STD = 16.0  # score-SDE's scale for its Gaussian Fourier projection


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, as in the Transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class SinusoidalFeatures(nn.Module):
    """:func:`timestep_embedding` as a module; it holds no state, so checkpoints written
    before time features were a choice load unchanged."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(t, self.dim)


class FourierFeatures(nn.Module):
    """cos and sin of 2 pi f t / T for ``dim // 2`` frequencies f ~ N(0, std^2), drawn from
    torch's default generator (the trainer seeds it, so the draw is the run's own)."""

    def __init__(self, dim: int, num_timesteps: int, *, learned: bool, std: float = FOURIER_STD):
        super().__init__()
        self.dim, self.num_timesteps = dim, num_timesteps
        freqs = torch.randn(dim // 2) * std
        if learned:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = (2 * math.pi / self.num_timesteps) * t.float()[:, None] * self.freqs.float()[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.dim % 2:
            emb = F.pad(emb, (0, 1))
        return emb


def time_features(kind: str, dim: int, num_timesteps: int) -> nn.Module:
    """The step features a config names, ``dim`` of them."""
    if kind == "sinusoidal":
        return SinusoidalFeatures(dim)
    if kind in ("random_fourier", "learned_fourier"):
        return FourierFeatures(dim, num_timesteps, learned=kind == "learned_fourier")
    raise ValueError(f"unknown time embedding {kind!r}; choose one of {', '.join(TIME_EMBEDDINGS)}")
