import gzip
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core import sources
from core.config import ConfigError, preset
from core.data import BatchOrder, check_fits, distance_to_s_curve, flip_some, load_dataset, make_s_curve, to_model_range, to_uint8
from core.sources import DataError, load_fashion_mnist, load_folder, load_mnist, read_idx

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_mnist_is_the_official_dataset():
    x, y = load_mnist("train")
    xt, yt = load_mnist("test")
    assert x.shape == (60_000, 28, 28) and x.dtype == np.uint8
    assert xt.shape == (10_000, 28, 28)
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the well-known first labels


def test_mnist_dataset_is_one_uint8_tensor_and_batches_are_in_range():
    ds = load_dataset(preset("smoke"))
    assert ds.data.shape == (60_000, 1, 28, 28) and ds.data.dtype == torch.uint8
    batch = ds.gather(torch.tensor([0, 1, 2]))
    assert batch.dtype == torch.float32 and batch.min() >= -1 and batch.max() <= 1
    assert torch.equal(to_uint8(batch), ds.data[:3])


def test_uint8_range_round_trip():
    x = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(to_model_range(x)), x)


def write_idx(path: Path, arr: np.ndarray, truncate: int = 0) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    body = arr.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + body[: len(body) - truncate])


def test_idx_reader_rejects_truncated_and_foreign_files(tmp_path):
    good = tmp_path / "good.gz"
    write_idx(good, np.arange(24).reshape(2, 3, 4))
    assert read_idx(good).tolist() == np.arange(24).reshape(2, 3, 4).tolist()
    short = tmp_path / "short.gz"
    write_idx(short, np.zeros((2, 3, 4)), truncate=5)
    with pytest.raises(DataError, match="truncated"):
        read_idx(short)
    other = tmp_path / "other"
    other.write_bytes(b"PNG not an idx file")
    with pytest.raises(DataError, match="not an idx file"):
        read_idx(other)


def test_fashion_mnist_found_in_a_system_folder(tmp_path, monkeypatch):
    for prefix, n in (("train", 6), ("t10k", 2)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.full((n, 28, 28), 7))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    monkeypatch.setattr(sources, "FASHION_SYSTEM_DIR", tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    x, y = load_fashion_mnist("train", download=False)
    assert x.shape == (6, 28, 28) and y.tolist() == [0, 1, 2, 3, 4, 5]


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "FASHION_SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_fashion_mnist("train", download=False)


def test_image_folder_gray_and_rgb(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("L", (10, 10), 128).save(tmp_path / "sub" / "b.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    rgb = load_folder(tmp_path, 16, 3)
    assert rgb.shape == (2, 3, 16, 16) and rgb.dtype == np.uint8
    assert rgb[0, 0].min() == 255 and rgb[0, 1].max() == 0  # red stays red
    gray = load_folder(tmp_path, 8, 1)
    assert gray.shape == (2, 1, 8, 8)
    cfg = preset("folder", {"data_dir": str(tmp_path), "image_size": 16, "batch_size": 2})
    assert load_dataset(cfg).data.shape == (2, 3, 16, 16)
    # image_mode names how the folder is read, and the channels with it
    gray_cfg = preset("folder", {"data_dir": str(tmp_path), "image_size": 16, "batch_size": 2, "image_mode": "l"})
    assert gray_cfg.image_channels == 1
    red = load_dataset(gray_cfg).data[0, 0]
    assert red.shape == (16, 16) and int(red[0, 0]) == 76  # ITU-R 601 luma of pure red: 255 * 299 / 1000
    rgb_cfg = preset("folder", {"data_dir": str(tmp_path), "image_size": 16, "batch_size": 2, "image_mode": "rgb"})
    assert load_dataset(rgb_cfg).data.shape == (2, 3, 16, 16)


def test_flip_some_mirrors_exactly_the_chosen_images():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3)
    out = flip_some(x, torch.tensor([True, False]))
    assert out[0, 0].tolist() == [[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]
    assert torch.equal(out[1], x[1])


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        load_folder(tmp_path / "missing", 16, 1)
    with pytest.raises(DataError, match="no images"):
        load_folder(tmp_path, 16, 1)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="cannot read image"):
        load_folder(tmp_path, 16, 1)


def test_s_curve_points_lie_on_the_curve():
    pts = make_s_curve(2000, seed=0, noise=0.0)
    assert pts.shape == (2000, 2) and pts.abs().max() <= 1.0 + 1e-6
    assert distance_to_s_curve(pts).max() < 0.01
    noise = torch.randn(2000, 2)
    assert distance_to_s_curve(noise).mean() > 0.3


def _torch_s_curve(n: int, seed: int) -> torch.Tensor:
    """core/data.py's make_s_curve as it was, all in torch (commit 1c9ce0a), for comparison."""
    g = torch.Generator().manual_seed(seed)
    t = 3 * math.pi * (torch.rand(n, generator=g, dtype=torch.float64) - 0.5)
    pts = torch.stack([torch.sin(t), torch.sign(t) * (torch.cos(t) - 1) / 2], dim=-1)
    return (pts + 0.02 * torch.randn(pts.shape, generator=g, dtype=torch.float64)).float()


def test_the_s_curve_sets_are_the_same_points_since_the_formula_moved_to_numpy():
    """The formula moved to core.sources (numpy) so the dashboard can draw it without torch;
    the training and test sets, and evaluation's references, must not change by one bit."""
    cfg = preset("scurve")
    assert torch.equal(load_dataset(cfg, "train").data, _torch_s_curve(20_000, 0))
    assert torch.equal(load_dataset(cfg, "test").data, _torch_s_curve(20_000, 1))
    assert torch.equal(make_s_curve(2000, seed=10_005), _torch_s_curve(2000, 10_005))


def test_the_dashboards_s_curve_needs_no_torch_and_lies_on_the_curve():
    code = (
        "import sys\n"
        "from core.sources import s_curve_preview\n"
        "p = s_curve_preview(512, seed=0)\n"
        "print(p.shape, p.dtype, 'torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(512, 2) float64 False"
    on = sources.s_curve_preview(2000, seed=3, noise=0.0)
    assert distance_to_s_curve(torch.from_numpy(on)).max() < 0.01
    noisy = torch.from_numpy(sources.s_curve_preview(2000, seed=3))
    assert 0.005 < distance_to_s_curve(noisy).mean() < 0.03  # the training set's 0.02 noise around the curve


def test_batch_order_is_a_fresh_permutation_each_epoch_and_stateless():
    order = BatchOrder(n=10, batch_size=4, seed=7)
    seen = torch.cat([order.indices(k) for k in range(5)])  # 20 = two epochs
    assert sorted(seen[:10].tolist()) == list(range(10))
    assert sorted(seen[10:].tolist()) == list(range(10))
    assert not torch.equal(seen[:10], seen[10:])
    fresh = BatchOrder(n=10, batch_size=4, seed=7)
    assert torch.equal(fresh.indices(3), order.indices(3))  # batch k needs no history
    assert not torch.equal(BatchOrder(10, 4, seed=8).indices(0), order.indices(0))


def test_batch_larger_than_dataset_is_rejected():
    cfg = preset("smoke", {"batch_size": 64})
    check_fits(cfg, 64)
    with pytest.raises(ConfigError, match="larger than the dataset"):
        check_fits(cfg, 10)


def test_a_dataset_lives_on_the_device_only_when_half_the_free_memory_holds_it():
    from core.data import fits_on_device

    mnist = 47_040_000 + 480_000
    assert fits_on_device(mnist, free=8 << 30)
    assert not fits_on_device(8 << 30, free=12 << 30)  # 10,000 RGB 512x512 images on a 12 GB card
    assert fits_on_device(6 << 30, free=12 << 30) and not fits_on_device((6 << 30) + 1, free=12 << 30)


def test_host_batches_gather_what_the_device_copy_would():
    """A dataset kept on the host: batches staged through two alternating buffers read the
    same images as an index gather on a device copy, batch after batch."""
    from core.data import HostBatches, TensorDataset

    ds = TensorDataset(torch.randint(0, 256, (100, 1, 4, 4), dtype=torch.uint8))
    staged = HostBatches(ds, batch=8, device=torch.device("cpu"))
    order = BatchOrder(100, 8, seed=3)
    batches = [staged.gather(order.indices(k)) for k in range(30)]
    assert all(torch.equal(b, ds.gather(order.indices(k))) for k, b in enumerate(batches))
    assert not batches[0].data_ptr() == batches[1].data_ptr()  # the next gather did not overwrite the last batch
