"""Datasets: MNIST (shipped in the package), Fashion-MNIST, the 2-D S-curve, a folder of images.

Each dataset is held as one tensor on the training device (MNIST's 60,000 digits are 47 MB
as uint8), and a batch is an index gather plus one scale to [-1, 1]: no per-image Python, no
DataLoader workers. Batch order is a pure function of (seed, step), so a resumed run sees
exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.config import TRAIN_SIZES, ConfigError, RunConfig
from core.sources import DataError, load_fashion_mnist, load_folder, load_mnist, read_idx  # noqa: F401  (re-exported)

# ---- the 2-D S-curve -------------------------------------------------------------------


def s_curve_points(u: torch.Tensor) -> torch.Tensor:
    """Points on the S-curve for parameters u in [0, 1]: the (x, z) face of scikit-learn's
    make_s_curve, scaled into [-1, 1]^2."""
    t = 3 * math.pi * (u - 0.5)
    x = torch.sin(t)
    y = torch.sign(t) * (torch.cos(t) - 1) / 2
    return torch.stack([x, y], dim=-1)


def make_s_curve(n: int, seed: int = 0, noise: float = 0.02) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = s_curve_points(torch.rand(n, generator=g, dtype=torch.float64))
    if noise > 0:
        pts = pts + noise * torch.randn(pts.shape, generator=g, dtype=torch.float64)
    return pts.float()


def distance_to_s_curve(points: torch.Tensor, resolution: int = 4000) -> torch.Tensor:
    """Euclidean distance from each point to the (noise-free) S-curve."""
    curve = s_curve_points(torch.linspace(0, 1, resolution, dtype=torch.float64)).float()
    return torch.cdist(points.float().cpu(), curve).min(dim=1).values


# ---- the on-device dataset -------------------------------------------------------------


@dataclass
class TensorDataset:
    """A whole dataset as one tensor. Images are uint8 (N, C, H, W); points float32 (N, 2)."""

    data: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def is_image(self) -> bool:
        return self.data.dtype == torch.uint8

    def to(self, device: torch.device | str) -> TensorDataset:
        labels = self.labels.to(device) if self.labels is not None else None
        return TensorDataset(self.data.to(device), labels)

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """A float batch: images scaled to [-1, 1], points as they are."""
        x = self.data.index_select(0, idx)
        return to_model_range(x) if self.is_image else x


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float().mul_(2.0 / 255.0).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to nearest."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def load_dataset(cfg: RunConfig, split: str = "train") -> TensorDataset:
    """The dataset a config names, on the CPU; callers move it to their device."""
    if cfg.dataset == "mnist":
        x, y = load_mnist(split)
    elif cfg.dataset == "fashion":
        x, y = load_fashion_mnist(split)
    elif cfg.dataset == "scurve":
        return TensorDataset(make_s_curve(TRAIN_SIZES["scurve"], seed=0 if split == "train" else 1))
    elif cfg.dataset == "folder":
        return TensorDataset(torch.from_numpy(load_folder(cfg.data_dir, cfg.image_size, cfg.image_channels)))
    else:  # validated configs never get here
        raise DataError(f"unknown dataset {cfg.dataset!r}")
    return TensorDataset(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))


def check_fits(cfg: RunConfig, n: int) -> None:
    """A batch larger than the dataset would silently repeat examples within the batch."""
    micro = cfg.batch_size // cfg.grad_accum
    if micro > n:
        raise ConfigError([f"batch_size: {cfg.batch_size} is larger than the dataset ({n} examples); lower batch_size"])


# ---- batch order -----------------------------------------------------------------------


class BatchOrder:
    """Epoch-wise shuffling, stateless: batch k is slice [k*B, (k+1)*B) of the infinite
    concatenation of per-epoch permutations, each seeded by (seed, epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._cache: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            self._cache[epoch] = torch.randperm(self.n, generator=g)
        return self._cache[epoch]

    def indices(self, k: int) -> torch.Tensor:
        start = k * self.batch_size
        parts = []
        remaining = self.batch_size
        while remaining:
            epoch, offset = divmod(start, self.n)
            take = min(remaining, self.n - offset)
            parts.append(self._perm(epoch)[offset : offset + take])
            start += take
            remaining -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)
