"""The Gaussian diffusion process: forward noising, posterior, objectives and losses.

Notation follows Ho et al. (2020) with 0-indexed timesteps t = 0 .. T-1:
``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``. The network predicts one of

- ``eps``: the noise (Ho et al.),
- ``x0``: the clean data,
- ``v``: ``sqrt(abar) eps - sqrt(1 - abar) x_0`` (Salimans and Ho, 2022),

and every conversion between them is a pure function of (x_t, t) below, so samplers can work
in whatever parameterisation is convenient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.choices import LOSSES, OBJECTIVES, T_SAMPLINGS
from core.schedules import make_betas


def extract(a: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Gather a[t] and shape it (B, 1, 1, ...) to broadcast against a batch of rank ndim."""
    out = a.gather(0, t)
    return out.reshape(t.shape[0], *([1] * (ndim - 1)))


@dataclass
class Diffusion:
    """Precomputed schedule coefficients for one (schedule, T).

    Coefficients are computed in float64 and stored in float32 on ``device``; float64 copies
    stay available as ``*_64`` attributes for tests that check identities to high precision.
    """

    betas_64: torch.Tensor

    def __post_init__(self) -> None:
        b = self.betas_64.to(torch.float64).cpu()
        self.betas_64 = b
        self.T = int(b.shape[0])
        alphas = 1.0 - b
        ac = torch.cumprod(alphas, 0)
        ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        self.alphas_cumprod_64 = ac
        post_var = b * (1.0 - ac_prev) / (1.0 - ac)
        # The posterior variance is 0 at t = 0; its log is clipped to the t = 1 value as in
        # Ho et al.'s code. The t = 0 value is never used for noise (none is added there).
        post_logvar = torch.log(torch.cat([post_var[1:2], post_var[1:]])) if self.T > 1 else torch.zeros(1, dtype=torch.float64)
        coefs = {
            "betas": b,
            "log_betas": b.log(),
            "alphas_cumprod": ac,
            "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": ac.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / ac).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / ac - 1.0).sqrt(),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": post_logvar,
            "posterior_mean_coef1": b * ac_prev.sqrt() / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
            "snr": ac / (1.0 - ac),
        }
        self._names = list(coefs)
        for name, value in coefs.items():
            setattr(self, name, value.float())

    @classmethod
    def from_schedule(cls, schedule: str, T: int, device: torch.device | str = "cpu") -> Diffusion:
        return cls(torch.from_numpy(make_betas(schedule, T))).to(device)

    def to(self, device: torch.device | str) -> Diffusion:
        for name in self._names:
            setattr(self, name, getattr(self, name).to(device))
        return self

    # ---- forward process -------------------------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0) in closed form."""
        n = x0.ndim
        return extract(self.sqrt_alphas_cumprod, t, n) * x0 + extract(self.sqrt_one_minus_alphas_cumprod, t, n) * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log variance of q(x_{t-1} | x_t, x_0)."""
        n = xt.ndim
        mean = extract(self.posterior_mean_coef1, t, n) * x0 + extract(self.posterior_mean_coef2, t, n) * xt
        var = extract(self.posterior_variance, t, n)
        logvar = extract(self.posterior_log_variance_clipped, t, n)
        return mean, var, logvar

    # ---- parameterisations -----------------------------------------------------------

    def x0_from_eps(self, xt, t, eps):
        n = xt.ndim
        return extract(self.sqrt_recip_alphas_cumprod, t, n) * xt - extract(self.sqrt_recipm1_alphas_cumprod, t, n) * eps

    def eps_from_x0(self, xt, t, x0):
        n = xt.ndim
        return (extract(self.sqrt_recip_alphas_cumprod, t, n) * xt - x0) / extract(self.sqrt_recipm1_alphas_cumprod, t, n)

    def v_from(self, x0, t, eps):
        n = x0.ndim
        return extract(self.sqrt_alphas_cumprod, t, n) * eps - extract(self.sqrt_one_minus_alphas_cumprod, t, n) * x0

    def x0_from_v(self, xt, t, v):
        n = xt.ndim
        return extract(self.sqrt_alphas_cumprod, t, n) * xt - extract(self.sqrt_one_minus_alphas_cumprod, t, n) * v

    def eps_from_v(self, xt, t, v):
        n = xt.ndim
        return extract(self.sqrt_one_minus_alphas_cumprod, t, n) * xt + extract(self.sqrt_alphas_cumprod, t, n) * v

    def predict_x0_eps(self, out: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, objective: str):
        """(x0, eps) implied by a network output under an objective."""
        if objective == "eps":
            return self.x0_from_eps(xt, t, out), out
        if objective == "x0":
            return out, self.eps_from_x0(xt, t, out)
        if objective == "v":
            return self.x0_from_v(xt, t, out), self.eps_from_v(xt, t, out)
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")

    def target(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, objective: str) -> torch.Tensor:
        if objective == "eps":
            return eps
        if objective == "x0":
            return x0
        if objective == "v":
            return self.v_from(x0, t, eps)
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")

    # ---- training loss ---------------------------------------------------------------

    def loss_weight(self, t: torch.Tensor, objective: str, min_snr_gamma: float) -> torch.Tensor:
        """Min-SNR-gamma weights (Hang et al. 2023), expressed for each objective.

        The paper's weight on the x0 loss is min(snr, gamma); the eps and v losses are the x0
        loss times snr and snr + 1, so their weights divide by those. gamma <= 0 means 1.
        """
        if min_snr_gamma <= 0:
            return torch.ones_like(t, dtype=torch.float32)
        snr = self.snr.gather(0, t)
        w = snr.clamp(max=min_snr_gamma)
        if objective == "eps":
            return w / snr
        if objective == "v":
            return w / (snr + 1.0)
        return w

    def training_losses(
        self,
        out: torch.Tensor,
        x0: torch.Tensor,
        t: torch.Tensor,
        eps: torch.Tensor,
        *,
        objective: str,
        loss: str,
        min_snr_gamma: float = 0.0,
    ) -> torch.Tensor:
        """Per-example weighted loss of a network output against the objective's target."""
        target = self.target(x0, t, eps, objective)
        out = out.float()
        if loss == "l2":
            per = F.mse_loss(out, target, reduction="none")
        elif loss == "l1":
            per = F.l1_loss(out, target, reduction="none")
        elif loss == "huber":
            per = F.huber_loss(out, target, reduction="none", delta=1.0)
        else:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        per = per.flatten(1).mean(1)
        return per * self.loss_weight(t, objective, min_snr_gamma)

    # ---- a learned variance (Nichol and Dhariwal 2021) --------------------------------

    def learned_logvar(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The reverse step's log variance from the network's v: with v' = (v + 1) / 2,
        v' log beta_t + (1 - v') log beta_tilde_t (improved-diffusion's interpolation; v = 1
        is beta_t, v = -1 the posterior's beta_tilde_t, clipped at t = 0 as everywhere)."""
        n = v.ndim
        frac = (v.float() + 1.0) / 2.0
        return frac * extract(self.log_betas, t, n) + (1.0 - frac) * extract(self.posterior_log_variance_clipped, t, n)

    def vlb_loss(self, out: torch.Tensor, v: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, objective: str):
        """Per-example L_vlb of a learned-variance network, T * L_t in bits per dimension, the
        term a hybrid loss adds ``vlb_weight`` times (L_simple + lambda L_vlb, lambda = 0.001 in
        improved-diffusion, whose ``vb * T / 1000`` this is). L_t is KL(q(x_{t-1} | x_t, x_0) ||
        p(x_{t-1} | x_t)) for t > 0 and the discretised Gaussian decoder's negative log
        likelihood of x_0 at t = 0. The mean is frozen (``out`` detached, improved-diffusion's
        ``frozen_out``): L_vlb trains the variance alone and L_simple the mean."""
        x0_hat, _ = self.predict_x0_eps(out.detach().float(), xt, t, objective)
        model_mean, _, _ = self.q_posterior(x0_hat, xt, t)
        model_logvar = self.learned_logvar(v, t)
        true_mean, _, true_logvar = self.q_posterior(x0, xt, t)
        kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar).flatten(1).mean(1)
        nll = -discretized_gaussian_log_likelihood(x0, mean=model_mean, log_scale=0.5 * model_logvar).flatten(1).mean(1)
        return torch.where(t == 0, nll, kl) * (self.T / math.log(2.0))


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, exp logvar1) || N(mean2, exp logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: torch.Tensor, *, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) of 8-bit data in [-1, 1] under N(mean, exp(log_scale)^2) discretised into its 256
    bins (width 2/255; the end bins reach to infinity): improved-diffusion's decoder, with the
    exact normal CDF (``log_ndtr``, which keeps its tails) in place of its tanh approximation."""
    inv = torch.exp(-log_scale)
    upper, lower = inv * (x - mean + 1.0 / 255.0), inv * (x - mean - 1.0 / 255.0)
    log_cdf_upper = torch.special.log_ndtr(upper)  # P(X <= upper edge)
    log_sf_lower = torch.special.log_ndtr(-lower)  # P(X > lower edge)
    mid = torch.log((torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_sf_lower, mid))


def sample_timesteps(n: int, T: int, mode: str, *, generator: torch.Generator | None, device) -> torch.Tensor:
    """``n`` training timesteps in [0, T), drawn from ``generator`` alone (so a step's draw is
    a function of its seed, and resume stays exact).

    ``uniform`` draws each independently. ``antithetic`` draws ``n // 2`` and pairs each t with
    T-1-t, side by side (t0, T-1-t0, t1, T-1-t1, ...; a process's even slice holds whole pairs),
    as the written-out S-curve toy does: each pair spans the chain from both ends, which evens
    out the batch's mix of noise levels. An odd batch's last timestep is drawn uniformly.
    ``logit_normal`` draws t / T from a logit-normal (0, 1), SD3's timestep density.
    """
    if mode == "uniform":
        return torch.randint(0, T, (n,), generator=generator, device=device)
    if mode == "logit_normal":
        # u = sigmoid(z), z ~ N(0, 1), binned into the T steps: the density of u peaks at the
        # chain's middle and falls to zero at both ends, where the target is either almost
        # the clean image or almost pure noise and a step teaches the least.
        z = torch.randn(n, generator=generator, device=device)
        return (torch.sigmoid(z) * T).long().clamp_(0, T - 1)
    if mode != "antithetic":
        raise ValueError(f"unknown timestep sampling {mode!r}; choose one of {', '.join(T_SAMPLINGS)}")
    draws = torch.randint(0, T, ((n + 1) // 2,), generator=generator, device=device)
    first = draws[: n // 2]
    pairs = torch.stack([first, T - 1 - first], dim=1).flatten()
    return torch.cat([pairs, draws[n // 2 :]])


def sample_noise(shape, *, generator: torch.Generator | None, device, offset_noise: float = 0.0) -> torch.Tensor:
    """Gaussian noise, plus optional offset noise (a per-channel constant, Guttenberg 2023)

    that lets a model learn to change an image's mean brightness.
    """
    eps = torch.randn(shape, generator=generator, device=device)
    if offset_noise > 0 and len(shape) >= 3:  # images (B, C, H, W) and sequences (B, C, L)
        eps = eps + offset_noise * torch.randn(*shape[:2], *[1] * (len(shape) - 2), generator=generator, device=device)
    return eps
