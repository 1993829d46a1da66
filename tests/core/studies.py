"""Studies recorded as a sweep records them (``core.sweep`` into real SQLite), with the
progress, evaluations and sample grids a trained study would have written: the study view is
tested on exact numbers without training anything."""

from __future__ import annotations

import numpy as np

from core.sampling_spec import Protocol, SamplingSpec
from core.store import Store
from core.sweep import expand, new_runs

DDIM = Protocol(SamplingSpec("ddim", 50, 0.0), 1000, 0)
OTHER = Protocol(SamplingSpec("ddim", 10, 0.0), 200, 0)


def sweep(store: Store, name: str, sets: dict[str, str], seeds: int | None = None) -> list[int]:
    """Record ``ddpm sweep --preset smoke --set ... --seeds N --name NAME``; the new run ids."""
    return store.create_runs(new_runs(expand(name, "smoke", sets, seeds=seeds), name, "smoke"))


def finish(store: Store, run_id: int, *, loss: float | None = None, ips: float = 100.0, elapsed: float = 10.0) -> None:
    """As a worker leaves a run that trained to its end."""
    run = store.get_run(run_id)
    store.set_progress(run_id, step=run.total_steps, last_loss=loss, images_per_s=ips, elapsed_s=elapsed)
    store.finish(run_id, "completed")


def judge(store: Store, run_id: int, protocol: Protocol = DDIM, step: int | None = None, **figures: float) -> None:
    """An evaluation of ``run_id`` under ``protocol`` with these figures."""
    step = store.get_run(run_id).step if step is None else step
    store.add_eval(run_id, step, protocol=protocol, figures=figures, floor={}, seconds=1.0)


def digits(store: Store, run_id: int, fill: int) -> None:
    """A sample grid of four 28x28 images, every pixel ``fill`` (tells best from worst)."""
    data = np.full((4, 1, 28, 28), fill, dtype=np.uint8)
    store.add_samples(run_id, store.get_run(run_id).step, data, SamplingSpec("ddim", 10, 0.0))
