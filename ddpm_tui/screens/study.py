"""One study, live: its settings ranked by a figure (mean ± std over seeds, one protocol), the
figure against a swept key, and the best and worst settings' latest digits side by side.

The same study ``ddpm study NAME`` prints: the numbers are :func:`core.study.load_study`'s
and the cells :mod:`ddpm_tui.study_view`'s. The app's poller refreshes it when the database
moves, so a study still training fills in as its runs finish and are judged. Enter on a
setting opens the compare screen on its runs (the run screen for a setting of one run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Static

from core.study import Study, chart_data, chart_keys, extreme_samples, load_study
from ddpm_tui.screens.base import DataScreen
from ddpm_tui.study_view import caption, columns, drawn_keys, extreme_title, rows
from ddpm_tui.widgets.art import ArtView
from ddpm_tui.widgets.live_table import LiveTable
from ddpm_tui.widgets.study_chart import StudyChart

if TYPE_CHECKING:
    from core.study import Setting


class StudyScreen(DataScreen):
    """A study's settings, chart and extremes; keys choose the ranked figure and the chart's x."""

    HELP_TITLE = "study"
    HELP = (
        "A study is the runs of one sweep (ddpm sweep --name). Its swept keys are the config fields that differ "
        "among its runs, seeds apart; a setting is the runs that share them, and each figure is the mean ± std "
        "over its runs, quality figures under the protocol most runs were judged under. f ranks by the next "
        "figure, k charts against the next swept key, enter compares the runs of the setting under the cursor."
    )
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Compare", show=False),  # shown by the table, which has the focus
        Binding("f", "next_figure", "Rank by", tooltip="the next figure the study has"),
        Binding("k", "next_key", "Chart key", tooltip="the next swept key on the chart's x axis"),
    ]

    def __init__(self, study: str) -> None:
        super().__init__()
        self.study_name = study
        self.rank: str | None = None  # None: the study's default (fid, else what it has)
        self.x_key: str | None = None  # None: the first numeric swept key
        self.study: Study | None = None
        self._columns: list[str] = []
        self._art_keys: dict[str, tuple | None] = {}  # the grid each of best and worst shows

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="study"):
            yield Static("", id="study-caption")
            yield LiveTable(id="study-table", cursor_type="row", zebra_stripes=True)
            with Horizontal(id="study-bottom"):
                yield StudyChart(id="study-chart")
                with Horizontal(id="study-digits"):
                    for which in ("best", "worst"):
                        with Vertical(classes="study-extreme"):
                            yield Static("", id=f"study-{which}-title")
                            yield ArtView(id=f"study-{which}", max_rows=1, placeholder="")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"study {self.study_name}"
        self.table.focus()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#study-table", LiveTable)

    # ---- data ------------------------------------------------------------------------

    def refresh_data(self) -> None:
        study = self.guard(load_study, self.store, self.study_name, self.rank)
        if study is None:  # its runs were deleted: the guard said why
            self.app.pop_screen()
            return
        self.study = study
        self.rank = study.rank
        self.sub_title = f"ranked by {study.rank}" if study.rank else "nothing measured yet"
        self.query_one("#study-caption", Static).update("\n".join(caption(study)))
        self._show_table(study)
        keys = chart_keys(study)
        if self.x_key not in keys:
            self.x_key = (drawn_keys(study) or [None])[0]
        data = chart_data(study, self.x_key) if self.x_key else None
        self.query_one(StudyChart).set_data(data, "nothing swept" if not study.swept else "nothing measured yet")
        self._show_extremes(study)

    def _show_table(self, study: Study) -> None:
        table = self.table
        heads = columns(study)
        if heads != self._columns:
            table.clear(columns=True)
            table.keys = []
            for i, h in enumerate(heads):
                table.add_column(h, key=str(i))
            self._columns = heads
        numbers = {0, 1} | {i for i, h in enumerate(heads) if i >= len(study.swept) + 2 and h not in ("seeds",)}
        out = []
        for s, cells in rows(study):
            out.append((s.label, [Text.from_markup(c, justify="right" if i in numbers else "left") for i, c in enumerate(cells)]))
        table.show(out)

    def _show_extremes(self, study: Study) -> None:
        """Titles every time (their figures move as runs are judged); the art only when the
        grid shown is another one."""
        found = {which: (s, grid) for which, s, grid in extreme_samples(self.store, study)}
        for which in ("best", "worst"):
            setting, grid = found.get(which, (None, None))
            title = extreme_title(which, setting, study, grid) if setting is not None else ""
            self.query_one(f"#study-{which}-title", Static).update(title)
            key = (grid.run, grid.step, grid.time) if grid is not None else None
            if self._art_keys.get(which, "unset") != key:
                self._art_keys[which] = key
                self.query_one(f"#study-{which}", ArtView).set_data(grid.data if grid is not None else None)

    # ---- keys --------------------------------------------------------------------------

    def current(self) -> Setting | None:
        key = self.table.current_key
        if self.study is None or key is None:
            return None
        return next((s for s in self.study.settings if s.label == key), None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        s = self.current()
        if s is None:
            return
        ids = [r.id for r in s.runs]
        if len(ids) == 1:
            self.ddpm.open_run(ids[0])
        else:
            self.ddpm.open_compare(ids)

    def action_next_figure(self) -> None:
        if self.study is None or not self.study.figures:
            self.notify("no run of this study has a figure yet", severity="warning")
            return
        figs = self.study.figures
        self.rank = figs[(figs.index(self.rank) + 1) % len(figs)] if self.rank in figs else figs[0]
        self.refresh_data()
        self.notify(f"ranked by {self.rank}", timeout=1.5)

    def action_next_key(self) -> None:
        keys = chart_keys(self.study) if self.study is not None else []
        if not keys:
            self.notify("nothing is swept in this study: every run has the same config but its seed", severity="warning")
            return
        self.x_key = keys[(keys.index(self.x_key) + 1) % len(keys)] if self.x_key in keys else keys[0]
        self.refresh_data()
        self.notify(f"chart: {self.rank} by {self.x_key}", timeout=1.5)
