"""The run queue, live: each scheduler's slots with the run in each (step, ETA, img/s), the
runs waiting in the order a scheduler will take them, and queue runs still training after
their scheduler died.

The scheduler is a process of its own (:mod:`core.scheduler`); this screen only writes rows
(a new order, a cancelled run, a stop request) and spawns a scheduler, so quitting the
dashboard leaves the queue running. It shows what ``ddpm queue`` prints, from the same
cells (:mod:`ddpm_tui.queue_view`), refreshed by the app's poller like the runs table: cells
change in place, the cursor stays on its run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Static

from core.scheduler import QueueState, Slot, default_slots, holder, lock_path, queue_state, spawn
from core.store import Run
from ddpm_tui.queue_view import SLOT_COLUMNS, WAITING_COLUMNS, scheduler_line, slot_cells, unattended_line, waiting_cells
from ddpm_tui.screens.base import DataScreen
from ddpm_tui.widgets.live_table import LiveTable

RIGHT = {"run", "ETA", "img/s", "#", "priority", "steps"}  # columns of numbers
NO_SCHEDULER = "no scheduler"  # the slot column of a run whose scheduler is gone


def cells(values: list[str], columns: tuple[str, ...]) -> list[Text]:
    """queue_view's markup cells as Text, numbers to the right."""
    return [Text.from_markup(v, justify="right" if c in RIGHT else "left") for v, c in zip(values, columns)]


def plan_text(slots: list[Slot]) -> str:
    """``1 CPU slot (cpu/0, 2 cores)``, ``4 GPU slots (cuda:0/0, ...)``: what a start will fill."""
    n = len(slots)
    kind = "GPU" if slots and slots[0].device.startswith("cuda") else "CPU"
    names = ", ".join(s.name for s in slots[:4]) + (", ..." if n > 4 else "")
    t = slots[0].threads if kind == "CPU" and slots else None
    cores = f", {t} core{'s' if t != 1 else ''}{' each' if n > 1 else ''}" if t else ""
    return f"{n} {kind} slot{'s' if n != 1 else ''} ({names}{cores})"


class QueueScreen(DataScreen):
    """Slots, the waiting list and the keys that reorder it and start or stop its scheduler."""

    HELP_TITLE = "queue"
    HELP = (
        "Runs queued with ddpm run --queue, ddpm sweep or the new-run form (ctrl+o) wait here until a scheduler takes them: "
        "highest priority first, then oldest. Tab moves between the slots and the waiting list; u, f and x act on the row "
        "under the cursor. A scheduler runs in the background and outlives the dashboard; a new one adopts runs whose "
        "scheduler died."
    )
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Open", show=False),  # shown by the table, which has the focus
        Binding("u", "up", "Move up", tooltip="the waiting run under the cursor, one place"),
        Binding("f", "front", "To front", tooltip="the waiting run under the cursor is taken next"),
        Binding("x", "stop", "Cancel", tooltip="a waiting run leaves the queue (asks first); a running one stops"),
        Binding("s", "start", "Start scheduler", tooltip="every GPU, or one CPU slot per 2 cores (asks first)"),
        Binding("S", "stop_scheduler", "Stop scheduler", tooltip="it takes no new runs; running runs go on"),
        Binding("X", "stop_all", "Stop all", tooltip="the scheduler and its running runs, each with a checkpoint (asks first)"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.state: QueueState | None = None
        self.runs: dict[int, Run] = {}  # every run on the screen, by id

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="queue"):
            yield Static("", id="queue-schedulers")
            yield Static("slots", classes="section")
            slots = LiveTable(id="queue-slots", cursor_type="row", zebra_stripes=True)
            for c in SLOT_COLUMNS:
                slots.add_column(c, key=c)
            yield slots
            yield Static("", id="queue-unattended")
            yield Static("waiting", id="queue-waiting-title", classes="section")
            waiting = LiveTable(id="queue-waiting", cursor_type="row", zebra_stripes=True)
            for c in WAITING_COLUMNS:
                waiting.add_column(c, key=c)
            yield waiting
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = "queue"
        self.sub_title = str(self.store.path)
        self.waiting_table.focus()

    @property
    def slots_table(self) -> LiveTable:
        return self.query_one("#queue-slots", LiveTable)

    @property
    def waiting_table(self) -> LiveTable:
        return self.query_one("#queue-waiting", LiveTable)

    # ---- data ------------------------------------------------------------------------

    def refresh_data(self) -> None:
        state = self.guard(queue_state, self.store)
        if state is None:
            return
        self.state = state
        in_slots = [r for _, r in state.slots if r is not None]
        self.runs = {r.id: r for r in (*in_slots, *state.unattended, *state.waiting)}
        if state.schedulers:
            lines = [scheduler_line(s) for s in state.schedulers]
        else:
            plan = self._plan()
            offer = f"; s starts one with {plan_text(plan)}" if plan else "; s starts one"
            lines = [f"[yellow]no scheduler runs for this database[/]{offer}"]
        self.query_one("#queue-schedulers", Static).update("\n".join(lines))
        self.slots_table.show([(key, cells(slot_cells(slot, run), SLOT_COLUMNS)) for key, (slot, run) in self._slot_rows()])
        note = self.query_one("#queue-unattended", Static)
        note.update(unattended_line(state.unattended) + " (s starts a scheduler, which adopts them)" if state.unattended else "")
        note.display = bool(state.unattended)
        n = len(state.waiting)
        title = (
            f"waiting ({n}, taken in this order)"
            if n
            else "nothing waiting: ctrl+o in the new-run form (n) queues a run or a sweep"
        )
        self.query_one("#queue-waiting-title", Static).update(title)
        self.waiting_table.show(
            [(str(r.id), cells(waiting_cells(i, r), WAITING_COLUMNS)) for i, r in enumerate(state.waiting, 1)]
        )

    def _plan(self) -> list[Slot] | None:
        """The default slots, once the app knows this host's devices."""
        acc = self.ddpm.accelerators
        return default_slots(acc) if acc is not None else None

    # ---- the row under the cursor -----------------------------------------------------

    def _slot_rows(self) -> list[tuple[str, tuple[dict, Run | None]]]:
        """The slot table's rows by key: every scheduler's slots (keyed by scheduler, since
        two hosts may name a slot alike), then the runs whose scheduler is gone."""
        state = self.state
        if state is None:
            return []
        rows = [(f"{slot['scheduler']}:{slot['slot']}", (slot, run)) for slot, run in state.slots]
        return rows + [(f"run:{r.id}", ({"slot": NO_SCHEDULER}, r)) for r in state.unattended]

    def _run_at(self, table: DataTable, key: str | None) -> Run | None:
        if key is None:
            return None
        if table is self.slots_table:
            return next((run for k, (_, run) in self._slot_rows() if k == key), None)
        return self.runs.get(int(key))

    def _waiting(self, what: str) -> tuple[int, Run] | None:
        """The waiting run under the cursor and its place (0 = next), or None with a word why."""
        table = self.waiting_table
        if self.focused is not table:
            self.notify(f"{what} works on the waiting list: tab to it", severity="warning")
            return None
        key = table.current_key
        if key is None or int(key) not in self.runs:
            self.notify("nothing is waiting", severity="warning")
            return None
        return table.keys.index(key), self.runs[int(key)]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._open(event.data_table, str(event.row_key.value))

    def action_open(self) -> None:
        table = self.focused if isinstance(self.focused, LiveTable) else self.waiting_table
        self._open(table, table.current_key)

    def _open(self, table: DataTable, key: str | None) -> None:
        run = self._run_at(table, key)
        if run is None:
            self.notify("a free slot: no run here", severity="warning")
            return
        self.ddpm.open_run(run.id)

    # ---- reordering and cancelling ----------------------------------------------------

    def action_up(self) -> None:
        self._reorder("u", self.store.move_up)

    def action_front(self) -> None:
        self._reorder("f", self.store.move_to_front)

    def _reorder(self, key: str, move) -> None:
        """Move the waiting run under the cursor (the cursor goes with it)."""
        found = self._waiting(key)
        if found is None:
            return
        place, run = found
        if place == 0:
            self.notify(f"run {run.id} ({run.name}) is next already", severity="warning")
        elif self.guard(move, run.id) is not None:
            self.ddpm.changed()

    def action_stop(self) -> None:
        """x: a waiting run leaves the queue after a question; a run in a slot stops at its
        next step with a checkpoint, as x does on the runs table."""
        if self.focused is self.slots_table:
            run = self._run_at(self.slots_table, self.slots_table.current_key)
            if run is None:
                self.notify("a free slot: no run to stop", severity="warning")
            else:
                self.ddpm.stop_run(run)
            return
        found = self._waiting("x")
        if found is None:
            return
        _, run = found
        self._confirm(
            f"Take run {run.id} ({run.name}) out of the queue? It is recorded as stopped before it started; "
            "r on the runs table starts it later.",
            "Take out",
            lambda: self.store.request_stop(run.id),
            lambda _: f"run {run.id} ({run.name}) left the queue; it is stopped before it started (r resumes it)",
        )

    def _confirm(self, question: str, yes: str, act: Callable[[], Any], said: Callable[[Any], str]) -> None:
        """Ask first; on yes, ``act`` (an error the user can fix becomes a notification), say
        what it did and refresh at once rather than at the next poll."""
        from ddpm_tui.screens.confirm import ConfirmScreen

        def done(answer: bool | None) -> None:
            result = self.guard(act) if answer else None
            if result is not None:
                self.notify(said(result))
                self.ddpm.changed()

        self.app.push_screen(ConfirmScreen(question, yes=yes), done)

    # ---- the scheduler ------------------------------------------------------------------

    def action_start(self) -> None:
        """s: a scheduler in the background with the default slots, after saying which."""
        plan = self._plan()
        if plan is None:
            self.notify("still asking torch which devices this machine has; try again in a moment", severity="warning")
            return
        if self.store.readonly:
            self.notify(f"{self.store.path} is open read-only; a scheduler needs to write to it", severity="error")
            return
        pid = holder(lock_path(self.store))
        if pid is not None:
            self.notify(f"a scheduler runs already for this database (pid {pid}); S stops it", severity="warning")
            return
        n = len(self.state.waiting) if self.state is not None else 0
        waiting = f"the {n} waiting run{'s' if n != 1 else ''} in order" if n else "runs as they are queued"
        self._confirm(
            f"Start a scheduler on {plan_text(plan)}? It takes {waiting}, runs in the background and outlives the "
            "dashboard; S stops it.",
            "Start",
            lambda: spawn(self.store.path, plan),
            lambda proc: f"scheduler started in the background (pid {proc.pid}): {', '.join(s.name for s in plan)}",
        )

    def action_stop_scheduler(self) -> None:
        """S: the scheduler takes no new runs and exits when its running runs end."""
        asked = self.guard(self.store.stop_schedulers)
        if asked is None:
            return
        if not asked:
            self.notify("no scheduler runs for this database", severity="warning")
            return
        pids = ", ".join(str(s["pid"]) for s in asked)
        self.notify(f"scheduler (pid {pids}) takes no new runs; it exits when its running runs end (X stops them too)")
        self.ddpm.changed()

    def action_stop_all(self) -> None:
        """X: the scheduler and its running runs stop, each run with a checkpoint."""
        live = self.guard(self.store.live_schedulers)
        if not live:
            if live is not None:
                self.notify("no scheduler runs for this database", severity="warning")
            return
        running = [r for _, r in (self.state.slots if self.state else []) if r is not None]
        which = f"its {len(running)} running run{'s' if len(running) != 1 else ''}" if running else "its runs"
        self._confirm(
            f"Stop the scheduler and {which}? Each run checkpoints first; r resumes it later. Waiting runs stay in the queue.",
            "Stop all",
            lambda: self.store.stop_schedulers(now=True),
            lambda _: "the scheduler stops its runs (each checkpoints first), then exits",
        )
