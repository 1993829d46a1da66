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


class StepEmbeddedLinear(nn.Module):
    """A linear layer plus a learned vector for each timestep: ``W h + b + E[t]``."""

    def __init__(self, num_in: int, num_out: int, T: int):
        super().__init__()
        self.lin = nn.Linear(num_in, num_out)
        self.embed = nn.Embedding(T, num_out)

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.lin(h) + self.embed(t)


class EmbedMLP(nn.Module):
    """The written-out S-curve toy's network (``model=mlp_embed``): ``depth`` layers of
    ``hidden`` units, each with its own learned step embedding (``nn.Embedding(T, hidden)``)
    added before a softplus, then a linear output. No sinusoidal features, no normalisation,
    no residuals: the network looks up one vector per timestep and layer, so it only knows the
    T integer timesteps it was trained on, which is all a DDPM sampler asks of it."""

    def __init__(self, *, dim: int = 2, hidden: int = 128, depth: int = 3, T: int = 100):
        super().__init__()
        sizes = [dim] + [hidden] * depth
        self.layers = nn.ModuleList(StepEmbeddedLinear(a, b, T) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``y`` is accepted for a common signature; 2-D points have no classes."""
        h = x
        for layer in self.layers:
            h = F.softplus(layer(h, t.long()))
        return self.out(h)
