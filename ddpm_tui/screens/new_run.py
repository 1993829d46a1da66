"""The new-run form, built from :class:`core.config.RunConfig` itself: a preset picker,
then every field with the preset's value, checked as you type by the same validation
``ddpm run --set`` uses (one message per bad field, shown under that field). Launching
records the run and spawns a detached worker, exactly as ``ddpm run --detach``."""

from __future__ import annotations

import dataclasses
import typing

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from core import choices
from core.config import FIELDS, PRESET_HELP, PRESETS, ConfigError, RunConfig, default_preset, parse_value, replace
from core.devices import Accelerators, DeviceError, device_type, resolve
from core.store import StoreError, check_name, check_tag
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


def field_text(v: typing.Any) -> str:
    """A value as the form shows it and :func:`core.config.parse_value` reads it back."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return ",".join(str(x) for x in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def is_bool(name: str) -> bool:
    return typing.get_type_hints(RunConfig)[name] is bool


class NewRunScreen(DataScreen):
    """Every RunConfig field, validated live; ctrl+s launches a background worker."""

    HELP_TITLE = "new run"
    HELP = (
        "Pick a preset first: it fills every field. Fields in yellow differ from the preset; errors show in red under the field."
    )
    BINDINGS = [
        Binding("escape", "back", "Cancel"),
        Binding("ctrl+s", "launch", "Launch"),
        Binding("ctrl+r", "reset", "Reset to preset"),
    ]

    def __init__(self, preset_name: str | None = None) -> None:
        super().__init__()
        # Until the host's devices are known (the app asks torch in a child process), the
        # CPU's preset; then the default for the device a run would get, unless one was chosen.
        self.preset_name = preset_name or default_preset("cpu")
        self.preset_chosen = preset_name is not None
        self.errors: dict[str, str] = {}

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
                yield Static("this machine: asking torch...", id="form-devices", classes="form-note")
            base = self.base()
            grid: list = []
            sections: list[tuple[str, list]] = []
            for name in FIELDS:
                if name in SECTIONS:
                    grid = []
                    sections.append((SECTIONS[name], grid))
                value = getattr(base, name)
                if name in CHOICES or is_bool(name):
                    opts = CHOICES.get(name, ("true", "false"))
                    widget = Select(
                        [(o, o) for o in opts], value=field_text(value), allow_blank=False, compact=True, id=f"f-{name}"
                    )
                else:
                    widget = Input(field_text(value), compact=True, id=f"f-{name}")
                grid.append((name, widget))
            for title, fields in sections:
                yield Static(title, classes="section form-section")
                with Grid(classes="form-grid"):
                    for name, widget in fields:
                        yield from self._field(name, widget)
        with Horizontal(id="form-buttons"):
            yield Static("", id="form-status")
            yield Button("Launch (ctrl+s)", variant="primary", id="launch")
        yield Footer()

    def _field(self, name: str, widget) -> ComposeResult:
        with Vertical(classes="form-field"):
            with Horizontal(classes="form-row"):
                yield Label(name, classes="form-label")
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
        out = {}
        for name in FIELDS:
            w = self.query_one(f"#f-{name}")
            out[name] = str(w.value)
        return out

    def validate(self) -> RunConfig | None:
        """Check every field (and the name and tags); show each message under its field."""
        errors: dict[str, str] = {}
        cfg = None
        parsed = {}
        for key, text in self.raw().items():  # every unreadable field, then every out-of-range one
            try:
                parsed[key] = parse_value(key, text)
            except ValueError as e:
                errors[key] = str(e)
        try:
            cfg = replace(self.base(), parsed, validate=True)
        except ConfigError as e:
            for line in e.errors:
                key = line.split(":", 1)[0]
                errors.setdefault(key if key in FIELDS else "dataset", line)
        name = self.query_one("#f-name", Input).value.strip()
        if name:
            try:
                check_name(name)
            except StoreError as e:
                errors["name"] = str(e)
        for tag in self.query_one("#f-tags", Input).value.split():
            try:
                check_tag(tag)
            except StoreError as e:
                errors["tags"] = str(e)
        base = self.base()
        for field in FIELDS:
            msg = errors.get(field, "")
            box = self.query_one(f"#e-{field}", Static)
            box.update(msg)
            box.display = bool(msg)
            w = self.query_one(f"#f-{field}")
            w.set_class(bool(msg), "invalid-field")
            w.set_class(self.raw_value(field) != field_text(getattr(base, field)), "changed")
        for extra in ("name", "tags", "device"):
            box = self.query_one(f"#e-{extra}", Static)
            box.update(errors.get(extra, ""))
            box.display = extra in errors
        self.errors = errors
        status = self.query_one("#form-status", Static)
        if errors:
            status.update(f"[red]{len(errors)} field{'s' if len(errors) > 1 else ''} to fix: {', '.join(errors)}[/]")
        else:
            status.update(f"ready: {self.preset_name} preset, {cfg.steps:,} steps on {self.query_one('#device', Select).value}")
        self.query_one("#launch", Button).disabled = bool(errors)
        return None if errors else cfg

    def raw_value(self, field: str) -> str:
        return str(self.query_one(f"#f-{field}").value)

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
        with self.prevent(Input.Changed, Select.Changed):
            for name in FIELDS:
                w = self.query_one(f"#f-{name}")
                w.value = field_text(getattr(base, name))
        self.validate()

    # ---- launch ----------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()

    def action_launch(self) -> None:
        cfg = self.validate()
        if cfg is None:
            first = next(iter(self.errors))
            target = f"#f-{first}"
            self.query_one(target).focus()
            self.notify(f"fix {len(self.errors)} field(s) first: {self.errors[first]}", severity="error")
            return
        from core.sources import check_available

        try:
            check_available(cfg)
        except Exception as e:
            self.notify(str(e), severity="error", timeout=8)
            return
        name = self.query_one("#f-name", Input).value.strip() or None
        tags = self.query_one("#f-tags", Input).value.split()
        device = str(self.query_one("#device", Select).value)
        if self.ddpm.accelerators is not None:
            try:
                resolve(device, self.ddpm.accelerators)
            except DeviceError as e:
                self.notify(str(e), severity="error", timeout=8)
                return
        run = self.guard(self.store.create_run, cfg.to_dict(), preset=self.preset_name, name=name, tags=tags, device=device)
        if run is None:
            return
        if not self.ddpm.start_worker(run.id):
            return
        self.notify(f"run {run.id} ({run.name}) is training in the background")
        self.app.pop_screen()
        self.ddpm.open_run(run.id)
