"""The store's schema, as a list of forward migrations.

``MIGRATIONS[v]`` takes a database at schema version v to v + 1. A schema change appends a
function here; ``SCHEMA_VERSION`` follows. The store runs the missing ones in one write
transaction the first time a newer ddpm-tui opens a file for writing (sqlite-utils 4 nests
its own transactions as savepoints inside ours, so a failed migration leaves the file as it
was), and refuses files written by a newer version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store makes the Database when it migrates; readers never import it
    import sqlite_utils


def _create_v1(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": int,
            "name": str,
            "preset": str,
            "status": str,
            "config": str,
            "device_request": str,
            "device": str,
            "pid": int,
            "host": str,
            "proc_start": str,
            "heartbeat": float,
            "created": float,
            "started": float,
            "ended": float,
            "step": int,
            "total_steps": int,
            "error": str,
            "tags": str,
            "notes": str,
            "stop_requested": int,
            "n_params": int,
            "last_loss": float,
            "images_per_s": float,
            "elapsed_s": float,
        },
        pk="id",
        not_null={"name", "preset", "status", "config", "created", "total_steps"},
        defaults={"step": 0, "tags": "[]", "notes": "", "stop_requested": 0, "elapsed_s": 0.0},
    )
    db["runs"].create_index(["name"], unique=True)
    db["runs"].create_index(["status"])
    db["metrics"].create(
        {"run": int, "step": int, "name": str, "value": float, "time": float},
        pk=("run", "name", "step"),
        foreign_keys=[("run", "runs", "id")],
    )
    db["samples"].create(
        {
            "id": int,
            "run": int,
            "step": int,
            "sampler": str,
            "steps": int,
            "n": int,
            "shape": str,
            "dtype": str,
            "data": bytes,
            "time": float,
        },
        pk="id",
        foreign_keys=[("run", "runs", "id")],
    )
    db["samples"].create_index(["run", "step"])
    db["checkpoints"].create(
        {"run": int, "step": int, "path": str, "bytes": int, "sha256": str, "time": float},
        pk=("run", "step"),
        foreign_keys=[("run", "runs", "id")],
    )


def _add_evals_v2(db: sqlite_utils.Database) -> None:
    """Quality evaluations: the figures also go to ``metrics`` (so curves and 'latest' work
    as for loss); this table keeps what they mean: n, sampler, steps, seed and the floor."""
    db["evals"].create(
        {
            "id": int,
            "run": int,
            "step": int,
            "n": int,
            "sampler": str,
            "steps": int,
            "eta": float,
            "seed": int,
            "figures": str,
            "floor": str,
            "seconds": float,
            "time": float,
        },
        pk="id",
        foreign_keys=[("run", "runs", "id")],
    )
    db["evals"].create_index(["run", "step"])


def _v3_env_and_protocols(db: sqlite_utils.Database) -> None:
    """Each run's environment (device, GPU or CPU model, host, versions, precision), and
    quality figures kept only in ``evals`` with their protocol: figure rows in ``metrics``
    mixed protocols in one series (a ``ddpm eval`` and ``--eval-every`` at the same step
    overwrote each other). Sample grids record their eta, the last part of their spec."""
    db["runs"].add_column("env", str)
    db["samples"].add_column("eta", float)
    figures = ("fid", "kid", "kid_std", "confident", "class_entropy", "curve_distance", "swd")
    db.execute(f"DELETE FROM metrics WHERE name IN ({', '.join('?' * len(figures))})", figures)


def _v4_studies_and_the_queue(db: sqlite_utils.Database) -> None:
    """Studies (a sweep's runs share a ``study``), the queue (``in_queue`` runs wait for a
    scheduler, highest ``priority`` first, then oldest; a scheduler marks the run it takes
    with its id and slot before it spawns the worker, in one conditional UPDATE, so two can
    never take one run), retries after a crash (``retries`` allowed, ``attempts`` used), the
    processes a run trains on (``world_size``), and the schedulers themselves."""
    runs = db["runs"]
    runs.add_column("study", str)
    runs.add_column("priority", int, not_null_default=0)
    runs.add_column("in_queue", int, not_null_default=0)
    runs.add_column("scheduler", int)
    runs.add_column("slot", str)
    runs.add_column("retries", int)
    runs.add_column("attempts", int, not_null_default=0)
    runs.add_column("world_size", int, not_null_default=1)
    runs.create_index(["study"])
    runs.create_index(["in_queue", "status", "priority"])
    db["schedulers"].create(
        {
            "id": int,
            "host": str,
            "pid": int,
            "proc_start": str,
            "started": float,
            "heartbeat": float,
            "slots": str,  # JSON: the slots it fills, e.g. [{"slot": "cuda:1/0", "device": "cuda:1"}, ...]
            "retries": int,
            "stopping": int,  # 1: take no new runs; 2: and stop the running ones
            "ended": float,
        },
        pk="id",
        defaults={"stopping": 0, "retries": 0},
    )


def _v5_classes_and_guidance(db: sqlite_utils.Database) -> None:
    """Class-conditional runs: a sample grid records the class of each image (``labels``, a
    JSON list; its rows are classes) and the guidance it was drawn with; an evaluation records
    its guidance (part of its protocol) and per-class details (``detail``, JSON: accuracy per
    class, class counts)."""
    db["samples"].add_column("labels", str)
    db["samples"].add_column("guidance", float)
    db["evals"].add_column("guidance", float)
    db["evals"].add_column("detail", str)


def _v6_eta_windows(db: sqlite_utils.Database) -> None:
    """A spec's eta window (``eta_window``: an eta above 1 applies where t < eta_window * T
    alone) is part of how an evaluation and a sample grid were drawn. Rows from before have
    none (NULL), and were drawn without one: they read as window 1."""
    db["samples"].add_column("eta_window", float)
    db["evals"].add_column("eta_window", float)


MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    0: _create_v1,
    1: _add_evals_v2,
    2: _v3_env_and_protocols,
    3: _v4_studies_and_the_queue,
    4: _v5_classes_and_guidance,
    5: _v6_eta_windows,
}
SCHEMA_VERSION = len(MIGRATIONS)
