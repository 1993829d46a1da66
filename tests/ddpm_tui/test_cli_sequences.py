"""1-D sequence runs through the CLI: run, show, sample --out, eval, and refusals."""

from __future__ import annotations

import numpy as np

from tests.ddpm_tui.conftest import error_line

# A sines run of seconds: 2 channels x 32 steps, an 8-wide 1-D U-Net of two levels.
TINY = ["--preset", "sines"] + [
    a
    for kv in (
        "steps=6",
        "log_every=3",
        "sample_every=0",
        "checkpoint_every=0",
        "seq_length=32",
        "channels=8",
        "channel_mult=1,2",
        "num_res_blocks=1",
        "T=50",
        "sample_steps=5",
        "batch_size=16",
        "eval_n=32",
    )  # fmt: skip
    for a in ("--set", kv)
]


def braille(text: str) -> bool:
    return any(0x2800 < ord(ch) <= 0x28FF for ch in text)


def test_a_sines_run_is_drawn_sampled_to_npy_and_judged(cli, tmp_path):
    res = cli("run", *TINY, "--eval-every", "6")
    assert res.exit_code == 0, res.output
    assert "completed" in res.stdout and "channel 0" in res.stdout and braille(res.stdout)
    with cli.store() as s:
        grid = s.latest_samples(1)
        assert grid.data.shape == (8, 2, 32) and grid.data.dtype == np.float32
        (ev,) = s.evals(1)
        assert set(ev["figures"]) == set(ev["floor"]) == {"swd", "freq_w1", "amp_w1"}
    shown = cli("show", "1", "--art", "ascii")
    assert shown.exit_code == 0, shown.output
    assert "channel 0" in shown.stdout and "channel 1" in shown.stdout and braille(shown.stdout)
    out = tmp_path / "x.npy"
    res = cli("sample", "1", "--n", "5", "--steps", "4", "--out", str(out))
    assert res.exit_code == 0, res.output
    x = np.load(out)
    assert x.shape == (5, 2, 32) and x.dtype == np.float32 and np.isfinite(x).all()
    judged = cli.json("eval", "1", "--n", "16", "--steps", "4")
    assert set(judged["figures"]) == {"swd", "freq_w1", "amp_w1"} and judged["floor"]["swd"] > 0


def test_a_seq_run_reads_your_file_and_samples_in_its_units(cli, tmp_path):
    rng = np.random.default_rng(0)
    data = np.stack([rng.uniform(1000, 2000, (30, 32)), rng.uniform(-3, 3, (30, 32))], axis=1).astype(np.float32)
    np.save(tmp_path / "mine.npy", data)
    res = cli("run", *TINY, "--set", "dataset=seq", "--set", f"data_dir={tmp_path / 'mine.npy'}")
    assert res.exit_code == 0, res.output
    out = tmp_path / "s.npy"
    assert cli("sample", "1", "--n", "4", "--steps", "4", "--out", str(out)).exit_code == 0
    x = np.load(out)
    assert x.shape == (4, 2, 32) and 990 < x[:, 0].min() and x[:, 0].max() < 2010 and np.abs(x[:, 1]).max() < 3.1


def test_sequence_runs_refuse_bad_input_in_one_line(cli, tmp_path):
    res = cli("run", *TINY, "--set", "seq_length=100", "--set", "channel_mult=1,2,2,2")
    assert res.exit_code == 1
    assert error_line(res) == "error: seq_length 100 cannot be halved 3 times (channel_mult has 4 levels); use a multiple of 8"
    np.save(tmp_path / "x.npy", np.zeros((10, 3, 16), np.float32))
    res = cli("run", *TINY, "--set", "dataset=seq", "--set", f"data_dir={tmp_path / 'x.npy'}")
    assert res.exit_code == 1 and "set seq_channels=3 seq_length=16" in error_line(res)
    assert cli.json("ls") == []
