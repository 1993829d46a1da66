"""The runs table: a DataTable whose Enter is labelled in the footer.

DataTable binds Enter to ``select_cursor`` without showing it, and the focused widget's
binding shadows the screen's, so the footer never said how to open a run."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class RunsTable(DataTable):
    BINDINGS = [Binding("enter", "select_cursor", "Open")]
