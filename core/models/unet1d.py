"""The 1-D counterpart of the U-Net, for sequences (N, C, L).

The same architecture as :mod:`core.models.unet` with ``Conv1d`` in place of ``Conv2d``:
residual blocks with GroupNorm and the time embedding as a per-channel scale and shift,
optional self-attention at chosen lengths (``attn_resolutions`` names lengths here), strided
downsampling and nearest upsampling, skips from every block of the down path. Each level past
the first halves the length, so the length must divide by 2 ** (levels - 1) (the config
refuses one that does not, in one line).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from core.models.unet import norm, timestep_embedding


class ResBlock1d(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, dropout: float):
        super().__init__()
        self.norm1 = norm(cin)
        self.conv1 = nn.Conv1d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, 2 * cout)
        self.norm2 = norm(cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity, as in 2-D
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.temb(emb)[:, :, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention1d(nn.Module):
    """Multi-head self-attention over the steps of a feature sequence."""

    def __init__(self, channels: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three heads d) l -> three b heads l d", three=3, heads=self.heads)
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "b heads l d -> b (heads d) l")
        return x + self.proj(out)


class Block1d(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, dropout: float, attn: bool):
        super().__init__()
        self.res = ResBlock1d(cin, cout, tdim, dropout)
        self.attn = Attention1d(cout) if attn else None

    def forward(self, x, emb):
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class UNet1D(nn.Module):
    def __init__(
        self,
        *,
        length: int = 128,
        in_channels: int = 2,
        channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (),
        dropout: float = 0.0,
    ):
        super().__init__()
        halvings = len(channel_mult) - 1
        if length % 2**halvings:
            raise ValueError(f"seq_length {length} cannot be halved {halvings} times; use a multiple of {2**halvings}")
        tdim = channels * 4
        self.channels = channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.stem = nn.Conv1d(in_channels, channels, 3, padding=1)

        self.down = nn.ModuleList()
        skips = [channels]
        ch, res = channels, length
        for level, mult in enumerate(channel_mult):
            cout = channels * mult
            for _ in range(num_res_blocks):
                self.down.append(Block1d(ch, cout, tdim, dropout, res in attn_resolutions))
                ch = cout
                skips.append(ch)
            if level != len(channel_mult) - 1:
                self.down.append(nn.Conv1d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
                res //= 2

        self.mid1 = Block1d(ch, ch, tdim, dropout, attn=bool(attn_resolutions))
        self.mid2 = ResBlock1d(ch, ch, tdim, dropout)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            cout = channels * mult
            for _ in range(num_res_blocks + 1):
                self.up.append(Block1d(ch + skips.pop(), cout, tdim, dropout, res in attn_resolutions))
                ch = cout
            if level != 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(ch, ch, 3, padding=1)))
                res *= 2

        self.out_norm = norm(ch)
        self.out = nn.Conv1d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``y`` is accepted for a common signature; sequences have no classes."""
        emb = self.time_mlp(timestep_embedding(t, self.channels))
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Block1d) else layer(h)
            hs.append(h)
        h = self.mid2(self.mid1(h, emb), emb)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], dim=1), emb) if isinstance(layer, Block1d) else layer(h)
        return self.out(F.silu(self.out_norm(h)))
