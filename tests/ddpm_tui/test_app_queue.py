"""The dashboard's run queue driven with Pilot against real SQLite files: the Queue screen
(the waiting list in order, its keys, a real scheduler started, followed and stopped from it)
and the new-run form queueing one run or a sweep, compared with what ``ddpm sweep`` records."""

from __future__ import annotations

import os
import signal

import pytest

from core.config import preset
from core.store import Store, pid_alive
from tests.ddpm_tui.conftest import Cli, drive, make_app, until

FAST = {"steps": 12, "log_every": 3, "sample_every": 0, "checkpoint_every": 6}
LONG = {"steps": 100_000, "log_every": 2, "sample_every": 0, "checkpoint_every": 20}


def queue(store: Store, name: str, priority: int = 0, **config) -> int:
    cfg = preset("smoke", {**FAST, **config}).to_dict()
    return store.create_run(cfg, preset="smoke", name=name, in_queue=True, priority=priority).id


def table_text(table) -> list[list[str]]:
    """A DataTable's rows as plain text, in the order shown."""
    return [[str(getattr(v, "plain", v)) for v in table.get_row(key)] for key in table.rows]


def shown(static) -> str:
    """A Static's text as the terminal shows it (markup applied)."""
    from rich.text import Text

    return Text.from_markup(str(static.content)).plain


def clipped(table) -> list[str]:
    """Cells wider than their column: a cell updated in place must widen it."""
    from rich.cells import cell_len

    cols = table.ordered_columns
    return [cell for row in table_text(table) for cell, c in zip(row, cols) if cell_len(cell) > c.content_width]


def column(table, name: str) -> list[str]:
    index = [c.key.value for c in table.ordered_columns].index(name)
    return [row[index] for row in table_text(table)]


def still_alive(procs, grace: float) -> list[int]:
    """The pids among ``(pid, start)`` pairs still alive after waiting up to ``grace`` seconds."""
    import time

    deadline = time.monotonic() + grace
    while True:
        alive = [pid for pid, start in procs if pid and pid_alive(pid, start)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.fixture
def leftovers(tmp_path, monkeypatch):
    """Whatever scheduler or worker a test started (their pids are in the database, with the
    kernel's start time) is killed at the end, so none outlives the test."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    db = tmp_path / "experiments.db"
    yield db
    if not db.exists():
        return
    with Store(db) as store:
        procs = store.conn.execute("SELECT pid, proc_start FROM schedulers UNION SELECT pid, proc_start FROM runs").fetchall()
    for pid, start in procs:
        if pid and pid_alive(pid, start):
            os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, TypeError):
            pass


# ---- the Queue screen --------------------------------------------------------------------------


def test_the_queue_screen_lists_the_waiting_runs_in_order_and_its_keys_reorder_and_cancel(tmp_path):
    db = tmp_path / "experiments.db"
    with Store(db) as store:
        a, b, c, d = queue(store, "a"), queue(store, "b"), queue(store, "c", priority=2), queue(store, "d")
        store.create_run(preset("smoke").to_dict(), preset="smoke", name="lone")  # not queued: not on the screen
    app = make_app(db)

    async def script(pilot):
        from textual.widgets import Static

        from ddpm_tui.app import ActionsProvider
        from ddpm_tui.screens.confirm import ConfirmScreen
        from ddpm_tui.screens.help import HelpScreen
        from ddpm_tui.screens.queue import QueueScreen
        from ddpm_tui.screens.run import RunScreen

        assert "Queue" in {t for t, _, _ in ActionsProvider(app.screen)._commands()}
        await pilot.press("Q")
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        waiting = screen.waiting_table
        assert app.focused is waiting
        assert column(waiting, "name") == ["c", "a", "b", "d"] and column(waiting, "#") == ["1", "2", "3", "4"]
        assert column(waiting, "priority") == ["2", "0", "0", "0"]
        assert shown(screen.query_one("#queue-schedulers", Static)) == (
            "no scheduler runs for this database; s starts one with 1 CPU slot (cpu/0, 2 cores)"
        )
        assert table_text(screen.slots_table) == []
        titles = {t for t, _, _ in ActionsProvider(screen)._commands()}
        assert {"Move up", "To front", "Cancel", "Start scheduler", "Stop scheduler", "Stop all", "Open"} <= titles
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen) and app.screen.over is screen
        await pilot.press("escape")

        waiting.move_cursor(row=2)  # b
        await pilot.press("u")
        await until(pilot, lambda: column(waiting, "name") == ["c", "b", "a", "d"], "b to move up one place")
        assert waiting.current_key == str(b)  # the cursor went with it
        await pilot.press("f")
        await until(pilot, lambda: column(waiting, "name") == ["b", "c", "a", "d"], "b to go to the front")
        await pilot.press("u")  # first already: nothing moves
        await pilot.pause()
        assert [r.id for r in app.store.waiting()] == [b, c, a, d]

        waiting.move_cursor(row=3)  # d
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert [r.id for r in app.store.waiting()] == [b, c, a, d]
        await pilot.press("x", "y")
        await until(pilot, lambda: column(waiting, "name") == ["b", "c", "a"], "d to leave the queue")
        cancelled = app.store.get_run(d)
        assert cancelled.status == "stopped" and cancelled.error == "cancelled before it started" and cancelled.pid is None

        waiting.move_cursor(row=2)
        await pilot.press("enter")
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == a
        await pilot.press("escape")
        assert app.screen is screen

    drive(app, script)


def test_the_queue_screen_starts_a_scheduler_follows_its_slot_and_stops_it(leftovers):
    """For real: s starts a scheduler (one CPU slot here), the slot shows each run and its
    live step; a run whose scheduler was killed shows as training without one and a new
    scheduler adopts it; S stops taking runs, X stops the running one too, and the
    scheduler exits with nothing left running."""
    db = leftovers
    with Store(db) as store:
        first = queue(store, "first", priority=1)
        long = queue(store, "long", **LONG)
        last = queue(store, "last")
    app = make_app(db)

    async def script(pilot):
        from textual.widgets import Static

        from ddpm_tui.screens.confirm import ConfirmScreen

        await pilot.press("Q")
        screen = app.screen
        slots = screen.slots_table
        schedulers = screen.query_one("#queue-schedulers", Static)

        def slot_rows() -> dict[str, list[str]]:
            return {row[0]: row for row in table_text(slots)}

        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        assert "1 CPU slot (cpu/0, 2 cores)" in app.screen.question and "the 3 waiting runs in order" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: slot_rows().get("cpu/0", [""] * 2)[1] == str(first), "the first run in the slot")
        assert shown(schedulers).startswith("scheduler pid ") and shown(schedulers).endswith(", 1 slot")
        await until(pilot, lambda: app.store.get_run(first).status == "completed", "the first run to complete")
        await until(pilot, lambda: slot_rows().get("cpu/0", [""] * 2)[1] == str(long), "the long run to take the slot")
        assert [r.id for r in app.store.waiting()] == [last]
        assert column(screen.waiting_table, "name") == ["last"]

        def live() -> list[str]:
            row = slot_rows()["cpu/0"]
            return row if row[3] == "running" and not row[4].startswith("0/") else []

        await until(pilot, lambda: live(), "the long run's steps to show")
        seen = live()[4]
        await until(pilot, lambda: live() and live()[4] != seen, "the slot's step to move on its own")
        assert live()[5] != "-" and live()[6] != "-"  # its ETA and img/s
        assert clipped(slots) == []  # the slot was first shown free: its columns widened for the run

        (sched,) = app.store.live_schedulers()
        worker = app.store.get_run(long).pid
        os.kill(sched["pid"], signal.SIGKILL)  # the scheduler dies; its worker trains on
        await until(pilot, lambda: slot_rows().get("no scheduler", [""] * 2)[1] == str(long), "the run without a scheduler")
        assert screen.query_one("#queue-unattended").display
        await pilot.press("s", "y")  # a new scheduler adopts it
        await until(pilot, lambda: slot_rows().get("cpu/0", [""] * 2)[1] == str(long), "the adoption")
        assert "no scheduler" not in slot_rows() and app.store.get_run(long).pid == worker  # the same process

        await pilot.press("S")
        await until(pilot, lambda: "stopping: takes no new runs" in shown(schedulers), "the scheduler to stop taking runs")
        await pilot.press("X")
        assert isinstance(app.screen, ConfirmScreen) and "its 1 running run" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: app.store.get_run(long).status == "stopped", "the long run to stop", timeout=120)
        await until(pilot, lambda: "no scheduler runs" in shown(schedulers), "the scheduler to exit")
        assert table_text(slots) == [] and [r.id for r in app.store.waiting()] == [last]

    drive(app, script)
    with Store(db) as store:
        procs = store.conn.execute("SELECT pid, proc_start FROM schedulers UNION SELECT pid, proc_start FROM runs").fetchall()
    # A process that has written its last row still takes a moment to exit on a loaded host:
    # give each a grace period, then none may remain.
    assert not still_alive(procs, grace=30.0), "a scheduler or worker outlived the test"


# ---- queueing from the new-run form ------------------------------------------------------------


async def open_form(pilot, app, **fields):
    from textual.widgets import Input, Select

    await pilot.press("n")
    form = app.screen
    form.query_one("#preset", Select).value = "smoke"
    await pilot.pause()
    for k, v in fields.items():
        form.query_one(f"#f-{k}", Input).value = v
    await pilot.pause()
    return form


def test_the_form_queues_one_run_with_its_priority(tmp_path):
    app = make_app(tmp_path / "experiments.db")

    async def script(pilot):
        from ddpm_tui.screens.queue import QueueScreen

        form = await open_form(pilot, app, name="one", priority="5", steps="30")
        assert form.errors == {} and form.config is not None and form.sweep is None
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen), "the Queue screen")
        (run,) = app.store.list_runs()
        assert (run.name, run.in_queue, run.priority, run.status, run.pid, run.total_steps) == (
            "one",
            True,
            5,
            "queued",
            None,
            30,
        )
        assert column(app.screen.waiting_table, "name") == ["one"]

    drive(app, script)


def test_the_form_makes_the_sweep_ddpm_sweep_makes_and_refuses_a_bad_element(tmp_path):
    app = make_app(tmp_path / "experiments.db")
    cli = Cli(tmp_path / "cli.db")

    async def script(pilot):
        from textual.widgets import Button, Input, Label, Static

        from ddpm_tui.screens.confirm import ConfirmScreen
        from ddpm_tui.screens.queue import QueueScreen

        form = await open_form(pilot, app, lr="1e-3,-1", objective="eps,v", seed="0,1")
        assert set(form.errors) == {"lr", "name"} and form.sweep is None
        assert "lr: -1.0 is out of range" in str(form.query_one("#e-lr", Static).content)
        assert str(form.query_one("#l-name", Label).content) == "study"  # a list makes it a sweep: it needs a study
        assert form.query_one("#queue", Button).disabled
        await pilot.press("ctrl+o")
        assert not isinstance(app.screen, ConfirmScreen) and app.store.list_runs() == []

        form.query_one("#f-lr", Input).value = "1e-3,2e-3"
        form.query_one("#f-name", Input).value = "grid"
        form.query_one("#f-tags", Input).value = "t"
        form.query_one("#f-priority", Input).value = "2"
        await pilot.pause()
        assert form.errors == {} and len(form.sweep) == 8
        status = str(form.query_one("#form-status", Static).content)
        assert "8 runs: 2 values of objective x 2 values of lr x 2 seeds" in status
        await pilot.press("ctrl+s")  # a sweep is queued, never launched
        assert app.store.list_runs() == []
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ConfirmScreen) and "Queue study grid: 8 runs" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen), "the Queue screen")
        assert len(column(app.screen.waiting_table, "name")) == 8

        await pilot.press("escape")
        form = await open_form(pilot, app, seed=",".join(map(str, range(300))), name="big")
        assert len(form.sweep) == 300
        await pilot.press("ctrl+o", "y")
        assert isinstance(app.screen, ConfirmScreen) and "300 runs is more than 256" in app.screen.question
        await pilot.press("n")
        assert app.store.list_runs(study="big") == []
        await pilot.press("ctrl+o", "y", "y")
        await until(pilot, lambda: len(app.store.list_runs(study="big")) == 300, "the 300 runs")

    drive(app, script)
    res = cli("sweep", "--preset", "smoke", "--set", "objective=eps,v", "--set", "lr=1e-3,2e-3", "--set", "seed=0,1",
              "--name", "grid", "--tag", "t", "--priority", "2")  # fmt: skip
    assert res.exit_code == 0, res.output

    def recorded(path) -> list[tuple]:
        with Store(path) as store:
            return [(r.name, r.preset, r.config, r.study, r.tags, r.priority, r.in_queue, r.device_request, r.retries)
                    for r in store.list_runs(study="grid")]  # fmt: skip

    assert recorded(app.store.path) == recorded(cli.db)  # the form records what ddpm sweep records
