"""How a run is sampled, resolved in one place, and the protocol every figure is measured under.

A sampling spec is (sampler, steps, eta, guidance, eta window). Every face that draws samples
(the trainer's grids and ``--eval-every``, ``ddpm sample``, ``ddpm eval``, the sample and
explore screens, ``bench/quality.py``) asks :func:`resolve_spec` for it, with the user's
overrides, so that a default means the same thing everywhere: the run's own sampler, steps,
eta and window, as it was tuned.

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

from core.choices import ETA_MAX, GUIDANCE_MAX, SAMPLERS
from core.config import DDIM_OWN
from core.errors import DDPMError


class SamplingError(DDPMError):
    """A sampling request that cannot be honoured; the message says what to change."""


@dataclass(frozen=True)
class SamplingSpec:
    sampler: str  # ddpm | ddim | dpmpp2m
    steps: int  # network calls (twice that with guidance); always T for ddpm
    eta: float  # DDIM's or DPM-Solver++'s noise (0: deterministic); ddpm's ancestral noise is eta 1
    guidance: float | None = None  # classifier-free guidance of a conditional run; None for an unconditional one
    eta_window: float = 1.0  # an eta above 1 applies where t < eta_window * T alone (core.samplers.windowed_eta)

    @property
    def label(self) -> str:
        """``ddim-50 eta 1.8``, ``ddpm-1000``, ``dpmpp2m-15 w 2``, ``dpmpp2m-20 eta 1``,
        ``ddim-50 eta 1.8 window 0.7``: how tables and titles name it."""
        if self.sampler == "ddpm":
            text = f"ddpm-{self.steps}"
        elif self.sampler == "dpmpp2m":  # the ODE solver's label as before; with eta the SDE's
            text = f"dpmpp2m-{self.steps}" + (f" eta {self.eta:g}" if self.eta else "")
        else:
            text = f"{self.sampler}-{self.steps} eta {self.eta:g}"
        if self.eta_window < 1.0:
            text += f" window {self.eta_window:g}"
        return text if self.guidance is None else f"{text} w {self.guidance:g}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler, "steps": self.steps, "eta": self.eta, "guidance": self.guidance,
            "eta_window": self.eta_window,
        }  # fmt: skip


# The run-wide setting each of DDIM's own (ddim_*) stands in for, read the other way round.
DDIM_SETTING = {own: ddim for ddim, own in DDIM_OWN.items()}


def _get(cfg: Any, name: str, default: Any = None) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def resolve_spec(
    cfg: Any,
    sampler: str | None = None,
    steps: int | None = None,
    eta: float | None = None,
    guidance: float | None = None,
    eta_window: float | None = None,
) -> SamplingSpec:
    """The spec for a run's config (a RunConfig or its dict), overridden where asked.

    Defaults are the run's own ``sampler``, ``sample_steps``, ``eta``, ``eta_window`` and (for
    a conditional run) ``guidance``; DDIM asked of a run whose sampler is another takes the
    run's ``ddim_steps``, ``ddim_eta`` and ``ddim_eta_window`` where set (each sampler's best
    eta differs: quick's DPM-Solver++ takes 8, its DDIM 1.8). The ddpm sampler always walks
    all T steps and has no eta or eta window to set; an unconditional run has no guidance:
    asking for any of them is an error, not a silently ignored option. DPM-Solver++ is the ODE
    solver (eta 0) unless eta is asked for, or the run's own sampler is dpmpp2m with an eta:
    then the SDE solver. The eta window confines an eta above 1; with an eta at most 1 the
    run's own window changes nothing and the spec drops it (window 1), so that two specs that
    draw the same samples carry one label.
    """
    T = int(_get(cfg, "T"))
    sampler = sampler or str(_get(cfg, "sampler"))
    if sampler not in SAMPLERS:
        raise SamplingError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)}")
    conditional = _get(cfg, "cond", "none") == "class"
    if guidance is not None and not conditional:
        raise SamplingError("guidance: this run is unconditional (cond=none); guidance steers a class-conditional run")
    w = None
    if conditional:
        w = float(_get(cfg, "guidance", 1.0)) if guidance is None else float(guidance)
        if not math.isfinite(w) or not 0.0 <= w <= GUIDANCE_MAX:
            raise SamplingError(f"guidance: {w} is out of range; use a number from 0 (unconditional) to {GUIDANCE_MAX:g}")
    if sampler == "ddpm":
        if steps is not None and int(steps) != T:
            raise SamplingError(f"the ddpm sampler always takes T={T} steps; use --sampler ddim for --steps {steps}")
        if eta is not None and float(eta) != 1.0:
            raise SamplingError("eta sets the ddim sampler's noise; ddpm's noise is fixed (use --sampler ddim)")
        if eta_window is not None and float(eta_window) != 1.0:
            raise SamplingError("eta_window: the ddpm sampler's noise is fixed; the window is for ddim's or dpmpp2m's eta")
        return SamplingSpec("ddpm", T, 1.0, w)
    # DDIM asked of a run that samples with another draws with the run's DDIM settings where
    # it has them (ddim_steps, ddim_eta, ddim_eta_window), else with the run's own.
    ddim_apart = sampler == "ddim" and str(_get(cfg, "sampler")) != "ddim"

    def setting(name: str, default: Any = None) -> Any:
        value = _get(cfg, DDIM_SETTING[name]) if ddim_apart else None
        return _get(cfg, name, default) if value is None else value

    steps = int(setting("sample_steps")) if steps is None else int(steps)
    if not 1 <= steps <= T:
        raise SamplingError(f"steps: {steps} is out of range; the run has T={T}, so use 1 to {T}")
    # The run's eta and window are its own sampler's (DDIM's noise means nothing to
    # DPM-Solver++'s ODE), and DDIM's when it is asked for.
    inherits = str(_get(cfg, "sampler")) == sampler or sampler == "ddim"
    if eta is None:
        eta = float(setting("eta")) if inherits else 0.0
    eta = float(eta)
    if not math.isfinite(eta) or not 0.0 <= eta <= ETA_MAX:
        raise SamplingError(f"eta: {eta} is out of range; use a number from 0 to {ETA_MAX:g}")
    asked = eta_window is not None
    window = float(eta_window) if asked else float(setting("eta_window", 1.0)) if inherits else 1.0
    if not math.isfinite(window) or not 0.0 <= window <= 1.0:
        raise SamplingError(f"eta_window: {window} is out of range; use a number from 0 to 1 (the share of T, from t = 0)")
    if window < 1.0 and eta <= 1.0:
        if asked:
            raise SamplingError(f"eta_window: it confines an eta above 1, and eta {eta:g} adds no extra noise; drop the window")
        window = 1.0
    return SamplingSpec(sampler, steps, eta, w, window)


def resolve_for(cfg: Any, spec: SamplingSpec) -> SamplingSpec:
    """A spec already resolved (from the command line, or for another run), as the run of
    ``cfg`` draws it: every field asked for as it is, so a run that cannot honour it raises
    :class:`SamplingError`. Carries every field, so a new one cannot be forgotten by a caller."""
    return resolve_spec(cfg, spec.sampler, spec.steps, spec.eta, spec.guidance, spec.eta_window)


def balanced_labels(n: int, classes: list[int]) -> list[int]:
    """``n`` labels over ``classes``, as equal in number as ``n`` allows (the first classes
    get one more when it does not divide) and in order, so a grid of them shows one class per
    row and a judged sample is balanced."""
    k = len(classes)
    per, extra = divmod(n, k)
    return [c for i, c in enumerate(classes) for _ in range(per + (1 if i < extra else 0))]


def parse_classes(values: list[str] | None, what: str = "--class") -> list[int] | None:
    """``7``, ``0-3`` and ``5,6`` (``ddpm sample --class``, repeatable, and the sample screen's
    classes field) as class numbers in the order given; None (every class) when nothing is
    given. ``what`` names the field in the error, so the same reading serves both faces."""
    if not values:
        return None
    out: list[int] = []
    for value in values:
        for part in value.split(","):
            lo, dash, hi = part.strip().partition("-")
            if not lo.isdigit() or (dash and (not hi.isdigit() or int(hi) < int(lo))):
                raise SamplingError(f"{what} {value!r}: expected a class such as 7, a range such as 0-9, or a list such as 1,7")
            out += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
    return out


def sample_labels(cfg: Any, n: int, classes: list[int] | None, what: str = "--class") -> list[int] | None:
    """The class of each of ``n`` samples of a conditional run: ``classes`` (default all) in
    turn, balanced and in order, so a grid has one class per row; None for an unconditional
    run, which refuses classes in one line (naming the field ``what``)."""
    if _get(cfg, "cond", "none") != "class":
        if classes:
            raise SamplingError(f"{what}: this run is unconditional (cond=none); it draws no class on demand")
        return None
    k = int(_get(cfg, "num_classes", 10))
    classes = list(range(k)) if not classes else classes
    bad = [c for c in classes if not 0 <= c < k]
    if bad:
        raise SamplingError(f"{what} {bad[0]}: this run's classes are 0 to {k - 1}")
    return balanced_labels(n, classes)


def classes_text(classes: list[int] | None) -> str:
    """How a title names the classes asked for: ``3,5``, or ``all``."""
    return "all" if not classes else ",".join(map(str, classes))


def per_row(labels: list[int] | None) -> int | None:
    """Images per row that put one class on each row: the count of each class when all are
    equal (a balanced grid), else None."""
    if not labels:
        return None
    counts = {c: labels.count(c) for c in labels}
    return next(iter(counts.values())) if len(set(counts.values())) == 1 else None


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
        """From an ``evals`` row (sampler, steps, eta, guidance, eta_window, n, seed); a row
        recorded before windows existed (no ``eta_window``) was drawn without one."""
        g, window = row.get("guidance"), row.get("eta_window")
        spec = SamplingSpec(
            str(row["sampler"]), int(row["steps"]), float(row["eta"]), None if g is None else float(g),
            1.0 if window is None else float(window),
        )  # fmt: skip
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
