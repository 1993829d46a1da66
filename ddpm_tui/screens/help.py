"""The ``?`` screen: every key of the screen below and of the app, read from their
bindings so that it can never disagree with what the keys do."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

ABOUT = (
    "ddpm-tui watches the database, never the workers: training goes on in background "
    "processes that outlive the dashboard. Quitting leaves them running; `ddpm ls` and "
    "`ddpm stop ID` reach them from any shell. Ctrl+P opens the command palette: every "
    "action below is there by name."
)


def key_label(key: str) -> str:
    names = {"question_mark": "?", "slash": "/", "space": "space", "escape": "esc", "enter": "enter"}
    return ", ".join(names.get(k.strip(), k.strip()) for k in key.split(","))


def bindings_table(title: str, bindings: list[Binding]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=None, show_header=False, pad_edge=False)
    table.add_column("key", style="bold cyan", no_wrap=True, min_width=12)
    table.add_column("action")
    for b in bindings:
        if b.description:
            table.add_row(key_label(b.key), b.description + (f"  [dim]{b.tooltip}[/]" if b.tooltip else ""))
    return table


def declared(node) -> list[Binding]:
    """Bindings the dashboard's own classes declare for ``node``, nearest class first, one per
    key and one per action (a subclass's binding for a key replaces its base's, as in
    Textual). Textual's built-in focus and copy keys are left out: they are not ours to
    document."""
    out: list[Binding] = []
    actions: set[str] = set()
    keys: set[str] = set()
    for cls in type(node).__mro__:
        if not cls.__module__.startswith("ddpm_tui"):
            continue
        for b in cls.__dict__.get("BINDINGS", []):
            if isinstance(b, Binding) and b.action not in actions and b.key not in keys:
                actions.add(b.action)
                keys.add(b.key)
                out.append(b)
    return out


class HelpScreen(ModalScreen[None]):
    """Keys of the screen it was opened over, then the app-wide ones."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, over: Screen) -> None:
        super().__init__()
        self.over = over

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            title = getattr(self.over, "HELP_TITLE", type(self.over).__name__)
            yield Static(bindings_table(f"{title}", declared(self.over)))
            yield Static(bindings_table("everywhere", declared(self.app)))
            doc = getattr(self.over, "HELP", "")
            if doc:
                yield Static(Text(doc), classes="help-text")
            yield Static(Text(ABOUT, style="dim"), classes="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
