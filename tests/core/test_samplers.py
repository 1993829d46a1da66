"""Samplers checked against the exact noise predictor of a Gaussian data distribution.

For data x0 ~ N(mu, s^2), x_t is Gaussian too and the optimal eps prediction is known in
closed form; a correct sampler driven by it must reproduce N(mu, s^2).
"""

import pytest
import torch

from core.diffusion import Diffusion
from core.samplers import SampleNoise, ddim_timesteps, sample

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


def exact_moments(diff: Diffusion, sampler: str, steps: int | None, eta: float, window: float = 1.0) -> tuple[float, float]:
    """Mean and std of the samples the oracle's sampler draws, in closed form: with a
    Gaussian data model the oracle is affine in x_t, so each step maps (mean, variance)
    affinely. An independent reference for the samplers' arithmetic (coefficients written
    out here, not taken from the sampler), which also shows the discretisation bias: at
    T = 100 ancestral sampling is a few percent too narrow even with the exact model. With
    ``window`` below 1, a step from t at or above ``window * T`` takes eta 1 in place of an eta
    above 1."""
    ac = diff.alphas_cumprod_64

    def x0_map(t):  # x0_hat = g * x + h for the exact eps predictor
        a = ac[t]
        k = (1 - a).sqrt() / (a * S**2 + 1 - a)
        return ((1 - (1 - a).sqrt() * k) / a.sqrt()).item(), ((1 - a).sqrt() * k * a.sqrt() * MU / a.sqrt()).item()

    m, v = 0.0, 1.0
    if sampler == "ddpm":
        b = diff.betas_64
        for t in range(diff.T - 1, -1, -1):
            a, a_prev = ac[t], (ac[t - 1] if t > 0 else torch.tensor(1.0, dtype=torch.float64))
            c1, c2 = (b[t] * a_prev.sqrt() / (1 - a)).item(), ((1 - a_prev) * (1 - b[t]).sqrt() / (1 - a)).item()
            g, h = x0_map(t)
            var = diff.posterior_log_variance_clipped.double()[t].exp().item() if t > 0 else 0.0
            m, v = c1 * (g * m + h) + c2 * m, (c1 * g + c2) ** 2 * v + var
        return m, v**0.5
    ts = ddim_timesteps(diff.T, steps)
    for i, t in enumerate(ts):
        a = ac[t].item()
        a_prev = ac[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
        e = eta if t < window * diff.T else min(eta, 1.0)
        sigma = min(e * max(0.0, (1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5, (1 - a_prev) ** 0.5)
        g, h = x0_map(t)
        # eps_hat = (x - sqrt(a) x0_hat) / sqrt(1 - a), so x_prev is affine in x
        ge, he = (1 - a**0.5 * g) / (1 - a) ** 0.5, -(a**0.5) * h / (1 - a) ** 0.5
        c = max(0.0, 1 - a_prev - sigma**2) ** 0.5
        lin, off = a_prev**0.5 * g + c * ge, a_prev**0.5 * h + c * he
        m, v = lin * m + off, lin**2 * v + (sigma**2 if i + 1 < len(ts) else 0.0)
    return m, v**0.5


@pytest.mark.parametrize(
    "sampler,steps,eta,objective,window",
    [
        ("ddpm", None, 0.0, "eps", 1.0),
        ("ddim", 100, 0.0, "eps", 1.0),
        ("ddim", 100, 1.0, "v", 1.0),
        ("ddim", 20, 0.5, "x0", 1.0),
        ("ddim", 20, 1.8, "v", 1.0),
        ("ddim", 20, 3.0, "v", 0.5),
    ],
)
def test_sampler_draws_the_gaussian_its_exact_model_implies(sampler, steps, eta, objective, window):
    """10,000 samples match the closed-form mean and std within four standard errors; with
    every step walked, those lie near the data's N(MU, S^2) (fewer steps draw narrower)."""
    diff = Diffusion.from_schedule("cosine", 100)
    res = sample(
        oracle(diff, objective), diff, (10_000, 1), sampler=sampler, steps=steps, eta=eta,
        objective=objective, seed=0, clip_x0=False, eta_window=window,
    )  # fmt: skip
    mean, std = exact_moments(diff, sampler, steps, eta, window)
    assert abs(mean - MU) < 0.01 and (abs(std - S) < 0.03 if steps in (None, 100) else std < S), (mean, std)
    assert res.x.mean().item() == pytest.approx(mean, abs=4 * std / 100)
    assert res.x.std().item() == pytest.approx(std, abs=4 * std / (2 * 10_000) ** 0.5)


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
    coincide although the noise source would go on differently."""
    from core.samplers import ddim_sample

    diff = Diffusion.from_schedule("linear", 100)
    start = torch.randn(8, 3)

    def noise_from(seed):
        g = torch.Generator().manual_seed(seed)
        first = [True]

        def draw():
            if first[0]:
                first[0] = False
                return start.clone()
            return torch.randn(8, 3, generator=g)

        return draw

    a = ddim_sample(oracle(diff), diff, noise=noise_from(0), steps=25, eta=0.0, clip_x0=False).x
    b = ddim_sample(oracle(diff), diff, noise=noise_from(99), steps=25, eta=0.0, clip_x0=False).x
    assert torch.equal(a, b)


def test_each_sample_depends_only_on_its_seed_and_index():
    """Sample i is the same image in a batch of 16 or as the 5th of a batch starting at 4,
    and seeds 0 and 1 share no sample (batch-seeded noise made seed 1 seed 0's next batch)."""
    diff = Diffusion.from_schedule("cosine", 50)
    kw = dict(sampler="ddim", steps=10, eta=1.0, objective="v", clip_x0=False)
    whole = sample(oracle(diff, "v"), diff, (16, 1, 2, 2), seed=0, **kw).x
    part = sample(oracle(diff, "v"), diff, (4, 1, 2, 2), seed=0, start=4, **kw).x
    assert torch.equal(whole[4:8], part)
    other = sample(oracle(diff, "v"), diff, (16, 1, 2, 2), seed=1, **kw).x
    assert not any(torch.equal(whole[i], other[j]) for i in range(16) for j in range(16))
    ddpm = [sample(oracle(diff), diff, (n, 1, 2, 2), sampler="ddpm", seed=3, clip_x0=False).x for n in (2, 6)]
    assert torch.equal(ddpm[0], ddpm[1][:2])


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


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp2m"])
def test_a_trajectory_keeps_the_noise_it_starts_from(sampler):
    """x_T, the first panel of the reverse process: the draw's first noise, kept only with a trajectory."""
    diff = Diffusion.from_schedule("linear", 20)
    steps = None if sampler == "ddpm" else 5
    res = sample(oracle(diff), diff, (3, 2), sampler=sampler, steps=steps, seed=4, trajectory_frames=50)
    assert torch.equal(res.start, SampleNoise((3, 2), 4)())
    assert len(res.xt) == (20 if sampler == "ddpm" else 5), "frames >= steps records every step"
    assert sample(oracle(diff), diff, (3, 2), sampler=sampler, steps=steps, seed=4).start is None


def test_dpm_solver_follows_the_exact_probability_flow_better_than_ddim():
    """For Gaussian data the probability-flow ODE is solved in closed form: it carries x_T's
    quantile to the data's, x0 = MU + S (x_T - sqrt(a_T) MU) / sqrt(a_T S^2 + 1 - a_T). DPM-
    Solver++(2M) driven by the exact model tracks that map far more closely than DDIM at
    the same number of steps (second order against first), and converges as steps grow."""
    diff = Diffusion.from_schedule("cosine", 1000)
    start = torch.randn(2000, 1, generator=torch.Generator().manual_seed(0))
    a_T = diff.alphas_cumprod_64[-1].item()
    exact = MU + S * (start - a_T**0.5 * MU) / (a_T * S**2 + 1 - a_T) ** 0.5

    def error(sampler, steps, objective="eps"):
        x = sample(oracle(diff, objective), diff, (2000, 1), sampler=sampler, steps=steps, eta=0.0, objective=objective,
                   clip_x0=False, noise=lambda: start.clone()).x  # fmt: skip
        return (x - exact).abs().max().item()

    errors = [error("dpmpp2m", steps) for steps in (10, 15, 20, 50)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.001  # converges
    for steps, err in zip((10, 15, 20, 50), errors):
        assert err < error("ddim", steps) / 1.5, steps
    assert error("dpmpp2m", 15, "v") == pytest.approx(error("dpmpp2m", 15, "eps"), abs=1e-4)  # any objective, same ODE
    assert error("dpmpp2m", 15, "x0") == pytest.approx(error("dpmpp2m", 15, "eps"), abs=1e-4)


def test_dpm_solver_sde_draws_the_data_gaussian_and_is_the_ode_at_eta_0():
    """DPM-Solver++(2M) SDE (eta > 0: part of each step's noise is fresh, as k-diffusion's
    dpmpp_2m_sde): driven by the exact model it draws N(MU, S^2) within sampling error at a
    few dozen steps, each sample depends only on (seed, index), and eta 0 is the ODE solver."""
    diff = Diffusion.from_schedule("cosine", 1000)

    def draw(steps, eta, n=20_000, seed=0):
        return sample(oracle(diff, "v"), diff, (n, 1), sampler="dpmpp2m", steps=steps, eta=eta, objective="v",
                      seed=seed, clip_x0=False).x  # fmt: skip

    x = draw(50, 1.0)
    assert x.mean().item() == pytest.approx(MU, abs=0.01) and x.std().item() == pytest.approx(S, abs=0.01)
    assert abs(draw(15, 1.0).std().item() - S) < 0.03  # few steps stay close
    ode = sample(oracle(diff, "v"), diff, (64, 1), sampler="dpmpp2m", steps=15, objective="v", seed=3, clip_x0=False).x
    assert torch.equal(draw(15, 0.0, n=64, seed=3), ode)
    assert not torch.equal(draw(15, 1.0, n=64, seed=3), ode)
    assert torch.equal(draw(15, 1.0, n=64, seed=3)[:8], draw(15, 1.0, n=8, seed=3))  # per-sample noise


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp2m"])
@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_every_sampler_feeds_a_self_conditioned_model_its_last_estimate(sampler, objective):
    """Zeros at the first step, then the x0 estimate of the step before (clipped as the
    sampler clips it), whatever the objective predicts."""
    from core.samplers import Denoiser

    diff = Diffusion.from_schedule("cosine", 20)
    seen, estimates = [], []
    base = oracle(diff, objective)

    def model(x, t, x_self):
        seen.append(x_self.clone())
        out = base(x, t)
        x0, _ = diff.predict_x0_eps(out, x, t, objective)
        estimates.append(x0.clamp(-1, 1))
        return out

    res = sample(model, diff, (3, 1, 2, 2), sampler=sampler, steps=None if sampler == "ddpm" else 6,
                 eta=1.0, objective=objective, seed=0, self_condition=True)  # fmt: skip
    assert len(seen) == (20 if sampler == "ddpm" else 6)
    assert torch.equal(seen[0], torch.zeros(3, 1, 2, 2))
    assert all(torch.allclose(s, e, atol=1e-6) for s, e in zip(seen[1:], estimates[:-1]))
    assert torch.isfinite(res.x).all()
    # without self-conditioning the model is called as before, with (x, t) alone
    plain = sample(base, diff, (3, 1, 2, 2), sampler=sampler, steps=None if sampler == "ddpm" else 6, eta=1.0,
                   objective=objective, seed=0)  # fmt: skip
    assert torch.allclose(plain.x, res.x)  # the oracle ignores the estimate: the same samples
    assert Denoiser(base, diff, objective, True).x0 is None


@pytest.mark.parametrize("v,variance", [(1.0, "betas"), (-1.0, "posterior_variance")])
def test_ddpm_steps_with_the_learned_variance(v, variance):
    """v = +1 everywhere gives noise of scale sqrt(beta_t), v = -1 sqrt(beta_tilde_t): the first
    step's x differs by exactly that between a unit and a zero noise draw."""
    diff = Diffusion(torch.linspace(0.01, 0.3, 10, dtype=torch.float64))  # beta_9 = 0.3, beta_tilde_9 = 0.273

    def model(x, t):  # eps = 0 and v everywhere, in twice the channels
        return torch.cat([torch.zeros_like(x), torch.full_like(x, v)], dim=1)

    def first_step(z: float):
        draws = iter([torch.zeros(2, 1, 2, 2)] + [torch.full((2, 1, 2, 2), z)] * 10)
        res = sample(model, diff, (2, 1, 2, 2), sampler="ddpm", objective="eps", clip_x0=False,
                     noise=lambda: next(draws), trajectory_frames=10, learned_variance=True)  # fmt: skip
        return res.xt[0]

    scale = first_step(1.0) - first_step(0.0)
    expected = getattr(diff, variance)[9].sqrt().item()
    assert torch.allclose(scale, torch.full_like(scale, expected), atol=1e-6)
    assert diff.betas[9].item() != pytest.approx(diff.posterior_variance[9].item(), rel=0.05)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp2m"])
def test_other_samplers_ignore_a_learned_variance(sampler):
    diff = Diffusion.from_schedule("cosine", 20)
    base = oracle(diff, "eps")

    def with_v(v):
        return lambda x, t: torch.cat([base(x, t), torch.full_like(x, v)], dim=1)

    kw = dict(sampler=sampler, steps=5, eta=1.0, objective="eps", seed=3)
    plain = sample(base, diff, (3, 1, 2, 2), **kw).x
    for v in (-1.0, 1.0):
        assert torch.equal(sample(with_v(v), diff, (3, 1, 2, 2), learned_variance=True, **kw).x, plain)


def test_ddpm_with_beta_variance_adds_sqrt_beta_of_noise_at_each_step():
    """Ho et al.'s other fixed variance (the S-curve toy samples with it): sigma_t^2 = beta_t
    instead of the posterior's beta~_t; the mean is the same. T = 2, betas 0.1, 0.2: after the
    first step the two differ by (sqrt(0.2) - sqrt(0.2 * 0.1 / 0.28)) times the step's noise."""
    diff = Diffusion(torch.tensor([0.1, 0.2], dtype=torch.float64))

    def first_step(variance):
        draws = iter([torch.zeros(1, 1), torch.ones(1, 1)])
        res = sample(oracle(diff), diff, (1, 1), sampler="ddpm", clip_x0=False, trajectory_frames=2,
                     noise=lambda: next(draws), ddpm_variance=variance)  # fmt: skip
        return res.xt[0].item()

    assert first_step("beta") - first_step("posterior") == pytest.approx(0.2**0.5 - (0.2 * 0.1 / 0.28) ** 0.5, abs=1e-6)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp2m"])
def test_an_eta_window_keeps_the_extra_noise_to_the_clean_end_of_the_chain(sampler):
    """Above ``eta_window * T`` a step takes eta 1 (the reverse process's own noise) in place
    of an eta above 1, as Karras et al. confine their churn to a window of noise levels:
    window 1 is the plain sampler, window 0 is eta 1 throughout, and a window between them is
    neither; an eta at most 1 is left as it is. Each sample still depends only on its seed."""
    diff = Diffusion.from_schedule("cosine", 1000)

    def draw(eta, window=1.0, n=64):
        return sample(oracle(diff, "v"), diff, (n, 1), sampler=sampler, steps=20, eta=eta, objective="v",
                      seed=5, clip_x0=False, eta_window=window).x  # fmt: skip

    assert torch.equal(draw(1.8, 1.0), draw(1.8))
    assert torch.equal(draw(1.8, 0.0), draw(1.0))
    half = draw(1.8, 0.5)
    assert not torch.equal(half, draw(1.8)) and not torch.equal(half, draw(1.0))
    assert torch.equal(draw(0.5, 0.3), draw(0.5))
    assert torch.equal(draw(1.8, 0.5, n=8), half[:8])
