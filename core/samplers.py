"""Reverse-process samplers: DDPM ancestral sampling, DDIM and DPM-Solver++(2M).

Both take a ``model(x_t, t) -> output`` callable and a :class:`~core.diffusion.Diffusion`,
draw every Gaussian from a :class:`SampleNoise` (sample i's noise depends only on the seed and
i, so a grid is the same whatever the batch size, and two seeds share no image), and can
record a trajectory of (x_t, predicted x_0) for the denoising animation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from core.choices import SAMPLERS
from core.diffusion import Diffusion, extract

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[], torch.Tensor]  # a fresh standard Gaussian of the batch's shape


def stream_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of a draw seeded ``seed`` (splitmix64 of the pair),
    so that nearby (seed, index) pairs give unrelated streams and no two pairs share one."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(index) + 1) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return (z ^ (z >> 31)) >> 1


class SampleNoise:
    """Per-sample Gaussian noise, as EDM's ``StackedRandomGenerator``: one generator for each
    sample, seeded by (seed, index). ``--seed 0`` and ``--seed 1`` then share no image (a
    seed-per-batch scheme made seed 1's first batch seed 0's second), and sample i is the same
    image whether it was drawn in a batch of 16 or of 256.

    Each generator draws several steps' noise at once (one call per sample per chunk rather
    than per step), which keeps per-sample streams cheap for many small samples. The chunk
    depends only on the size of one sample, never on the batch, so the streams do not either.
    """

    MAX_CHUNK = 32
    CHUNK_VALUES = 1 << 16  # values one sample draws at a time, at most: bounds the buffer for large images

    def __init__(self, shape: tuple[int, ...], seed: int, start: int = 0, device: torch.device | str = "cpu"):
        self.shape, self.device = tuple(shape), torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(stream_seed(seed, start + i)) for i in range(shape[0])]
        size = math.prod(self.shape[1:])
        self.chunk = max(1, min(self.MAX_CHUNK, self.CHUNK_VALUES // max(1, size)))
        self._buffer: torch.Tensor | None = None
        self._next = self.chunk

    def __call__(self) -> torch.Tensor:
        if self._next == self.chunk:
            one = (self.chunk, *self.shape[1:])
            self._buffer = torch.stack([torch.randn(one, generator=g, device=self.device) for g in self.generators], dim=1)
            self._next = 0
        self._next += 1
        return self._buffer[self._next - 1]


@dataclass
class SampleResult:
    """Final samples plus, when asked for, snapshots along the way (oldest first)."""

    x: torch.Tensor
    timesteps: list[int] = field(default_factory=list)
    xt: list[torch.Tensor] = field(default_factory=list)
    x0: list[torch.Tensor] = field(default_factory=list)
    start: torch.Tensor | None = None  # x_T, the noise the trajectory starts from (when recorded)


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """Evenly spaced 'trailing' timesteps, from T-1 downwards, ``steps`` of them.

    Trailing spacing (Lin et al. 2024) always starts at t = T-1, where the model was trained
    on pure noise, which matters for few-step sampling; with steps = T it is every step.
    """
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T={T}, got {steps}")
    ratio = T / steps
    ts = [int(round(T - i * ratio)) - 1 for i in range(steps)]
    # Rounding can in principle repeat a value for odd ratios; keep them strictly decreasing.
    out: list[int] = []
    for t in ts:
        t = max(0, t)
        if out and t >= out[-1]:
            t = out[-1] - 1
        out.append(t)
    return out


class Denoiser:
    """The network as every sampler reads it: at (x_t, t), the x0 and eps its output implies
    under the objective (x0 clipped to [-1, 1] when asked, eps made to agree).

    A self-conditioned network (``self_condition``, Chen et al. 2022) is called
    ``model(x, t, x_self)`` with the x0 estimate of the call before (zeros at the first), as
    Analog Bits samples: the estimate it trained with on half of its batches. A network with
    a learned variance (``learned_variance``) outputs twice the channels; the second half, v,
    is kept as ``self.v`` for the ddpm sampler, and the others read the first half alone."""

    def __init__(
        self,
        model: ModelFn,
        diffusion: Diffusion,
        objective: str,
        clip: bool,
        *,
        self_condition: bool = False,
        learned_variance: bool = False,
    ):
        self.model, self.diffusion, self.objective, self.clip = model, diffusion, objective, clip
        self.self_condition, self.learned_variance = self_condition, learned_variance
        self.x0: torch.Tensor | None = None  # the last estimate, fed back when self-conditioned
        self.v: torch.Tensor | None = None  # the last call's variance interpolation (learned_variance)

    def __call__(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        if self.self_condition:
            out = self.model(x, tt, self.x0 if self.x0 is not None else torch.zeros_like(x))
        else:
            out = self.model(x, tt)
        out = out.float()
        if self.learned_variance:
            out, self.v = out.chunk(2, dim=1)
        x0, eps = self.diffusion.predict_x0_eps(out, x, tt, self.objective)
        if self.clip:
            x0 = x0.clamp(-1.0, 1.0)
            eps = self.diffusion.eps_from_x0(x, tt, x0)
        self.x0 = x0
        return tt, x0, eps


def windowed_eta(eta: float, eta_window: float, t: int, T: int) -> float:
    """The eta of a step from timestep ``t``: ``eta`` where ``t < eta_window * T``, and above
    that an eta over 1 held at 1, the reverse process's own noise.

    Extra noise (eta above 1) mends the errors of an under-trained network; kept out of the
    noisiest steps, where a sample's layout is drawn, it mended more on ``quick``'s weights
    (README gives the figures), as Karras et al. (2022) confine their stochastic "churn" to a
    window of noise levels (S_tmin, S_tmax). The window here starts at t = 0, so 1 is the
    plain sampler and 0 is eta 1 throughout; an eta at most 1 is never changed."""
    return eta if t < eta_window * T else min(eta, 1.0)


def _record_every(n_steps: int, frames: int) -> int:
    return max(1, n_steps // max(1, frames))


@torch.inference_mode()
def ddpm_sample(
    model: ModelFn,
    diffusion: Diffusion,
    *,
    noise: NoiseFn,
    objective: str = "eps",
    clip_x0: bool = True,
    trajectory_frames: int = 0,
    self_condition: bool = False,
    learned_variance: bool = False,
    variance: str = "posterior",
) -> SampleResult:
    """Ancestral sampling through all T steps (Ho et al. 2020).

    x_{t-1} = posterior mean(x0_hat, x_t) + exp(0.5 * log var) z, with z = 0 at t = 0; the log
    variance is the posterior's (clipped at t = 0) or, with ``variance="beta"``, log beta_t
    (Ho et al.'s other fixed choice, the S-curve toy's), or a learned variance's interpolation
    between the two (:meth:`~core.diffusion.Diffusion.learned_logvar`).
    """
    x = noise()
    res = SampleResult(x=x, start=x.detach().cpu() if trajectory_frames else None)
    every = _record_every(diffusion.T, trajectory_frames)
    denoise = Denoiser(model, diffusion, objective, clip_x0, self_condition=self_condition, learned_variance=learned_variance)
    for i, t in enumerate(range(diffusion.T - 1, -1, -1)):
        tt, x0, _ = denoise(x, t)
        mean, _, logvar = diffusion.q_posterior(x0, x, tt)
        if denoise.v is not None:
            logvar = diffusion.learned_logvar(denoise.v, tt)
        elif variance == "beta":
            logvar = torch.full_like(logvar, math.log(float(diffusion.betas_64[t])))
        if t > 0:
            x = mean + (0.5 * logvar).exp() * noise()
        else:
            x = mean
        if trajectory_frames and (i % every == 0 or t == 0):
            res.timesteps.append(t)
            res.xt.append(x.detach().cpu())
            res.x0.append(x0.detach().cpu())
    res.x = x
    return res


@torch.inference_mode()
def ddim_sample(
    model: ModelFn,
    diffusion: Diffusion,
    *,
    noise: NoiseFn,
    steps: int = 50,
    eta: float = 0.0,
    eta_window: float = 1.0,
    objective: str = "eps",
    clip_x0: bool = True,
    trajectory_frames: int = 0,
    self_condition: bool = False,
    learned_variance: bool = False,
) -> SampleResult:
    """DDIM (Song et al. 2021) over ``steps`` trailing timesteps; eta = 0 is deterministic,
    eta = 1 matches DDPM's variance on the sub-sequence. An eta above 1 applies below
    ``eta_window * T`` alone (:func:`windowed_eta`).

    eta > 1 adds more fresh noise than DDPM, like the "churn" of Karras et al.'s stochastic
    sampler: each step then re-noises the predicted x0 further, which mends the errors of an
    under-trained model. The noise is capped at sqrt(1 - abar_prev), where the step becomes
    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) z, so x_prev always has the marginal
    variance of its timestep (uncapped, a large eta would over-noise it).
    """
    x = noise()
    ts = ddim_timesteps(diffusion.T, steps)
    res = SampleResult(x=x, start=x.detach().cpu() if trajectory_frames else None)
    every = _record_every(len(ts), trajectory_frames)
    # A learned variance is read and left unused: this sampler sets its own noise.
    denoise = Denoiser(model, diffusion, objective, clip_x0, self_condition=self_condition, learned_variance=learned_variance)
    ac = diffusion.alphas_cumprod
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        tt, x0, eps = denoise(x, t)
        a_t = extract(ac, tt, x.ndim)
        a_prev = extract(ac, torch.full_like(tt, t_prev), x.ndim) if t_prev >= 0 else torch.ones_like(a_t)
        e = windowed_eta(eta, eta_window, t, diffusion.T)
        sigma = e * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
        sigma = torch.minimum(sigma, (1 - a_prev).sqrt())  # see the docstring: eta > 1
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        if e > 0 and t_prev >= 0:
            x = x + sigma * noise()
        if trajectory_frames and (i % every == 0 or t_prev < 0):
            res.timesteps.append(t)
            res.xt.append(x.detach().cpu())
            res.x0.append(x0.detach().cpu())
    res.x = x
    return res


@torch.inference_mode()
def dpmpp2m_sample(
    model: ModelFn,
    diffusion: Diffusion,
    *,
    noise: NoiseFn,
    steps: int = 15,
    eta: float = 0.0,
    eta_window: float = 1.0,
    objective: str = "eps",
    clip_x0: bool = True,
    trajectory_frames: int = 0,
    self_condition: bool = False,
    learned_variance: bool = False,
) -> SampleResult:
    """DPM-Solver++(2M) (Lu et al. 2022), multistep, in data-prediction form, over the same
    trailing timesteps as DDIM (on the exact Gaussian model this grid converged steadily with
    the step count; an evenly spaced grid ending at t = 0 did not at 10-15 steps).

    With lambda = log(alpha / sigma) (alpha = sqrt(abar), sigma = sqrt(1 - abar)) and
    h = lambda_next - lambda, each step is
    ``x_next = (sigma_next / sigma) x - alpha_next (exp(-h) - 1) D``, where D is the predicted
    x0 for the first step and, after it, the second-order blend
    ``(1 + 1/(2r)) x0 - 1/(2r) x0_prev`` with ``r = h_prev / h``. The last step goes to
    sigma = 0, which leaves the predicted x0 (first order there, as DDIM's last step). Every
    objective works through its x0 prediction; clipping it is the solver's thresholding.

    ``eta`` > 0 makes it the SDE solver (DPM-Solver++(2M) SDE, k-diffusion's
    ``sample_dpmpp_2m_sde`` with its midpoint correction, written for VP): each step keeps
    ``exp(-eta h)`` of the noise it carries and draws the rest fresh,
    ``x_next = (sigma_next / sigma) exp(-eta h) x - alpha_next expm1(-(1 + eta) h) D
    + sigma_next sqrt(-expm1(-2 eta h)) z``; eta = 1 is the reverse SDE. Fresh noise mends
    what an undertrained network gets wrong, as DDIM's eta does, and as there an eta above 1
    applies below ``eta_window * T`` alone (:func:`windowed_eta`).
    """
    x = noise()
    ts = ddim_timesteps(diffusion.T, steps)
    res = SampleResult(x=x, start=x.detach().cpu() if trajectory_frames else None)
    every = _record_every(len(ts), trajectory_frames)
    # A learned variance is read and left unused: this sampler sets its own noise.
    denoise = Denoiser(model, diffusion, objective, clip_x0, self_condition=self_condition, learned_variance=learned_variance)
    abar = diffusion.alphas_cumprod_64  # float64 scalars: lambda differences lose digits in float32

    def coefs(t: int) -> tuple[float, float, float]:
        a = float(abar[t])
        alpha, sigma = math.sqrt(a), math.sqrt(1.0 - a)
        return alpha, sigma, math.log(alpha / sigma)

    x0_prev, h_prev = None, None
    for i, t in enumerate(ts):
        _, x0, _ = denoise(x, t)
        if i + 1 < len(ts):
            _, sigma, lam = coefs(t)
            alpha_n, sigma_n, lam_n = coefs(ts[i + 1])
            h = lam_n - lam
            if x0_prev is None:
                d = x0
            else:
                r = h_prev / h
                d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
            e = windowed_eta(eta, eta_window, t, diffusion.T)
            x = (sigma_n / sigma) * math.exp(-e * h) * x - alpha_n * math.expm1(-(1.0 + e) * h) * d
            if e > 0:
                x = x + sigma_n * math.sqrt(-math.expm1(-2.0 * e * h)) * noise()
            x0_prev, h_prev = x0, h
        else:
            x = x0
        if trajectory_frames and (i % every == 0 or i + 1 == len(ts)):
            res.timesteps.append(t)
            res.xt.append(x.detach().cpu())
            res.x0.append(x0.detach().cpu())
    res.x = x
    return res


def sample(
    model: ModelFn,
    diffusion: Diffusion,
    shape: tuple[int, ...],
    *,
    sampler: str = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    eta_window: float = 1.0,
    objective: str = "eps",
    seed: int = 0,
    start: int = 0,
    device: torch.device | str = "cpu",
    clip_x0: bool = True,
    trajectory_frames: int = 0,
    noise: NoiseFn | None = None,
    self_condition: bool = False,
    learned_variance: bool = False,
    ddpm_variance: str = "posterior",
) -> SampleResult:
    """One entry point for every sampler. Sample i of the batch is sample ``start + i`` of
    the draw seeded ``seed`` (see :class:`SampleNoise`); ``noise`` replaces that source. A
    self-conditioned model is called ``model(x, t, x_self)``; a learned variance is used by
    ddpm alone (see :class:`Denoiser`)."""
    noise = noise or SampleNoise(shape, seed, start, device)
    common = dict(
        noise=noise,
        objective=objective,
        clip_x0=clip_x0,
        trajectory_frames=trajectory_frames,
        self_condition=self_condition,
        learned_variance=learned_variance,
    )
    if sampler == "ddpm":
        if steps not in (None, diffusion.T):
            raise ValueError(f"the ddpm sampler always takes T={diffusion.T} steps; use --sampler ddim for {steps}")
        return ddpm_sample(model, diffusion, variance=ddpm_variance, **common)
    if sampler == "ddim":
        return ddim_sample(model, diffusion, steps=steps or min(50, diffusion.T), eta=eta, eta_window=eta_window, **common)
    if sampler == "dpmpp2m":
        return dpmpp2m_sample(model, diffusion, steps=steps or min(15, diffusion.T), eta=eta, eta_window=eta_window, **common)
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
