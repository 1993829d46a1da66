"""Helpers for driving the real CLI against real SQLite files."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.store import Store
from ddpm_tui.cli import app

# A smoke run small enough to finish in a couple of seconds on a 2-core CPU.
FAST = [
    "--preset",
    "smoke",
    "--set",
    "steps=12",
    "--set",
    "log_every=3",
    "--set",
    "sample_every=6",
    "--set",
    "checkpoint_every=6",
]
# A detached smoke run that would take minutes: long enough to stop, kill or watch.
LONG = [
    "--preset",
    "smoke",
    "--set",
    "steps=100000",
    "--set",
    "log_every=2",
    "--set",
    "checkpoint_every=20",
    "--set",
    "sample_every=0",
]


class Cli:
    def __init__(self, db: Path):
        self.db = db
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None):
        return self.runner.invoke(app, [*args, "--db", str(self.db)], input=input)

    def json(self, *args: str):
        res = self(*args, "--json")
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    def store(self) -> Store:
        return Store(self.db, create=False)

    def run(self, ref) -> dict:
        return self.json("show", str(ref))

    def wait(self, ref, predicate, timeout: float = 60.0, what: str = "condition") -> dict:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.run(ref)
            if predicate(doc):
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {doc['status']} at step {doc['step']}")
            time.sleep(0.2)


@pytest.fixture
def cli(tmp_path) -> Cli:
    return Cli(tmp_path / "experiments.db")


@pytest.fixture
def reap_workers():
    """Kill any worker a test leaves behind (by pid from the rows), so none outlives it."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def error_line(res) -> str:
    """A failed command's stderr: exactly one line, no traceback."""
    err = res.stderr.strip()
    assert "Traceback" not in res.output, res.output
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
    return err
