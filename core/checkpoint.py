"""Checkpoint files: written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain values (model, EMA, optimizer, step, config,
RNG states). It is serialised to memory first, hashed, written to a temporary file in the
same folder, fsynced and renamed over the target, so a crash at any moment leaves either the
old file or the new one, never half of one. Loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from core.atomic import atomic_write_bytes
from core.errors import DDPMError


class CheckpointError(DDPMError):
    """A checkpoint is missing, unreadable, corrupt or not ours; the message says which."""


@dataclass(frozen=True)
class SavedCheckpoint:
    path: Path
    bytes: int
    sha256: str


FORMAT = "ddpm-tui/1"


def save_checkpoint(path: Path | str, state: dict) -> SavedCheckpoint:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    data = buf.getvalue()
    path = Path(path)
    atomic_write_bytes(path, data)
    return SavedCheckpoint(path, len(data), hashlib.sha256(data).hexdigest())


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely; any failure becomes one CheckpointError that says why."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors and plain values; refusing to load it (it may be unsafe)"
            ) from None
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {first[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ddpm-tui checkpoint")
    return state


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
