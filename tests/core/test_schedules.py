import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.schedules import SCHEDULES, make_betas

ROOT = Path(__file__).resolve().parents[2]


# sigmoid-beta has fixed end points (the S-curve toy's), so it is not meant to end in noise.
@pytest.mark.parametrize("name", [s for s in SCHEDULES if s != "sigmoid-beta"])
@pytest.mark.parametrize("T", [10, 100, 1000])
def test_schedule_is_a_valid_noise_chain(name, T):
    betas = make_betas(name, T)
    assert betas.shape == (T,) and betas.dtype == np.float64
    assert (betas > 0).all() and (betas < 1).all()
    abar = np.cumprod(1 - betas)
    assert (abar[1:] < abar[:-1]).all(), "abar must fall strictly"
    assert abar[0] > 0.95, "the first step adds little noise"
    assert abar[-1] < 0.01, "the last step is (nearly) pure noise"


def test_linear_schedule_scales_with_T():
    # 1000/T scaling: a short chain ends as noisy as the standard 1000-step one.
    long = np.cumprod(1 - make_betas("linear", 1000))[-1]
    short = np.cumprod(1 - make_betas("linear", 250))[-1]
    assert long < 1e-4 and short < 1e-4
    assert make_betas("linear", 1000)[0].item() == pytest.approx(1e-4)
    assert make_betas("linear", 1000)[-1].item() == pytest.approx(0.02)
    assert make_betas("linear", 500)[-1].item() == pytest.approx(0.04)


def test_cosine_matches_its_closed_form():
    T, s = 1000, 0.008
    abar = np.cumprod(1 - make_betas("cosine", T))
    t = np.arange(1, T + 1, dtype=np.float64) / T
    f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2 / np.cos(s / (1 + s) * np.pi / 2) ** 2
    # equal until the 0.999 beta clip bites at the very end
    assert np.allclose(abar[:-5], f[:-5], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("T", [1, 10, 100, 1000])
def test_sigmoid_beta_is_the_written_out_formula(T):
    # sigmoid(linspace(-6, 6, T)) * (5e-3 - 1e-5) + 1e-5, exactly, in float64
    x = np.linspace(-6.0, 6.0, T)
    want = 1.0 / (1.0 + np.exp(-x)) * (5e-3 - 1e-5) + 1e-5
    got = make_betas("sigmoid-beta", T)
    assert got.dtype == np.float64 and np.array_equal(got, want)
    # a sigmoid on beta, not on abar: it is not the existing sigmoid schedule
    assert not np.allclose(got, make_betas("sigmoid", T)) or T == 1


def test_unknown_schedule_and_bad_T_are_rejected():
    with pytest.raises(ValueError, match="linear, cosine, quadratic, sigmoid"):
        make_betas("exponential", 100)
    with pytest.raises(ValueError, match="at least 1"):
        make_betas("linear", 0)


# ---- the torch formulas the schedules were computed with until they moved to numpy -------


def _torch_betas(name: str, T: int) -> torch.Tensor:
    """core/schedules.py as it was in torch (commit 1c9ce0a), for comparison."""
    if name == "sigmoid-beta":  # new with the scurve-seed preset: the toy's torch formula
        return torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64)) * (5e-3 - 1e-5) + 1e-5
    scale = 1000.0 / T
    start, end = scale * 1e-4, min(scale * 0.02, 0.999)
    if name == "linear":
        return torch.linspace(start, end, T, dtype=torch.float64)
    if name == "quadratic":
        return torch.linspace(start**0.5, end**0.5, T, dtype=torch.float64) ** 2
    u = torch.arange(T + 1, dtype=torch.float64) / T
    if name == "cosine":
        ab = torch.cos((u + 0.008) / (1 + 0.008) * math.pi / 2) ** 2
    else:
        v_start, v_end = 1.0 / (1.0 + math.exp(3.0)), 1.0 / (1.0 + math.exp(-3.0))
        ab = (v_end - torch.sigmoid(u * 6.0 - 3.0)) / (v_end - v_start)
    return (1.0 - ab[1:] / ab[:-1]).clamp(min=0.0, max=0.999)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("T", [1, 2, 10, 100, 1000])
def test_numpy_betas_equal_the_torch_ones(name, T):
    """The same numbers as before, up to the last bit: numpy's linspace, cos and exp round
    differently from torch's, and betas are differences of nearly equal abar values, so the
    betas agree to 1e-13 and abar (what noising uses) to 1e-14 of itself."""
    betas = make_betas(name, T)
    ref = _torch_betas(name, T).numpy()
    assert isinstance(betas, np.ndarray) and betas.dtype == np.float64 and betas.shape == ref.shape
    np.testing.assert_allclose(betas, ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.cumprod(1 - betas), np.cumprod(1 - ref), rtol=1e-14, atol=0)


def test_the_schedules_load_without_torch():
    """The dashboard draws a run's schedule and noises data forward in its own process."""
    code = "import sys, core.schedules as s; s.make_betas('cosine', 100); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
