"""The first screen: every run in a live table, filtered as you type, sorted by any column.

Only this screen is imported at start-up, and it needs nothing heavier than the store: no
torch, no numpy, no plotext, so the dashboard opens in well under a second with a thousand
runs. Rows are updated cell by cell when the database changes (the cursor, marks, filter and
sort survive a refresh); the table is rebuilt only when the set or order of rows changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Static

from core import query
from core.errors import DDPMError
from core.store import Run
from ddpm_tui import table_rows
from ddpm_tui.format import STATUS_STYLE, age, device_label, number
from ddpm_tui.screens.base import DataScreen
from ddpm_tui.widgets.live_table import LiveTable

COLUMNS: list[tuple[str, str]] = [
    ("mark", " "),
    ("id", "id"),
    ("name", "name"),
    ("study", "study"),
    ("preset", "preset"),
    ("status", "status"),
    ("device", "device"),
    ("progress", "progress"),
    ("loss", "loss"),
    ("ips", "img/s"),
    ("age", "age"),
    ("tags", "tags"),
]
SORTABLE = [key for key, _ in COLUMNS if key != "mark"]
# Sort keys: None sorts last whatever the direction.
SORT_KEYS: dict[str, Callable[[Run], Any]] = {
    "id": lambda r: r.id,
    "name": lambda r: r.name.lower(),
    "study": lambda r: r.study,
    "preset": lambda r: r.preset,
    "status": lambda r: r.status,
    "device": device_label,
    "progress": lambda r: r.step / r.total_steps if r.total_steps else 0.0,
    "loss": lambda r: r.last_loss,
    "ips": lambda r: r.images_per_s,
    "age": lambda r: -r.created,
    "tags": lambda r: ",".join(r.tags),
}
BAR = 10


def progress_cell(run: Run) -> Text:
    """A ten-cell bar and the percentage: readable at a glance down a long column."""
    frac = min(1.0, run.step / run.total_steps) if run.total_steps else 0.0
    full = int(round(frac * BAR))
    style = STATUS_STYLE.get(run.status, "")
    text = Text("\u2588" * full, style=style)
    text.append("\u2591" * (BAR - full), style="dim")
    text.append(f" {frac * 100:3.0f}% {run.step:,}/{run.total_steps:,}")
    return text


def run_cells(run: Run, marked: bool, now: float) -> dict[str, Any]:
    return {
        "mark": Text("\u25cf", style="bold yellow") if marked else Text(" "),
        "id": Text(str(run.id), justify="right"),
        "name": Text(run.name),
        "study": Text(run.study or ""),
        "preset": Text(run.preset),
        "status": Text(run.status, style=STATUS_STYLE.get(run.status, "")),
        "device": Text(device_label(run)),
        "progress": progress_cell(run),
        "loss": Text(number(run.last_loss), justify="right"),
        "ips": Text(number(run.images_per_s and round(run.images_per_s)), justify="right"),
        "age": Text(age(run.created, now), justify="right"),
        "tags": Text(",".join(run.tags)),  # Text, not str: a str cell would be read as markup
    }


# The table holds the first rows of the sorted, filtered list: a DataTable of ten thousand
# rows takes seconds to fill and to refilter at each keystroke, and nobody scrolls that far.
TABLE_ROWS = 200


def haystack(run: Run) -> str:
    """What the filter's words are looked for in: the run's id, name, study, preset, status,
    device, tags and dataset, lower-cased."""
    return " ".join(
        [str(run.id), run.name, run.study or "", run.preset, run.status, device_label(run), *run.tags, run.dataset]
    ).lower()


def matches(run: Run, words: list[str], hay: str | None = None) -> bool:
    """Every word of the filter appears in the run's :func:`haystack` (``hay``, when known)."""
    if not words:
        return True
    hay = haystack(run) if hay is None else hay
    return all(w in hay for w in words)


class RunsScreen(DataScreen):
    """The runs table and the actions on the run under the cursor (or the marked runs)."""

    HELP_TITLE = "runs"
    HELP = (
        "Type / to filter (every word must match the id, name, study, preset, status, device, dataset or a tag; "
        "a word with an operator is an expression, as ddpm ls --where reads it: fid<30 objective=v lr>=1e-3 name~lr). "
        "Click a column header or press s to sort by it; S reverses. Mark runs with space, then c compares them. "
        "Q shows the queue: the scheduler's slots and the runs waiting for them. "
        "y opens the study of the run under the cursor (ddpm sweep --name): its settings ranked, charted and compared."
    )
    BINDINGS = [
        Binding("enter", "open", "Open", show=False),  # shown by the table, which has the focus
        Binding("x", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("d", "delete", "Delete"),
        Binding("t", "tag", "Tag"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("g", "sample", "Sample"),
        Binding("e", "explore", "Explore"),
        Binding("slash", "filter", "Filter"),
        Binding("Q", "queue", "Queue"),
        Binding("y", "study", "Study", show=False, tooltip="the study of the run under the cursor, ranked"),
        Binding("s", "sort", "Sort", show=False),
        Binding("S", "reverse", "Reverse sort", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[int, Run] = {}
        self.marked: list[int] = []
        self.sort_key = "id"
        self.sort_reverse = True  # newest first
        self._filter: list[str] = []
        self._query: table_rows.RunQuery | None = None  # the filter's expressions, bound
        self._filter_error: str | None = None  # the last expression that could not be read
        self._evals: dict[int, dict] | None = None  # every run's latest evaluation, while expressions need it
        # Per refresh of the data, so that a keystroke in the filter only filters: each run's
        # haystack, its facts for the expressions (by the metrics they name), its cells.
        self._hay: dict[int, str] = {}
        self._facts: tuple[tuple[str, ...], dict[int, query.RunFacts]] | None = None
        self._cells: dict[tuple[int, bool], dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ filter runs: name, study, status, device, tag ...", id="filter")
        table = LiveTable(id="runs", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("", id="runs-summary")
        # Twelve keys: the roomy footer cut the last ones off at 120 columns (ctrl+p is in ? Help).
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = "ddpm-tui"
        self.sub_title = str(self.store.path)
        self.table.focus()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#runs", LiveTable)

    # ---- data ------------------------------------------------------------------------

    def refresh_data(self) -> None:
        runs = self.guard(self.store.list_runs)
        if runs is None:
            return
        self.runs = {r.id: r for r in runs}
        self.marked = [i for i in self.marked if i in self.runs]
        self._hay, self._facts, self._cells = {}, None, {}
        if self._query is not None:
            self._evals = self.guard(self.store.latest_evals) or {}
        self._show()

    def _facts_for(self, metrics: list[str]) -> dict[int, query.RunFacts] | None:
        """Every run's facts for the expressions, made once per refresh (and per set of metrics)."""
        key = tuple(metrics)
        if self._facts is None or self._facts[0] != key:
            items = self.guard(table_rows.facts, self.store, list(self.runs.values()), self._evals or {}, metrics)
            if items is None:
                return None
            self._facts = (key, {f.run.id: f for f in items})
        return self._facts[1]

    def visible_runs(self) -> list[Run]:
        words = self._filter
        if words:
            for r in self.runs.values():
                if r.id not in self._hay:
                    self._hay[r.id] = haystack(r)
        rows = [r for r in self.runs.values() if matches(r, words, self._hay.get(r.id))]
        if self._query is not None:
            facts = self._facts_for(self._query.metrics)
            if facts is not None:
                keep = {f.run.id for f in query.select([facts[r.id] for r in rows], self._query.filters)}
                rows = [r for r in rows if r.id in keep]
        key = SORT_KEYS[self.sort_key]
        have = [r for r in rows if key(r) is not None]
        missing = [r for r in rows if key(r) is None]
        have.sort(key=lambda r: (key(r), r.id), reverse=self.sort_reverse)
        return have + missing

    def _show(self) -> None:
        now = self.ddpm.clock()
        rows = self.visible_runs()
        cells = []
        for r in rows[:TABLE_ROWS]:
            key = (r.id, r.id in self.marked)
            if key not in self._cells:
                self._cells[key] = run_cells(r, key[1], now)
            cells.append((r.id, self._cells[key]))
        self.table.show([(str(rid), [c[key] for key, _ in COLUMNS]) for rid, c in cells])
        self._summarise(rows)

    def _summarise(self, rows: list[Run]) -> None:
        counts: dict[str, int] = {}
        for r in self.runs.values():
            counts[r.status] = counts.get(r.status, 0) + 1
        filtered = self._filter or self._query is not None
        parts = [f"{len(rows):,} of {len(self.runs):,} runs" if filtered else f"{len(self.runs):,} runs"]
        if len(rows) > TABLE_ROWS:
            parts.append(f"showing the first {TABLE_ROWS:,} of {len(rows):,} runs (filter or sort for others)")
        parts += [f"[{STATUS_STYLE.get(s, '')}]{n} {s}[/]" for s, n in counts.items()]
        arrow = "\u2193" if self.sort_reverse else "\u2191"
        label = dict(COLUMNS)[self.sort_key]
        parts.append(f"sorted by {label} {arrow}")
        if self.marked:
            parts.append(f"marked: {', '.join(map(str, self.marked))} (c compares)")
        if self._filter_error:
            parts.append(f"[red]{escape(self._filter_error)}[/]")
        if not self.runs:
            parts = ["no runs yet: press n to start one"]
        self.query_one("#runs-summary", Static).update("  \u00b7  ".join(parts))

    def current_id(self) -> int | None:
        key = self.table.current_key
        return int(key) if key is not None else None

    def current(self) -> Run | None:
        rid = self.current_id()
        if rid is None:
            self.notify("no run here; press n to start one", severity="warning")
            return None
        return self.runs.get(rid)

    # ---- filter and sort -------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        self.set_filter(event.value)
        self._show()

    def set_filter(self, text: str) -> None:
        """Words match as before; expressions (``fid<30``) filter as ``ddpm ls --where`` does.
        One that cannot be read is shown on the summary line and the last good filter stays,
        so the table holds still while an expression is half typed."""
        exprs, words = query.split_filter(text)
        q = None
        if exprs:
            evals = self._evals if self._query is not None and self._evals is not None else self.guard(self.store.latest_evals)
            if evals is None:
                return
            try:
                q = table_rows.bind(exprs, None, evals, source="filter")
            except DDPMError as e:
                self._filter_error = str(e)
                return
            if evals is not self._evals:
                self._facts = None  # facts read the evaluations: fresh ones, fresh facts
            self._evals = evals
        self._filter_error = None
        self._filter = [w.lower() for w in words]
        self._query = q

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.table.focus()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.value:
            box.value = ""
        self.table.focus()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key not in SORTABLE:
            return
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, key in ("id", "progress", "ips")
        self._show()

    def action_sort(self) -> None:
        """Next column; numbers start largest first, text A to Z."""
        i = (SORTABLE.index(self.sort_key) + 1) % len(SORTABLE)
        self.sort_key = SORTABLE[i]
        self.sort_reverse = self.sort_key in ("id", "progress", "ips")
        self._show()
        self.notify(f"sorted by {dict(COLUMNS)[self.sort_key]}", timeout=1.5)

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._show()

    # ---- actions ---------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        run = self.current()
        if run is not None:
            self.ddpm.open_run(run.id)

    def action_mark(self) -> None:
        rid = self.current_id()
        if rid is None:
            return
        if rid in self.marked:
            self.marked.remove(rid)
        else:
            self.marked.append(rid)
        self._show()
        row = self.table.cursor_row
        if row + 1 < len(self.table.keys):
            self.table.move_cursor(row=row + 1)

    def action_compare(self) -> None:
        ids = list(self.marked)
        if len(ids) < 2:
            self.notify("mark two to four runs with space, then press c", severity="warning")
            return
        if len(ids) > 4:
            self.notify(f"{len(ids)} runs are marked; compare takes two to four (space unmarks)", severity="warning")
            return
        self.ddpm.open_compare(ids)

    def action_stop(self) -> None:
        run = self.current()
        if run is not None:
            self.ddpm.stop_run(run)

    def action_resume(self) -> None:
        run = self.current()
        if run is not None:
            self.ddpm.resume_run(run)

    def action_delete(self) -> None:
        run = self.current()
        if run is not None:
            self.ddpm.delete_run(run)

    def action_tag(self) -> None:
        run = self.current()
        if run is not None:
            self.ddpm.tag_run(run)

    def action_sample(self) -> None:
        run = self.current()
        if run is not None:
            self.ddpm.open_sample(run.id)

    def action_explore(self) -> None:
        run = self.current()
        if run is not None:
            self.ddpm.open_explore(run.id)

    def action_study(self) -> None:
        run = self.current()
        if run is None:
            return
        if run.study is None:
            self.notify(
                f"run {run.id} ({run.name}) is not part of a study; ddpm sweep --name NAME records one", severity="warning"
            )
            return
        self.ddpm.open_study(run.study)

    def action_queue(self) -> None:
        self.ddpm.open_queue()
