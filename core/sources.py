"""Where datasets come from: files on disk read into numpy arrays, and the S-curve's formula, without torch.

MNIST ships inside the package (its four official gzipped idx files in ``core/assets/mnist``),
so training works offline. Fashion-MNIST is found in torchvision's cache, in Debian's
``dataset-fashion-mnist`` package, or downloaded by torchvision when online. An image folder
is read with Pillow, centre-cropped and resized.

Kept apart from ``data.py`` (the tensors on the training device) so that the CLI can check
that a run's data exists before recording it, and the dashboard can show a real digit or the
S-curve, without loading torch.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np

from core.config import RunConfig
from core.errors import DDPMError

ASSETS = Path(__file__).resolve().parent / "assets"
MNIST_DIR = ASSETS / "mnist"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(DDPMError):
    """A dataset could not be found or read; the message says how to fix it."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ddpm-tui"


# ---- the 2-D S-curve ----------------------------------------------------------------------

S_CURVE_NOISE = 0.02  # the standard deviation of the Gaussian noise around the curve


def s_curve_points(u: np.ndarray) -> np.ndarray:
    """Points on the S-curve for parameters u in [0, 1], float64 (..., 2): the (x, z) face of
    scikit-learn's make_s_curve, scaled into [-1, 1]^2."""
    t = 3 * math.pi * (u - 0.5)
    return np.stack([np.sin(t), np.sign(t) * (np.cos(t) - 1) / 2], axis=-1)


def s_curve_preview(n: int, seed: int = 0, noise: float = S_CURVE_NOISE) -> np.ndarray:
    """``n`` noisy S-curve points, float64 (n, 2), drawn with numpy's generator: the training
    set's distribution (:func:`core.data.make_s_curve`) but not its points, which torch's
    generator draws. For the dashboard, which shows the curve without loading torch."""
    rng = np.random.default_rng(seed)
    return s_curve_points(rng.random(n)) + noise * rng.standard_normal((n, 2))


# ---- idx files --------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (gzipped or not), the format of MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DataError(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(dims):
        raise DataError(f"{path} is truncated: expected {math.prod(dims)} values, found {data.size}")
    return data.reshape(dims)


def _idx_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    prefix = "train" if split == "train" else "t10k"
    for suffix in (".gz", ""):
        images = folder / f"{prefix}-images-idx3-ubyte{suffix}"
        labels = folder / f"{prefix}-labels-idx1-ubyte{suffix}"
        if images.exists() and labels.exists():
            return read_idx(images), read_idx(labels)
    return None


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST from the copy shipped inside the package: (N, 28, 28) uint8 and (N,) labels."""
    pair = _idx_pair(MNIST_DIR, split)
    if pair is None:
        raise DataError(f"the MNIST files are missing from {MNIST_DIR}; reinstall ddpm-tui")
    return pair


def load_fashion_mnist(split: str = "train", download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from torchvision's cache, Debian's dataset-fashion-mnist, or a download."""
    tv_raw = cache_dir() / "FashionMNIST" / "raw"
    for folder in (tv_raw, FASHION_SYSTEM_DIR):
        pair = _idx_pair(folder, split)
        if pair is not None:
            return pair
    if download:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(cache_dir()), train=split == "train", download=True)
        except Exception as e:  # no network, a proxy, a half-written file...
            raise DataError(
                "Fashion-MNIST is not on this machine and could not be downloaded "
                f"({type(e).__name__}); install Debian's dataset-fashion-mnist package "
                f"(files in {FASHION_SYSTEM_DIR}) or connect to the internet and try again"
            ) from None
        pair = _idx_pair(tv_raw, split)
        if pair is not None:
            return pair
    raise DataError(
        f"Fashion-MNIST not found in {tv_raw} or {FASHION_SYSTEM_DIR}; install Debian's "
        "dataset-fashion-mnist package or run once with internet access"
    )


# ---- image folders ---------------------------------------------------------------------


def list_images(path: str | Path) -> list[Path]:
    """The image files below a folder, sorted; a clear error when there are none."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"data_dir {str(root)!r} is not a folder; set data_dir to a folder of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    return files


def folder_classes(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """(label of every image below ``path``, in ``list_images`` order; the class names): the
    class of an image is the sub-folder of ``path`` it lies in (``cats/a.png`` is class
    ``cats``), classes in sorted order. One line when an image lies outside every class folder."""
    root = Path(path).expanduser()
    files = list_images(root)
    names = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
    loose = [f for f in files if len(f.relative_to(root).parts) == 1]
    if not names or loose:
        where = f" ({loose[0].name} lies in {root} itself)" if loose else ""
        raise DataError(f"cond=class needs a folder of class sub-folders (data_dir/CLASS/image.png){where}")
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[f.relative_to(root).parts[0]] for f in files], dtype=np.int64), names


def load_folder(path: str | Path, size: int, channels: int) -> np.ndarray:
    """Every image below ``path``, centre-cropped to a square, resized, gray or RGB:
    (N, C, size, size) uint8."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    files = list_images(path)
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files), size, size, channels), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = ImageOps.fit(im.convert(mode), (size, size), Image.Resampling.BICUBIC)
                out[i] = np.asarray(im).reshape(size, size, channels)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot read image {f}: {e}; remove it or convert it") from None
    return out.transpose(0, 3, 1, 2).copy()


# ---- availability ------------------------------------------------------------------------


def check_available(cfg: RunConfig) -> None:
    """Raise DataError now if a run's data cannot be had, before anything is recorded.
    Fashion-MNIST that is not on disk passes: torchvision may still download it."""
    if cfg.dataset == "mnist" and not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        raise DataError(f"the MNIST files are missing from {MNIST_DIR}; reinstall ddpm-tui")
    if cfg.dataset == "seq":
        from core.sequences import check_shape, read_sequences

        check_shape(read_sequences(cfg.data_dir), cfg)
    if cfg.dataset == "folder":
        list_images(cfg.data_dir)
        if cfg.cond == "class":
            _, names = folder_classes(cfg.data_dir)
            if len(names) != cfg.num_classes:
                raise DataError(f"num_classes: the folder has {len(names)} class sub-folders; set num_classes={len(names)}")
