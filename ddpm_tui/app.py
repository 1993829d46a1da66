"""``ddpm-tui``: the dashboard over the same SQLite file as ``ddpm``.

The app holds one store connection for the UI thread and polls it about once a second
(``PRAGMA data_version`` makes an unchanged database cost one tiny query); the topmost data
screen re-reads its rows only when something changed. The UI never talks to a worker: a
stop is a row update, a start or resume spawns ``python -m core.worker`` detached (the
CLI's :func:`core.worker.spawn_worker`), so quitting leaves training running.

Nothing in this process imports torch, ever: the runs table opens in well under a second
with a thousand runs, and the sample and explore screens draw samples in a child process
(:mod:`ddpm_tui.sample_client`) that dies with the screen.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import ModalScreen, Screen

from core.devices import Accelerators
from core.errors import DDPMError
from core.processes import reap
from core.store import Run, Store, StoreError, check_tag, open_store
from ddpm_tui.screens.base import DataScreen
from ddpm_tui.screens.help import declared, key_label
from ddpm_tui.screens.runs import RunsScreen

POLL_S = 1.0  # how often the database is checked for changes
FULL_REFRESH_S = 5.0  # ages and crashed workers change without a write: re-read this often anyway


class ActionsProvider(Provider):
    """One palette entry per binding of the screen in view and of the app, by the binding's
    description: every key-driven action is also reachable by name (Ctrl+P)."""

    def _commands(self) -> Iterator[tuple[str, str, Callable]]:
        screen = self.screen
        seen: set[str] = set()
        for node in (screen, self.app):
            where = getattr(node, "HELP_TITLE", "everywhere" if node is self.app else type(node).__name__)
            for b in declared(node):
                if not b.description or b.action in seen or b.action in ("command_palette", "back"):
                    continue
                seen.add(b.action)
                yield b.description, f"{key_label(b.key)}  ({where})", partial(node.run_action, b.action)

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)


def default_art_mode() -> str:
    """Half blocks in colour; ASCII where colour is off (``NO_COLOR``, a dumb terminal)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return "ascii"
    return "half"


class DdpmApp(App[None]):
    """The dashboard. ``clock`` gives 'now' for ages (tests freeze it for snapshots)."""

    CSS_PATH = "app.tcss"
    TITLE = "ddpm-tui"
    COMMANDS = App.COMMANDS | {ActionsProvider}
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("n", "new_run", "New run"),
        Binding("a", "cycle_art", "Art mode", show=False),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+p", "command_palette", "Command palette", show=False),
    ]

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        poll_s: float = POLL_S,
        accelerators: Accelerators | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.clock = clock
        self.poll_s = poll_s
        # What torch can use here, asked of a child process (the dashboard never imports
        # torch); tests pass it in. None until known.
        self.accelerators = accelerators
        self._probe = accelerators is None
        self.art_mode = default_art_mode()
        self._version: tuple[int, int] | None = None
        self._last_full = 0.0

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
        self._version = self._data_version()
        self._last_full = time.monotonic()
        self.set_interval(self.poll_s, self.poll)
        if self._probe:
            self.probe_devices()

    @work(thread=True, exclusive=True, group="devices")
    def probe_devices(self) -> None:
        from core.devices import probe_isolated

        try:
            acc = probe_isolated()
        except DDPMError as e:
            self.call_from_thread(self.notify, str(e), severity="warning", timeout=8)
            return
        self.call_from_thread(self.devices_ready, acc)

    def devices_ready(self, acc: Accelerators) -> None:
        """The host's devices are known: screens that offer them (the new-run form) update."""
        self.accelerators = acc
        for screen in self.screen_stack:
            ready = getattr(screen, "devices_ready", None)
            if ready is not None:
                ready(acc)

    # ---- polling ---------------------------------------------------------------------

    def _data_version(self) -> tuple[int, int] | None:
        try:
            return self.store.data_version()
        except sqlite3.Error:
            return None

    def poll(self, force: bool = False) -> None:
        """Refresh the topmost data screen when the database moved (or every few seconds),
        and collect the workers and schedulers this process started that have exited."""
        reap()
        version = self._data_version()
        now = time.monotonic()
        if not force and version == self._version and now - self._last_full < FULL_REFRESH_S:
            return
        self._version, self._last_full = version, now
        for screen in reversed(self.screen_stack):
            if isinstance(screen, DataScreen):
                screen.refresh_if_ready()
                break
            if not isinstance(screen, ModalScreen):
                break

    # ---- navigation ------------------------------------------------------------------

    @property
    def page(self) -> Screen:
        """The screen in view under any modal dialog."""
        for screen in reversed(self.screen_stack):
            if not isinstance(screen, ModalScreen):
                return screen
        return self.screen

    def action_help(self) -> None:
        from ddpm_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.page))

    def action_new_run(self) -> None:
        from ddpm_tui.screens.new_run import NewRunScreen

        if not isinstance(self.page, NewRunScreen) and not isinstance(self.screen, ModalScreen):
            self.push_screen(NewRunScreen())

    def action_cycle_art(self) -> None:
        from ddpm_tui.widgets.art import ART_MODES, ArtView

        self.art_mode = ART_MODES[(ART_MODES.index(self.art_mode) + 1) % len(ART_MODES)]
        for view in self.page.query(ArtView):
            view.set_data(view.data)
        changed = getattr(self.page, "art_mode_changed", None)  # screens that size their art by it
        if changed is not None:
            changed()
        self.notify(f"art: {self.art_mode}", timeout=1.5)

    def open_run(self, run_id: int) -> None:
        from ddpm_tui.screens.run import RunScreen

        self.push_screen(RunScreen(run_id))

    def open_queue(self) -> None:
        from ddpm_tui.screens.queue import QueueScreen

        if not isinstance(self.page, QueueScreen):
            self.push_screen(QueueScreen())

    def open_compare(self, run_ids: list[int]) -> None:
        from ddpm_tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(run_ids))

    def open_study(self, study: str) -> None:
        from ddpm_tui.screens.study import StudyScreen

        self.push_screen(StudyScreen(study))

    def open_sample(self, run_id: int) -> None:
        from ddpm_tui.screens.sample import SampleScreen

        self.push_screen(SampleScreen(run_id))

    def open_explore(self, run_id: int) -> None:
        from ddpm_tui.screens.explore import ExploreScreen

        self.push_screen(ExploreScreen(run_id))

    # ---- run actions shared by the runs table and the run view ------------------------

    def guard(self, fn: Callable, *args, **kwargs):
        """Run a store (or worker) action; an error the user can act on becomes an error
        notification instead of a traceback, and the result is None."""
        try:
            return fn(*args, **kwargs)
        except DDPMError as e:
            self.notify(str(e), severity="error", timeout=8)
        except sqlite3.Error as e:
            self.notify(f"database error: {e}; try again", severity="error", timeout=8)
        except OSError as e:
            self.notify(f"{type(e).__name__}: {e}", severity="error", timeout=8)
        return None

    def changed(self) -> None:
        """After our own write: refresh now rather than at the next poll."""
        self.poll(force=True)

    def stop_run(self, run: Run) -> None:
        if not run.active:
            hint = "; r resumes it from its last checkpoint" if run.status == "crashed" else ""
            self.notify(f"run {run.id} ({run.name}) is {run.status}; nothing to stop{hint}", severity="warning")
            return
        if self.guard(self.store.request_stop, run.id) is not None:
            self.notify(f"stop requested: run {run.id} ({run.name}) checkpoints and stops at its next step")
            self.changed()

    def resume_run(self, run: Run) -> None:
        """Stopped, crashed or failed: continue at once. Completed: ask for a new total."""
        if run.active:
            self.notify(f"run {run.id} ({run.name}) is {run.status} already", severity="warning")
            return
        if run.status != "completed":
            self._resume(run, None)
            return
        from ddpm_tui.screens.prompt import PromptScreen

        def check(text: str) -> str | None:
            try:
                total = int(text.replace(",", "").strip())
            except ValueError:
                return "a whole number of steps, e.g. " + str(run.step * 2)
            return None if total > run.step else f"more than the {run.step:,} steps it has done"

        def done(answer: str | None) -> None:
            if answer is not None:
                self._resume(run, int(answer.replace(",", "").strip()))

        self.push_screen(
            PromptScreen(f"Run {run.id} ({run.name}) is completed at step {run.step:,}. Train it further to a total of:",
                         str(run.step * 2), check=check, hint="enter resumes in a background worker; esc cancels"),
            done,
        )  # fmt: skip

    def _resume(self, run: Run, total: int | None) -> None:
        from core.worker import spawn_worker

        if self.guard(self.store.prepare_resume, run.id, total_steps=total) is None:
            return
        proc = self.guard(spawn_worker, self.store.path, run.id)
        if proc is not None:
            self.notify(f"run {run.id} ({run.name}) resumed in the background (pid {proc.pid})")
        self.changed()

    def start_worker(self, run_id: int) -> bool:
        from core.worker import spawn_worker

        proc = self.guard(spawn_worker, self.store.path, run_id)
        return proc is not None

    def delete_run(self, run: Run, then: Callable[[], None] | None = None) -> None:
        if run.has_worker:
            self.notify(f"run {run.id} ({run.name}) is {run.status}; stop it (x) before deleting it", severity="warning")
            return
        from ddpm_tui.screens.confirm import ConfirmScreen

        def done(yes: bool | None) -> None:
            if yes and self.guard(self.store.delete_run, run.id) is not None:
                self.notify(f"deleted run {run.id} ({run.name})")
                if then is not None:
                    then()
                self.changed()

        self.push_screen(ConfirmScreen(f"Delete run {run.id} ({run.name}), its metrics, samples and checkpoints?"), done)

    def tag_run(self, run: Run) -> None:
        from ddpm_tui.screens.prompt import PromptScreen

        def check(text: str) -> str | None:
            for word in text.split():
                try:
                    check_tag(word.removeprefix("-"))
                except StoreError as e:
                    return str(e)
            return None

        def done(answer: str | None) -> None:
            if not answer:
                return
            for word in answer.split():
                if word.startswith("-"):
                    self.guard(self.store.remove_tag, run.id, word[1:])
                else:
                    self.guard(self.store.add_tag, run.id, word)
            self.changed()

        current = ", ".join(run.tags) or "none"
        self.push_screen(
            PromptScreen(f"Tags for run {run.id} ({run.name}); now: {current}", "", check=check,
                         hint="words to add, separated by spaces; -word removes one"),
            done,
        )  # fmt: skip

    def note_run(self, run: Run) -> None:
        from ddpm_tui.screens.prompt import PromptScreen

        def done(answer: str | None) -> None:
            if answer is not None and self.guard(self.store.set_notes, run.id, answer) is not None:
                self.changed()

        self.push_screen(PromptScreen(f"Notes on run {run.id} ({run.name})", run.notes, hint="enter saves; esc cancels"), done)


def training_elsewhere(store: Store) -> list[Run]:
    """Runs whose workers are alive (they keep training after the dashboard closes)."""
    return [r for r in store.list_runs() if r.has_worker]


def run_app(db_path: Path | None = None) -> None:
    """Open the dashboard over ``db_path``; a bad database raises a StoreError (one line)
    before the terminal is taken over. On quit, says which runs still train."""
    store = open_store(db_path, create=True)
    try:
        DdpmApp(store).run()
        live = training_elsewhere(store)
    finally:
        store.close()
    if live:
        ids = " ".join(str(r.id) for r in live)
        n = len(live)
        print(f"{n} run{'s' if n != 1 else ''} still training in the background ({ids}): ddpm ls / ddpm stop ID")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="ddpm-tui",
        description="The ddpm dashboard: watch, start, stop, sample and compare DDPM runs in one SQLite file.",
    )
    parser.add_argument("--db", type=Path, default=None, help="SQLite database [default: $DDPM_DB or ./experiments.db]")
    args = parser.parse_args(argv)
    try:
        run_app(args.db)
    except DDPMError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except sqlite3.Error as e:
        print(f"error: database error: {e}; if another program holds the file, try again", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
