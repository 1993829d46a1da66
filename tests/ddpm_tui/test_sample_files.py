"""Sample files: the numpy grid against torchvision's make_grid, and what lands on disk."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import make_grid

from ddpm_tui.sample_files import image_grid, write_samples

ROOT = Path(__file__).resolve().parents[2]


def _batch(n: int, c: int, h: int = 5, w: int = 4, seed: int = 0) -> np.ndarray:
    # 1..255, never 0: a misplaced image or a missing gap shows against the 0 padding
    return np.random.default_rng(seed).integers(1, 256, size=(n, c, h, w), dtype=np.uint8)


def _make_grid(images: np.ndarray) -> np.ndarray:
    """What the PNG writer used to do: torchvision's grid, as an (H, W) or (H, W, C) array."""
    grid = make_grid(torch.from_numpy(images), nrow=math.ceil(math.sqrt(len(images))), padding=2).permute(1, 2, 0).numpy()
    return grid[:, :, 0] if images.shape[1] == 1 else grid


@pytest.mark.parametrize("c", [1, 3], ids=["gray", "rgb"])
@pytest.mark.parametrize("n", [1, 2, 4, 7, 10])
def test_image_grid_is_make_grid(n, c):
    images = _batch(n, c)
    ours, theirs = image_grid(images), _make_grid(images)
    assert ours.dtype == np.uint8
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_image_grid_layout():
    """Seven 5x4 images: three per row, three rows, 2 pixels of 0 around each."""
    grid = image_grid(_batch(7, 1))
    assert grid.shape == (3 * (5 + 2) + 2, 3 * (4 + 2) + 2)
    assert (grid[:2] == 0).all() and (grid[:, :2] == 0).all()
    assert (grid[2:7, 2:6] == _batch(7, 1)[0, 0]).all()
    assert (grid[16:21, 8:] == 0).all()  # the last row's two empty places


@pytest.mark.parametrize(("c", "mode"), [(1, "L"), (3, "RGB")])
def test_png_holds_the_grid(tmp_path, c, mode):
    images = _batch(6, c, 28, 28, seed=1)
    out = tmp_path / "s.png"
    write_samples(out, images)
    with Image.open(out) as img:
        assert img.mode == mode
        np.testing.assert_array_equal(np.asarray(img), _make_grid(images))


def test_npy_drops_the_gray_channel_and_points_stay_float(tmp_path):
    write_samples(tmp_path / "g.npy", _batch(3, 1))
    assert np.load(tmp_path / "g.npy").shape == (3, 5, 4)
    write_samples(tmp_path / "c.npy", _batch(3, 3))
    assert np.load(tmp_path / "c.npy").shape == (3, 3, 5, 4)
    points = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    write_samples(tmp_path / "p.npy", points)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), points)
    write_samples(tmp_path / "p.png", points)
    with Image.open(tmp_path / "p.png") as img:
        assert img.size == (512, 512) and img.mode == "L"


def test_sequences_stay_float_in_npy_and_are_line_plots_in_png(tmp_path):
    seqs = (100 + np.random.default_rng(0).normal(size=(3, 2, 40))).astype(np.float32)
    write_samples(tmp_path / "s.npy", seqs)
    got = np.load(tmp_path / "s.npy")
    assert got.dtype == np.float32 and got.shape == (3, 2, 40)
    np.testing.assert_array_equal(got, seqs)
    write_samples(tmp_path / "s.png", seqs)
    with Image.open(tmp_path / "s.png") as img:
        pixels = np.asarray(img)
        assert img.mode == "L" and img.size == (640, 320)
        assert (pixels[:160] < 200).any() and (pixels[160:] < 200).any()  # a line in each channel's panel


def test_saving_a_png_does_not_import_torch(tmp_path):
    """The dashboard saves through this module: it must not load torch to write a file."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from ddpm_tui.sample_files import write_samples\n"
        f"write_samples(Path({str(tmp_path / 's.png')!r}), np.zeros((4, 1, 28, 28), np.uint8))\n"
        "print('torch', 'torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "torch False"
    assert (tmp_path / "s.png").exists()


@pytest.mark.parametrize("n, per_row", [(20, 2), (9, 3), (6, 6)])
def test_a_conditional_grid_puts_one_class_a_row_as_make_grid_with_nrow(n, per_row, tmp_path):
    images = _batch(n, 1)
    theirs = make_grid(torch.from_numpy(images), nrow=per_row, padding=2).permute(1, 2, 0).numpy()[:, :, 0]
    np.testing.assert_array_equal(image_grid(images, per_row=per_row), theirs)
    out = tmp_path / "grid.png"
    write_samples(out, images, per_row=per_row)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), theirs)
