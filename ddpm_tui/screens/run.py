"""One run, live: loss chart, progress and ETA, throughput, device, the latest sampled
grid, the config, the checkpoints and the notes.

Each refresh reads only what moved: loss rows past the last step shown, the sample grid only
when a newer one was recorded. A resumed run that replays steps (its rows past the
checkpoint were truncated) is noticed by its step going backwards and reloaded whole.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, ProgressBar, Static

from core import sysinfo
from core.store import Run, RunNotFound
from ddpm_tui.format import STATUS_STYLE, duration, number, progress, run_facts
from ddpm_tui.screens.base import DataScreen
from ddpm_tui.widgets.art import ArtView
from ddpm_tui.widgets.loss_chart import LossChart


def config_table(run: Run, columns: int = 3) -> Table:
    """Every field in ``columns`` key/value pairs across; those changed from the preset in
    yellow with a star (as ``ddpm show`` marks them)."""
    from core.config import PRESETS, RunConfig
    from ddpm_tui.format import preset_differences, value

    base = RunConfig(**PRESETS[run.preset]).to_dict() if run.preset in PRESETS else {}
    changed = preset_differences(run.config, base) if base else {}
    cells = []
    for k, v in run.config.items():
        if k in changed:
            cells.append((Text(k + "*", style="yellow"), Text(value(v), style="bold yellow")))
        else:
            cells.append((Text(k, style="dim"), Text(value(v))))
    t = Table(box=None, show_header=False, pad_edge=False, expand=True)
    for _ in range(columns):
        t.add_column(no_wrap=True, min_width=16)
        t.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
    rows = -(-len(cells) // columns)
    for r in range(rows):
        line = []
        for c in range(columns):
            i = c * rows + r
            line += list(cells[i]) if i < len(cells) else ["", ""]
        t.add_row(*line)
    return t


class RunScreen(DataScreen):
    """Everything about one run, updating while it trains."""

    HELP_TITLE = "run"
    HELP = "The chart shows the raw loss (grey) and its smoothed curve, on a log scale. Fields marked * differ from the preset."
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("x", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("g", "sample", "Sample"),
        Binding("e", "explore", "Explore"),
        Binding("t", "tag", "Tag"),
        Binding("N", "notes", "Notes"),
        Binding("d", "delete", "Delete", show=False),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.shown: Run | None = None
        self._loss_step = -1
        self._sample_key: tuple[int, int, int] | None = None
        self._ckpt_key: tuple | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="run-top"):
            with Vertical(id="run-left"):
                yield Static("", id="run-summary")
                yield ProgressBar(id="run-progress", show_eta=False, show_percentage=True)
                yield Static("", id="run-progress-text")
                yield LossChart(id="run-chart")
            with Vertical(id="run-right"):
                yield Static("samples", id="run-art-title", classes="section")
                yield ArtView(id="run-art", placeholder="no samples yet: the worker records a grid every sample_every steps")
        with Horizontal(id="run-bottom"):
            with VerticalScroll(id="run-config-pane"):
                yield Static("config", classes="section")
                yield Static("", id="run-config")
            with VerticalScroll(id="run-side"):
                yield Static("checkpoints", classes="section")
                yield Static("", id="run-checkpoints")
                yield Static("notes", classes="section")
                yield Static("", id="run-notes")
        yield Footer()

    # ---- data ------------------------------------------------------------------------

    def refresh_data(self) -> None:
        try:
            run = self.store.get_run(self.run_id)
        except RunNotFound:
            self.notify(f"run {self.run_id} was deleted", severity="warning")
            self.app.pop_screen()
            return
        except Exception as e:  # a locked database: keep what is shown, try at the next poll
            self.log.warning(f"refresh failed: {e}")
            return
        first = self.shown is None
        if first or run.config != self.shown.config or run.preset != self.shown.preset:
            self.query_one("#run-config", Static).update(config_table(run))
        self.shown = run
        self.title = f"run {run.id} \u00b7 {run.name}"
        self.sub_title = f"{run.preset} preset"
        self._summary(run)
        self._progress(run)
        self._loss(run)
        self._samples(run)
        self._checkpoints(run)
        self.query_one("#run-notes", Static).update(Text(run.notes) if run.notes else Text("none (N writes one)", style="dim"))

    def _summary(self, run: Run) -> None:
        st = STATUS_STYLE.get(run.status, "")
        now = self.ddpm.clock()
        system = self.guard(self.store.latest_values, run.id, sysinfo.NAMES)
        rows = [
            ("status", Text(run.status, style=st) + Text(f"  {run.preset} preset, {run.dataset}")),
            *run_facts(run, now, system),
        ]
        ev = self.guard(self.store.latest_eval, run.id)
        if ev:
            figs = "  ".join(f"{k} {number(v)}" for k, v in ev["figures"].items())
            rows.append(("quality", f"{figs}  (step {ev['step']:,}, {ev['protocol']})"))
        if run.error:
            rows.append(("error", Text(run.error, style="red")))
        if run.status == "crashed":
            rows.append(("hint", "the worker is gone; r resumes from the last checkpoint"))
        if run.stop_requested and run.active:
            rows.append(("stopping", "at the next step, after a checkpoint"))
        t = Table(box=None, show_header=False, pad_edge=False)
        t.add_column(style="dim", no_wrap=True)
        t.add_column()
        for k, v in rows:
            t.add_row(k, v)
        self.query_one("#run-summary", Static).update(t)

    def _progress(self, run: Run) -> None:
        bar = self.query_one("#run-progress", ProgressBar)
        bar.update(total=max(1, run.total_steps), progress=run.step)
        eta = f"  \u00b7  ETA {duration(run.seconds_left)}" if run.seconds_left is not None else ""
        self.query_one("#run-progress-text", Static).update(f"step {progress(run.step, run.total_steps)}{eta}")

    def _loss(self, run: Run) -> None:
        chart = self.query_one(LossChart)
        if run.step < self._loss_step:  # resumed from an earlier checkpoint: the tail was replaced
            self._loss_step = -1
        rows = self.guard(self.store.metrics, run.id, ["loss"], since_step=self._loss_step if self._loss_step >= 0 else None)
        if rows is None:
            return
        if self._loss_step < 0:
            chart.set_series({run.name: ([r["step"] for r in rows], [r["value"] for r in rows])})
        elif rows:
            chart.extend(run.name, [r["step"] for r in rows], [r["value"] for r in rows])
        if rows:
            self._loss_step = rows[-1]["step"]
        elif self._loss_step < 0:
            self._loss_step = 0

    def _samples(self, run: Run) -> None:
        key = self.guard(self.store.samples_version, run.id)
        if key is not None and key[0] == 0:
            key = None
        if key == self._sample_key:
            return
        self._sample_key = key
        art = self.query_one(ArtView)
        latest = self.guard(self.store.latest_samples, run.id) if key else None
        title = self.query_one("#run-art-title", Static)
        if latest is None:
            art.set_data(None)
            title.update("samples")
            return
        art.set_data(latest.data, per_row=latest.per_row)
        title.update(f"samples at step {latest.step:,} ({latest.label}, EMA weights)")

    def _checkpoints(self, run: Run) -> None:
        ckpts = self.guard(self.store.checkpoints, run.id) or []
        key = tuple((c.step, c.bytes) for c in ckpts)
        if key == self._ckpt_key:
            return
        self._ckpt_key = key
        if not ckpts:
            self.query_one("#run-checkpoints", Static).update(Text("none yet", style="dim"))
            return
        t = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
        t.add_column("step", justify="right")
        t.add_column("size", justify="right")
        t.add_column("file", overflow="ellipsis", no_wrap=True)
        for c in ckpts:
            t.add_row(f"{c.step:,}", f"{c.bytes / 1e6:.1f} MB", c.path.rsplit("/", 1)[-1])
        self.query_one("#run-checkpoints", Static).update(t)

    # ---- actions ---------------------------------------------------------------------

    def _run(self) -> Run | None:
        return self.guard(self.store.get_run, self.run_id)

    def action_stop(self) -> None:
        if (run := self._run()) is not None:
            self.ddpm.stop_run(run)

    def action_resume(self) -> None:
        if (run := self._run()) is not None:
            self.ddpm.resume_run(run)

    def action_tag(self) -> None:
        if (run := self._run()) is not None:
            self.ddpm.tag_run(run)

    def action_notes(self) -> None:
        if (run := self._run()) is not None:
            self.ddpm.note_run(run)

    def action_delete(self) -> None:
        if (run := self._run()) is not None:
            self.ddpm.delete_run(run, then=lambda: self.app.pop_screen())

    def action_sample(self) -> None:
        self.ddpm.open_sample(self.run_id)

    def action_explore(self) -> None:
        self.ddpm.open_explore(self.run_id)
