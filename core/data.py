"""Datasets: MNIST (shipped in the package), Fashion-MNIST, the 2-D S-curve, a folder of images.

Each dataset is held as one tensor on the training device (MNIST's 60,000 digits are 47 MB
as uint8), and a batch is an index gather plus one scale to [-1, 1]: no per-image Python, no
DataLoader workers. Batch order is a pure function of (seed, step), so a resumed run sees
exactly the batches it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.config import TRAIN_SIZES, ConfigError, RunConfig

if TYPE_CHECKING:
    from core.sequences import SeqScale
from core.sources import S_CURVE_NOISE, DataError, folder_classes, load_fashion_mnist, load_folder, load_mnist, s_curve_points

# ---- the 2-D S-curve -------------------------------------------------------------------


def make_s_curve(n: int, seed: int = 0, noise: float = S_CURVE_NOISE) -> torch.Tensor:
    """``n`` noisy S-curve points, float32 (n, 2). Torch's generator draws them (the training
    and evaluation sets are fixed by it); the curve's formula is numpy's, shared with the
    dashboard (:func:`core.sources.s_curve_points`)."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.from_numpy(s_curve_points(torch.rand(n, generator=g, dtype=torch.float64).numpy()))
    if noise > 0:
        pts = pts + noise * torch.randn(pts.shape, generator=g, dtype=torch.float64)
    return pts.float()


def distance_to_s_curve(points: torch.Tensor, resolution: int = 4000) -> torch.Tensor:
    """Euclidean distance from each point to the (noise-free) S-curve."""
    curve = torch.from_numpy(s_curve_points(torch.linspace(0, 1, resolution, dtype=torch.float64).numpy())).float()
    return torch.cdist(points.float().cpu(), curve).min(dim=1).values


# ---- the on-device dataset -------------------------------------------------------------


@dataclass
class TensorDataset:
    """A whole dataset as one tensor. Images are uint8 (N, C, H, W); points float32 (N, 2);
    sequences float32 (N, C, L) already in [-1, 1], with the ``scale`` that maps them back."""

    data: torch.Tensor
    labels: torch.Tensor | None = None
    scale: SeqScale | None = None

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def is_image(self) -> bool:
        return self.data.dtype == torch.uint8

    def to(self, device: torch.device | str) -> TensorDataset:
        labels = self.labels.to(device) if self.labels is not None else None
        return TensorDataset(self.data.to(device), labels, self.scale)

    @property
    def nbytes(self) -> int:
        n = self.data.numel() * self.data.element_size()
        return n + (self.labels.numel() * self.labels.element_size() if self.labels is not None else 0)

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """A float batch: images scaled to [-1, 1], points as they are."""
        return self.as_batch(self.data.index_select(0, idx))

    def as_batch(self, x: torch.Tensor) -> torch.Tensor:
        return to_model_range(x) if self.is_image else x


def fits_on_device(nbytes: int, free: int) -> bool:
    """Whether a dataset of ``nbytes`` should live on a device with ``free`` bytes free. Half
    the free memory at most: the model, its optimizer state, activations and the sampler's
    batches need the rest."""
    return nbytes <= free // 2


class HostBatches:
    """Batches of a dataset kept in host memory (one too large for the device), gathered into
    pinned staging buffers and copied to the device without blocking. Two buffers alternate;
    a buffer is refilled only once the copy that read it has finished (its CUDA event), so
    the gather of the next batch overlaps the training step of this one."""

    def __init__(self, data: TensorDataset, batch: int, device: torch.device, pin: bool = True):
        self.data, self.device = data, device
        shape = (batch, *data.data.shape[1:])
        cuda = device.type == "cuda"
        self.buffers = [torch.empty(shape, dtype=data.data.dtype, pin_memory=pin and cuda) for _ in range(2)]
        self.events = [torch.cuda.Event() if cuda else None for _ in range(2)]
        self.turn = 0

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        i, self.turn = self.turn, self.turn ^ 1
        event = self.events[i]
        if event is not None:
            event.synchronize()  # the copy from this buffer two batches ago is done
        buf = self.buffers[i][: len(idx)]
        torch.index_select(self.data.data, 0, idx, out=buf)
        x = buf.to(self.device, non_blocking=True)
        if event is not None:
            event.record()
        return self.data.as_batch(x)


def flip_some(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) with those where ``flip`` (N,) is true mirrored left to right: the
    ``hflip`` augmentation, with the mask drawn by the trainer from the step's generator so
    that a resumed run flips exactly the images it would have flipped."""
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


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
    elif cfg.is_sequence:
        from core.sequences import load_sequences

        seq = load_sequences(cfg)
        return TensorDataset(
            torch.from_numpy(seq.scale.to_model(seq.train if split == "train" else seq.held_out)), scale=seq.scale
        )
    elif cfg.dataset == "folder":
        images = torch.from_numpy(load_folder(cfg.data_dir, cfg.image_size, cfg.image_channels))
        labels = torch.from_numpy(folder_classes(cfg.data_dir)[0]) if cfg.cond == "class" else None
        return TensorDataset(images, labels)
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
    concatenation of per-epoch permutations, each seeded by (seed, epoch).

    Each permutation is drawn on the CPU (the same order on every device) and moved to
    ``device`` once per epoch, so a step's indices are a slice there: no copy per step."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device | str = "cpu"):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.device = torch.device(device)
        self._cache: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            self._cache[epoch] = torch.randperm(self.n, generator=g).to(self.device)
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
