import pytest
import torch

from core.schedules import SCHEDULES, make_betas


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("T", [10, 100, 1000])
def test_schedule_is_a_valid_noise_chain(name, T):
    betas = make_betas(name, T)
    assert betas.shape == (T,) and betas.dtype == torch.float64
    assert (betas > 0).all() and (betas < 1).all()
    abar = torch.cumprod(1 - betas, 0)
    assert (abar[1:] < abar[:-1]).all(), "abar must fall strictly"
    assert abar[0] > 0.95, "the first step adds little noise"
    assert abar[-1] < 0.01, "the last step is (nearly) pure noise"


def test_linear_schedule_scales_with_T():
    # 1000/T scaling: a short chain ends as noisy as the standard 1000-step one.
    long = torch.cumprod(1 - make_betas("linear", 1000), 0)[-1]
    short = torch.cumprod(1 - make_betas("linear", 250), 0)[-1]
    assert long < 1e-4 and short < 1e-4
    assert make_betas("linear", 1000)[0].item() == pytest.approx(1e-4)
    assert make_betas("linear", 1000)[-1].item() == pytest.approx(0.02)
    assert make_betas("linear", 500)[-1].item() == pytest.approx(0.04)


def test_cosine_matches_its_closed_form():
    T, s = 1000, 0.008
    abar = torch.cumprod(1 - make_betas("cosine", T), 0)
    t = torch.arange(1, T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * torch.pi / 2) ** 2 / torch.cos(torch.tensor(s / (1 + s) * torch.pi / 2)) ** 2
    # equal until the 0.999 beta clip bites at the very end
    assert torch.allclose(abar[:-5], f[:-5], rtol=1e-6, atol=1e-9)


def test_unknown_schedule_and_bad_T_are_rejected():
    with pytest.raises(ValueError, match="linear, cosine, quadratic, sigmoid"):
        make_betas("exponential", 100)
    with pytest.raises(ValueError, match="at least 1"):
        make_betas("linear", 0)
