"""An MLP noise predictor for 2-D points (the S-curve toy)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.unet import timestep_embedding


class ResidualMLPBlock(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.temb = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.fc1(F.silu(self.norm(h))) + self.temb(emb)
        return h + self.fc2(F.silu(x))


class MLP(nn.Module):
    """Input projection, ``depth`` residual blocks conditioned on a sinusoidal time embedding,
    output projection. Small and fast enough that the S-curve trains in seconds on a CPU."""

    def __init__(self, *, dim: int = 2, hidden: int = 256, depth: int = 4):
        super().__init__()
        self.hidden = hidden
        self.time_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(ResidualMLPBlock(hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``y`` is accepted for a common signature; 2-D points have no classes."""
        emb = self.time_mlp(timestep_embedding(t, self.hidden))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
