"""The forward process, seen: a real test digit noised at a chosen t under the run's own
schedule (``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, in closed form), and for 2-D
runs the S-curve noised forward beside the model's points at successive reverse steps, and
(key n) the reverse process as ten scatter panels x_T ... x_0 (:mod:`ddpm_tui.reverse_panels`,
as ``ddpm sample --panels`` prints them).

The schedule comes from :mod:`core.schedules` and the data from :mod:`core.sources`, all
numpy, loaded once in a worker thread; moving t is then a few numpy operations on the UI
thread, fast enough to follow a held key. The reverse process of a 2-D run is sampled in a
child process (:mod:`ddpm_tui.sample_client`), so the dashboard never imports torch.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Static
from textual.worker import get_current_worker

from core.store import Run
from ddpm_tui.screens.base import DataScreen
from ddpm_tui.widgets.art import ArtView
from ddpm_tui.widgets.schedule_chart import ScheduleChart

STRIP = 12  # at most this many copies in the forward strip, from t = 0 to T - 1
POINTS = 512
REVERSE_FRAMES = 16


class ExploreScreen(DataScreen):
    """Left/right move t; , and . change the digit; s draws new noise; p plays the reverse
    process of a 2-D run and n shows it as ten panels."""

    HELP_TITLE = "explore"
    HELP = (
        "x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps under the run's schedule and T. The strip shows the same digit "
        "and noise at evenly spaced t. For 2-D runs the right panel shows the model's samples at successive reverse "
        "steps (from its latest checkpoint); n shows the reverse process as ten scatter panels, x_T ... x_0."
    )
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("right", "move(1)", "t+"),
        Binding("left", "move(-1)", "t-"),
        Binding("shift+right", "move(10)", "t+10%", show=False),
        Binding("shift+left", "move(-10)", "t-10%", show=False),
        Binding("full_stop", "digit(1)", "Next digit"),
        Binding("comma", "digit(-1)", "Previous digit", show=False),
        Binding("s", "reseed", "New noise"),
        Binding("p", "play", "Play reverse"),
        Binding("n", "panels", "Ten panels"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.run: Run | None = None
        self.abar = None  # numpy float64 (T,)
        self.data = None  # numpy: images in [-1, 1] (N, C, H, W) or points (N, 2)
        self.index = 0
        self.seed = 0
        self.t = 0
        self.reverse: list = []
        self.reverse_t: list[int] = []
        self.reverse_i = 0
        self._timer = None
        self.panels: list = []  # reverse_panels.Panel, once drawn

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading the schedule and the data...", id="explore-info")
        with Horizontal(id="explore"):
            with Vertical(id="explore-left"):
                yield Static("x_0, noise, x_t", classes="section", id="explore-now-title")
                yield ArtView(id="explore-now", placeholder="")
                yield Static("forward process", classes="section", id="explore-strip-title")
                yield ArtView(id="explore-strip", placeholder="")
                yield Static("", classes="section", id="explore-panels-title")
                yield Static("", id="explore-panels")
            with Vertical(id="explore-right"):
                yield ScheduleChart(id="explore-schedule")
                yield Static("", classes="section", id="explore-reverse-title")
                yield ArtView(id="explore-reverse", placeholder="")
        yield Footer()

    def on_mount(self) -> None:
        run = self.guard(self.store.get_run, self.run_id)
        if run is None:
            self.app.pop_screen()
            return
        self.run = run
        self.title = f"explore run {run.id} \u00b7 {run.name}"
        self.sub_title = f"{run.config['schedule']} schedule, T = {run.config['T']}"
        self.t = int(run.config["T"]) // 4
        is_points = run.dataset == "scurve"
        self.query_one("#explore-reverse-title").display = is_points
        self.query_one("#explore-reverse").display = is_points
        self.query_one("#explore-panels-title").display = False
        self.query_one("#explore-panels").display = False
        if not is_points:
            self.query_one("#explore-schedule").add_class("tall")
        self.load(run)

    # ---- loading (worker thread) -----------------------------------------------------

    @work(thread=True, exclusive=True, group="explore-load")
    def load(self, run: Run) -> None:
        try:
            import numpy as np

            from core.schedules import make_betas

            betas = make_betas(run.config["schedule"], int(run.config["T"]))
            abar = np.cumprod(1.0 - betas)
            data = self._data(run)
        except Exception as e:
            self.app.call_from_thread(self._info, f"[red]cannot explore this run: {type(e).__name__}: {e}[/]")
            return
        self.app.call_from_thread(self._loaded, abar, data)

    @staticmethod
    def _data(run: Run):
        import numpy as np

        from core import sources
        from core.config import RunConfig

        cfg = RunConfig.from_dict(run.config)
        if cfg.is_sequence:
            raise ValueError("the explore screen shows images and S-curve points, not 1-D sequences")
        if cfg.dataset == "scurve":
            return sources.s_curve_preview(POINTS, seed=0)

        if cfg.dataset == "mnist":
            images, _ = sources.load_mnist("test")
        elif cfg.dataset == "fashion":
            images, _ = sources.load_fashion_mnist("test", download=False)
        else:
            images = sources.load_folder(cfg.data_dir, cfg.image_size, cfg.image_channels)
        images = images[:256]
        if images.ndim == 3:
            images = images[:, None]
        return images.astype(np.float64) / 127.5 - 1.0

    def _loaded(self, abar, data) -> None:
        self.abar, self.data = abar, data
        self.query_one(ScheduleChart).set_schedule(abar.tolist(), self.t)
        self.show()

    def _info(self, text: str) -> None:
        self.query_one("#explore-info", Static).update(text)

    # ---- the forward process (UI thread, numpy) --------------------------------------

    def noised(self, x0, t: int):
        import numpy as np

        eps = np.random.default_rng(self.seed * 100_003 + self.index).standard_normal(x0.shape)
        a = self.abar[t]
        return np.sqrt(a) * x0 + np.sqrt(1.0 - a) * eps, eps

    @staticmethod
    def to_uint8(x):
        import numpy as np

        return ((np.clip(x, -1, 1) + 1.0) * 127.5).round().astype(np.uint8)

    def show(self) -> None:
        if self.abar is None or self.data is None or self.run is None:
            return
        import numpy as np

        T = len(self.abar)
        t = self.t
        a = float(self.abar[t])
        snr = a / max(1e-12, 1 - a)
        self._info(
            f"t = {t} of {T}   abar_t = {a:.4f}   signal sqrt(abar) = {a**0.5:.3f}   noise sqrt(1-abar) = {(1 - a) ** 0.5:.3f}"
            f"   SNR = {snr:.3g}   ({'test image' if self.data.ndim == 4 else 'S-curve point cloud'} #{self.index}, noise seed {self.seed})"
        )
        self.query_one(ScheduleChart).set_t(t)
        if self.data.ndim == 2:  # points: the whole cloud, noised
            xt, _ = self.noised(self.data, t)
            self.query_one("#explore-now-title", Static).update(f"S-curve noised to t = {t}")
            self.query_one("#explore-now", ArtView).set_data(xt.astype(np.float32))
            strip = self.query_one("#explore-strip", ArtView)
            strip.display = False
            self.query_one("#explore-strip-title").display = False
            return
        x0 = self.data[self.index % len(self.data)]
        xt, eps = self.noised(x0, t)
        now = np.stack([self.to_uint8(x0), self.to_uint8(eps / 3.0), self.to_uint8(xt)])
        self.query_one("#explore-now-title", Static).update(f"x_0, the noise eps, and x_t at t = {t}")
        self.query_one("#explore-now", ArtView).set_data(now)
        ts = np.linspace(0, T - 1, self.strip_count(x0.shape)).round().astype(int)
        strip = np.stack([self.to_uint8(np.sqrt(self.abar[s]) * x0 + np.sqrt(1 - self.abar[s]) * eps) for s in ts])
        self.query_one("#explore-strip-title", Static).update("forward process at t = " + ", ".join(str(int(s)) for s in ts))
        self.query_one("#explore-strip", ArtView).set_data(strip)

    def strip_count(self, shape: tuple[int, ...]) -> int:
        """As many noised copies as fit on one row of the strip at its current width."""
        from ddpm_tui.render import cell_size

        width = self.query_one("#explore-strip", ArtView).content_size.width or 80
        cw, _ = cell_size(self.app.art_mode, shape[-2], shape[-1])  # type: ignore[attr-defined]
        return int(max(2, min(STRIP, (width + 1) // (cw + 1))))

    def on_resize(self) -> None:
        self.show()
        self._show_panels()

    def art_mode_changed(self) -> None:
        """Braille cells are half as wide: more copies fit in the strip."""
        self.show()

    def action_move(self, percent_or_one: int) -> None:
        if self.abar is None:
            return
        T = len(self.abar)
        step = max(1, T // 10) if abs(percent_or_one) == 10 else max(1, T // 50)
        self.t = int(min(T - 1, max(0, self.t + (step if percent_or_one > 0 else -step))))
        self.show()

    def action_digit(self, delta: int) -> None:
        if self.data is not None:
            self.index = (self.index + delta) % len(self.data)
            self.show()

    def action_reseed(self) -> None:
        self.seed += 1
        self.show()

    # ---- the reverse process of a 2-D run (worker thread) ----------------------------

    def action_play(self) -> None:
        if self.run is None or self.run.dataset != "scurve":
            self.notify("the reverse scatter is for 2-D (scurve) runs; use g to watch digits denoise", severity="warning")
            return
        if self.reverse:
            self._start_playback()
            return
        ck = self.guard(self.store.checkpoint_at, self.run.id)
        if ck is None:
            return
        self.query_one("#explore-reverse-title", Static).update("sampling the reverse process...")
        self.sample_reverse(ck.path)

    @work(thread=True, exclusive=True, group="explore-reverse")
    def sample_reverse(self, path: str) -> None:
        from core.sampling_spec import resolve_spec
        from ddpm_tui.sample_client import SampleFailed, SampleJob, share_of_cores

        worker = get_current_worker()
        # Only 2-D runs get here, and the config refuses cond=class for them: no classes or
        # guidance to pass (the run's own spec is what the scatter shows).
        job = SampleJob(
            path, POINTS, resolve_spec(self.run.config), seed=self.seed, frames=REVERSE_FRAMES,
            threads=share_of_cores(self.store.path),
        )  # fmt: skip
        try:
            drawn = job.run(lambda: worker.is_cancelled)
        except SampleFailed as e:
            if not worker.is_cancelled:
                self.app.call_from_thread(self.notify, f"sampling failed: {e}", severity="error")
            return
        if drawn is not None and not worker.is_cancelled:
            self.app.call_from_thread(self._reverse_ready, drawn.frames, drawn.timesteps)

    def _reverse_ready(self, frames: list, timesteps: list[int]) -> None:
        self.reverse, self.reverse_t = frames, timesteps
        self._start_playback()

    def _start_playback(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.reverse_i = 0
        self._timer = self.set_interval(0.25, self._next_reverse)
        self._next_reverse()

    def _next_reverse(self) -> None:
        if self.reverse_i >= len(self.reverse):
            if self._timer is not None:
                self._timer.stop()
                self._timer = None
            return
        t = self.reverse_t[self.reverse_i]
        self.query_one("#explore-reverse-title", Static).update(
            f"reverse process: x_t at t = {t} (step {self.reverse_i + 1}/{len(self.reverse)}; p replays)"
        )
        self.query_one("#explore-reverse", ArtView).set_data(self.reverse[self.reverse_i])
        self.reverse_i += 1

    # ---- the reverse process as ten panels (worker thread, then the UI thread) ----------

    def action_panels(self) -> None:
        if self.run is None or self.run.dataset != "scurve":
            self.notify("the ten panels are for 2-D (scurve) runs; use g to watch digits denoise", severity="warning")
            return
        ck = self.guard(self.store.checkpoint_at, self.run.id)
        if ck is None:
            return
        self.query_one("#explore-panels-title").display = True
        self.query_one("#explore-panels-title", Static).update("sampling the reverse process for the panels...")
        self.sample_panels(ck.path)

    @work(thread=True, exclusive=True, group="explore-panels")
    def sample_panels(self, path: str) -> None:
        from core.sampling_spec import resolve_spec
        from ddpm_tui.reverse_panels import frames_for, reverse_panels
        from ddpm_tui.sample_client import SampleFailed, SampleJob, share_of_cores

        worker = get_current_worker()
        spec = resolve_spec(self.run.config)
        job = SampleJob(
            path, POINTS, spec, seed=self.seed, frames=frames_for(spec.steps), threads=share_of_cores(self.store.path)
        )
        try:
            drawn = job.run(lambda: worker.is_cancelled)
            panels = reverse_panels(drawn.start, drawn.frames, drawn.timesteps, int(self.run.config["T"])) if drawn else None
        except (SampleFailed, ValueError) as e:
            if not worker.is_cancelled:
                self.app.call_from_thread(self.notify, f"sampling failed: {e}", severity="error")
            return
        if panels is not None and not worker.is_cancelled:
            self.app.call_from_thread(self._panels_ready, panels, drawn.label)

    def _panels_ready(self, panels: list, label: str) -> None:
        self.panels = panels
        self.query_one("#explore-panels-title", Static).update(
            f"reverse process, {label}: x_{panels[0].step} ... x_{panels[-1].step} (noise seed {self.seed}; n redraws)"
        )
        self.query_one("#explore-panels").display = True
        self.query_one("#explore-left").add_class("with-panels")  # the forward scatter shrinks to make room
        self._show_panels()

    def _show_panels(self) -> None:
        if not self.panels:
            return
        from ddpm_tui.reverse_panels import panels_text

        view = self.query_one("#explore-panels", Static)
        width = view.content_size.width or self.query_one("#explore-left").content_size.width or 80
        view.update(panels_text(self.panels, width=width, rows=4, color=self.app.art_mode != "ascii"))  # type: ignore[attr-defined]
