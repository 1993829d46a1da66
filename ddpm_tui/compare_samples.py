"""Sample grids of several runs from one common training step, so they are judged on equal
training: what ``ddpm compare`` and the dashboard's compare screen both show.

A run records a grid every ``sample_every`` steps and a checkpoint every ``checkpoint_every``;
runs of different lengths or settings record them at different steps. Comparing each run's
*latest* grid would put a model of 12,000 steps beside one of 3,000, so both faces show the
grids from the latest step every run has one at (:func:`stored_grids`), or a step asked for.
When the runs share no step, the faces still compare everything else: they show each run's
latest grid under a visible :attr:`SampleView.note` rather than refuse the whole comparison.

Stored grids already differ in their noise (each run drew with its own seed, perhaps its own
sampler). :func:`same_noise_plan` picks a checkpoint step every run has and one
:class:`~core.sampling_spec.SamplingSpec`, seed and count for all, so that the fresh grids
differ only by the weights: sample i of each starts from the same noise (it depends only on
the seed and i, see :mod:`core.generate`). The CLI draws them in its own process
(:func:`draw_same_noise`); the dashboard, which never imports torch, in child processes
(:mod:`ddpm_tui.sample_client`) from the same plan.

Free of torch, Typer and Textual; only :func:`draw_same_noise` loads the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import DDPMError
from core.sampling_spec import SamplingError, SamplingSpec, resolve_for, resolve_spec

if TYPE_CHECKING:
    import numpy as np

    from core.store import CheckpointRecord, Run, SampleRecord, Store


class CompareError(DDPMError):
    """Grids that cannot be put side by side as asked; the message names the steps that work."""


def shared_steps(steps_by_run: Mapping[int, Sequence[int]]) -> list[int]:
    """The steps every run has, oldest first (none for no runs)."""
    sets = [set(steps) for steps in steps_by_run.values()]
    return sorted(set.intersection(*sets)) if sets else []


def steps_text(steps: Sequence[int], most: int = 10) -> str:
    """Steps as a user types them after ``--step`` (``6, 12, 18``); a long list keeps its ends
    and says how many, so an error stays one readable line."""
    if len(steps) <= most:
        return ", ".join(map(str, steps))
    head, tail = steps[:3], steps[-(most - 3) :]
    return f"{', '.join(map(str, head))}, ..., {', '.join(map(str, tail))} ({len(steps)} steps)"


def choose_step(runs: Sequence[Run], steps_by_run: Mapping[int, Sequence[int]], asked: int | None, what: str) -> int | None:
    """The step to compare at: ``asked`` when every run has ``what`` (samples, a checkpoint)
    there, else the latest step they share (None when they share none). An ``asked`` step
    some run lacks is refused, naming that run and the steps they share."""
    shared = shared_steps(steps_by_run)
    if asked is None:
        return shared[-1] if shared else None
    if asked in shared:
        return asked
    lacking = next(r for r in runs if asked not in steps_by_run[r.id])
    where = f"they all have {what} at steps {steps_text(shared)}" if shared else f"these runs have no {what} at a common step"
    raise CompareError(f"--step {asked}: run {lacking.id} ({lacking.name}) has no {what} at step {asked}; {where}")


@dataclass(frozen=True)
class SampleView:
    """The recorded grids to show side by side."""

    step: int | None  # the step every grid is from; None when the runs share no step
    shared: list[int]  # the steps at which every run recorded a grid, oldest first
    grids: dict[int, SampleRecord | None]  # run id -> its grid (None: the run has recorded none)

    @property
    def note(self) -> str | None:
        """One line when the grids are not from one step (each is its run's latest)."""
        if self.step is not None or not any(g is not None for g in self.grids.values()):
            return None
        return "these runs have no sample step in common: each grid is its run's latest, after different training"


def sample_steps(store: Store, runs: Sequence[Run]) -> dict[int, list[int]]:
    """Each run's sample steps, oldest first."""
    return {r.id: store.sample_steps(r.id) for r in runs}


def stored_grids(store: Store, runs: Sequence[Run], step: int | None = None) -> SampleView:
    """Each run's recorded grid from ``step`` (default: the latest step they all have one
    at; each run's latest when they share none)."""
    steps = sample_steps(store, runs)
    chosen = choose_step(runs, steps, step, "samples")
    if chosen is None:
        grids = {r.id: store.latest_samples(r.id) for r in runs}
    else:
        grids = {r.id: store.samples_at(r.id, chosen) for r in runs}
    return SampleView(chosen, shared_steps(steps), grids)


def common_spec(runs: Sequence[Run], sampler: str | None = None, steps: int | None = None) -> SamplingSpec:
    """One spec for every run: the first run's own (see :func:`resolve_spec`) with the
    overrides, which every other run must be able to draw exactly as it is (a run that cannot,
    say of another T under ddpm, is refused by name). Runs that differ in conditioning are
    refused: the same noise makes a digit of a chosen class in one and of any class in the
    other, which is no comparison."""
    kinds = {r.config.get("cond", "none") for r in runs}
    if len(kinds) > 1:
        raise CompareError("--same-noise: some of these runs are class-conditional and some are not; compare runs of one kind")
    first = runs[0]
    spec = resolve_spec(first.config, sampler, steps)
    for r in runs[1:]:
        try:
            resolve_for(r.config, spec)
        except SamplingError as e:
            raise CompareError(f"--same-noise with {spec.label}: run {r.id} ({r.name}) cannot: {e}") from None
    return spec


@dataclass(frozen=True)
class SameNoise:
    """Fresh grids for every run from one plan: the same step, spec, seed and count."""

    step: int  # the checkpoint step every run is drawn at
    shared: list[int]  # the checkpoint steps all the runs have, oldest first
    spec: SamplingSpec
    seed: int
    n: int
    checkpoints: dict[int, CheckpointRecord]  # run id -> its checkpoint at ``step``

    def as_dict(self) -> dict:
        return {"step": self.step, **self.spec.as_dict(), "seed": self.seed, "n": self.n}


def same_noise_plan(
    store: Store,
    runs: Sequence[Run],
    step: int | None = None,
    *,
    sampler: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    n: int | None = None,
) -> SameNoise:
    """The plan for fresh grids at ``step`` (default: the latest checkpoint step all the runs
    have): refused in one line when some run has no checkpoint there, naming the steps where
    all have one. ``n`` defaults to the first run's ``sample_n``, the size of its grids."""
    spec = common_spec(runs, sampler, steps)
    ckpts = {r.id: {c.step: c for c in store.checkpoints(r.id)} for r in runs}
    chosen = choose_step(runs, {k: sorted(v) for k, v in ckpts.items()}, step, "checkpoints")
    if chosen is None:
        have = "; ".join(f"run {r.id}: {steps_text(sorted(ckpts[r.id]), 4) or 'none'}" for r in runs)
        raise CompareError(
            f"--same-noise: these runs have no checkpoint at a common step ({have}); "
            "train them with the same checkpoint_every, or resume one to a step the others have"
        )
    count = int(n if n is not None else runs[0].config.get("sample_n", 16))
    shared = shared_steps({k: list(v) for k, v in ckpts.items()})
    return SameNoise(chosen, shared, spec, int(seed), count, {r.id: ckpts[r.id][chosen] for r in runs})


def draw_same_noise(plan: SameNoise, device: str = "auto") -> dict[int, np.ndarray]:
    """Each run's grid under ``plan``, drawn here (this loads torch)."""
    from core.generate import draw

    return {rid: draw(ck.path, plan.n, plan.spec, seed=plan.seed, device=device).data for rid, ck in plan.checkpoints.items()}
