"""Sample quality without downloads: judge classifiers shipped with the package, and figures.

Loss says little about samples, so every image run can be judged offline:

- A small CNN per dataset (MNIST, Fashion-MNIST), trained by ``bench/train_judge.py`` on the
  training split; weights and recorded test accuracy live in ``core/assets/judge/``.
- Its 128-d penultimate features feed torchmetrics' ``FrechetInceptionDistance`` and
  ``KernelInceptionDistance`` in place of Inception (which would need a download and knows
  nothing of digits), computed against the test split. The judge reads each image once;
  both metrics receive its features through a pass-through feature module.
- ``confident``: the share of samples whose max softmax exceeds 0.9 (a clear, legible digit);
  ``class_entropy``: the entropy of the predicted-class histogram over log(10), 1.0 when all
  ten classes are drawn equally often, 0.0 when only one is (mode collapse).
- The floor: the same figures for as many real training images, so a number can be read
  against what perfect samples would score at this n.

For the 2-D S-curve: the mean distance of samples to the curve, and the sliced Wasserstein
distance to fresh curve points (floor: fresh points against other fresh points).

For 1-D sequences (:func:`sequence_figures`): the sliced Wasserstein distance to the held-out
split, and for the sines the spread of fitted frequencies and amplitudes against the held-out
data's (floor: as many training sequences against the held-out split).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import load_checkpoint
from core.choices import SEQUENCE_DATASETS
from core.errors import DDPMError

JUDGE_DIR = Path(__file__).resolve().parent / "assets" / "judge"
JUDGED = ("mnist", "fashion")
NORMALIZATION = {"mnist": (0.1307, 0.3081), "fashion": (0.2860, 0.3530)}  # pixel mean and std of each training split
CONFIDENT = 0.9
FEATURES = 128
IMAGE_FIGURES = ("fid", "kid", "kid_std", "confident", "class_entropy")
POINT_FIGURES = ("curve_distance", "swd")
SEQUENCE_FIGURES = ("swd", "freq_w1", "amp_w1")  # freq_w1 and amp_w1 for the sines only
EVALUATED = (*JUDGED, "scurve", *SEQUENCE_DATASETS)  # the datasets `ddpm eval` and --eval-every can judge


class EvalError(DDPMError):
    """An evaluation cannot be done as asked; the message says why."""


class JudgeNet(nn.Module):
    """Two conv blocks and a 128-unit feature layer: 99.5% on MNIST, fast on a CPU."""

    def __init__(self, classes: int = 10, features: int = FEATURES, dataset: str = "mnist"):
        super().__init__()
        self.mean, self.std = NORMALIZATION[dataset]
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, features), nn.ReLU(),
        )  # fmt: skip
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(features, classes)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 1, 28, 28) or (N, 28, 28) -> normalised float."""
        x = images.float() / 255.0
        if x.ndim == 3:
            x = x.unsqueeze(1)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.body(x)))


class GivenFeatures(nn.Module):
    """torchmetrics' feature extractor for features the judge computed already: the judge
    reads every image once (features and class probabilities in one pass), and FID and KID
    both take the result. ``num_features`` spares torchmetrics a probe with a dummy image."""

    num_features = FEATURES

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def as_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A tensor over the images without copying, unless they are read-only (datasets read
    with np.frombuffer are), which torch cannot share."""
    if isinstance(images, torch.Tensor):
        return images
    a = np.ascontiguousarray(images)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


@torch.inference_mode()
def judge_pass(judge: JudgeNet, images: np.ndarray | torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, 128), softmax probabilities (N, 10)) of uint8 images, in one pass."""
    x = as_tensor(images)
    dev = next(judge.parameters()).device
    feats, probs = [], []
    for i in range(0, len(x), batch):
        f = judge.features(judge.prepare(x[i : i + batch].to(dev)))
        feats.append(f)
        probs.append(F.softmax(judge.head(f), dim=1))
    return torch.cat(feats), torch.cat(probs).cpu()


def judge_path(dataset: str = "mnist") -> Path:
    return JUDGE_DIR / f"{dataset}.pt"


def load_judge(dataset: str = "mnist", device: str | torch.device = "cpu") -> JudgeNet:
    if dataset not in JUDGED:
        raise EvalError(f"there is no judge for {dataset!r} runs; judged datasets: {', '.join(JUDGED)} (and scurve)")
    state = load_checkpoint(judge_path(dataset), map_location=device)
    net = JudgeNet(dataset=dataset)
    net.load_state_dict(state["model"])
    return net.to(device).eval()


def judge_info(dataset: str = "mnist") -> dict:
    """What the training script recorded about a judge (test accuracy, epochs, ...)."""
    return json.loads((JUDGE_DIR / f"{dataset}.json").read_text())


def load_split(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    from core.sources import load_fashion_mnist, load_mnist

    return load_mnist(split) if dataset == "mnist" else load_fashion_mnist(split)


def predict(judge: JudgeNet, images: np.ndarray | torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """Softmax probabilities (N, 10) for uint8 images."""
    return judge_pass(judge, images, batch)[1]


def class_entropy(counts: np.ndarray) -> float:
    """Entropy of a class histogram over log(number of classes): 1 = uniform, 0 = one class."""
    counts = np.asarray(counts, dtype=np.float64)
    p = counts / max(1.0, counts.sum())
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(len(counts))) + 0.0  # + 0.0: one class reads 0, not -0


@dataclass
class DigitScores:
    n: int
    confident: float  # share with max softmax > 0.9
    class_entropy: float  # normalised entropy of the predicted-class histogram
    class_counts: list[int]

    def as_dict(self) -> dict:
        return {"n": self.n, "confident": self.confident, "class_entropy": self.class_entropy, "class_counts": self.class_counts}


def score_digits(images: np.ndarray | torch.Tensor, judge: JudgeNet | None = None) -> DigitScores:
    """Confident share and class coverage of uint8 images."""
    return scores_from_probs(predict(judge or load_judge("mnist"), images))


def _hits(probs: torch.Tensor, labels: list[int]):
    conf, cls = probs.max(dim=1)
    for c, k, want in zip(conf.tolist(), cls.tolist(), labels):
        yield (k == want and c > CONFIDENT), int(want)


def class_accuracy(probs: torch.Tensor, labels: list[int]) -> dict[int, float]:
    """Per class asked for: the share of its samples the judge reads, with max softmax above
    0.9, as that class."""
    hits: dict[int, list[bool]] = {}
    for hit, want in _hits(probs, labels):
        hits.setdefault(want, []).append(hit)
    return {k: float(np.mean(v)) for k, v in sorted(hits.items())}


def scores_from_probs(probs: torch.Tensor) -> DigitScores:
    conf, cls = probs.max(dim=1)
    counts = np.bincount(cls.numpy(), minlength=probs.shape[1])
    return DigitScores(len(probs), float((conf > CONFIDENT).float().mean()), class_entropy(counts), counts.tolist())


# ---- figures -----------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Figures for n samples, and the same figures for n real examples (the floor)."""

    dataset: str
    n: int
    figures: dict[str, float]
    floor: dict[str, float] = field(default_factory=dict)
    class_counts: list[int] = field(default_factory=list)
    detail: dict = field(default_factory=dict)  # a conditional run's accuracy per class

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "n": self.n,
            "figures": self.figures,
            "floor": self.floor,
            "class_counts": self.class_counts,
        }


class ImageEvaluator:
    """FID, KID, confident share and class entropy for one dataset, against its test split.

    The test split's features are computed once and kept, with torchmetrics objects whose
    real side stays fed, so repeated evaluations during training pay only for the samples.
    """

    def __init__(self, dataset: str, device: str | torch.device = "cpu"):
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.dataset = dataset
        self.device = torch.device(device)
        self.judge = load_judge(dataset, self.device)
        self.test_features = judge_pass(self.judge, load_split(dataset, "test")[0])[0]
        self.fid = FrechetInceptionDistance(feature=GivenFeatures(), reset_real_features=False).to(self.device)
        self.fid.update(self.test_features, real=True)
        self._kid: dict[int, object] = {}

    def _kid_for(self, subset: int):
        from torchmetrics.image.kid import KernelInceptionDistance

        if subset not in self._kid:
            with warnings.catch_warnings():  # "will save all extracted features": 128-d, that is the plan
                warnings.simplefilter("ignore", UserWarning)
                kid = KernelInceptionDistance(feature=GivenFeatures(), subset_size=subset, subsets=50, reset_real_features=False)
            kid = kid.to(self.device)
            kid.update(self.test_features, real=True)
            self._kid[subset] = kid
        return self._kid[subset]

    def figures(
        self, images: np.ndarray | torch.Tensor, seed: int = 0, labels: list[int] | None = None
    ) -> tuple[dict[str, float], list[int], dict]:
        """(figures, predicted-class counts, detail). With ``labels`` (the class each sample
        was asked for) the figures gain ``class_accuracy`` (the share the judge reads,
        confidently, as the class asked for) and ``class_accuracy_min`` (the worst class's),
        and the detail holds the accuracy of every class."""
        x = as_tensor(images)
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.dtype != torch.uint8 or tuple(x.shape[1:]) != (1, 28, 28):
            raise EvalError(
                f"the {self.dataset} judge reads uint8 images of shape (N, 1, 28, 28), got {x.dtype} {tuple(x.shape)}"
            )
        if len(x) < 2:
            raise EvalError("evaluation needs at least 2 samples")
        feats, probs = judge_pass(self.judge, x)
        with torch.inference_mode():
            self.fid.reset()
            self.fid.update(feats, real=False)
            fid = float(self.fid.compute())
            kid_metric = self._kid_for(min(1000, len(x)))
            kid_metric.reset()
            kid_metric.update(feats, real=False)
            # KID draws its random subsets from the CPU generator: seed that one alone (not
            # torch.manual_seed, which reseeds every GPU's generator too) and restore it, so
            # the figure repeats and training's own random streams are left as they were.
            with torch.random.fork_rng(devices=[]):
                torch.random.default_generator.manual_seed(seed)
                kid_mean, kid_std = (float(v) for v in kid_metric.compute())
        scores = scores_from_probs(probs)
        figs = {
            "fid": fid,
            "kid": kid_mean,
            "kid_std": kid_std,
            "confident": scores.confident,
            "class_entropy": scores.class_entropy,
        }
        detail: dict = {}
        if labels is not None:
            per_class = class_accuracy(probs, labels)
            figs["class_accuracy"] = float(np.mean([hit for hit, _ in _hits(probs, labels)]))
            figs["class_accuracy_min"] = min(per_class.values())
            detail["class_accuracy"] = {str(k): v for k, v in per_class.items()}
        return figs, scores.class_counts, detail

    def floor(self, n: int, seed: int = 0, labels: list[int] | None = None) -> dict[str, float]:
        """The figures of n real training images (all 60,000 at most); with ``labels``, images
        of those classes in those numbers, so class accuracy has a floor too."""
        train, train_labels = load_split(self.dataset, "train")
        rng = np.random.default_rng(seed)
        if labels is None:
            idx = np.sort(rng.permutation(len(train))[: min(n, len(train))])
            return self.figures(train[idx], seed=seed)[0]
        picks = [rng.permutation(np.flatnonzero(train_labels == c))[: labels.count(c)] for c in sorted(set(labels))]
        idx = np.concatenate(picks)
        return self.figures(train[idx], seed=seed, labels=[int(v) for v in train_labels[idx]])[0]


_EVALUATORS: dict[tuple[str, str], ImageEvaluator] = {}


def image_evaluator(dataset: str, device: str | torch.device = "cpu") -> ImageEvaluator:
    """One evaluator per (dataset, device) per process."""
    key = (dataset, str(device))
    if key not in _EVALUATORS:
        _EVALUATORS[key] = ImageEvaluator(dataset, device)
    return _EVALUATORS[key]


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 256, seed: int = 0) -> float:
    """Mean over random directions of the 1-D Wasserstein-1 distance between projections.
    Sets of different sizes are compared through their quantile functions on a common grid
    (which, for equal sizes, is the same as pairing the sorted projections)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    dirs /= dirs.norm(dim=0, keepdim=True)
    pa = (a.double() @ dirs).sort(dim=0).values
    pb = (b.double() @ dirs).sort(dim=0).values
    if len(pa) != len(pb):
        k = 2 * max(len(pa), len(pb))
        q = (torch.arange(k, dtype=torch.float64) + 0.5) / k
        pa, pb = pa[(q * len(pa)).long()], pb[(q * len(pb)).long()]
    return float((pa - pb).abs().mean())


def point_figures(points: np.ndarray | torch.Tensor, seed: int = 0) -> dict[str, float]:
    """S-curve figures: mean distance to the curve, sliced Wasserstein to fresh curve points."""
    from core.data import distance_to_s_curve, make_s_curve

    p = torch.as_tensor(np.asarray(points), dtype=torch.float32)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 2:
        raise EvalError(f"S-curve evaluation needs points of shape (N, 2) with N >= 2, got {tuple(p.shape)}")
    fresh = make_s_curve(len(p), seed=10_000 + seed)
    return {"curve_distance": float(distance_to_s_curve(p).mean()), "swd": sliced_wasserstein(p, fresh, seed=seed)}


def sequence_figures(samples: np.ndarray, held_out: np.ndarray, scale, dataset: str, seed: int = 0) -> dict[str, float]:
    """Sequence figures against the held-out split: ``swd``, the sliced Wasserstein distance
    of whole sequences (scaled to [-1, 1] by the training range, so figures of different data
    read alike); for the sines also ``freq_w1`` and ``amp_w1``, the 1-D Wasserstein distances
    between the samples' and the held-out data's fitted frequencies (cycles per sequence) and
    amplitudes (per channel), which say whether the spread of sines is drawn, not one sine."""
    from core.sequences import amplitude, peak_frequency, wasserstein_1d

    x = np.asarray(samples)
    if x.ndim != 3 or x.shape[1:] != held_out.shape[1:] or len(x) < 2:
        raise EvalError(f"{dataset} evaluation needs sequences of shape (N, {held_out.shape[1]}, {held_out.shape[2]}) "
                        f"with N >= 2, got {tuple(x.shape)}")  # fmt: skip
    if not np.isfinite(x).all():
        raise EvalError("the samples hold NaN or infinite values; the run has diverged (lower lr and train again)")
    a = torch.from_numpy(scale.to_model(x).reshape(len(x), -1))
    b = torch.from_numpy(scale.to_model(held_out).reshape(len(held_out), -1))
    figs = {"swd": sliced_wasserstein(a, b, seed=seed)}
    if dataset == "sines":
        figs["freq_w1"] = wasserstein_1d(peak_frequency(x), peak_frequency(held_out))
        figs["amp_w1"] = wasserstein_1d(amplitude(x), amplitude(held_out))
    return figs


def _sequence_evaluation(samples: np.ndarray, config, floor: bool, seed: int) -> Evaluation:
    """Samples against the held-out split; the floor is as many training sequences against it."""
    from core.sequences import load_sequences

    if config is None or not config.is_sequence:
        raise EvalError("judging sequences needs the run's config (config=...)")
    data = load_sequences(config)
    n = int(len(samples))
    figs = sequence_figures(samples, data.held_out, data.scale, config.dataset, seed)
    base = {}
    if floor:
        pick = np.sort(np.random.default_rng(seed).permutation(len(data.train))[: min(n, len(data.train))])
        base = sequence_figures(data.train[pick], data.held_out, data.scale, config.dataset, seed)
    return Evaluation(config.dataset, n, figs, base)


def evaluate(
    samples: np.ndarray,
    dataset: str,
    *,
    device: str | torch.device = "cpu",
    floor: bool = True,
    seed: int = 0,
    labels: list[int] | None = None,
    config=None,
) -> Evaluation:
    """Figures (and the floor) for samples of a dataset: uint8 images, float32 points, or
    float32 sequences in the data's units (which need the run's ``config``, to find its
    held-out split); ``labels`` (the class each sample was asked for) adds class accuracy."""
    n = int(len(samples))
    if dataset in SEQUENCE_DATASETS:
        return _sequence_evaluation(samples, config, floor, seed)
    if dataset == "scurve":
        figs = point_figures(samples, seed)
        base = point_figures(_s_curve(n, seed), seed) if floor else {}
        return Evaluation(dataset, n, figs, base)
    if dataset not in JUDGED:
        raise EvalError(f"there is no judge for {dataset!r} runs; judged datasets: {', '.join(JUDGED)} and scurve")
    ev = image_evaluator(dataset, device)
    figs, counts, detail = ev.figures(samples, seed, labels)
    return Evaluation(dataset, n, figs, ev.floor(n, seed, labels) if floor else {}, counts, detail)


def _s_curve(n: int, seed: int) -> np.ndarray:
    from core.data import make_s_curve

    return make_s_curve(n, seed=20_000 + seed).numpy()


def available_memory() -> int:
    """Bytes the kernel says can be allocated without swapping (MemAvailable)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(n: int, sample_shape: tuple[int, ...]) -> None:
    """Refuse, before any work, an n whose samples and features would not fit in memory:
    float32 samples while sampling, uint8 copies, the judge's float features (KID keeps all)."""
    per = math.prod(sample_shape) * (4 + 1) + FEATURES * 4 * 2
    need = n * per + (256 << 20)
    have = available_memory()
    if need > 0.8 * have:
        fit = max(0, int((0.8 * have - (256 << 20)) // per))
        raise EvalError(
            f"--n {n:,} needs about {need / 2**30:.1f} GiB for samples and features, but {have / 2**30:.1f} GiB is "
            f"available; use --n {min(fit, 10_000):,} or less"
        )
