"""Beta schedules for the forward process.

Every schedule returns ``betas`` as a float64 numpy array of length ``T``. Float64 matters:
the cumulative product of 1000 terms near one loses digits in float32, and the posterior
coefficients are differences of such products.

Numpy, not torch, so that the dashboard can draw a run's schedule and noise its data forward
without loading torch; :class:`core.diffusion.Diffusion` takes the array with
``torch.from_numpy``.
"""

from __future__ import annotations

import math

import numpy as np

from core.choices import SCHEDULES

# Ho et al. (2020) use beta from 1e-4 to 0.02 over T = 1000 steps. Scaling both ends by
# 1000 / T keeps the total amount of noise (and so abar_T ~ 0) the same for shorter chains,
# as in improved-diffusion's get_named_beta_schedule.
_BETA_START = 1e-4
_BETA_END = 0.02
_MAX_BETA = 0.999


def _scaled_range(T: int) -> tuple[float, float]:
    scale = 1000.0 / T
    return scale * _BETA_START, min(scale * _BETA_END, _MAX_BETA)


def linear_betas(T: int) -> np.ndarray:
    """Linear betas (Ho et al. 2020), scaled by 1000 / T so short chains end in noise."""
    start, end = _scaled_range(T)
    return np.linspace(start, end, T, dtype=np.float64)


def quadratic_betas(T: int) -> np.ndarray:
    """Betas linear in sqrt(beta): gentler at the start than linear, same end points."""
    start, end = _scaled_range(T)
    return np.linspace(start**0.5, end**0.5, T, dtype=np.float64) ** 2


def _betas_from_alpha_bar(alpha_bar, T: int) -> np.ndarray:
    """Turn a continuous abar(s), s in [0, 1], into T clipped betas."""
    s = np.arange(T + 1, dtype=np.float64) / T
    ab = alpha_bar(s)
    betas = 1.0 - ab[1:] / ab[:-1]
    return np.clip(betas, 0.0, _MAX_BETA)


def cosine_betas(T: int, s: float = 0.008) -> np.ndarray:
    """Cosine schedule of Nichol and Dhariwal (2021): abar(t) = cos^2((t + s)/(1 + s) pi/2)."""

    def alpha_bar(u: np.ndarray) -> np.ndarray:
        return np.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return _betas_from_alpha_bar(alpha_bar, T)


def sigmoid_betas(T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> np.ndarray:
    """Sigmoid schedule of Jabri et al. (2022), defined on abar; good for small images."""
    v_start = 1.0 / (1.0 + math.exp(-start / tau))
    v_end = 1.0 / (1.0 + math.exp(-end / tau))

    def alpha_bar(u: np.ndarray) -> np.ndarray:
        v = 1.0 / (1.0 + np.exp(-(u * (end - start) + start) / tau))
        return (v_end - v) / (v_end - v_start)

    return _betas_from_alpha_bar(alpha_bar, T)


def sigmoid_beta_betas(T: int, start: float = 1e-5, end: float = 5e-3) -> np.ndarray:
    """Betas on a sigmoid ramp, ``sigmoid(linspace(-6, 6, T)) * (end - start) + start``, as the
    written-out S-curve toy has them (the ``scurve-seed`` preset). Unlike ``sigmoid``, which is
    a sigmoid on abar, this is a sigmoid on beta itself with fixed end points: it is not scaled
    by T, and with these defaults the chain does not end in pure noise (sum of betas ~ T / 400).
    """
    ramp = 1.0 / (1.0 + np.exp(-np.linspace(-6.0, 6.0, T, dtype=np.float64)))
    return ramp * (end - start) + start


def make_betas(name: str, T: int) -> np.ndarray:
    """Betas for a named schedule; raises ValueError naming the allowed schedules."""
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    table = {
        "linear": linear_betas,
        "cosine": cosine_betas,
        "quadratic": quadratic_betas,
        "sigmoid": sigmoid_betas,
        "sigmoid-beta": sigmoid_beta_betas,
    }
    if name not in table:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    return table[name](T)
