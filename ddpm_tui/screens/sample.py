"""Draw samples from a run's checkpoint and watch the denoising, frame by frame.

Loading the checkpoint and sampling happen in a child process (:mod:`ddpm_tui.sample_client`
runs :mod:`core.sample_job`), waited for by a worker thread, so the dashboard keeps drawing
and never imports torch; leaving the screen kills the child. The frames then play back at a
steady rate. The sampling itself is the CLI's, :func:`core.generate.draw` with a trajectory,
and ``Save`` writes the grid as ``ddpm sample --out`` does.

The form offers what ``ddpm sample`` offers, read the same way: every sampler in
:data:`core.choices.SAMPLERS`, and for a class-conditional run the classes to draw (read by
:func:`core.sampling_spec.parse_classes`, as ``--class``) and the guidance, one class a row.
"""

from __future__ import annotations

import math
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static
from textual.worker import get_current_worker

from core.choices import ETA_MAX, ETA_SAMPLERS, GUIDANCE_MAX, SAMPLERS
from core.sampling_spec import SamplingError, SamplingSpec, classes_text, parse_classes, per_row, resolve_spec, sample_labels
from ddpm_tui.sample_client import SampleFailed, SampleJob, share_of_cores
from ddpm_tui.screens.base import DataScreen
from ddpm_tui.widgets.art import ArtView

FPS = 12
MAX_FRAMES = 40


class SampleScreen(DataScreen):
    """Run, checkpoint, sampler, steps, eta, eta window, seed, count (and a conditional run's
    classes and guidance); ctrl+r samples, ctrl+s saves."""

    HELP_TITLE = "sample"
    HELP = (
        "Sampling runs in a background process with the run's EMA weights. ddpm always takes T steps; ddim takes any "
        "number up to T, and eta adds noise (0 is deterministic; above 1, the eta window keeps the extra noise to "
        "t < that share of T); dpmpp2m (DPM-Solver++ 2M) is good in few steps, "
        "deterministic at eta 0 and the SDE solver above it. The same seed draws the same samples. A class-conditional run draws the classes you "
        "pick (7, 3,5 or 0-9; blank for all) one a row, steered by guidance: 0 unconditional, 1 conditional, "
        "more steers harder."
    )
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+r", "sample", "Sample"),
        Binding("ctrl+s", "save", "Save PNG"),
        Binding("ctrl+l", "replay", "Replay"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.frames: list = []
        self.timesteps: list[int] = []
        self.final = None
        self.labels: list[int] | None = None  # the class of each sample shown (a conditional run)
        self.rows: int | None = None  # images a row: one class a row when the classes are balanced
        self.frame = 0
        self._timer = None
        self._meta = ""
        self.job: SampleJob | None = None  # the draw in progress, or the last one

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="sample"):
            with Vertical(id="sample-form"):
                for label, widget in self._fields():
                    yield Label(label, classes="field-label")
                    yield widget
                with Vertical(id="s-cond"):
                    yield Label("classes (7, 3,5 or 0-9; blank: all)", classes="field-label")
                    yield Input("", placeholder="all, one a row", compact=True, id="s-class")
                    yield Label(f"guidance (0..{GUIDANCE_MAX:g}; 1 conditional)", classes="field-label")
                    yield Input("", compact=True, id="s-guidance")
                yield Static("", id="s-cond-note", classes="field-label")
                yield Static("", id="sample-error", classes="error")
                yield Button("Sample (ctrl+r)", variant="primary", id="sample-go")
                yield Label("save as", classes="field-label")
                yield Input("", compact=True, id="s-out")
                yield Button("Save PNG (ctrl+s)", id="sample-save", disabled=True)
            with Vertical(id="sample-view"):
                yield Static("pick a checkpoint and press ctrl+r (or the Sample button)", id="sample-status")
                yield ArtView(id="sample-art", placeholder="")
        yield Footer()

    def _fields(self):
        runs = self.guard(self.store.list_runs) or []
        have = self.guard(self.store.runs_with_checkpoints) or set()
        options = [(f"{r.id} {r.name} ({r.status})", r.id) for r in runs if r.id in have]
        value = self.run_id if self.run_id in have else (options[0][1] if options else Select.NULL)
        yield (
            "run",
            Select(options, value=value, allow_blank=not options, compact=True, id="s-run", prompt="no run has a checkpoint yet"),
        )
        yield "checkpoint", Select([], compact=True, id="s-ckpt", prompt="none")
        yield (
            "sampler",
            Select([(name, name) for name in SAMPLERS], value="ddim", allow_blank=False, compact=True, id="s-sampler"),
        )
        yield "steps (ddpm: always T)", Input("", compact=True, id="s-steps")
        yield f"eta (noise of ddim, dpmpp2m: 0..{ETA_MAX:g})", Input("0", compact=True, id="s-eta")
        yield "eta window (0..1 of T, for eta > 1)", Input("1", compact=True, id="s-window")
        yield "seed", Input("0", compact=True, id="s-seed")
        yield "count", Input("16", compact=True, id="s-n")

    def on_mount(self) -> None:
        self.title = "sample"
        self._load_run()

    # ---- form ------------------------------------------------------------------------

    def _run(self):
        rid = self.query_one("#s-run", Select).value
        return self.guard(self.store.get_run, rid) if isinstance(rid, int) else None

    def _load_run(self) -> None:
        run = self._run()
        ck = self.query_one("#s-ckpt", Select)
        if run is None:
            ck.set_options([])
            return
        steps = [c.step for c in self.guard(self.store.checkpoints, run.id) or []]
        ck.set_options([(f"step {s:,}", s) for s in reversed(steps)])
        if steps:
            ck.value = steps[-1]
        own = resolve_spec(run.config)
        self.query_one("#s-sampler", Select).value = own.sampler
        self._fill(own)
        conditional = run.config.get("cond") == "class"
        k = int(run.config.get("num_classes", 10))
        self.query_one("#s-n", Input).value = (
            str(2 * k) if conditional else "16" if run.config.get("dataset") != "scurve" else "512"
        )
        self.query_one("#s-cond").display = conditional
        note = self.query_one("#s-cond-note", Static)
        note.display = not conditional
        note.update("classes and guidance: this run is unconditional (cond=none)")
        self.query_one("#s-class", Input).value = ""
        self.query_one("#s-guidance", Input).value = f"{float(run.config.get('guidance', 1.0)):g}" if conditional else ""
        self.sub_title = f"run {run.id} {run.name}"
        self._default_out()

    def _default_out(self) -> None:
        run = self._run()
        ck = self.query_one("#s-ckpt", Select).value
        if run is not None:
            self.query_one("#s-out", Input).value = str(Path.cwd() / f"samples-{run.id}-{ck if isinstance(ck, int) else 0}.png")

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "s-run":
            self._load_run()
        elif event.select.id == "s-ckpt":
            self._default_out()
        sampler = self.query_one("#s-sampler", Select).value
        self.query_one("#s-steps", Input).disabled = sampler == "ddpm"
        self.query_one("#s-eta", Input).disabled = sampler not in ETA_SAMPLERS
        self.query_one("#s-window", Input).disabled = sampler not in ETA_SAMPLERS
        run = self._run()
        if event.select.id == "s-sampler" and run is not None and sampler in ETA_SAMPLERS:
            # The sampler's own default steps, eta and window, as the CLI resolves them (quick's
            # DPM-Solver++ takes eta 8, its DDIM 1.8).
            self._fill(resolve_spec(run.config, sampler))
        self.check()

    def _fill(self, spec: SamplingSpec) -> None:
        self.query_one("#s-steps", Input).value = str(spec.steps)
        self.query_one("#s-eta", Input).value = f"{spec.eta:g}"
        self.query_one("#s-window", Input).value = f"{spec.eta_window:g}"

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "s-out":
            self.check()

    def check(self) -> dict | None:
        """The form's values, or None with the problem shown under the fields."""
        run = self._run()
        err = self.query_one("#sample-error", Static)
        ck = self.query_one("#s-ckpt", Select).value
        if run is None or not isinstance(ck, int):
            err.update("this run has no checkpoint yet: let it train (or resume it) first")
            return None
        T = int(run.config["T"])
        sampler = str(self.query_one("#s-sampler", Select).value)
        problems = []

        def num(wid: str, kind, lo, hi, what: str):
            text = self.query_one(wid, Input).value.strip()
            try:
                v = kind(text)
            except ValueError:
                problems.append(f"{what}: {text!r} is not a {'whole ' if kind is int else ''}number")
                return None
            if not math.isfinite(v):
                problems.append(f"{what}: {text!r} is not a finite number")
                return None
            if v < lo or v > hi:
                problems.append(f"{what}: must be between {lo} and {hi}")
            return v

        steps = num("#s-steps", int, 1, T, "steps") if sampler != "ddpm" else None
        eta = num("#s-eta", float, 0.0, ETA_MAX, "eta") if sampler in ETA_SAMPLERS else None
        window = num("#s-window", float, 0.0, 1.0, "eta window") if sampler in ETA_SAMPLERS else None
        if eta is not None and eta <= 1.0:
            window = None  # it confines an eta above 1 alone: kept in the field for when eta goes back up
        seed = num("#s-seed", int, 0, 2**31 - 1, "seed")
        n = num("#s-n", int, 1, 1024, "count")
        guidance = classes = None
        if run.config.get("cond") == "class":
            guidance = num("#s-guidance", float, 0.0, GUIDANCE_MAX, "guidance")
            text = self.query_one("#s-class", Input).value
            try:
                classes = parse_classes([text] if text.strip() else None, what="classes")
                sample_labels(run.config, n or 1, classes, what="classes")  # a class the run lacks, refused here
            except SamplingError as e:
                problems.append(str(e))
        spec = None
        if not problems:
            try:
                spec = resolve_spec(run.config, sampler, steps, eta, guidance, window)
            except SamplingError as e:
                problems.append(str(e))
        err.update("\n".join(problems))
        if problems:
            return None
        return {"run": run, "step": ck, "spec": spec, "seed": seed, "n": n, "classes": classes}

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "sample-go":
            self.action_sample()
        elif event.button.id == "sample-save":
            self.action_save()

    # ---- sampling --------------------------------------------------------------------

    def action_sample(self) -> None:
        args = self.check()
        if args is None:
            self.notify("fix the form first", severity="error")
            return
        ck = self.guard(self.store.checkpoint_at, args["run"].id, args["step"])
        if ck is None:
            return
        self._stop_playback()
        self.query_one("#sample-save", Button).disabled = True
        self.query_one("#sample-status", Static).update(
            f"sampling {args['n']} from run {args['run'].id} at step {args['step']:,}..."
        )
        self.sample(ck.path, args)

    @work(thread=True, exclusive=True, group="sample")
    def sample(self, path: str, args: dict) -> None:
        worker = get_current_worker()
        self.job = job = SampleJob(
            path, args["n"], args["spec"], seed=args["seed"], frames=MAX_FRAMES,
            threads=share_of_cores(self.store.path), classes=args["classes"],
        )  # fmt: skip
        try:
            drawn = job.run(lambda: worker.is_cancelled)
        except SampleFailed as e:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._failed, str(e))
            return
        if drawn is None or worker.is_cancelled:
            return
        rows = per_row(drawn.labels)
        what = f", classes {classes_text(args['classes'])} one a row" if rows else ""
        meta = (f"{args['n']} samples from run {args['run'].id} at step {drawn.step:,}, {drawn.label}{what}, "
                f"seed {args['seed']}, on {drawn.device}, in {drawn.seconds:.1f}s")  # fmt: skip
        self.app.call_from_thread(self._play, drawn.frames, drawn.timesteps, drawn.data, meta, drawn.labels)

    def _failed(self, message: str) -> None:
        self.query_one("#sample-status", Static).update(f"[red]sampling failed: {message}[/]")

    def _play(self, frames: list, timesteps: list[int], final, meta: str, labels: list[int] | None = None) -> None:
        self.frames, self.timesteps, self.final, self._meta = frames, timesteps, final, meta
        self.labels, self.rows = labels, per_row(labels)
        self.query_one("#sample-save", Button).disabled = False
        self.action_replay()

    def action_replay(self) -> None:
        if not self.frames:
            return
        self._stop_playback()
        self.frame = 0
        self._timer = self.set_interval(1 / FPS, self._next_frame)
        self._next_frame()

    def _next_frame(self) -> None:
        art = self.query_one("#sample-art", ArtView)
        status = self.query_one("#sample-status", Static)
        if self.frame >= len(self.frames):
            self._stop_playback()
            art.set_data(self.final, per_row=self.rows)
            status.update(self._meta + "  (ctrl+l replays)")
            return
        art.set_data(self.frames[self.frame], per_row=self.rows)
        status.update(f"denoising: t = {self.timesteps[self.frame]}  (frame {self.frame + 1}/{len(self.frames)})")
        self.frame += 1

    def _stop_playback(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    # ---- saving ----------------------------------------------------------------------

    def action_save(self) -> None:
        if self.final is None:
            self.notify("sample first (ctrl+r)", severity="warning")
            return
        out = Path(self.query_one("#s-out", Input).value.strip()).expanduser()
        if out.suffix.lower() not in (".png", ".npy"):
            self.notify(f"{out}: the file must end in .png or .npy", severity="error")
            return
        if not out.parent.exists():
            self.notify(f"folder {out.parent} does not exist; create it or choose another path", severity="error")
            return
        self.save(out, self.final, self.rows)

    @work(thread=True, group="save")
    def save(self, out: Path, data, per_row: int | None = None) -> None:
        from ddpm_tui.sample_files import write_samples  # as `ddpm sample --out` writes them

        try:
            write_samples(out, data, per_row=per_row)
        except Exception as e:
            self.app.call_from_thread(self.notify, f"could not write {out}: {e}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"wrote {out}")
