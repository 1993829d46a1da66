"""Two to four runs side by side: overlaid loss curves, only the config keys that differ,
metrics in columns, and each run's sample grid from one common training step
(:mod:`ddpm_tui.compare_samples`, as ``ddpm compare`` shows them). ``[`` and ``]`` move that
step over the steps all the runs share; ``n`` draws fresh grids from each run's checkpoint at
the step with one seed and sampler (the same noise), in child processes as the sample screen
does, so this process never imports torch. Live, like the run view: a run still training keeps
extending its curve, and the grids follow the latest shared step until one is chosen."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Static
from textual.worker import get_current_worker

from core.errors import DDPMError
from core.store import Run
from ddpm_tui.compare_samples import CompareError, SameNoise, SampleView, same_noise_plan, stored_grids
from ddpm_tui.figures import final_metrics, metrics_table  # as `ddpm compare` has them, so both agree
from ddpm_tui.format import config_differences, value
from ddpm_tui.sample_client import SampleFailed, SampleJob, share_of_cores
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
    HELP = (
        "Curves are smoothed, log scale, one colour per run. Only config keys whose values differ are listed. "
        "The grids are from one training step all the runs have samples at (the latest, until [ or ] picks another); "
        "n draws fresh grids from each run's checkpoint at that step with the same seed and sampler, so the same noise "
        "becomes each run's digit (n again goes back to the recorded grids)."
    )
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("left_square_bracket", "step(-1)", "Earlier step", key_display="["),
        Binding("right_square_bracket", "step(1)", "Later step", key_display="]"),
        Binding("n", "same_noise", "Same noise"),
    ]

    def __init__(self, run_ids: list[int]) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self._samples_key: tuple | None = None
        self._curve_key: tuple | None = None
        self.differences: dict[str, list] = {}
        self.runs: list[Run] = []
        self.pinned: int | None = None  # the step chosen with [ and ]; None follows the latest shared step
        self.view: SampleView | None = None  # the recorded grids shown
        self.same_noise = False
        self.plan: SameNoise | None = None  # the fresh grids' plan while same_noise is on
        self.noise: dict[int, object] | None = None  # run id -> its fresh grid, once all are drawn

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="compare"):
            with Horizontal(id="compare-top"):
                yield LossChart(title="loss (log scale, smoothed)", id="compare-chart")
                yield Static("", id="compare-metrics")
            yield Static("", id="compare-config")
            yield Static("", id="compare-step")
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
        self.runs = runs
        if not self.same_noise:
            key = (tuple(self.store.samples_version(r.id) for r in runs), self.pinned)
            if key != self._samples_key:
                self._samples_key = key
                self._show_stored()

    # ---- the recorded grids, from one step ---------------------------------------------

    @property
    def step(self) -> int | None:
        """The step the grids are from (None: the runs share none)."""
        if self.same_noise:
            return self.plan.step if self.plan is not None else None
        return self.view.step if self.view is not None else None

    def _show_stored(self) -> None:
        try:
            view = stored_grids(self.store, self.runs, self.pinned)
        except CompareError:  # the chosen step is gone (a run resumed from an earlier checkpoint)
            self.pinned = None
            view = self.guard(stored_grids, self.store, self.runs)
        except DDPMError as e:
            self.notify(str(e), severity="error")
            return
        if view is None:
            return
        self.view = view
        if view.step is not None:
            where = f"{view.shared.index(view.step) + 1} of {len(view.shared)}"
            self._note(f"samples at step {view.step:,} [dim]({where} steps all these runs have samples at; [ ] another, "
                       "n the same noise)[/]")  # fmt: skip
        else:
            self._note(f"[yellow]{view.note}[/]" if view.note else "")
        for r in self.runs:
            grid = view.grids[r.id]
            self._show(r, grid.data if grid is not None else None, f"step {grid.step:,}, {grid.label}" if grid else "")

    def _note(self, markup: str) -> None:
        self.query_one("#compare-step", Static).update(markup)

    def _show(self, run: Run, data, detail: str) -> None:
        title = Text(f"{run.id} {run.name}", style="bold")
        if detail:
            title.append(f"  {detail}", style="dim")
        self.query_one(f"#compare-title-{run.id}", Static).update(title)
        self.query_one(f"#compare-art-{run.id}", ArtView).set_data(data)

    def action_step(self, delta: int) -> None:
        """Move to the previous or next step the runs share (of grids, or of checkpoints for
        the same noise)."""
        shared = (
            (self.plan.shared if self.plan is not None else []) if self.same_noise else (self.view.shared if self.view else [])
        )
        if not shared or self.step is None:
            self.notify("these runs share no step to move over", severity="warning")
            return
        i = shared.index(self.step) if self.step in shared else len(shared) - 1
        j = max(0, min(len(shared) - 1, i + delta))
        if j == i:
            return
        if self.same_noise:
            self._draw(shared[j])
        else:
            self.pinned = None if j == len(shared) - 1 else shared[j]
            self.refresh_data()

    # ---- the same noise ----------------------------------------------------------------

    def action_same_noise(self) -> None:
        if self.same_noise:
            self.workers.cancel_group(self, "same-noise")
            self.same_noise, self.plan, self.noise = False, None, None
            self._samples_key = None
            self.refresh_data()
            return
        self._draw(self.step)

    def _plan(self, step: int | None) -> SameNoise:
        """The plan at ``step`` when every run has a checkpoint there, else at the latest
        checkpoint step they share."""
        try:
            return same_noise_plan(self.store, self.runs, step)
        except CompareError:
            if step is None:
                raise
            return same_noise_plan(self.store, self.runs, None)

    def _draw(self, step: int | None) -> None:
        plan = self.guard(self._plan, step)
        if plan is None:
            return
        self.same_noise, self.plan, self.noise = True, plan, None
        self._note(f"same noise at step {plan.step:,}: drawing {plan.n} samples from each run's checkpoint, "
                   f"{plan.spec.label}, seed {plan.seed}...")  # fmt: skip
        for r in self.runs:
            self._show(r, None, f"step {plan.step:,}, drawing...")
        self.draw_grids(plan, list(self.runs))

    @work(thread=True, exclusive=True, group="same-noise")
    def draw_grids(self, plan: SameNoise, runs: list[Run]) -> None:
        """Each run's grid in a child process, one after another (they share the cores)."""
        worker = get_current_worker()
        threads = share_of_cores(self.store.path)
        grids = {}
        for r in runs:
            job = SampleJob(plan.checkpoints[r.id].path, plan.n, plan.spec, seed=plan.seed, threads=threads)
            try:
                drawn = job.run(lambda: worker.is_cancelled)
            except SampleFailed as e:
                if not worker.is_cancelled:
                    self.app.call_from_thread(self._note, f"[red]run {r.id}: sampling failed: {escape(str(e))}[/]")
                return
            if drawn is None or worker.is_cancelled:
                return
            grids[r.id] = drawn.data
        self.app.call_from_thread(self._show_noise, plan, grids)

    def _show_noise(self, plan: SameNoise, grids: dict) -> None:
        if plan is not self.plan:
            return
        self.noise = grids
        where = f"{plan.shared.index(plan.step) + 1} of {len(plan.shared)}"
        self._note(f"same noise at step {plan.step:,}: {plan.spec.label}, seed {plan.seed}, {plan.n} samples from each "
                   f"run's checkpoint [dim]({where} checkpoint steps all these runs have; [ ] another, n the recorded grids)[/]")  # fmt: skip
        for r in self.runs:
            self._show(r, grids.get(r.id), f"step {plan.step:,}, same noise")
