"""Starting the engine's child processes (workers, schedulers, device probes) the same way.

Free of torch and of the store, so every process can use it.
"""

from __future__ import annotations

import os
from pathlib import Path


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child ``python -m core...``, with the project on
    PYTHONPATH (so a child finds the same code, installed or not) and ``extra`` on top."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env
