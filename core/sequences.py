"""1-D sequences as numpy arrays: the built-in sines, your own files, the scale to [-1, 1], and
the features a sequence is judged by. No torch, so the CLI can check a run's files before
recording it.

A sequence is (C, L): C channels (values per step) over L steps. The model sees every channel
scaled to [-1, 1] by the training split's own range (:class:`SeqScale`); the range travels in
every checkpoint, so samples come back, and are stored and saved, in the data's own units.

Files (``dataset=seq``, ``data_dir=PATH``):

- one ``.npy`` file holding (N, C, L), or (N, L) for one channel;
- a folder of files, one sequence each, read in sorted name order: ``.npy`` holding (C, L) or
  (L,), or ``.csv`` with one row per step and one comma-separated column per channel (a first
  line that is not numbers is a header and skipped).

The held-out split is the last tenth of the sequences in that order (at least one); the rest
train.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import TRAIN_SIZES, RunConfig
from core.sources import DataError

SEQ_SUFFIXES = (".npy", ".csv")
SINES_HELD_OUT = 2_000
SINES_FREQUENCY = (1.0, 6.0)  # cycles per sequence, shared by a sequence's channels
SINES_AMPLITUDE = (0.2, 1.0)  # per channel
HELD_OUT_SHARE = 0.1


class SeqDataError(DataError):
    """Sequence files that cannot be read or do not fit the config; the message says how to fix it."""


# ---- the scale -------------------------------------------------------------------------


@dataclass(frozen=True)
class SeqScale:
    """Per-channel range (lo, hi) of the training data: ``lo`` maps to -1 and ``hi`` to 1. A
    constant channel (lo == hi) maps to 0 and back."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]

    @classmethod
    def of(cls, data: np.ndarray) -> SeqScale:
        """The range of (N, C, L) data, per channel."""
        d = np.asarray(data, dtype=np.float64)
        return cls(tuple(float(v) for v in d.min(axis=(0, 2))), tuple(float(v) for v in d.max(axis=(0, 2))))

    @classmethod
    def identity(cls, channels: int) -> SeqScale:
        return cls((-1.0,) * channels, (1.0,) * channels)

    def _mid_half(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.asarray(self.lo, np.float64), np.asarray(self.hi, np.float64)
        half = (hi - lo) / 2
        return ((lo + hi) / 2)[:, None], np.where(half > 0, half, 1.0)[:, None]

    def to_model(self, x: np.ndarray) -> np.ndarray:
        """Original units -> [-1, 1], float32."""
        mid, half = self._mid_half()
        return ((np.asarray(x, np.float64) - mid) / half).astype(np.float32)

    def to_original(self, x: np.ndarray) -> np.ndarray:
        """[-1, 1] -> original units, float32."""
        mid, half = self._mid_half()
        return (np.asarray(x, np.float64) * half + mid).astype(np.float32)

    def as_dict(self) -> dict:
        return {"lo": list(self.lo), "hi": list(self.hi)}

    @classmethod
    def from_dict(cls, d: dict) -> SeqScale:
        return cls(tuple(float(v) for v in d["lo"]), tuple(float(v) for v in d["hi"]))


@dataclass
class SeqData:
    """A sequence dataset in its own units: (N, C, L) float32 splits and the training range."""

    train: np.ndarray
    held_out: np.ndarray
    scale: SeqScale


# ---- the built-in sines ----------------------------------------------------------------


def sines(n: int, channels: int = 2, length: int = 128, seed: int = 0) -> np.ndarray:
    """``n`` sequences (n, channels, length) float32 in [-1, 1], a pure function of the
    arguments: each sequence has one frequency (uniform in SINES_FREQUENCY cycles over its
    length) and every channel its own amplitude (uniform in SINES_AMPLITUDE) and phase."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(*SINES_FREQUENCY, size=(n, 1, 1))
    amp = rng.uniform(*SINES_AMPLITUDE, size=(n, channels, 1))
    phase = rng.uniform(0, 2 * math.pi, size=(n, channels, 1))
    t = np.arange(length, dtype=np.float64)[None, None, :] / length
    return (amp * np.sin(2 * math.pi * freq * t + phase)).astype(np.float32)


# ---- files -----------------------------------------------------------------------------


def _csv(path: Path) -> np.ndarray:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if lines:
        try:
            [float(v) for v in lines[0].split(",")]
        except ValueError:
            lines = lines[1:]  # a header
    if not lines:
        raise SeqDataError(f"{path} holds no rows of numbers")
    try:
        return np.loadtxt(lines, delimiter=",", ndmin=2, dtype=np.float64).T
    except ValueError as e:
        raise SeqDataError(f"cannot read {path} as CSV numbers ({str(e).splitlines()[0]}); one column per channel") from None


def _one(path: Path) -> np.ndarray:
    """One sequence file as (C, L)."""
    if path.suffix.lower() == ".csv":
        return _csv(path)
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SeqDataError(f"cannot read {path} as a .npy array: {e}") from None
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise SeqDataError(f"{path} holds shape {a.shape}; a sequence file holds (C, L) or (L,)")
    return a


def read_sequences(path: str | Path) -> np.ndarray:
    """Every sequence at ``path`` (a .npy file or a folder, see the module's docstring) as
    (N, C, L) float32, refused in one line when shapes differ or a value is not finite."""
    p = Path(path).expanduser()
    if p.is_file():
        try:
            a = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise SeqDataError(f"cannot read data_dir {p} as a .npy array: {e}") from None
        if a.ndim == 2:
            a = a[:, None]
        if a.ndim != 3:
            raise SeqDataError(f"data_dir {p} holds shape {a.shape}; a sequence file holds (N, C, L) or (N, L)")
        names = [f"sequence {i}" for i in range(len(a))]
    elif p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in SEQ_SUFFIXES and f.is_file())
        if not files:
            raise SeqDataError(f"no sequences (.npy, .csv) found in {p}; set data_dir to a .npy file or a folder of them")
        parts = [_one(f) for f in files]
        first = parts[0].shape
        for f, s in zip(files, parts):
            if s.shape != first:
                raise SeqDataError(f"{f.name} is {s.shape[0]} channels x {s.shape[1]} steps but {files[0].name} is "
                                   f"{first[0]} x {first[1]}; every sequence must have one shape")  # fmt: skip
        a = np.stack(parts)
        names = [f.name for f in files]
    else:
        raise SeqDataError(f"data_dir {str(p)!r} is neither a .npy file nor a folder; set data_dir=PATH")
    if not np.issubdtype(a.dtype, np.number):
        raise SeqDataError(f"data_dir {p} holds {a.dtype} values, not numbers")
    bad = ~np.isfinite(a.astype(np.float64)).all(axis=(1, 2))
    if bad.any():
        raise SeqDataError(f"{names[int(np.argmax(bad))]} in {p} holds NaN or infinite values; fill or remove them")
    if len(a) < 2:
        raise SeqDataError(f"data_dir {p} holds {len(a)} sequence; at least 2 are needed (one is held out)")
    return a.astype(np.float32)


def split(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out): the held-out split is the last tenth (at least one sequence)."""
    k = max(1, int(len(data) * HELD_OUT_SHARE))
    return data[:-k], data[-k:]


def check_shape(data: np.ndarray, cfg: RunConfig) -> None:
    c, length = data.shape[1:]
    if (c, length) != (cfg.seq_channels, cfg.seq_length):
        raise SeqDataError(
            f"data_dir: the sequences are {c} channels x {length} steps but the run asks for "
            f"{cfg.seq_channels} x {cfg.seq_length}; set seq_channels={c} seq_length={length}"
        )


def load_sequences(cfg: RunConfig) -> SeqData:
    """The config's sequences: the sines (train from seed 0, held-out from seed 1, already in
    [-1, 1]) or the files at data_dir, scaled by the training split's range."""
    if cfg.dataset == "sines":
        train = sines(TRAIN_SIZES["sines"], cfg.seq_channels, cfg.seq_length, seed=0)
        held = sines(SINES_HELD_OUT, cfg.seq_channels, cfg.seq_length, seed=1)
        return SeqData(train, held, SeqScale.identity(cfg.seq_channels))
    data = read_sequences(cfg.data_dir)
    check_shape(data, cfg)
    train, held = split(data)
    return SeqData(train, held, SeqScale.of(train))


# ---- features for judging --------------------------------------------------------------


def peak_frequency(x: np.ndarray, pad: int = 8) -> np.ndarray:
    """Each sequence's and channel's dominant frequency in cycles per sequence, (N * C,): the
    peak of the magnitude spectrum of the mean-removed, Hann-windowed sequence zero-padded to
    ``pad`` times its length, refined by a parabola through the peak and its neighbours (the
    sines' frequencies are not whole numbers; the window keeps the peak from leaking)."""
    a = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
    a = (a - a.mean(axis=1, keepdims=True)) * np.hanning(a.shape[1])
    mag = np.abs(np.fft.rfft(a, n=pad * a.shape[1], axis=1))
    lo = pad // 2  # below half a cycle is the mean's leftovers, not a frequency
    k = mag[:, lo:].argmax(axis=1) + lo
    rows = np.arange(len(a))
    left, mid = mag[rows, k - 1], mag[rows, k]
    right = mag[rows, np.minimum(k + 1, mag.shape[1] - 1)]
    denom = left - 2 * mid + right
    inner = (k < mag.shape[1] - 1) & (denom != 0)
    shift = np.where(inner, 0.5 * (left - right) / np.where(denom != 0, denom, 1.0), 0.0)
    return (k + shift) / pad


def amplitude(x: np.ndarray) -> np.ndarray:
    """Each sequence's and channel's amplitude, (N * C,): sqrt(2) x its standard deviation,
    which is a sine's amplitude whatever its frequency and phase."""
    a = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
    return math.sqrt(2) * a.std(axis=1)


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance between two samples of numbers (of any sizes): the mean
    absolute difference of their quantile functions."""
    a, b = np.sort(np.asarray(a, np.float64).ravel()), np.sort(np.asarray(b, np.float64).ravel())
    q = (np.arange(2 * max(len(a), len(b))) + 0.5) / (2 * max(len(a), len(b)))
    return float(np.abs(a[(q * len(a)).astype(int)] - b[(q * len(b)).astype(int)]).mean())
