"""How a run is sampled, resolved in one place, and the protocol every figure is measured under.

A sampling spec is (sampler, steps, eta). Every face that draws samples (the trainer's grids
and ``--eval-every``, ``ddpm sample``, ``ddpm eval``, the sample and explore screens,
``bench/quality.py``) asks :func:`resolve_spec` for it, with the user's overrides, so that a
default means the same thing everywhere: the run's own sampler, steps and eta, as it was tuned.

A figure (FID, KID, confident share ...) depends on how its samples were drawn, so each one
is recorded with its :class:`Protocol` (spec, n, seed). Figures of different protocols are
never one series: a curve, a ranking or a study table only ever holds one protocol, which
:attr:`Protocol.key` names. The seed is recorded but is not part of the key: two seeds of one
protocol are replicates of the same measurement.

Free of torch, so the CLI can check a request before it loads the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.choices import ETA_MAX, SAMPLERS
from core.errors import DDPMError


class SamplingError(DDPMError):
    """A sampling request that cannot be honoured; the message says what to change."""


@dataclass(frozen=True)
class SamplingSpec:
    sampler: str  # ddpm | ddim
    steps: int  # network calls; always T for ddpm
    eta: float  # DDIM's noise scale; ddpm's ancestral noise is eta 1 by construction

    @property
    def label(self) -> str:
        """``ddim-50 eta 1.8`` or ``ddpm-1000``: how tables and titles name it."""
        if self.sampler == "ddpm":
            return f"ddpm-{self.steps}"
        return f"{self.sampler}-{self.steps} eta {self.eta:g}"

    def as_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "steps": self.steps, "eta": self.eta}


def _get(cfg: Any, name: str) -> Any:
    return cfg[name] if isinstance(cfg, dict) else getattr(cfg, name)


def resolve_spec(cfg: Any, sampler: str | None = None, steps: int | None = None, eta: float | None = None) -> SamplingSpec:
    """The spec for a run's config (a RunConfig or its dict), overridden where asked.

    Defaults are the run's own ``sampler``, ``sample_steps`` and ``eta``. The ddpm sampler
    always walks all T steps and has no eta to set: asking for either is an error, not a
    silently ignored option.
    """
    T = int(_get(cfg, "T"))
    sampler = sampler or str(_get(cfg, "sampler"))
    if sampler not in SAMPLERS:
        raise SamplingError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)}")
    if sampler == "ddpm":
        if steps is not None and int(steps) != T:
            raise SamplingError(f"the ddpm sampler always takes T={T} steps; use --sampler ddim for --steps {steps}")
        if eta is not None and float(eta) != 1.0:
            raise SamplingError("eta sets the ddim sampler's noise; ddpm's noise is fixed (use --sampler ddim)")
        return SamplingSpec("ddpm", T, 1.0)
    steps = int(_get(cfg, "sample_steps")) if steps is None else int(steps)
    if not 1 <= steps <= T:
        raise SamplingError(f"steps: {steps} is out of range; the run has T={T}, so use 1 to {T}")
    eta = float(_get(cfg, "eta")) if eta is None else float(eta)
    if not math.isfinite(eta) or not 0.0 <= eta <= ETA_MAX:
        raise SamplingError(f"eta: {eta} is out of range; use a number from 0 to {ETA_MAX:g}")
    return SamplingSpec(sampler, steps, eta)


@dataclass(frozen=True)
class Protocol:
    """How a figure was measured: the spec, how many samples, and their seed."""

    spec: SamplingSpec
    n: int
    seed: int = 0

    @property
    def key(self) -> str:
        """What must match for two figures to be compared: ``ddim-50 eta 1.8, n=1000``."""
        return f"{self.spec.label}, n={self.n}"

    @classmethod
    def from_row(cls, row: dict) -> Protocol:
        """From an ``evals`` row (sampler, steps, eta, n, seed)."""
        spec = SamplingSpec(str(row["sampler"]), int(row["steps"]), float(row["eta"]))
        return cls(spec, int(row["n"]), int(row.get("seed") or 0))


def shared_protocol(evals_by_run: dict[int, list[dict]]) -> str | None:
    """The protocol to compare runs under: the one the most runs were evaluated under (ties
    go to the one used most recently). ``evals_by_run`` holds each run's ``evals`` rows, each
    with its ``protocol`` key and ``time``; None when no run has been evaluated."""
    runs_with: dict[str, set[int]] = {}
    last_used: dict[str, float] = {}
    for run, rows in evals_by_run.items():
        for r in rows:
            runs_with.setdefault(r["protocol"], set()).add(run)
            last_used[r["protocol"]] = max(last_used.get(r["protocol"], 0.0), float(r.get("time") or 0.0))
    if not runs_with:
        return None
    return max(runs_with, key=lambda k: (len(runs_with[k]), last_used[k]))


def latest_under(rows: list[dict], protocol: str | None) -> dict | None:
    """A run's latest evaluation under one protocol (its ``evals`` rows, oldest first)."""
    for r in reversed(rows):
        if r["protocol"] == protocol:
            return r
    return None
