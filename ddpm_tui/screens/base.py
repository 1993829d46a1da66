"""What every data screen shares: the app's store, a refresh hook for the poller, and
one place that turns store errors into notifications instead of tracebacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.screen import Screen

if TYPE_CHECKING:
    from core.store import Store
    from ddpm_tui.app import DdpmApp


class DataScreen(Screen):
    """A screen showing rows from the store. The app's poller calls :meth:`refresh_data`
    on the topmost one when the database changed; a screen coming back into view refreshes
    too, since it missed the changes made while it was covered."""

    BINDINGS = [Binding("escape", "back", "Back")]

    @property
    def ddpm(self) -> DdpmApp:
        return self.app  # type: ignore[return-value]

    @property
    def store(self) -> Store:
        return self.ddpm.store

    _ready = False  # composed and mounted: the widgets refresh_data fills exist
    _pending = False  # a refresh was asked for before that

    def refresh_data(self) -> None:
        """Re-read what the screen shows; cheap, called about once a second while runs train."""

    def refresh_if_ready(self) -> None:
        """What the poller calls: a screen pushed a moment ago may not have its widgets yet,
        and one on its way out (the app exiting: Textual removes the widgets before it stops
        the timers) has lost them."""
        if not self.is_attached or not self.app.is_running:
            return
        if self._ready:
            self.refresh_data()
        else:
            self._pending = True

    def on_mount(self) -> None:
        self._ready = True
        if self._pending:
            self._pending = False
            self.refresh_data()

    def on_screen_resume(self) -> None:
        """Posted on every push and on coming back from a screen above: where a screen is
        first filled (once), and refilled after missing changes while it was covered."""
        self.refresh_if_ready()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def guard(self, fn, *args, **kwargs):
        """Run a store action; a user-fixable error becomes an error notification (the app's
        :meth:`~ddpm_tui.app.DdpmApp.guard`, so screens and the app say it alike)."""
        return self.ddpm.guard(fn, *args, **kwargs)
