"""Two to four runs side by side: overlaid loss curves, only the config keys that differ,
metrics in columns, and each run's latest sample grid. Live, like the run view: a run still
training keeps extending its curve."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Static

from core.store import Run
from ddpm_tui.figures import final_metrics, metrics_table  # as `ddpm compare` has them, so both agree
from ddpm_tui.format import config_differences, value
from ddpm_tui.screens.base import DataScreen
from ddpm_tui.widgets.art import ArtView
from ddpm_tui.widgets.loss_chart import LossChart


def differences_table(runs: list[Run], diffs: dict[str, list]) -> RenderableType:
    """Only keys whose values differ; in each row the values unlike the first run's stand out."""
    t = Table(box=None, header_style="bold", pad_edge=False)
    t.add_column("")
    for r in runs:
        t.add_column(f"{r.id} {r.name}", justify="right")
    for key, vals in diffs.items():
        first = repr(vals[0])
        cells = [Text(value(v), style="bold yellow" if i and repr(v) != first else "") for i, v in enumerate(vals)]
        t.add_row(Text(key, style="cyan"), *cells)
    heading = Text("config differences" if diffs else "configs are identical", style="bold")
    return Group(heading, t) if diffs else heading


class CompareScreen(DataScreen):
    """Marked runs from the runs table, compared."""

    HELP_TITLE = "compare"
    HELP = "Curves are smoothed, log scale, one colour per run. Only config keys whose values differ are listed."
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, run_ids: list[int]) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self._sample_keys: dict[int, tuple | None] = {}
        self._curve_key: tuple | None = None
        self.differences: dict[str, list] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="compare"):
            with Horizontal(id="compare-top"):
                yield LossChart(title="loss (log scale, smoothed)", id="compare-chart")
                yield Static("", id="compare-metrics")
            yield Static("", id="compare-config")
            with Horizontal(id="compare-samples"):
                for rid in self.run_ids:
                    with Vertical(classes="compare-run"):
                        yield Static(str(rid), id=f"compare-title-{rid}", classes="section")
                        yield ArtView(id=f"compare-art-{rid}", max_rows=2)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "compare " + ", ".join(map(str, self.run_ids))

    def refresh_data(self) -> None:
        runs = []
        for rid in self.run_ids:
            run = self.guard(self.store.get_run, rid)
            if run is not None:
                runs.append(run)
        if len(runs) < 2:
            self.app.pop_screen()
            return
        self.differences = config_differences([r.config for r in runs])
        self.query_one("#compare-config", Static).update(differences_table(runs, self.differences))
        finals, protocol = final_metrics(self.store, runs)
        caption = f"quality figures: {protocol}" if protocol else None
        self.query_one("#compare-metrics", Static).update(
            metrics_table(
                runs,
                finals,
                title="metrics",
                title_justify="left",
                title_style="bold",
                pad_edge=False,
                caption=caption,
                caption_justify="left",
                caption_style="dim",
            )  # fmt: skip
        )
        key = tuple((r.id, r.step, r.stored_status) for r in runs)
        if key != self._curve_key:
            self._curve_key = key
            self.query_one(LossChart).set_series({f"{r.id} {r.name}": self.store.series(r.id, "loss") for r in runs})
        for r in runs:
            skey = self.store.samples_version(r.id)
            if self._sample_keys.get(r.id) == skey:
                continue
            self._sample_keys[r.id] = skey
            latest = self.store.latest_samples(r.id)
            title = Text(f"{r.id} {r.name}", style="bold")
            if latest is not None:
                title.append(f"  step {latest.step:,}", style="dim")
            self.query_one(f"#compare-title-{r.id}", Static).update(title)
            self.query_one(f"#compare-art-{r.id}", ArtView).set_data(latest.data if latest is not None else None)
