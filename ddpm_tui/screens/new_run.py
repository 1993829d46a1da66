"""The new-run form, built from :class:`core.config.RunConfig` itself: a preset picker,
then every field with the preset's value, checked as you type by the same validation
``ddpm run --set`` uses (one message per bad field, shown under that field).

Launch records the run and spawns a detached worker, exactly as ``ddpm run --detach``; Queue
records it for a scheduler with a priority, as ``ddpm run --queue``. A comma list in any
field (tuples in brackets: ``[1,2],[1,2,2]``) makes the form a sweep, read exactly as
``ddpm sweep --set`` reads it: the form says how many runs the grid makes, shows every
problem of the expanded grid under its field, asks for a study name in place of the run's
name, and queues the runs through :func:`core.sweep.new_runs`, as ``ddpm sweep`` does. So
every field is text, the choice fields too (they complete from their choices)."""

from __future__ import annotations

import dataclasses
import math
import typing

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.suggester import Suggester
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from core import choices
from core.config import FIELDS, PRESET_HELP, PRESETS, ConfigError, RunConfig, default_preset, parse_value, replace
from core.devices import Accelerators, DeviceError, device_type, resolve
from core.store import StoreError, check_name, check_study, check_tag
from core.sweep import MAX_UNCONFIRMED, SweepRun, describe, expand, new_runs, parse_axes
from ddpm_tui.screens.base import DataScreen

CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": choices.DATASETS,
    "model": choices.MODELS,
    "schedule": choices.SCHEDULES,
    "objective": choices.OBJECTIVES,
    "loss": choices.LOSSES,
    "optimizer": choices.OPTIMIZERS,
    "lr_decay": choices.LR_DECAYS,
    "sampler": choices.SAMPLERS,
    "t_sampling": choices.T_SAMPLINGS,
    "ddpm_variance": choices.DDPM_VARIANCES,
    "time_embedding": choices.TIME_EMBEDDINGS,
    "image_mode": choices.IMAGE_MODES,
}
# The first field of each group, in RunConfig's order.
SECTIONS = {
    "dataset": "data",
    "model": "model",
    "T": "diffusion",
    "steps": "optimisation",
    "log_every": "reporting",
    "sampler": "sampling",
}
DEVICES = ("auto", "cpu", "cuda")
MAX_GRID = 20_000  # a grid larger than this is refused before it is expanded (it is re-expanded at every key)


def field_text(v: typing.Any) -> str:
    """A value as the form shows it and :func:`core.config.parse_value` reads it back; a tuple
    in brackets, as a sweep takes it (``1,2`` would be a list of two values)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(str(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def is_bool(name: str) -> bool:
    return typing.get_type_hints(RunConfig)[name] is bool


TUPLES = {name for name, hint in typing.get_type_hints(RunConfig).items() if typing.get_origin(hint) is tuple}


class ListSuggester(Suggester):
    """Completes the value being typed after the last comma from a field's choices, so a
    choice field takes a list (``eps,v``) as easily as one value."""

    def __init__(self, options: tuple[str, ...]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.options = options

    async def get_suggestion(self, value: str) -> str | None:
        head, comma, last = value.rpartition(",")
        if not last:
            return None
        match = next((o for o in self.options if o.startswith(last) and o != last), None)
        return head + comma + match if match else None


class NewRunScreen(DataScreen):
    """Every RunConfig field, validated live; ctrl+s launches a background worker, ctrl+o
    queues the run (or the sweep the fields' lists make)."""

    HELP_TITLE = "new run"
    HELP = (
        "Pick a preset first: it fills every field. Fields in yellow differ from the preset; errors show in red under the field. "
        "A comma list in any field (lr: 1e-3,2e-3; tuples in brackets: [1,2],[1,2,2]) makes a sweep of every combination: "
        "the name becomes the study's name, its runs are named STUDY/setting, and ctrl+o queues them for a scheduler (Q)."
    )
    BINDINGS = [
        Binding("escape", "back", "Cancel"),
        Binding("ctrl+s", "launch", "Launch"),
        Binding("ctrl+o", "queue", "Queue"),
        Binding("ctrl+r", "reset", "Reset to preset"),
    ]

    def __init__(self, preset_name: str | None = None) -> None:
        super().__init__()
        # Until the host's devices are known (the app asks torch in a child process), the
        # CPU's preset; then the default for the device a run would get, unless one was chosen.
        self.preset_name = preset_name or default_preset("cpu")
        self.preset_chosen = preset_name is not None
        self.errors: dict[str, str] = {}
        self.config: RunConfig | None = None  # the one run the fields make, when they are valid
        self.sweep: list[SweepRun] | None = None  # the runs they make when a field holds a list

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            with Grid(classes="form-grid"):
                with Vertical(classes="form-field wide"):
                    with Horizontal(classes="form-row"):
                        yield Label("preset", classes="form-label")
                        yield Select([(f"{p}: {PRESET_HELP.get(p, '')}", p) for p in PRESETS], value=self.preset_name,
                                     allow_blank=False, compact=True, id="preset")  # fmt: skip
                yield from self._field("name", Input(placeholder="PRESET-ID (default)", compact=True, id="f-name"))
                yield from self._field("tags", Input(placeholder="space separated", compact=True, id="f-tags"))
                yield from self._field(
                    "device", Select([(d, d) for d in DEVICES], value="auto", allow_blank=False, compact=True, id="device")
                )
                yield from self._field("priority", Input("0", compact=True, id="f-priority", tooltip="queued runs: higher first"))
                yield Static("this machine: asking torch...", id="form-devices", classes="form-note wide")
            base = self.base()
            grid: list = []
            sections: list[tuple[str, list]] = []
            for name in FIELDS:
                if name in SECTIONS:
                    grid = []
                    sections.append((SECTIONS[name], grid))
                widget = Input(field_text(getattr(base, name)), compact=True, id=f"f-{name}")
                if name in CHOICES or is_bool(name):
                    opts = CHOICES.get(name, ("true", "false"))
                    widget.suggester = ListSuggester(opts)
                    widget.tooltip = f"one of {', '.join(opts)}; a comma list sweeps them"
                grid.append((name, widget))
            for title, fields in sections:
                yield Static(title, classes="section form-section")
                with Grid(classes="form-grid"):
                    for name, widget in fields:
                        yield from self._field(name, widget)
        with Horizontal(id="form-buttons"):
            yield Static("", id="form-status")
            yield Button("Launch (ctrl+s)", variant="primary", id="launch")
            yield Button("Queue (ctrl+o)", id="queue")
        yield Footer()

    def _field(self, name: str, widget) -> ComposeResult:
        with Vertical(classes="form-field"):
            with Horizontal(classes="form-row"):
                yield Label(name, classes="form-label", id=f"l-{name}")
                yield widget
            yield Static("", id=f"e-{name}", classes="error form-error")

    def on_mount(self) -> None:
        self.title = "new run"
        self.sub_title = str(self.store.path)
        self.query_one("#preset", Select).focus()
        self.validate()
        if self.ddpm.accelerators is not None:
            self.devices_ready(self.ddpm.accelerators)

    def devices_ready(self, acc: Accelerators) -> None:
        """Offer the devices this host has, say what it has (and why not CUDA, when a driver
        is there but torch cannot use it), and default the preset to that device's."""
        device = self.query_one("#device", Select)
        current = device.value
        with self.prevent(Select.Changed):
            device.set_options([(d, d) for d in acc.choices()])
            device.value = current if current in acc.choices() else "auto"
        self.query_one("#form-devices", Static).update(f"this machine: {acc.summary()}")
        if not self.preset_chosen:
            best = default_preset(device_type(resolve("auto", acc)))
            if best != self.preset_name:
                self.preset_name = best
                with self.prevent(Select.Changed):
                    self.query_one("#preset", Select).value = best
                self.action_reset()

    def base(self) -> RunConfig:
        return dataclasses.replace(RunConfig(), **PRESETS[self.preset_name])

    # ---- values ----------------------------------------------------------------------

    def raw(self) -> dict[str, str]:
        return {name: self.raw_value(name) for name in FIELDS}

    def raw_value(self, field: str) -> str:
        return str(self.query_one(f"#f-{field}", Input).value)

    def settings(self) -> dict[str, str]:
        """The fields that differ from the preset, as text: what ``ddpm sweep --set`` would be
        given (a field left at the preset's value is no list, and blank text stays valid)."""
        base = self.base()
        return {k: v for k, v in self.raw().items() if v != field_text(getattr(base, k))}

    def validate(self) -> None:
        """Check every field (and the name, tags and priority); show each message under its
        field. Sets :attr:`config` (one run) or :attr:`sweep` (a field holds a list) when
        there is nothing to fix, and :attr:`errors` (field -> its messages) otherwise."""
        base = self.base()
        raw = self.raw()
        changed = self.settings()
        errors: dict[str, list[str]] = {}

        def add(lines: list[str]) -> None:
            for line in lines:
                key = line.split(":", 1)[0]
                got = errors.setdefault(key if key in FIELDS else "dataset", [])
                if line not in got:
                    got.append(line)

        lists: dict[str, int] = {}  # swept fields -> how many values
        for key, text in changed.items():
            try:
                _, swept = parse_axes({key: text})
            except ConfigError as e:  # unbalanced brackets, an empty or a repeated value: a list was meant
                hint = " (a tuple goes in brackets: [1,2,2])" if key in TUPLES and "[" not in text and "(" not in text else ""
                add([line + hint for line in e.errors])
                lists[key] = 0
                continue
            if swept:
                lists[key] = len(swept[key])
        self.config = self.sweep = None
        name = self.query_one("#f-name", Input).value.strip()
        if lists:
            size = math.prod(n for n in lists.values() if n)
            if size > MAX_GRID:
                add([f"{k}: the grid is {size:,} runs, more than {MAX_GRID:,}; use fewer values" for k in lists])
            else:  # the grid of the lists that could be read: the other fields' problems show too
                readable = {k: v for k, v in changed.items() if lists.get(k) != 0}
                try:
                    runs = expand(name or "study", self.preset_name, readable)
                except ConfigError as e:
                    add(e.errors)
                else:
                    self.sweep = runs
            if not name:
                errors["name"] = ["a sweep needs a study name: its runs are named STUDY/setting"]
            else:
                self._check(errors, "name", check_study, name)
        else:
            parsed = {}
            for key, text in raw.items():  # every unreadable field, then every out-of-range one
                try:
                    parsed[key] = parse_value(key, text)
                except ValueError as e:
                    add([str(e)])
            try:
                self.config = replace(base, parsed, validate=True)
            except ConfigError as e:
                add(e.errors)
            else:
                self._show_resolved(parsed)
            if name:
                self._check(errors, "name", check_name, name)
        for tag in self.query_one("#f-tags", Input).value.split():
            self._check(errors, "tags", check_tag, tag)
        try:
            int(self.query_one("#f-priority", Input).value.strip())
        except ValueError:
            errors["priority"] = ["priority: a whole number; higher runs are taken first"]
        if errors:
            self.config = self.sweep = None
        self._show_errors(base, errors, sweeping=bool(lists))

    def _show_resolved(self, parsed: dict) -> None:
        """Show a field the config settled otherwise than typed: picking ddim on a preset that
        keeps DDIM's own settings apart (quick) makes them the run's steps, eta and window."""
        with self.prevent(Input.Changed):
            for name, value in parsed.items():
                if getattr(self.config, name) != value:
                    self.query_one(f"#f-{name}", Input).value = field_text(getattr(self.config, name))

    def _check(self, errors: dict[str, list[str]], field: str, check, value: str) -> None:
        try:
            check(value)
        except StoreError as e:
            errors.setdefault(field, []).append(str(e))

    def _show_errors(self, base: RunConfig, errors: dict[str, list[str]], sweeping: bool) -> None:
        for field in FIELDS:
            w = self.query_one(f"#f-{field}", Input)
            w.set_class(field in errors, "invalid-field")
            w.set_class(self.raw_value(field) != field_text(getattr(base, field)), "changed")
        for field in (*FIELDS, "name", "tags", "device", "priority"):
            box = self.query_one(f"#e-{field}", Static)
            box.update("\n".join(errors.get(field, [])))
            box.display = field in errors
        self.query_one("#l-name", Label).update("study" if sweeping else "name")
        self.query_one("#f-name", Input).placeholder = "the study's name (required)" if sweeping else "PRESET-ID (default)"
        self.errors = {k: "\n".join(v) for k, v in errors.items()}
        status = self.query_one("#form-status", Static)
        launch, queue = self.query_one("#launch", Button), self.query_one("#queue", Button)
        device = self.device
        if errors:
            status.update(f"[red]{len(errors)} field{'s' if len(errors) > 1 else ''} to fix: {', '.join(errors)}[/]")
        elif self.sweep is not None:
            big = f" (more than {MAX_UNCONFIRMED}: asks twice)" if len(self.sweep) > MAX_UNCONFIRMED else ""
            status.update(f"sweep of {describe(self.sweep)} on {device}{big}")
        elif self.config is not None:
            status.update(f"ready: {self.preset_name} preset, {self.config.steps:,} steps on {device}")
        launch.disabled = bool(errors)
        launch.display = not sweeping  # a sweep is only queued
        queue.disabled = bool(errors)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.validate()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "preset" and event.value != self.preset_name and isinstance(event.value, str):
            self.preset_name = event.value
            self.preset_chosen = True
            self.action_reset()
            return
        self.validate()

    def action_reset(self) -> None:
        """Every field back to the chosen preset's value."""
        base = self.base()
        with self.prevent(Input.Changed):
            for name in FIELDS:
                self.query_one(f"#f-{name}", Input).value = field_text(getattr(base, name))
        self.validate()

    # ---- launch and queue ------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()
        elif event.button.id == "queue":
            self.action_queue()

    def _can_record(self) -> bool:
        """Nothing to fix, the data can be had and the device exists here; else says why."""
        self.validate()
        if self.errors:
            first = next(iter(self.errors))
            self.query_one(f"#f-{first}" if first != "device" else "#device").focus()
            self.notify(f"fix {len(self.errors)} field(s) first: {self.errors[first]}", severity="error")
            return False
        from core.sources import check_available

        configs = [self.config] if self.config is not None else [r.config for r in self.sweep or []]
        try:
            for cfg in {(c.dataset, c.data_dir): c for c in configs}.values():
                check_available(cfg)
        except Exception as e:
            self.notify(str(e), severity="error", timeout=8)
            return False
        if self.ddpm.accelerators is not None:
            try:
                resolve(self.device, self.ddpm.accelerators)
            except DeviceError as e:
                self.notify(str(e), severity="error", timeout=8)
                return False
        return True

    @property
    def device(self) -> str:
        return str(self.query_one("#device", Select).value)

    def _common(self) -> dict[str, typing.Any]:
        return {"tags": self.query_one("#f-tags", Input).value.split(), "device": self.device}

    def action_launch(self) -> None:
        if self.sweep is not None:
            self.notify(f"a sweep is queued, not launched: ctrl+o records its {len(self.sweep)} runs for a scheduler",
                        severity="warning")  # fmt: skip
            return
        if not self._can_record():
            return
        name = self.query_one("#f-name", Input).value.strip() or None
        run = self.guard(self.store.create_run, self.config.to_dict(), preset=self.preset_name, name=name, **self._common())
        if run is None:
            return
        if not self.ddpm.start_worker(run.id):
            return
        self.notify(f"run {run.id} ({run.name}) is training in the background")
        self.app.pop_screen()
        self.ddpm.open_run(run.id)

    def action_queue(self) -> None:
        """ctrl+o: the run, or the sweep's runs, wait in the queue for a scheduler."""
        if not self._can_record():
            return
        name = self.query_one("#f-name", Input).value.strip() or None
        priority = int(self.query_one("#f-priority", Input).value.strip())
        if self.sweep is None:
            run = self.guard(self.store.create_run, self.config.to_dict(), preset=self.preset_name, name=name,
                             in_queue=True, priority=priority, **self._common())  # fmt: skip
            if run is not None:
                self._queued(f"run {run.id} ({run.name}) is queued")
            return
        runs = self.guard(expand, name, self.preset_name, self.settings())  # named after the study now
        if not runs:
            return
        from ddpm_tui.screens.confirm import ConfirmScreen

        def record() -> None:
            new = new_runs(runs, name, self.preset_name, priority=priority, **self._common())
            ids = self.guard(self.store.create_runs, new)
            if ids:
                self._queued(f"study {name}: {describe(runs)}, queued as runs {ids[0]}-{ids[-1]}")

        def first(yes: bool | None) -> None:
            if not yes:
                return
            if len(runs) <= MAX_UNCONFIRMED:
                record()
                return
            self.app.push_screen(
                ConfirmScreen(f"{len(runs):,} runs is more than {MAX_UNCONFIRMED}. Queue all {len(runs):,} of them?",
                              yes=f"Queue {len(runs):,}"),
                lambda yes: record() if yes else None,
            )  # fmt: skip

        self.app.push_screen(
            ConfirmScreen(f"Queue study {name}: {describe(runs)}, on {self.device}, priority {priority}? "
                          "A scheduler runs them (s on the Queue screen).", yes="Queue"),
            first,
        )  # fmt: skip

    def _queued(self, message: str) -> None:
        """Recorded: the form gives way to the Queue screen, where the runs wait in line."""
        self.notify(message)
        self.app.pop_screen()
        self.ddpm.open_queue()
