"""Samplers checked against the exact noise predictor of a Gaussian data distribution.

For data x0 ~ N(mu, s^2), x_t is Gaussian too and the optimal eps prediction is known in
closed form; a correct sampler driven by it must reproduce N(mu, s^2).
"""

import pytest
import torch

from core.diffusion import Diffusion
from core.samplers import ddim_timesteps, sample

MU, S = 0.4, 0.3


def oracle(diff: Diffusion, objective: str = "eps"):
    def model(x, t):
        a = diff.alphas_cumprod[t].view(-1, *([1] * (x.ndim - 1)))
        eps = (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * S**2 + 1 - a)
        if objective == "eps":
            return eps
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        if objective == "x0":
            return x0
        return a.sqrt() * eps - (1 - a).sqrt() * x0

    return model


@pytest.mark.parametrize(
    "sampler,steps,eta,objective",
    [("ddpm", None, 0.0, "eps"), ("ddim", 100, 0.0, "eps"), ("ddim", 100, 1.0, "v"), ("ddim", 100, 0.5, "x0")],
)
def test_sampler_reproduces_a_gaussian(sampler, steps, eta, objective):
    diff = Diffusion.from_schedule("cosine", 100)
    res = sample(
        oracle(diff, objective), diff, (10_000, 1), sampler=sampler, steps=steps, eta=eta,
        objective=objective, seed=0, clip_x0=False,
    )  # fmt: skip
    assert res.x.mean().item() == pytest.approx(MU, abs=0.01)
    assert res.x.std().item() == pytest.approx(S, abs=0.015)


def test_fewer_ddim_steps_shrink_the_spread_and_more_steps_converge():
    """DDIM's discretisation error: with few steps the samples are too concentrated (x0_hat is
    a posterior mean); the error shrinks steadily as the step count grows."""
    diff = Diffusion.from_schedule("cosine", 1000)
    stds = [
        sample(oracle(diff), diff, (10_000, 1), sampler="ddim", steps=k, seed=0, clip_x0=False).x.std().item()
        for k in (5, 20, 100, 1000)
    ]
    assert stds == sorted(stds)
    assert stds[0] < 0.25 and abs(stds[-1] - S) < 0.003


def test_eta_above_one_trades_spread_for_correction_and_saturates_at_renoising():
    """eta > 1 re-noises the predicted x0 more than DDPM. With an exact model that narrows the
    samples at few steps (x0_hat is a posterior mean), and fades as the steps reach T; the
    per-step noise is capped at sqrt(1 - abar_prev), so a huge eta is exactly the re-noising
    sampler and never over-noises x_t (uncapped, eta 1000 would blow the samples up)."""
    diff = Diffusion.from_schedule("cosine", 1000)

    def run(eta, steps=50):
        return sample(oracle(diff, "v"), diff, (10_000, 1), sampler="ddim", steps=steps, eta=eta,
                      objective="v", seed=0, clip_x0=False).x  # fmt: skip

    stds = [run(eta).std().item() for eta in (1.0, 1.8, 10.0)]
    assert stds[0] > stds[1] > stds[2] > 0.18  # narrower, never wider than the data
    assert torch.equal(run(10.0), run(1000.0))  # saturated: the cap holds every step
    assert run(1000.0).mean().item() == pytest.approx(MU, abs=0.01)
    assert run(1.8, steps=1000).std().item() == pytest.approx(S, abs=0.015)


def test_ddim_eta0_is_deterministic_and_seeded():
    diff = Diffusion.from_schedule("linear", 100)
    kw = dict(sampler="ddim", steps=10, eta=0.0, clip_x0=False)
    a = sample(oracle(diff), diff, (16, 1, 2, 2), seed=3, **kw).x
    b = sample(oracle(diff), diff, (16, 1, 2, 2), seed=3, **kw).x
    c = sample(oracle(diff), diff, (16, 1, 2, 2), seed=4, **kw).x
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_ddim_eta0_is_a_deterministic_map_of_the_start_noise():
    """With eta = 0, the only randomness is x_T: two chains started from the same noise
    coincide although the generator is otherwise used differently."""
    from core.samplers import ddim_sample

    diff = Diffusion.from_schedule("linear", 100)
    noise = torch.randn(8, 3)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(99)
    a = ddim_sample(oracle(diff), diff, (8, 3), steps=25, eta=0.0, noise=noise, generator=g1, clip_x0=False).x
    b = ddim_sample(oracle(diff), diff, (8, 3), steps=25, eta=0.0, noise=noise, generator=g2, clip_x0=False).x
    assert torch.equal(a, b)


def test_ddpm_ends_without_noise_on_the_data_point():
    """A delta data distribution at 0.25 with its exact predictor: the last step adds no noise,
    so every sample lands on the point."""
    diff = Diffusion.from_schedule("linear", 50)

    def model(x, t):
        a = diff.alphas_cumprod[t].view(-1, 1)
        return (x - a.sqrt() * 0.25) / (1 - a).sqrt()

    res = sample(model, diff, (100, 1), sampler="ddpm", seed=0, clip_x0=False)
    assert torch.allclose(res.x, torch.full((100, 1), 0.25), atol=1e-4)


def test_clipping_keeps_predicted_x0_in_range():
    diff = Diffusion.from_schedule("linear", 50)
    wild = lambda x, t: torch.full_like(x, -50.0)  # noqa: E731  implies x0 far outside [-1, 1]
    res = sample(wild, diff, (4, 1, 2, 2), sampler="ddim", steps=10, seed=0, clip_x0=True, trajectory_frames=5)
    assert all(x0.abs().max() <= 1.0 for x0 in res.x0)
    assert res.x.abs().max() <= 1.0 + 1e-5


@pytest.mark.parametrize("T,steps", [(1000, 50), (1000, 1), (1000, 1000), (500, 7), (10, 3)])
def test_ddim_timesteps(T, steps):
    ts = ddim_timesteps(T, steps)
    assert len(ts) == steps
    assert ts[0] == T - 1
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert ts[-1] >= 0
    if steps == T:
        assert ts == list(range(T - 1, -1, -1))


def test_bad_step_counts_are_rejected():
    diff = Diffusion.from_schedule("linear", 10)
    with pytest.raises(ValueError, match="between 1 and T=10"):
        ddim_timesteps(10, 11)
    with pytest.raises(ValueError, match="always takes T=10"):
        sample(oracle(diff), diff, (2, 1), sampler="ddpm", steps=5)
    with pytest.raises(ValueError, match="ddpm, ddim"):
        sample(oracle(diff), diff, (2, 1), sampler="euler")


def test_trajectory_records_frames_ending_at_the_result():
    diff = Diffusion.from_schedule("linear", 100)
    res = sample(oracle(diff), diff, (3, 1, 2, 2), sampler="ddim", steps=20, seed=0, clip_x0=False, trajectory_frames=5)
    assert 5 <= len(res.xt) <= 6 and len(res.xt) == len(res.x0) == len(res.timesteps)
    assert res.timesteps == sorted(res.timesteps, reverse=True)
    assert torch.equal(res.xt[-1], res.x)
    ddpm = sample(oracle(diff), diff, (3, 1), sampler="ddpm", seed=0, clip_x0=False, trajectory_frames=10)
    assert len(ddpm.xt) in (10, 11) and ddpm.timesteps[-1] == 0
