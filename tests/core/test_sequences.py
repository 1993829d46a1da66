"""1-D sequences: the sines, files read and scaled, the 1-D U-Net, training, sampling, resume
and judging of a smoke-sized sequence run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.config import ConfigError, preset
from core.data import load_dataset
from core.evaluate import evaluate
from core.generate import draw
from core.models import build_model
from core.sampling_spec import resolve_spec
from core.sequences import (
    SeqDataError,
    SeqScale,
    amplitude,
    load_sequences,
    peak_frequency,
    read_sequences,
    sines,
    wasserstein_1d,
)
from core.sources import check_available
from core.train import Evaluated, Samples, Trainer


def tiny(**over):
    """A smoke-sized sines run: 2 channels x 32 steps, an 8-wide 1-D U-Net of two levels."""
    base = {"dataset": "sines", "model": "unet1d", "seq_length": 32, "seq_channels": 2, "steps": 12, "log_every": 3,
            "sample_every": 0, "checkpoint_every": 0, "eval_n": 64, "sample_steps": 5}  # fmt: skip
    base.update(over)
    return preset("smoke", base)


# ---- the model and the config ----------------------------------------------------------


@pytest.mark.parametrize(("length", "mult"), [(37, (1,)), (5, (1,)), (100, (1, 2, 2)), (64, (1, 2, 2, 2)), (12, (1, 2))])
def test_the_1d_unet_keeps_the_shape_of_any_length_its_levels_can_halve(length, mult):
    cfg = tiny(seq_length=length, channel_mult=mult, seq_channels=3, attn_resolutions=(length,))
    net = build_model(cfg)
    x = torch.randn(2, 3, length)
    out = net(x, torch.tensor([0, 49]))
    assert out.shape == (2, 3, length)
    assert torch.equal(out, torch.zeros_like(out))  # the zero-initialised output convolution, as in 2-D


def test_lengths_the_levels_cannot_halve_are_refused_in_one_line():
    with pytest.raises(ConfigError) as e:
        tiny(seq_length=100, channel_mult=(1, 2, 2, 2))
    assert str(e.value) == "seq_length 100 cannot be halved 3 times (channel_mult has 4 levels); use a multiple of 8"
    with pytest.raises(ConfigError) as e:
        tiny(model="unet")
    assert str(e.value) == "model: sines is 1-D sequences; use model=unet1d"
    with pytest.raises(ConfigError) as e:
        preset("smoke", {"model": "unet1d"})
    assert "unet1d is for 1-D sequences" in str(e.value)
    with pytest.raises(ConfigError) as e:
        tiny(dataset="seq")
    assert str(e.value).startswith("data_dir: dataset=seq needs data_dir=PATH")
    with pytest.raises(ConfigError) as e:
        tiny(cond="class")
    assert str(e.value) == "cond: the sines dataset has no classes; leave cond=none"


# ---- data --------------------------------------------------------------------------------


def test_sines_are_a_pure_function_of_their_seed_and_lie_in_minus_one_to_one():
    a, b, c = sines(200, 3, 64, seed=0), sines(200, 3, 64, seed=0), sines(200, 3, 64, seed=1)
    assert a.shape == (200, 3, 64) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= -1 and a.max() <= 1 and a.max() > 0.9
    data = load_sequences(tiny())
    assert data.train.shape == (8000, 2, 32) and data.held_out.shape == (2000, 2, 32)
    assert not np.array_equal(data.train[:2000], data.held_out)
    assert data.scale == SeqScale.identity(2)
    ds = load_dataset(tiny())
    assert ds.data.dtype == torch.float32 and ds.scale == data.scale and ds.data.abs().max() <= 1


def test_features_read_a_sines_frequency_and_amplitude():
    t = np.arange(128) / 128
    x = np.stack([0.5 * np.sin(2 * math.pi * 3.3 * t + 1.0), 2.0 * np.sin(2 * math.pi * 5 * t)])[None]
    assert np.allclose(peak_frequency(x), [3.3, 5.0], atol=0.05)
    assert np.allclose(amplitude(x), [0.5, 2.0], rtol=0.03)
    assert wasserstein_1d([0, 1, 2], [0, 1, 2]) == 0 and wasserstein_1d([0, 0], [1, 1, 1]) == pytest.approx(1.0)


def ranged(n: int, length: int = 16, seed: int = 0) -> np.ndarray:
    """Two channels far from [-1, 1]: one in [100, 300], one in [-5, -1]."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(100, 300, (n, length)), rng.uniform(-5, -1, (n, length))], axis=1).astype(np.float32)


def test_seq_from_a_npy_file_is_scaled_per_channel_and_back(tmp_path):
    x = ranged(20)
    np.save(tmp_path / "x.npy", x)
    cfg = tiny(dataset="seq", data_dir=str(tmp_path / "x.npy"), seq_length=16)
    data = load_sequences(cfg)
    assert data.train.shape == (18, 2, 16) and np.array_equal(data.held_out, x[18:])  # the last tenth is held out
    scaled = data.scale.to_model(data.train)
    assert np.allclose(scaled.min(axis=(0, 2)), -1) and np.allclose(scaled.max(axis=(0, 2)), 1)
    assert np.allclose(data.scale.to_original(scaled), data.train, rtol=1e-5, atol=1e-4)
    assert SeqScale.from_dict(data.scale.as_dict()) == data.scale
    with pytest.raises(SeqDataError) as e:
        check_available(tiny(dataset="seq", data_dir=str(tmp_path / "x.npy"), seq_length=32))
    assert str(e.value) == (
        "data_dir: the sequences are 2 channels x 16 steps but the run asks for 2 x 32; set seq_channels=2 seq_length=16"
    )


def test_seq_from_a_folder_of_npy_and_csv_files(tmp_path):
    x = ranged(4, length=8)
    np.save(tmp_path / "a.npy", x[0])
    np.save(tmp_path / "b.npy", x[1])
    (tmp_path / "c.csv").write_text("volts,amps\n" + "\n".join(f"{u},{v}" for u, v in x[2].T) + "\n")
    (tmp_path / "d.csv").write_text("\n".join(f"{u},{v}" for u, v in x[3].T))
    (tmp_path / "notes.txt").write_text("not a sequence")
    got = read_sequences(tmp_path)
    assert got.shape == (4, 2, 8) and np.allclose(got, x, rtol=1e-6)
    one = tmp_path / "one"
    one.mkdir()
    for i in range(3):
        np.save(one / f"{i}.npy", np.arange(8.0) + i)
    assert read_sequences(one).shape == (3, 1, 8)
    np.save(one / "3.npy", np.arange(9.0))
    with pytest.raises(
        SeqDataError, match=r"^3.npy is 1 channels x 9 steps but 0.npy is 1 x 8; every sequence must have one shape$"
    ):
        read_sequences(one)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "a.npy", np.array([1.0, np.nan]))
    np.save(bad / "b.npy", np.array([1.0, 2.0]))
    with pytest.raises(SeqDataError, match="a.npy in .* holds NaN or infinite values"):
        read_sequences(bad)
    with pytest.raises(SeqDataError, match="neither a .npy file nor a folder"):
        read_sequences(tmp_path / "missing")


# ---- training, sampling, resume, judging ---------------------------------------------------


def test_a_sines_run_trains_samples_with_every_sampler_resumes_exactly_and_is_judged(tmp_path):
    cfg = tiny(checkpoint_every=6, sample_every=6, eval_every=12)
    events = []
    one = Trainer(cfg, device="cpu", run_dir=tmp_path / "one", on_event=events.append)
    assert one.run() == "completed"
    losses = [e.values["loss"] for e in events if hasattr(e, "values")]
    assert losses and all(math.isfinite(v) and v > 0 for v in losses)
    grids = [e for e in events if isinstance(e, Samples)]
    assert grids[-1].data.shape == (4, 2, 32) and grids[-1].data.dtype == np.float32
    (ev,) = [e for e in events if isinstance(e, Evaluated)]
    assert set(ev.figures) == set(ev.floor) == {"swd", "freq_w1", "amp_w1"}
    assert all(math.isfinite(v) and v >= 0 for v in [*ev.figures.values(), *ev.floor.values()])
    assert ev.floor["swd"] < ev.figures["swd"]  # 12 steps draw noise, not sines

    for sampler in ("ddpm", "ddim", "dpmpp2m"):
        res = one.sample(3, resolve_spec(cfg, sampler, 5 if sampler != "ddpm" else None))
        assert res.x.shape == (3, 2, 32) and torch.isfinite(res.x).all()

    first = Trainer(cfg, device="cpu", run_dir=tmp_path / "two", should_stop=lambda: first.step >= 6)
    assert first.run() == "stopped"
    torch.manual_seed(99)
    second = Trainer.resume(tmp_path / "two" / "step-00000006.pt", device="cpu", run_dir=tmp_path / "two")
    assert second.run() == "completed"
    a, b = one.ema.state_dict(), second.ema.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_seq_run_samples_and_judges_in_the_datas_own_units(tmp_path):
    np.save(tmp_path / "x.npy", ranged(40, length=16))
    cfg = tiny(dataset="seq", data_dir=str(tmp_path / "x.npy"), seq_length=16, batch_size=8)
    trainer = Trainer(cfg, device="cpu", run_dir=tmp_path / "run")
    trainer.run()
    state = torch.load(tmp_path / "run" / "step-00000012.pt", weights_only=True)
    lo, hi = state["data_scale"]["lo"], state["data_scale"]["hi"]
    assert 100 <= lo[0] < hi[0] <= 300 and -5 <= lo[1] < hi[1] <= -1
    drawn = draw(tmp_path / "run" / "step-00000012.pt", 6, resolve_spec(cfg), device="cpu")
    x = drawn.data
    assert x.shape == (6, 2, 16) and x.dtype == np.float32
    # clip_x0 keeps the last step's x0 in [-1, 1]: in the data's units, inside its range
    assert (x[:, 0] >= lo[0] - 1e-3).all() and (x[:, 0] <= hi[0] + 1e-3).all()
    assert (x[:, 1] >= lo[1] - 1e-3).all() and (x[:, 1] <= hi[1] + 1e-3).all()
    ev = evaluate(x, "seq", config=cfg)
    assert set(ev.figures) == set(ev.floor) == {"swd"} and ev.figures["swd"] > 0
