import pytest
import torch

from core.diffusion import Diffusion, sample_noise, sample_timesteps


@pytest.fixture(scope="module")
def diff():
    return Diffusion.from_schedule("linear", 1000)


def test_forward_moments_match_closed_form(diff):
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 0.7)
    for t_val in (0, 250, 999):
        t = torch.full((x0.shape[0],), t_val, dtype=torch.long)
        xt = diff.q_sample(x0, t, torch.randn(x0.shape, generator=g))
        abar = diff.alphas_cumprod_64[t_val].item()
        assert xt.mean().item() == pytest.approx(abar**0.5 * 0.7, abs=0.01)
        assert xt.var().item() == pytest.approx(1 - abar, abs=0.01)


def test_posterior_matches_bayes_rule(diff):
    """q(x_{t-1} | x_t, x_0) from the product of the two Gaussians, in float64."""
    b = diff.betas_64
    abar = diff.alphas_cumprod_64
    x0 = torch.tensor([0.3, -0.8], dtype=torch.float64)
    xt = torch.tensor([1.1, 0.2], dtype=torch.float64)
    for t in (1, 10, 500, 999):
        a_t = 1 - b[t]
        prior_var = 1 - abar[t - 1]  # q(x_{t-1} | x_0)
        prec = 1 / prior_var + a_t / b[t]
        var = 1 / prec
        mean = var * (abar[t - 1].sqrt() * x0 / prior_var + a_t.sqrt() * xt / b[t])
        tt = torch.full((2,), t, dtype=torch.long)
        m, v, logv = diff.q_posterior(x0.float(), xt.float(), tt)
        assert torch.allclose(m.double(), mean, atol=1e-5)
        assert torch.allclose(v.double().flatten(), var.expand(2), rtol=1e-4)
        assert torch.allclose(logv.double().flatten(), var.log().expand(2), rtol=1e-4, atol=1e-4)


def test_posterior_at_t0_returns_x0(diff):
    x0, xt = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    m, _, _ = diff.q_posterior(x0, xt, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(m, x0, atol=1e-6)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_parameterisations_round_trip(diff, objective):
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(64, 1, 4, 4, generator=g) * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 1000, (64,), generator=g)
    xt = diff.q_sample(x0, t, eps)
    out = diff.target(x0, t, eps, objective)
    x0_hat, eps_hat = diff.predict_x0_eps(out, xt, t, objective)
    # eps -> x0 divides by sqrt(abar), which is ~0.006 at t=999: compare in a relative sense
    assert torch.allclose(x0_hat, x0, atol=2e-3 if objective == "eps" else 1e-4)
    assert torch.allclose(eps_hat, eps, atol=1e-3 if objective == "x0" else 1e-4)


def test_v_is_rotation_of_x0_and_eps(diff):
    x0, eps = torch.randn(8, 2), torch.randn(8, 2)
    t = torch.arange(0, 1000, 125)
    v = diff.v_from(x0, t, eps)
    a = diff.sqrt_alphas_cumprod[t][:, None]
    s = diff.sqrt_one_minus_alphas_cumprod[t][:, None]
    assert torch.allclose(v, a * eps - s * x0)
    assert torch.allclose((v**2 + (a * x0 + s * eps) ** 2), x0**2 + eps**2, atol=1e-5)


def test_min_snr_weights(diff):
    t = torch.tensor([0, 100, 500, 999])
    snr = diff.snr[t]
    w_x0 = diff.loss_weight(t, "x0", 5.0)
    assert torch.allclose(w_x0, snr.clamp(max=5.0))
    assert torch.allclose(diff.loss_weight(t, "eps", 5.0) * snr, w_x0)
    assert torch.allclose(diff.loss_weight(t, "v", 5.0) * (snr + 1), w_x0)
    assert torch.equal(diff.loss_weight(t, "eps", 0.0), torch.ones(4))
    # eps weighting caps the easy, low-noise steps and leaves the noisy ones at 1
    w = diff.loss_weight(t, "eps", 5.0)
    assert w[0] < 0.01 and w[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_losses_are_zero_at_target_and_positive_elsewhere(diff, loss):
    x0, eps = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    t = torch.randint(0, 1000, (5,))
    target = diff.target(x0, t, eps, "eps")
    assert torch.allclose(diff.training_losses(target, x0, t, eps, objective="eps", loss=loss), torch.zeros(5))
    off = diff.training_losses(target + 0.5, x0, t, eps, objective="eps", loss=loss)
    expected = {"l2": 0.25, "l1": 0.5, "huber": 0.125}[loss]
    assert torch.allclose(off, torch.full((5,), expected))


def test_unknown_objective_and_loss(diff):
    x = torch.zeros(2, 3)
    t = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="eps, x0, v"):
        diff.target(x, t, x, "score")
    with pytest.raises(ValueError, match="l2, l1, huber"):
        diff.training_losses(x, x, t, x, objective="eps", loss="l3")


def test_offset_noise_adds_a_per_channel_constant():
    g = torch.Generator().manual_seed(0)
    plain = sample_noise((4000, 1, 8, 8), generator=g, device="cpu")
    g.manual_seed(0)
    offset = sample_noise((4000, 1, 8, 8), generator=g, device="cpu", offset_noise=0.5)
    # per-image means vary more with the offset (variance of the mean grows by 0.25)
    assert offset.mean(dim=(2, 3)).var() > plain.mean(dim=(2, 3)).var() + 0.2


@pytest.mark.parametrize("n", [1, 2, 7, 128])
def test_antithetic_timesteps_come_in_pairs_that_sum_to_T_minus_1(n):
    T = 100
    t = sample_timesteps(n, T, "antithetic", generator=torch.Generator().manual_seed(3), device="cpu")
    assert t.shape == (n,) and t.dtype == torch.long and 0 <= int(t.min()) and int(t.max()) < T
    pairs = t[: n - n % 2].view(-1, 2)
    assert (pairs.sum(1) == T - 1).all()
    again = sample_timesteps(n, T, "antithetic", generator=torch.Generator().manual_seed(3), device="cpu")
    assert torch.equal(t, again), "the same seed draws the same timesteps"
    other = sample_timesteps(n, T, "antithetic", generator=torch.Generator().manual_seed(4), device="cpu")
    assert n < 7 or not torch.equal(t, other)


def test_an_odd_batch_ends_in_one_uniform_timestep_and_uniform_is_unchanged():
    # The last of 7 is the generator's 4th draw (after the 3 that were paired).
    t = sample_timesteps(7, 50, "antithetic", generator=torch.Generator().manual_seed(0), device="cpu")
    draws = torch.randint(0, 50, (4,), generator=torch.Generator().manual_seed(0))
    assert t.tolist() == [draws[0], 49 - draws[0], draws[1], 49 - draws[1], draws[2], 49 - draws[2], draws[3]]
    # uniform is the draw the trainer always made, so runs from before train the same
    u = sample_timesteps(9, 50, "uniform", generator=torch.Generator().manual_seed(0), device="cpu")
    assert torch.equal(u, torch.randint(0, 50, (9,), generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="uniform, antithetic, logit_normal"):
        sample_timesteps(4, 50, "stratified", generator=None, device="cpu")


def test_logit_normal_timesteps_favour_the_middle_of_the_chain():
    T = 1000
    t = sample_timesteps(20_000, T, "logit_normal", generator=torch.Generator().manual_seed(0), device="cpu")
    assert t.dtype == torch.long and 0 <= int(t.min()) and int(t.max()) < T
    z = torch.randn(20_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, (torch.sigmoid(z) * T).long()), "t / T is a sigmoid of one normal draw each"
    middle = ((t >= T // 3) & (t < 2 * T // 3)).float().mean().item()
    # P(|z| < log 2) = 0.512 for the logit-normal, against 1/3 for uniform timesteps
    assert 0.49 < middle < 0.535
    assert abs(t.float().mean().item() - (T - 1) / 2) < 10  # symmetric about the middle
    ends = ((t < 50) | (t >= T - 50)).float().mean().item()
    assert ends < 0.01  # uniform would put a tenth here


def two_step() -> Diffusion:
    """T = 2 with betas 0.1, 0.2: abar = 0.9, 0.72; at t = 1 the posterior variance is
    beta_1 (1 - abar_0) / (1 - abar_1) = 0.2 * 0.1 / 0.28 = 1/14, the mean coefficients are
    c1 = beta_1 sqrt(abar_0) / (1 - abar_1) = 0.2 sqrt(0.9) / 0.28 = 0.677631 (on x0) and
    c2 = (1 - abar_0) sqrt(alpha_1) / (1 - abar_1) = 0.1 sqrt(0.8) / 0.28 = 0.319438 (on x_t)."""
    return Diffusion(torch.tensor([0.1, 0.2], dtype=torch.float64))


@pytest.mark.parametrize(
    "v,expected",
    [
        # v = -1: the model's variance is the posterior's, 1/14; the means differ by
        # c1 (0.5 - 0.2) = 0.203289, so KL = 0.5 * 0.203289^2 * 14 = 0.289286 nats
        # = 0.417351 bits, and L_vlb = T * that = 0.834702
        (-1.0, 0.834702),
        # v = 1: the variance is beta_1 = 0.2, so KL = 0.5 (-1 + log(0.2 * 14) + 1 / (0.2 * 14)
        # + 0.203289^2 / 0.2) = 0.5 (-1 + 1.029619 + 0.357143 + 0.206633) = 0.296697 nats
        # = 0.428044 bits, L_vlb = 0.856088
        (1.0, 0.856088),
        # v = 0: log var halfway, var = sqrt(0.2 / 14) = 0.119523; KL = 0.5 (-1 + 0.514810 +
        # 0.597614 + 0.041327 / 0.119523) = 0.229093 nats = 0.330512 bits, L_vlb = 0.661023
        (0.0, 0.661023),
    ],
)
def test_vlb_is_the_closed_form_gaussian_kl(v, expected):
    """x0 = 0.5, x_t = 0.3 at t = 1, the network predicting x0 = 0.2: L_vlb is T times the
    KL between q(x_0 | x_1, x0) and the model's step, in bits."""
    diff = two_step()
    x0, xt, out = torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.3), torch.full((1, 1, 1, 1), 0.2)
    vv = torch.full((1, 1, 1, 1), v)
    got = diff.vlb_loss(out, vv, x0, xt, torch.tensor([1]), "x0")
    assert got.item() == pytest.approx(expected, abs=2e-6)


def test_vlb_at_t0_is_the_discretised_decoder_nll():
    """At t = 0 the model's mean is its x0 (c1 = 1, c2 = 0) and, for v = 1, its variance beta_0
    = 0.1: for x0 = 1 (the top bin, everything above 1 - 1/255) and a predicted 0.8 the
    probability is 1 - Phi((1 - 1/255 - 0.8) / sqrt(0.1)) = 1 - Phi(0.620054) = 0.267611."""
    from statistics import NormalDist

    p = 1 - NormalDist().cdf((1 - 1 / 255 - 0.8) / 0.1**0.5)
    assert p == pytest.approx(0.267611, abs=1e-6)
    diff = two_step()
    x0, out, v = torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 0.8), torch.ones(1, 1, 1, 1)
    got = diff.vlb_loss(out, v, x0, torch.zeros(1, 1, 1, 1), torch.tensor([0]), "x0")
    assert got.item() == pytest.approx(2 * -torch.log2(torch.tensor(p)).item(), rel=1e-5)


def test_discretised_gaussian_bins():
    """A bin of width 2/255 centred on the mean, sigma = 1/255: Phi(1) - Phi(-1) = 0.682689;
    the bottom bin reaches to minus infinity: Phi(1) = 0.841345."""
    from core.diffusion import discretized_gaussian_log_likelihood

    log_scale = torch.tensor(1 / 255).log()
    mid = discretized_gaussian_log_likelihood(torch.tensor(0.0), mean=torch.tensor(0.0), log_scale=log_scale)
    low = discretized_gaussian_log_likelihood(torch.tensor(-1.0), mean=torch.tensor(-1.0), log_scale=log_scale)
    assert mid.exp().item() == pytest.approx(0.682689, abs=1e-6)
    assert low.exp().item() == pytest.approx(0.841345, abs=1e-6)


def test_vlb_trains_the_variance_alone():
    """improved-diffusion's frozen mean: no gradient reaches the prediction through L_vlb."""
    diff = Diffusion.from_schedule("cosine", 50)
    out = torch.randn(4, 1, 3, 3, requires_grad=True)
    v = torch.zeros(4, 1, 3, 3, requires_grad=True)
    x0 = torch.rand(4, 1, 3, 3) * 2 - 1
    t = torch.tensor([0, 5, 20, 49])
    diff.vlb_loss(out, v, x0, diff.q_sample(x0, t, torch.randn_like(x0)), t, "eps").sum().backward()
    assert out.grad is None and v.grad is not None and v.grad.abs().sum() > 0


def test_learned_logvar_ends_are_beta_and_the_posterior_variance():
    diff = two_step()
    t = torch.tensor([1])
    top = diff.learned_logvar(torch.ones(1, 1), t).exp().item()
    bottom = diff.learned_logvar(-torch.ones(1, 1), t).exp().item()
    assert top == pytest.approx(0.2) and bottom == pytest.approx(1 / 14)
