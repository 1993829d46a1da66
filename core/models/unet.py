"""A U-Net noise predictor for small images (28x28 MNIST, 32x32 folders, 1 or 3 channels).

The architecture is the DDPM / improved-diffusion U-Net scaled down: residual blocks with
GroupNorm and a time embedding (sinusoidal, or Fourier features: see time_features.py) injected as a per-channel scale and shift, optional
self-attention at chosen resolutions, strided-conv downsampling and nearest-neighbour
upsampling, skip connections from every block of the down path.

``patch`` > 1 folds patch x patch pixels into channels before the first convolution (and
unfolds after the last). At 28x28 on a CPU most of a U-Net's time goes to the full-resolution
convolutions; patch 2 removes that level while keeping every pixel's information, and gives
the same digits for a fraction of the cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from core.models.time_features import time_features, timestep_embedding

__all__ = ["UNet", "timestep_embedding"]  # the MLP imports the sinusoidal embedding from here


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if channels % g == 0 and channels // g >= 4 or g == 1:
            return g
    return 1


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(_groups(channels), channels)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, dropout: float):
        super().__init__()
        self.norm1 = norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, 2 * cout)
        self.norm2 = norm(cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        # Zero-init the last conv so each block starts as the identity (improved-diffusion).
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.temb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map."""

    def __init__(self, channels: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        qkv = self.qkv(self.norm(x))
        q, k, v = rearrange(qkv, "b (three heads d) h w -> three b heads (h w) d", three=3, heads=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = rearrange(out, "b heads (h w) d -> b (heads d) h w", h=h, w=w)
        return x + self.proj(out)


class Block(nn.Module):
    """A residual block, optionally followed by attention."""

    def __init__(self, cin: int, cout: int, tdim: int, dropout: float, attn: bool):
        super().__init__()
        self.res = ResBlock(cin, cout, tdim, dropout)
        self.attn = Attention(cout) if attn else None

    def forward(self, x, emb):
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class UNet(nn.Module):
    def __init__(
        self,
        *,
        image_size: int = 28,
        in_channels: int = 1,
        channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (),
        dropout: float = 0.0,
        patch: int = 1,
        num_classes: int = 0,
        time_embedding: str = "sinusoidal",
        num_timesteps: int = 1000,
        self_condition: bool = False,
        learned_variance: bool = False,
    ):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not divisible by patch {patch}")
        size = image_size // patch
        if size % (2 ** (len(channel_mult) - 1)):
            raise ValueError(
                f"image size {size} (after patch {patch}) cannot be halved {len(channel_mult) - 1} times; "
                "use fewer channel multipliers"
            )
        self.patch = patch
        self.in_channels = in_channels
        tdim = channels * 4
        self.channels = channels
        self.time_features = time_features(time_embedding, channels, num_timesteps)
        self.time_mlp = nn.Sequential(nn.Linear(channels, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        # A class-conditional model adds its label's embedding to the time embedding; the
        # extra last row is the null label ("no class"), which classifier-free guidance trains
        # on a share of the batches and samples with for the unconditional prediction.
        self.num_classes = num_classes
        self.label_emb = nn.Embedding(num_classes + 1, tdim) if num_classes else None
        # Self-conditioning (Chen et al. 2022) doubles the input: x_t beside an x0 estimate.
        self.self_condition = self_condition
        self.stem = nn.Conv2d(in_channels * (2 if self_condition else 1) * patch * patch, channels, 3, padding=1)

        self.down = nn.ModuleList()
        skips = [channels]
        ch = channels
        res = size
        for level, mult in enumerate(channel_mult):
            cout = channels * mult
            for _ in range(num_res_blocks):
                self.down.append(Block(ch, cout, tdim, dropout, res in attn_resolutions))
                ch = cout
                skips.append(ch)
            if level != len(channel_mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
                res //= 2

        self.mid1 = Block(ch, ch, tdim, dropout, attn=True if attn_resolutions else False)
        self.mid2 = ResBlock(ch, ch, tdim, dropout)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            cout = channels * mult
            for _ in range(num_res_blocks + 1):
                self.up.append(Block(ch + skips.pop(), cout, tdim, dropout, res in attn_resolutions))
                ch = cout
            if level != 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)))
                res *= 2

        self.out_norm = norm(ch)
        # A learned variance (improved-diffusion) takes as many channels again: the output is
        # the objective's prediction, then v (the log-variance interpolation, see diffusion.py).
        self.learned_variance = learned_variance
        self.out = nn.Conv2d(ch, in_channels * (2 if learned_variance else 1) * patch * patch, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, x_self: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``y``: class labels (``num_classes`` is the null label; None means null for all).
        ``x_self``: a self-conditioned model's x0 estimate, shaped as ``x`` (None means zeros)."""
        if self.self_condition:
            x = torch.cat([x, torch.zeros_like(x) if x_self is None else x_self.to(x.dtype)], dim=1)
        emb = self.time_mlp(self.time_features(t))
        if self.label_emb is not None:
            if y is None:
                y = torch.full_like(t, self.num_classes)
            emb = emb + self.label_emb(y)
        if self.patch > 1:
            x = F.pixel_unshuffle(x, self.patch)
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Block) else layer(h)
            hs.append(h)
        h = self.mid2(self.mid1(h, emb), emb)
        for layer in self.up:
            if isinstance(layer, Block):
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        h = self.out(F.silu(self.out_norm(h)))
        if self.patch > 1:
            # pixel_shuffle is einops' "b (c p1 p2) h w -> b c (h p1) (w p2)" as one named
            # op that every backend has a fast kernel for; its inverse folds the patches in.
            h = F.pixel_shuffle(h, self.patch)
        return h
