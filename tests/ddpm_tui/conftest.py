"""Helpers for driving the real CLI against real SQLite files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.devices import Accelerators
from core.store import Store
from ddpm_tui.cli import app

SIZE = (140, 45)  # the dashboard's terminal in Pilot tests and snapshots

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


# ---- the dashboard under Pilot --------------------------------------------------------------


def make_app(db: Path, **kw):
    from ddpm_tui.app import DdpmApp

    kw.setdefault("accelerators", Accelerators(cpu_cores=2))  # a CPU host, without asking torch in a child
    return DdpmApp(Store(db), poll_s=0.1, **kw)


def drive(app, script, size=SIZE):
    """Run ``script(pilot)`` against the app in a headless terminal."""

    async def main():
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await script(pilot)

    asyncio.run(main())


async def until(pilot, cond, what: str, timeout: float = 90.0) -> None:
    t0 = time.monotonic()
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.1)
    if os.environ.get("TIMING"):
        print(f"{what}: {time.monotonic() - t0:.1f}s")


def rows(app) -> dict[int, dict[str, str]]:
    """The runs table as plain text: id -> column -> cell."""
    from ddpm_tui.screens.runs import RunsScreen

    screen = next(s for s in app.screen_stack if isinstance(s, RunsScreen))
    table = screen.table
    out = {}
    for key in table.rows:
        cells = table.get_row(key)
        out[int(key.value)] = {c.key.value: str(getattr(v, "plain", v)) for c, v in zip(table.ordered_columns, cells)}
    return out
