"""A DataTable of live rows: the runs table and the Queue screen's slots and waiting list.

Their rows change about once a second while runs train. Rebuilding a table on every change
would lose the cursor and flicker, so :meth:`LiveTable.show` updates only the cells that
changed, and rebuilds only when the set or order of rows changes, keeping the cursor on the
same row (a run moved up the queue keeps the cursor with it).

DataTable binds Enter to ``select_cursor`` without showing it, and the focused widget's
binding shadows the screen's, so the footer never said how to open a run: this one labels it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.binding import Binding
from textual.widgets import DataTable


class LiveTable(DataTable):
    BINDINGS = [Binding("enter", "select_cursor", "Open")]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keys: list[str] = []  # row keys in the order shown
        self._cells: dict[str, tuple] = {}

    def show(self, rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Show ``rows`` (key, cells in column order)."""
        keys = [k for k, _ in rows]
        cells = {k: tuple(c) for k, c in rows}
        if keys == self.keys:
            columns = list(self.columns)
            for k in keys:
                old = self._cells.get(k, ())
                for i, value in enumerate(cells[k]):
                    if i >= len(old) or old[i] != value:
                        # Widen the column when the new value needs it: a slot first shown
                        # free, then holding a run, or a status going from queued to completed.
                        self.update_cell(k, columns[i], value, update_width=True)
        else:
            current = self.current_key
            self.clear()
            for k in keys:
                self.add_row(*cells[k], key=k)
            if current in keys:
                self.move_cursor(row=keys.index(current), animate=False)
        self.keys, self._cells = keys, cells

    @property
    def current_key(self) -> str | None:
        """The key of the row under the cursor; None for an empty table."""
        if not self.keys or not 0 <= self.cursor_row < len(self.keys):
            return None
        return self.keys[self.cursor_row]
