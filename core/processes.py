"""Starting the engine's child processes (workers, schedulers, device probes) the same way,
and collecting the detached ones when they exit.

Free of torch and of the store, so every process can use it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_children: list[subprocess.Popen] = []  # detached children of this process not yet collected


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child ``python -m core...``, with the project on
    PYTHONPATH (so a child finds the same code, installed or not) and ``extra`` on top."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def track(proc: subprocess.Popen) -> subprocess.Popen:
    """Remember a detached child (a worker, a scheduler) so :func:`reap` collects it."""
    _children.append(proc)
    reap()
    return proc


def reap() -> None:
    """Collect exited detached children so a long-lived parent (the dashboard) keeps no
    zombies; cheap (one non-blocking wait per child still remembered)."""
    for p in list(_children):
        if p.poll() is not None:
            _children.remove(p)
