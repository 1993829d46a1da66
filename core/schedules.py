"""Beta schedules for the forward process.

Every schedule returns ``betas`` as a float64 tensor of length ``T``. Float64 matters: the
cumulative product of 1000 terms near one loses digits in float32, and the posterior
coefficients are differences of such products.
"""

from __future__ import annotations

import math

import torch

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


def linear_betas(T: int) -> torch.Tensor:
    """Linear betas (Ho et al. 2020), scaled by 1000 / T so short chains end in noise."""
    start, end = _scaled_range(T)
    return torch.linspace(start, end, T, dtype=torch.float64)


def quadratic_betas(T: int) -> torch.Tensor:
    """Betas linear in sqrt(beta): gentler at the start than linear, same end points."""
    start, end = _scaled_range(T)
    return torch.linspace(start**0.5, end**0.5, T, dtype=torch.float64) ** 2


def _betas_from_alpha_bar(alpha_bar, T: int) -> torch.Tensor:
    """Turn a continuous abar(s), s in [0, 1], into T clipped betas."""
    s = torch.arange(T + 1, dtype=torch.float64) / T
    ab = alpha_bar(s)
    betas = 1.0 - ab[1:] / ab[:-1]
    return betas.clamp(min=0.0, max=_MAX_BETA)


def cosine_betas(T: int, s: float = 0.008) -> torch.Tensor:
    """Cosine schedule of Nichol and Dhariwal (2021): abar(t) = cos^2((t + s)/(1 + s) pi/2)."""

    def alpha_bar(u: torch.Tensor) -> torch.Tensor:
        return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return _betas_from_alpha_bar(alpha_bar, T)


def sigmoid_betas(T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> torch.Tensor:
    """Sigmoid schedule of Jabri et al. (2022), defined on abar; good for small images."""
    v_start = 1.0 / (1.0 + math.exp(-start / tau))
    v_end = 1.0 / (1.0 + math.exp(-end / tau))

    def alpha_bar(u: torch.Tensor) -> torch.Tensor:
        v = torch.sigmoid((u * (end - start) + start) / tau)
        return (v_end - v) / (v_end - v_start)

    return _betas_from_alpha_bar(alpha_bar, T)


def make_betas(name: str, T: int) -> torch.Tensor:
    """Betas for a named schedule; raises ValueError naming the allowed schedules."""
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    table = {
        "linear": linear_betas,
        "cosine": cosine_betas,
        "quadratic": quadratic_betas,
        "sigmoid": sigmoid_betas,
    }
    if name not in table:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    return table[name](T)
