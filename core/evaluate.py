"""Sample quality without downloads: a small judge classifier shipped with the package.

The judge is a compact CNN trained by ``bench/train_judge.py`` on the MNIST training split;
its weights and recorded test accuracy live in ``core/assets/judge/``. It reads generated
digits and reports:

- ``confident``: the share of samples whose max softmax exceeds 0.9 (a clear, legible digit),
- ``class_entropy``: the entropy of the predicted-class histogram divided by log(10), which is
  1.0 when all ten digits are drawn equally often and 0.0 when only one is (mode collapse).

Its 128-d penultimate features are what Frechet and kernel distances will be computed on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import load_checkpoint

JUDGE_DIR = Path(__file__).resolve().parent / "assets" / "judge"
MEAN, STD = 0.1307, 0.3081  # MNIST pixel statistics, as is customary for MNIST classifiers
CONFIDENT = 0.9


class JudgeNet(nn.Module):
    """Two conv blocks and a 128-unit feature layer: 99%+ on MNIST, fast on a CPU."""

    def __init__(self, classes: int = 10, features: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, features), nn.ReLU(),
        )  # fmt: skip
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(features, classes)

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 1, 28, 28) or (N, 28, 28) -> normalised float."""
        x = images.float() / 255.0
        if x.ndim == 3:
            x = x.unsqueeze(1)
        return (x - MEAN) / STD

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.body(x)))


def judge_path(dataset: str = "mnist") -> Path:
    return JUDGE_DIR / f"{dataset}.pt"


def load_judge(dataset: str = "mnist", device: str | torch.device = "cpu") -> JudgeNet:
    state = load_checkpoint(judge_path(dataset), map_location=device)
    net = JudgeNet()
    net.load_state_dict(state["model"])
    return net.to(device).eval()


def judge_info(dataset: str = "mnist") -> dict:
    """What the training script recorded about the judge (test accuracy, epochs, ...)."""
    return json.loads((JUDGE_DIR / f"{dataset}.json").read_text())


@torch.inference_mode()
def predict(judge: JudgeNet, images: np.ndarray | torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """Softmax probabilities (N, 10) for uint8 images."""
    x = torch.from_numpy(np.array(images)) if isinstance(images, np.ndarray) else images
    dev = next(judge.parameters()).device
    out = [F.softmax(judge(JudgeNet.prepare(x[i : i + batch].to(dev))), dim=1).cpu() for i in range(0, len(x), batch)]
    return torch.cat(out)


@dataclass
class DigitScores:
    n: int
    confident: float  # share with max softmax > 0.9
    class_entropy: float  # normalised entropy of the predicted-class histogram
    class_counts: list[int]

    def as_dict(self) -> dict:
        return {"n": self.n, "confident": self.confident, "class_entropy": self.class_entropy, "class_counts": self.class_counts}


def class_entropy(counts: np.ndarray) -> float:
    p = counts / max(1, counts.sum())
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(len(counts)))


def score_digits(images: np.ndarray | torch.Tensor, judge: JudgeNet | None = None) -> DigitScores:
    """Confident share and class coverage of uint8 digit images."""
    judge = judge or load_judge("mnist")
    probs = predict(judge, images)
    conf, cls = probs.max(dim=1)
    counts = np.bincount(cls.numpy(), minlength=probs.shape[1])
    return DigitScores(len(probs), float((conf > CONFIDENT).float().mean()), class_entropy(counts), counts.tolist())
