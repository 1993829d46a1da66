"""``ddpm``: the headless face. Train, list, show, sample, compare and manage runs over SSH.

Every command takes ``--db PATH`` (or ``$DDPM_DB``; default ``./experiments.db``). Commands
that only read (``ls``, ``show``, ``export``, ``compare``) never import torch, so they answer
at once; training and sampling import it when they start.

Errors the user can fix print one line on stderr and exit 1 (2 for a malformed command
line), with no traceback; ``DDPM_DEBUG=1`` shows the traceback of anything unexpected.
``--json`` prints one JSON document on stdout and nothing else (progress goes to stderr).
"""

from __future__ import annotations

import enum
import functools
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from core.choices import ETA_MAX
from core.errors import DDPMError
from ddpm_tui.figures import LOWER_IS_BETTER, figures_table, final_metrics, metrics_table, ranked

if TYPE_CHECKING:
    from rich.console import Console

    from core.store import Run, Store


# ---- the command group: one-line usage errors ------------------------------------------


class Group(TyperGroup):
    """Usage errors as one line (``error: ... (see 'ddpm run --help')``), exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            print("aborted", file=sys.stderr)
            sys.exit(1)
        except Exception as e:  # click's exceptions (vendored by Typer) carry these two
            if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
                raise
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            print(f"error: {e.format_message()}{hint}", file=sys.stderr)
            sys.exit(e.exit_code)
        code = rv if isinstance(rv, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(
    cls=Group,
    name="ddpm",
    help="Train, watch, sample and compare DDPM diffusion runs, all recorded in one SQLite file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Sampler(str, enum.Enum):
    ddpm = "ddpm"
    ddim = "ddim"


class Art(str, enum.Enum):
    half = "half"
    braille = "braille"
    ascii = "ascii"


class Format(str, enum.Enum):
    csv = "csv"
    json = "json"


DbOpt = Annotated[
    Path | None,
    typer.Option("--db", envvar="DDPM_DB", help="SQLite database [default: ./experiments.db, or $DDPM_DB]", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
ArtOpt = Annotated[
    Art | None, typer.Option("--art", help="Terminal art: half blocks, braille or ascii [default: by terminal]", show_default=False)
]
RunArg = Annotated[str, typer.Argument(help="Run id or name.", show_default=False)]


class UserError(DDPMError):
    """A problem with what was asked on the command line itself."""


def _fail(message: str, code: int = 1) -> typer.Exit:
    for line in message.splitlines() or [message]:
        print(f"error: {line}", file=sys.stderr)
    return typer.Exit(code)


def command(name: str, **kw):
    """``app.command`` plus the error policy: our errors as one line, exit 1; anything else
    as one line naming it a bug (``DDPM_DEBUG=1`` re-raises it for the traceback)."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (typer.Exit, typer.Abort):
                raise
            except DDPMError as e:
                raise _fail(str(e)) from None
            except sqlite3.Error as e:
                raise _fail(f"database error: {e}; if another program holds the file, try again") from None
            except OSError as e:
                where = f" ({e.filename})" if getattr(e, "filename", None) else ""
                raise _fail(f"{e.strerror or e}{where}") from None
            except KeyboardInterrupt:
                raise _fail("interrupted", 130) from None
            except Exception as e:
                if os.environ.get("DDPM_DEBUG"):
                    raise
                raise _fail(
                    f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:300]} "
                    "(a bug in ddpm-tui; DDPM_DEBUG=1 shows the traceback)"
                ) from None

        return app.command(name, **kw)(wrapper)

    return deco


# ---- shared helpers ----------------------------------------------------------------------


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _db_path(db: Path | None) -> Path:
    from core.store import default_db_path

    return Path(db) if db is not None else default_db_path()


def _open(db: Path | None, write: bool = False, create: bool = False) -> Store:
    """Writing commands need a writable file; reading ones fall back to read-only."""
    from core.store import open_store

    return open_store(db, write=write or create, create=create)


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def _parse_sets(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=1e-3")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _art_mode(console: Console, art: Art | None) -> str:
    from ddpm_tui.render import pick_mode

    return pick_mode(console.color_system, art.value if art else None)


def _samples_view(console: Console, data, art: Art | None, max_rows: int | None = None, title: str | None = None):
    """Images as a grid of art, or 2-D points as a scatter."""
    from rich.text import Text

    if data.ndim == 2:  # points
        from ddpm_tui.charts import points_chart

        chart = points_chart(data, width=min(console.width, 70), height=20, color=console.color_system is not None, title=title)
        return Text.from_ansi(chart)
    from ddpm_tui.render import grid

    return grid(data, _art_mode(console, art), width=console.width, max_rows=max_rows)


# ---- training in the foreground ----------------------------------------------------------


class ProgressView:
    """Live training progress: a Rich bar on a terminal, plain lines every ``every`` seconds
    when the output is a file or a pipe (so logs stay readable)."""

    def __init__(self, console: Console, every: float = 10.0):
        self.console = console
        self.live = console.is_terminal
        self.every = every
        self.progress = None
        self.task = None
        self.stopping = False
        self.samples = None
        self.total = 0
        self.start_step = 0
        self.start_elapsed = 0.0
        self.last_print = 0.0

    def start(self, run: Run, trainer) -> None:
        self.total, self.start_step, self.start_elapsed = run.total_steps, trainer.step, trainer.elapsed
        where = f"resuming at step {trainer.step:,}" if trainer.step else f"{run.total_steps:,} steps"
        self.console.print(
            f"run [bold]{run.id}[/] ([bold]{run.name}[/]): {run.preset} preset on {trainer.device}, "
            f"{trainer.n_params:,} parameters, {where}",
            highlight=False,
        )
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss [cyan]{task.fields[loss]}"),
                TextColumn("{task.fields[ips]} img/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.progress.start()
            self.task = self.progress.add_task("training", total=run.total_steps, completed=trainer.step, loss="-", ips="-")
        self.last_print = time.monotonic()

    def __call__(self, event) -> None:
        from core.train import Finished, Metrics, Samples

        if isinstance(event, Metrics):
            v = event.values
            if self.progress is not None:
                self.progress.update(
                    self.task,
                    completed=event.step,
                    loss=f"{v['loss']:.4f}",
                    ips=f"{v['images_per_s']:.0f}",
                    description="stopping" if self.stopping else "training",
                )
            elif time.monotonic() - self.last_print >= self.every or event.step >= self.total:
                self.last_print = time.monotonic()
                self.console.print(self.line(event), highlight=False)
        elif isinstance(event, Samples):
            self.samples = event
        elif isinstance(event, Finished):
            self.close()

    def line(self, event) -> str:
        from ddpm_tui.format import duration, progress

        v = event.values
        done = event.step - self.start_step
        spent = v["elapsed_s"] - self.start_elapsed
        eta = (self.total - event.step) * spent / done if done > 0 and spent > 0 else None
        return (
            f"step {progress(event.step, self.total)}  loss {v['loss']:.4f}  {v['images_per_s']:.0f} img/s  "
            f"elapsed {duration(v['elapsed_s'])}  eta {duration(eta)}"
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _silence_terminal() -> None:
    """The terminal is gone (SIGHUP): send what is left of our output nowhere, so a write
    to the dead terminal cannot kill the run before it checkpoints."""
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _train_foreground(db_path: Path, run_id: int, *, json_out: bool, art: Art | None, device: str | None = None) -> None:
    from core.store import Store

    console = _console(stderr=json_out)
    view = ProgressView(console)
    stop = threading.Event()

    def on_signal(signum: int, frame) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        view.stopping = True
        if signum == signal.SIGHUP:
            view.live = False
            _silence_terminal()

    # Handlers first, then the engine's import: a hang-up or Ctrl-C that comes while it
    # loads must still end the recorded run `stopped`, not kill it and leave it queued.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    error: BaseException | None = None
    try:
        from core.worker import train_run

        train_run(db_path, run_id, device=device, on_event=view, stop=stop, on_start=view.start)
    except KeyboardInterrupt:
        error = None  # recorded as stopped by the worker; reported below
    except BaseException as e:  # the run row says failed, with the message
        error = e
    finally:
        view.close()
        for s, h in previous.items():
            signal.signal(s, h)

    with Store(db_path, create=False) as store:
        run = store.get_run(run_id)
        if json_out:
            _print_json(_run_doc(store, run))
        else:
            _report_end(console, store, run, view, art)
    if error is not None:
        if isinstance(error, DDPMError):
            raise _fail(f"run {run.id} failed at step {run.step}: {error}")
        if os.environ.get("DDPM_DEBUG"):
            raise error
        raise _fail(f"run {run.id} failed at step {run.step}: {run.error or error} (`ddpm show {run.id}` has the details)")


def _report_end(console: Console, store: Store, run: Run, view: ProgressView, art: Art | None) -> None:
    from ddpm_tui.format import duration

    if run.status == "completed":
        latest = store.latest_samples(run.id)
        if latest is not None:
            console.print(_samples_view(console, latest.data, art))
        loss = f", loss {run.last_loss:.4f}" if run.last_loss is not None else ""
        console.print(
            f"run [bold]{run.id}[/] ({run.name}) [green]completed[/]: {run.step:,} steps in {duration(run.elapsed_s)}{loss}",
            highlight=False,
        )
        console.print(f"  sample more:  ddpm sample {run.id} --n 64\n  dashboard:    ddpm-tui\n  details:      ddpm show {run.id}")
    elif run.status == "stopped":
        console.print(
            f"run [bold]{run.id}[/] ({run.name}) [magenta]stopped[/] at step {run.step:,} "
            f"(checkpointed); continue it with: ddpm resume {run.id}",
            highlight=False,
        )
    else:
        console.print(f"run {run.id} ({run.name}) is {run.status}", highlight=False)


def _run_doc(store: Store, run: Run) -> dict:
    doc = run.to_json()
    doc["metrics"] = {k: {"step": step, "value": v} for k, (step, v) in store.latest_metrics(run.id).items()}
    return doc


# ---- commands ------------------------------------------------------------------------------


@command("run")
def run_cmd(
    preset: Annotated[str | None, typer.Option("--preset", "-p", help="quick, classic, fashion, scurve, folder or smoke [default: quick on a CPU, classic on CUDA]", show_default=False)] = None,  # noqa: E501
    sets: Annotated[list[str] | None, typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a config field (steps, lr, T, batch_size, ...); repeatable.")] = None,  # noqa: E501
    name: Annotated[str | None, typer.Option("--name", "-n", help="A unique name for the run [default: PRESET-ID]", show_default=False)] = None,  # noqa: E501
    tags: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag the run; repeatable.")] = None,
    device: Annotated[Device, typer.Option("--device", help="Where to train.")] = Device.auto,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Train in a background worker; print the run id and return.")] = False,  # noqa: E501
    eval_every: Annotated[int | None, typer.Option("--eval-every", min=0, help="Judge samples (FID, KID, confident share) every K steps; same as --set eval_every=K.", show_default=False)] = None,  # noqa: E501
    json_out: JsonOpt = False,
    art: ArtOpt = None,
    db: DbOpt = None,
) -> None:
    """Start a training run (in the foreground unless --detach)."""
    from core.config import default_preset
    from core.config import preset as make_preset
    from core.sources import check_available
    from core.worker import spawn_worker

    if preset is None:
        preset = default_preset(_device_type(device))
    overrides = _parse_sets(sets or [])
    if eval_every is not None:
        overrides["eval_every"] = str(eval_every)
    cfg = make_preset(preset, overrides)
    check_available(cfg)
    with _open(db, create=True) as store:
        run = store.create_run(cfg.to_dict(), preset=preset, name=name, tags=tags or [], device=device.value)
        db_path = store.path
    if detach:
        proc = spawn_worker(db_path, run.id)
        with _open(db_path) as store:
            run = store.get_run(run.id)
            if json_out:
                _print_json(run.to_json())
                return
        _console().print(
            f"run [bold]{run.id}[/] ([bold]{run.name}[/]) is training in the background (pid {proc.pid})\n"
            f"  follow it:  ddpm show {run.id}   or   ddpm-tui\n  stop it:    ddpm stop {run.id}",
            highlight=False,
        )
        return
    _train_foreground(db_path, run.id, json_out=json_out, art=art)


def _device_type(device: Device) -> str:
    if device is not Device.auto:
        return device.value
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@command("resume")
def resume_cmd(
    run_ref: RunArg,
    steps: Annotated[int | None, typer.Option("--steps", help="New total step count (to train a finished run further).", show_default=False)] = None,  # noqa: E501
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Continue in a background worker.")] = False,
    device: Annotated[Device | None, typer.Option("--device", help="Where to train [default: as before]", show_default=False)] = None,  # noqa: E501
    json_out: JsonOpt = False,
    art: ArtOpt = None,
    db: DbOpt = None,
) -> None:
    """Continue a stopped, crashed, failed or (with --steps) completed run from its last checkpoint."""
    from core.worker import spawn_worker

    with _open(db, write=True) as store:
        run = store.prepare_resume(run_ref, total_steps=steps)
        db_path = store.path
    dev = device.value if device is not None else None
    if detach:
        proc = spawn_worker(db_path, run.id, device=dev)
        with _open(db_path) as store:
            run = store.get_run(run.id)
        if json_out:
            _print_json(run.to_json())
        else:
            _console().print(f"run [bold]{run.id}[/] ({run.name}) resumed in the background (pid {proc.pid})", highlight=False)
        return
    _train_foreground(db_path, run.id, json_out=json_out, art=art, device=dev)


@command("ls")
def ls_cmd(
    status: Annotated[str | None, typer.Option("--status", help="Only runs in this status (queued, running, completed, stopped, failed, crashed).", show_default=False)] = None,  # noqa: E501
    tag: Annotated[str | None, typer.Option("--tag", help="Only runs with this tag.", show_default=False)] = None,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """List runs, newest first."""
    from core.store import STATUSES

    if status is not None and status not in STATUSES:
        raise UserError(f"--status {status!r} is not one of {', '.join(STATUSES)}")
    path = _db_path(db)
    if not path.exists():
        if json_out:
            _print_json([])
        else:
            _console().print(f"no runs yet ({path} does not exist); start one with: ddpm run")
        return
    with _open(db) as store:
        runs = store.list_runs(status=status, tag=tag)
        fids = store.latest_metric_for_all("fid")
    if json_out:
        _print_json([{**r.to_json(), "fid": fids.get(r.id)} for r in runs])
        return
    console = _console()
    if not runs:
        console.print("no runs match" if (status or tag) else "no runs yet; start one with: ddpm run")
        return
    from rich.table import Table

    from ddpm_tui.format import STATUS_STYLE, age, number

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col, justify in (("id", "right"), ("name", "left"), ("preset", "left"), ("status", "left"), ("step", "right"),
                         ("loss", "right"), ("fid", "right"), ("img/s", "right"), ("age", "right"), ("tags", "left")):  # fmt: skip
        if col == "fid" and not fids:
            continue
        table.add_column(col, justify=justify, no_wrap=col != "tags")
    for r in runs:
        fid = [f"{fids[r.id]:.2f}" if r.id in fids else "-"] if fids else []
        table.add_row(
            str(r.id), r.name, r.preset, f"[{STATUS_STYLE.get(r.status, '')}]{r.status}[/]", f"{r.step:,}/{r.total_steps:,}",
            number(r.last_loss), *fid, number(r.images_per_s and round(r.images_per_s)), age(r.created), ",".join(r.tags),
        )  # fmt: skip
    console.print(table)


@command("show")
def show_cmd(run_ref: RunArg, json_out: JsonOpt = False, art: ArtOpt = None, db: DbOpt = None) -> None:
    """Everything about one run: progress, config, loss curve, latest samples, checkpoints."""
    with _open(db) as store:
        run = store.get_run(run_ref)
        if json_out:
            doc = _run_doc(store, run)
            doc["checkpoints"] = [{"step": c.step, "path": c.path, "bytes": c.bytes, "sha256": c.sha256} for c in store.checkpoints(run.id)]
            latest = store.latest_samples(run.id)
            doc["eval"] = store.latest_eval(run.id)
            doc["samples"] = None if latest is None else {"step": latest.step, "n": int(latest.data.shape[0]), "sampler": latest.sampler, "steps": latest.steps}  # noqa: E501
            _print_json(doc)
            return
        console = _console()
        _show_header(console, store, run)
        _show_config(console, run)
        steps, losses = store.series(run.id, "loss")
        if losses:
            from rich.text import Text

            from ddpm_tui.charts import loss_chart

            chart = loss_chart({run.name: (steps, losses)}, width=min(console.width, 100), height=14,
                               color=console.color_system is not None, title="loss (log scale)")  # fmt: skip
            console.print(Text.from_ansi(chart))
        ev = store.latest_eval(run.id)
        if ev is not None:
            console.print(
                f"[bold]quality[/] at step {ev['step']:,}: {ev['n']:,} samples, {ev['sampler']}-{ev['steps']}, seed {ev['seed']}",
                highlight=False,
            )
            console.print(figures_table(ev["figures"], ev["floor"], ev["n"]))
        latest = store.latest_samples(run.id)
        if latest is not None:
            what = f"samples at step {latest.step:,} ({latest.sampler}-{latest.steps}, EMA weights)"
            console.print(f"[bold]{what}[/]")
            console.print(_samples_view(console, latest.data, art))
        ckpts = store.checkpoints(run.id)
        if ckpts:
            console.print("[bold]checkpoints[/]  " + "  ".join(f"{c.step:,} ({c.bytes / 1e6:.1f} MB)" for c in ckpts))
        if run.notes:
            console.print(f"[bold]notes[/]  {run.notes}")


def _show_header(console: Console, store: Store, run: Run) -> None:
    from ddpm_tui.format import STATUS_STYLE, duration, progress, run_facts

    st = STATUS_STYLE.get(run.status, "")
    console.print(f"[bold]run {run.id}[/]  {run.name}  [{st}]{run.status}[/]  {run.preset} preset", highlight=False)
    rows = [
        ("progress", progress(run.step, run.total_steps) + (f", ETA {duration(run.seconds_left)}" if run.seconds_left is not None else "")),
        *run_facts(run),
    ]
    if run.error:
        rows.append(("error", f"[red]{run.error}[/]"))
    if run.status == "crashed":
        rows.append(("hint", f"the worker is gone; continue with: ddpm resume {run.id}"))
    for k, v in rows:
        console.print(f"  [dim]{k:<11}[/]{v}", highlight=False)


def _show_config(console: Console, run: Run) -> None:
    from core.config import PRESETS, RunConfig
    from ddpm_tui.format import KEY_FIELDS, preset_differences, value

    base = RunConfig(**PRESETS.get(run.preset, {})).to_dict() if run.preset in PRESETS else {}
    changed = preset_differences(run.config, base)
    keys = list(KEY_FIELDS) + [k for k in changed if k not in KEY_FIELDS]
    parts = []
    for k in keys:
        if k in run.config:
            mark = "[yellow]*[/]" if k in changed else ""
            parts.append(f"{k}={value(run.config[k])}{mark}")
    console.print("  [dim]config     [/]" + "  ".join(parts), highlight=False)
    if changed:
        console.print("  [dim]           * changed from the preset[/]")


@command("stop")
def stop_cmd(
    run_ref: RunArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the run has stopped.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")] = 120.0,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Ask a run to stop: it checkpoints at its next step and ends 'stopped'."""
    with _open(db, write=True) as store:
        run = store.get_run(run_ref)
        if not run.active:
            msg = f"run {run.id} ({run.name}) is {run.status}; nothing to stop"
            if run.status == "crashed":
                msg += f" (its worker is gone; continue it with: ddpm resume {run.id})"
            if json_out:
                _print_json(run.to_json())
            else:
                _console().print(msg, highlight=False)
            return
        run = store.request_stop(run.id)
        deadline = time.monotonic() + timeout
        while wait and run.active and time.monotonic() < deadline:
            time.sleep(0.2)
            run = store.get_run(run.id)
    if json_out:
        _print_json(run.to_json())
    elif run.active:
        if wait:
            raise UserError(f"run {run.id} did not stop within {timeout:g}s; it is {run.status} (try again, or look at ddpm show {run.id})")
        _console().print(f"stop requested: run {run.id} ({run.name}) checkpoints and stops at its next step", highlight=False)
    else:
        _console().print(f"run {run.id} ({run.name}) is {run.status} at step {run.step:,}", highlight=False)


@command("rm")
def rm_cmd(
    run_ref: RunArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOpt = None,
) -> None:
    """Delete a run: its rows and its checkpoint files."""
    with _open(db, write=True) as store:
        run = store.get_run(run_ref)
        if not yes:
            if not sys.stdin.isatty():
                raise UserError(f"deleting run {run.id} ({run.name}) needs confirmation; pass --yes")
            if not typer.confirm(f"delete run {run.id} ({run.name}), its metrics, samples and checkpoints?"):
                raise typer.Exit(1)
        store.delete_run(run.id)
    _console().print(f"deleted run {run.id} ({run.name})", highlight=False)


@command("tag")
def tag_cmd(
    run_ref: RunArg,
    tags: Annotated[list[str], typer.Argument(help="Tags to add (or remove).")],
    remove: Annotated[bool, typer.Option("--remove", "-r", help="Remove the tags instead.")] = False,
    db: DbOpt = None,
) -> None:
    """Add tags to a run (or remove them)."""
    with _open(db, write=True) as store:
        run = store.get_run(run_ref)
        for t in tags:
            run = store.remove_tag(run.id, t) if remove else store.add_tag(run.id, t)
    _console().print(f"run {run.id} ({run.name}) tags: {', '.join(run.tags) or '-'}", highlight=False)


@command("note")
def note_cmd(
    run_ref: RunArg,
    text: Annotated[str, typer.Argument(help="The note.")],
    append: Annotated[bool, typer.Option("--append", "-a", help="Add to the existing notes instead of replacing them.")] = False,
    db: DbOpt = None,
) -> None:
    """Write a note on a run."""
    with _open(db, write=True) as store:
        run = store.set_notes(run_ref, text, append=append)
    _console().print(f"run {run.id} ({run.name}) notes: {run.notes}", highlight=False)


@command("export")
def export_cmd(
    run_ref: RunArg,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="csv (metric rows) or json (the run and its metric rows).")] = Format.json,  # noqa: E501
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file [default: stdout]", show_default=False)] = None,  # noqa: E501
    db: DbOpt = None,
) -> None:
    """Export a run's metrics as CSV or JSON."""
    import csv
    import io

    if out is not None and not out.parent.exists():
        raise UserError(f"folder {out.parent} does not exist; create it or choose another --out")
    with _open(db) as store:
        run = store.get_run(run_ref)
        rows = store.metrics(run.id)
    if fmt is Format.json:
        text = json.dumps({"run": run.to_json(), "metrics": rows}, indent=2) + "\n"
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["step", "name", "value", "time"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        text = buf.getvalue()
    if out is None:
        sys.stdout.write(text)
    else:
        from core.atomic import atomic_write_bytes

        atomic_write_bytes(out, text.encode())
        print(f"wrote {out} ({len(rows)} metric rows)", file=sys.stderr)


@command("sample")
def sample_cmd(
    run_ref: RunArg,
    n: Annotated[int, typer.Option("--n", min=1, max=10_000, help="How many samples.")] = 64,
    sampler: Annotated[Sampler | None, typer.Option("--sampler", help="ddpm (all T steps) or ddim [default: the run's]", show_default=False)] = None,  # noqa: E501
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="DDIM steps [default: the run's]", show_default=False)] = None,  # noqa: E501
    eta: Annotated[float | None, typer.Option("--eta", min=0.0, max=ETA_MAX, help="DDIM noise: 0 deterministic, 1 like DDPM, more adds noise [default: the run's]", show_default=False)] = None,  # noqa: E501
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed draws the same samples.")] = 0,
    checkpoint: Annotated[int | None, typer.Option("--checkpoint", help="Step of the checkpoint to use [default: the latest]", show_default=False)] = None,  # noqa: E501
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write FILE.png (a grid) or FILE.npy (uint8 images, or float32 points)", show_default=False)] = None,  # noqa: E501
    trajectory: Annotated[bool, typer.Option("--trajectory", help="Animate the denoising in place.")] = False,
    device: Annotated[Device, typer.Option("--device", help="Where to sample.")] = Device.auto,
    art: ArtOpt = None,
    db: DbOpt = None,
) -> None:
    """Draw samples from a run with its EMA weights."""
    if out is not None:
        if out.suffix.lower() not in (".png", ".npy"):
            raise UserError(f"--out {out}: the file must end in .png or .npy")
        if not out.parent.exists():
            raise UserError(f"--out {out}: folder {out.parent} does not exist; create it or choose another path")
    with _open(db) as store:
        run = store.get_run(run_ref)
        ck = store.checkpoint_at(run.id, checkpoint)
    cfg_sampler = sampler.value if sampler else run.config.get("sampler", "ddim")
    T = int(run.config["T"])
    if cfg_sampler == "ddpm" and steps not in (None, T):
        raise UserError(f"--sampler ddpm always takes T={T} steps; use --sampler ddim for --steps {steps}")
    if steps is not None and steps > T:
        raise UserError(f"--steps {steps} is more than the run's T={T}")

    from core.train import generate, load_for_sampling, resolve_device, to_numpy

    console = _console()
    dev = resolve_device(device.value)
    net, diffusion, cfg, step = load_for_sampling(ck.path, dev)
    use_steps = (steps or cfg.sample_steps) if cfg_sampler == "ddim" else None
    frames = 24 if trajectory else 0
    t0 = time.perf_counter()
    res = generate(net, diffusion, cfg, n, device=dev, sampler=cfg_sampler, steps=use_steps,
                   eta=eta, seed=seed, trajectory_frames=frames)  # fmt: skip
    seconds = time.perf_counter() - t0
    data = to_numpy(res.x, cfg)
    if trajectory and console.is_terminal:
        _animate(console, res, cfg, art)
    else:
        console.print(_samples_view(console, data, art))
    label = f"{cfg_sampler}-{use_steps or T}"
    console.print(f"{n} samples from run {run.id} ({run.name}) at step {step:,}, {label}, seed {seed}, in {seconds:.1f}s", highlight=False)
    if out is not None:
        from ddpm_tui.sample_files import write_samples

        write_samples(out, data)
        console.print(f"wrote {out}", highlight=False)


def _animate(console: Console, res, cfg, art: Art | None) -> None:
    """The denoising, frame by frame, drawn in place (x_t from noise to the final samples)."""
    from rich.console import Group as RichGroup
    from rich.live import Live
    from rich.text import Text

    from core.train import to_numpy

    with Live(console=console, refresh_per_second=12, transient=False) as live:
        for t, xt in zip(res.timesteps, res.xt):
            frame = to_numpy(xt.clamp(-1, 1) if cfg.is_image else xt, cfg)
            live.update(RichGroup(_samples_view(console, frame, art), Text(f"t = {t}", style="dim")))
            time.sleep(0.08)


@command("eval")
def eval_cmd(
    run_ref: RunArg,
    n: Annotated[int, typer.Option("--n", min=2, help="How many samples to judge.")] = 1000,
    sampler: Annotated[Sampler, typer.Option("--sampler", help="ddpm (all T steps) or ddim.")] = Sampler.ddim,
    steps: Annotated[int, typer.Option("--steps", min=1, help="DDIM steps.")] = 50,
    eta: Annotated[float | None, typer.Option("--eta", min=0.0, max=ETA_MAX, help="DDIM noise: 0 deterministic, 1 like DDPM, more adds noise [default: the run's]", show_default=False)] = None,  # noqa: E501
    seed: Annotated[int, typer.Option("--seed", help="Seed for the samples (and KID's subsets).")] = 0,
    checkpoint: Annotated[int | None, typer.Option("--checkpoint", help="Step of the checkpoint to judge [default: the latest]", show_default=False)] = None,  # noqa: E501
    device: Annotated[Device, typer.Option("--device", help="Where to sample.")] = Device.auto,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Judge a run's samples (FID, KID, confident share, class entropy, real-data floor); stored at the checkpoint's step."""
    from core.config import RunConfig
    from core.evaluate import JUDGED, check_memory

    with _open(db, write=True) as store:
        run = store.get_run(run_ref)
        if run.dataset not in (*JUDGED, "scurve"):
            raise UserError(f"run {run.id} trains on {run.dataset!r}, which has no judge; evaluation covers {', '.join(JUDGED)} and scurve")
        T = int(run.config["T"])
        if sampler is Sampler.ddim and steps > T:
            raise UserError(f"--steps {steps} is more than the run's T={T}")
        check_memory(n, RunConfig.from_dict(run.config).sample_shape)
        ck = store.checkpoint_at(run.id, checkpoint)
        db_path = store.path

    from core.evaluate import evaluate
    from core.train import generate, load_for_sampling, resolve_device, to_numpy

    dev = resolve_device(device.value)
    net, diffusion, cfg, step = load_for_sampling(ck.path, dev)
    used_steps = steps if sampler is Sampler.ddim else T
    eta = cfg.eta if eta is None else eta
    t0 = time.perf_counter()
    res = generate(net, diffusion, cfg, n, device=dev, sampler=sampler.value,
                   steps=steps if sampler is Sampler.ddim else None, eta=eta, seed=seed)  # fmt: skip
    ev = evaluate(to_numpy(res.x, cfg), cfg.dataset, device=dev, seed=seed)
    seconds = time.perf_counter() - t0
    with _open(db_path, write=True) as store:
        store.add_eval(run.id, step, n=n, sampler=sampler.value, steps=used_steps, eta=eta, seed=seed,
                       figures=ev.figures, floor=ev.floor, seconds=seconds)  # fmt: skip
    if json_out:
        _print_json({"run": run.id, "name": run.name, "step": step, "n": n, "sampler": sampler.value, "steps": used_steps,
                     "eta": eta, "seed": seed, "seconds": round(seconds, 2), "figures": ev.figures, "floor": ev.floor,
                     "class_counts": ev.class_counts})  # fmt: skip
        return
    console = _console()
    console.print(
        f"run [bold]{run.id}[/] ({run.name}) at step {step:,}: {n:,} samples, {sampler.value}-{used_steps}, seed {seed}, "
        f"judged in {seconds:.1f}s",
        highlight=False,
    )
    console.print(figures_table(ev.figures, ev.floor, n))


@command("compare")
def compare_cmd(
    runs: Annotated[list[str], typer.Argument(help="Two or more run ids or names.")],
    rank: Annotated[str | None, typer.Option("--rank", help="Order the runs by a metric's latest value, best first (e.g. fid, confident, loss).", show_default=False)] = None,  # noqa: E501
    json_out: JsonOpt = False,
    art: ArtOpt = None,
    db: DbOpt = None,
) -> None:
    """Compare runs: config differences, loss curves, final metrics, samples."""
    from ddpm_tui.format import config_differences

    if len(runs) < 2:
        raise UserError("compare needs at least two runs, e.g. ddpm compare 3 4")
    with _open(db) as store:
        rs = [store.get_run(r) for r in runs]
        if len({r.id for r in rs}) < len(rs):
            raise UserError("the same run is named twice; name different runs")
        finals = {r.id: final_metrics(store, r) for r in rs}
        if rank is not None:
            if not any(isinstance(finals[r.id].get(rank), (int, float)) for r in rs):
                raise UserError(f"--rank {rank}: none of these runs has that metric (evaluate them with ddpm eval RUN)")
            rs = ranked(rs, finals, rank)
        diffs = config_differences([r.config for r in rs])
        curves = {f"{r.id} {r.name}": store.series(r.id, "loss") for r in rs}
        samples = {r.id: store.latest_samples(r.id) for r in rs}
    if json_out:
        doc = {"runs": [r.to_json() for r in rs], "config_differences": diffs, "metrics": {str(k): v for k, v in finals.items()}}
        if rank is not None:
            doc["ranking"] = {"metric": rank, "order": [r.id for r in rs]}
        _print_json(doc)
        return
    from rich.table import Table
    from rich.text import Text

    from ddpm_tui.charts import loss_chart
    from ddpm_tui.format import value

    console = _console()
    console.print(f"[bold]{'config differences' if diffs else 'configs are identical'}[/]")
    table = Table(box=None, header_style="bold")
    table.add_column("")
    for r in rs:
        table.add_column(f"{r.id} {r.name}", justify="right")
    for k, vals in diffs.items():
        table.add_row(k, *[value(v) for v in vals])
    console.print(table)
    if any(len(v[0]) for v in curves.values()):
        chart = loss_chart(curves, width=min(console.width, 100), height=16, color=console.color_system is not None,
                           title="loss (log scale, smoothed)")  # fmt: skip
        console.print(Text.from_ansi(chart))
    title = f"final metrics, ranked by {rank} ({'lower' if rank in LOWER_IS_BETTER else 'higher'} is better)" if rank else "final metrics"
    console.print(f"[bold]{title}[/]")  # not a table title, which would wrap to the table's width
    console.print(metrics_table(rs, finals))
    for r in rs:
        s = samples[r.id]
        if s is None:
            continue
        console.print(f"[bold]{r.id} {r.name}[/] [dim]step {s.step:,}[/]")
        console.print(_samples_view(console, s.data, art, max_rows=1))


@command("tui")
def tui_cmd(db: DbOpt = None) -> None:
    """Open the dashboard (the same as `ddpm-tui`)."""
    from ddpm_tui.app import run_app

    run_app(_db_path(db))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
