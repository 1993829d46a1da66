"""``python -m core.sample_job``, run as the dashboard runs it: a real child process drawing
from a real checkpoint of a tiny smoke run."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import preset
from core.data import TensorDataset, load_dataset
from core.generate import draw
from core.sampling_spec import SamplingSpec
from core.train import Trainer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A two-step smoke run's checkpoint (T = 50)."""
    full = load_dataset(preset("smoke"))
    digits = TensorDataset(full.data[:64].clone(), full.labels[:64].clone())
    folder = tmp_path_factory.mktemp("run")
    cfg = preset("smoke", {"steps": 2, "log_every": 1, "sample_every": 0, "checkpoint_every": 0})
    Trainer(cfg, device="cpu", run_dir=folder, dataset=digits).run()
    return folder / "step-00000002.pt"


@pytest.fixture(scope="module")
def cond_checkpoint(tmp_path_factory) -> Path:
    """A two-step class-conditional smoke run's checkpoint (its own guidance 1.5)."""
    full = load_dataset(preset("smoke"))
    digits = TensorDataset(full.data[:64].clone(), full.labels[:64].clone())
    folder = tmp_path_factory.mktemp("cond")
    cfg = preset(
        "smoke",
        {"cond": "class", "guidance": 1.5, "steps": 2, "log_every": 1, "sample_every": 0, "checkpoint_every": 0},
    )
    Trainer(cfg, device="cpu", run_dir=folder, dataset=digits).run()
    return folder / "step-00000002.pt"


def job(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.sample_job", *args], capture_output=True, text=True, cwd=ROOT, timeout=120, **kw
    )


def test_the_job_writes_what_draw_draws(checkpoint, tmp_path):
    out = tmp_path / "s.npz"
    args = ["--n", "3", "--sampler", "ddim", "--steps", "4", "--eta", "0.5", "--seed", "7", "--device", "cpu"]
    res = job(
        "--checkpoint", str(checkpoint), *args, "--frames", "4", "--threads", str(torch.get_num_threads()), "--out", str(out)
    )
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]  # written atomically: no temp file left
    here = draw(checkpoint, 3, SamplingSpec("ddim", 4, 0.5), seed=7, device="cpu", trajectory_frames=4)
    with np.load(out, allow_pickle=False) as z:
        assert np.array_equal(z["data"], here.data) and z["data"].dtype == np.uint8
        assert np.array_equal(z["frames"], np.stack(here.frames)) and z["frames"].shape == (4, 3, 1, 28, 28)
        assert z["timesteps"].tolist() == here.timesteps
        assert np.array_equal(z["start"], here.start) and z["start"].shape == (3, 1, 28, 28)  # x_T, for the panels
        assert int(z["step"]) == 2 and str(z["label"]) == "ddim-4 eta 0.5" and str(z["device"]) == "cpu"
        assert float(z["seconds"]) > 0


def test_the_job_draws_under_the_eta_window_it_is_given(checkpoint, tmp_path):
    """--eta-window reaches draw and the file's label names it; without it the job draws
    without a window, as the spec it was handed says."""
    out = tmp_path / "s.npz"
    args = ["--checkpoint", str(checkpoint), "--n", "3", "--sampler", "ddim", "--steps", "4", "--eta", "1.8", "--seed", "7"]
    res = job(*args, "--device", "cpu", "--eta-window", "0.5", "--out", str(out))
    assert res.returncode == 0 and res.stderr == "", res.stderr
    here = draw(checkpoint, 3, SamplingSpec("ddim", 4, 1.8, eta_window=0.5), seed=7, device="cpu")
    plain = draw(checkpoint, 3, SamplingSpec("ddim", 4, 1.8), seed=7, device="cpu")
    with np.load(out, allow_pickle=False) as z:
        assert np.array_equal(z["data"], here.data) and not np.array_equal(z["data"], plain.data)
        assert str(z["label"]) == "ddim-4 eta 1.8 window 0.5"


def test_the_job_draws_the_classes_and_guidance_asked_for(cond_checkpoint, tmp_path):
    """--class (repeatable) and --guidance reach draw; the file says each sample's class."""
    out = tmp_path / "s.npz"
    args = ["--n", "4", "--sampler", "dpmpp2m", "--steps", "3", "--eta", "0", "--seed", "3", "--device", "cpu"]
    res = job("--checkpoint", str(cond_checkpoint), *args, "--guidance", "2", "--class", "3", "--class", "5", "--out", str(out))
    assert res.returncode == 0 and res.stderr == "", res.stderr
    here = draw(cond_checkpoint, 4, SamplingSpec("dpmpp2m", 3, 0.0, 2.0), seed=3, device="cpu", classes=[3, 5])
    with np.load(out, allow_pickle=False) as z:
        assert np.array_equal(z["data"], here.data)
        assert z["labels"].tolist() == [3, 3, 5, 5] and str(z["label"]) == "dpmpp2m-3 w 2"
    other = draw(cond_checkpoint, 4, SamplingSpec("dpmpp2m", 3, 0.0, 1.0), seed=3, device="cpu", classes=[3, 5])
    assert not np.array_equal(other.data, here.data)  # the guidance was used, not the run's 1.5 nor 1


def test_without_classes_or_guidance_a_conditional_job_draws_every_class_at_the_runs_guidance(cond_checkpoint, tmp_path):
    """What a caller of the older protocol gets: the run's own guidance, all classes in turn."""
    out = tmp_path / "s.npz"
    res = job("--checkpoint", str(cond_checkpoint), "--n", "10", "--sampler", "ddim", "--steps", "2", "--eta", "0",
              "--device", "cpu", "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    with np.load(out, allow_pickle=False) as z:
        assert z["labels"].tolist() == list(range(10)) and str(z["label"]) == "ddim-2 eta 0 w 1.5"


def test_an_unconditional_job_records_no_labels_and_refuses_classes_and_guidance(checkpoint, tmp_path):
    out = tmp_path / "s.npz"
    base = ["--checkpoint", str(checkpoint), "--n", "2", "--sampler", "ddim", "--steps", "2", "--eta", "0", "--device", "cpu"]
    assert job(*base, "--out", str(out)).returncode == 0
    with np.load(out, allow_pickle=False) as z:
        assert z["labels"].shape == (0,)
    out.unlink()
    for extra, words in ((["--guidance", "2"], "guidance: this run is unconditional"), (["--class", "3"], "unconditional")):
        res = job(*base, *extra, "--out", str(out))
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1 and words in lines[0], res.stderr
        assert not out.exists()


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("damaged", "is corrupt or unreadable"),
        ("steps", "steps: 500 is out of range; the run has T=50"),
        ("ddpm-steps", "the ddpm sampler always takes T=50 steps"),
        ("device", "device 'tpu' is not one of"),
    ],
)
def test_a_problem_the_user_can_fix_is_one_error_line(checkpoint, tmp_path, case, message):
    path = tmp_path / "gone.pt" if case == "missing" else checkpoint
    if case == "damaged":
        path = tmp_path / "bad.pt"
        path.write_bytes(checkpoint.read_bytes()[:1000])
    sampler, steps = ("ddpm", "10") if case == "ddpm-steps" else ("ddim", "500" if case == "steps" else "5")
    out = tmp_path / "s.npz"
    res = job(
        "--checkpoint", str(path), "--n", "2", "--sampler", sampler, "--steps", steps, "--eta", "1.0",
        "--device", "tpu" if case == "device" else "cpu", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (one not ours may wait for its reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_job_ends_when_its_parent_dies(checkpoint, tmp_path):
    """A dashboard killed outright leaves no sampler behind: the job watches its parent."""
    long = f"--n 1024 --sampler ddpm --steps 50 --eta 1 --threads 1 --out {tmp_path / 's.npz'}"
    script = f"{sys.executable} -m core.sample_job --checkpoint {checkpoint} {long} --parent $$ >/dev/null 2>&1 & echo $!"
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    pid = int(res.stdout.strip())  # the shell has exited: the job is an orphan now
    deadline = time.monotonic() + 60
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)
    assert not (tmp_path / "s.npz").exists()
