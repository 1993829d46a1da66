"""``ddpm run`` and ``ddpm resume``: start or continue training, in the foreground with a
live progress view (a Rich bar on a terminal, plain lines in a log), or in a detached worker.

A foreground run is the same worker loop a detached one runs (:func:`core.worker.train_run`),
in this process: Ctrl-C, ``kill`` or a closed terminal stop it at the next step with a
checkpoint, and it ends ``stopped``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.config import PRESETS
from core.errors import DDPMError
from ddpm_tui.cli.common import (
    Art,
    ArtOpt,
    DbOpt,
    DeviceOpt,
    JsonOpt,
    RunArg,
    UserError,
    command,
    device_option,
    fail,
    make_console,
    parse_sets,
    print_json,
    run_doc,
    samples_view,
)

if TYPE_CHECKING:
    from rich.console import Console

    from core.store import Run, Store


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
        """The trainer in this process is about to train."""
        self.begin(run, trainer.step, trainer.elapsed, str(trainer.device), trainer.n_params)

    def start_from_run(self, run: Run, nproc: int) -> None:
        """A run training in other processes (several ranks), followed through its row."""
        self.begin(run, run.step, run.elapsed_s, f"{run.device.split(':')[0]} x{nproc}", run.n_params or 0)

    def begin(self, run: Run, step: int, elapsed: float, device: str, n_params: int) -> None:
        self.total, self.start_step, self.start_elapsed = run.total_steps, step, elapsed
        where = f"resuming at step {step:,}" if step else f"{run.total_steps:,} steps"
        self.console.print(
            f"run [bold]{run.id}[/] ([bold]{run.name}[/]): {run.preset} preset on {device}, {n_params:,} parameters, {where}",
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
            self.task = self.progress.add_task("training", total=run.total_steps, completed=step, loss="-", ips="-")
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
    from core.worker import install_stop_signals, restore_signals  # light: the engine loads in train_run

    console = make_console(stderr=json_out)
    view = ProgressView(console)
    stop = threading.Event()

    def on_signal(signum: int) -> None:  # after the shared handler asked the run to stop
        view.stopping = True
        if signum == signal.SIGHUP:
            view.live = False
            _silence_terminal()

    # Handlers first, then the engine's import: a hang-up or Ctrl-C that comes while it
    # loads must still end the recorded run `stopped`, not kill it and leave it queued.
    previous = install_stop_signals(stop, on_signal)
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
        restore_signals(previous)

    run = _report(db_path, run_id, json_out, console, view, art)
    if error is not None:
        if isinstance(error, DDPMError):
            raise fail(f"run {run.id} failed at step {run.step}: {error}")
        if os.environ.get("DDPM_DEBUG"):
            raise error
        raise fail(f"run {run.id} failed at step {run.step}: {run.error or error} (`ddpm show {run.id}` has the details)")


def _report(db_path, run_id: int, json_out: bool, console: Console, view: ProgressView, art: Art | None) -> Run:
    """How a foreground run ended, as JSON or as its final report; the run as recorded."""
    from core.store import Store

    with Store(db_path, create=False) as store:
        run = store.get_run(run_id)
        if json_out:
            print_json(run_doc(store, run))
        else:
            _report_end(console, store, run, view, art)
    return run


def _report_end(console: Console, store: Store, run: Run, view: ProgressView, art: Art | None) -> None:
    from ddpm_tui.format import duration

    if run.status == "completed":
        latest = store.latest_samples(run.id)
        if latest is not None:
            console.print(samples_view(console, latest.data, art, per_row=latest.per_row))
        loss = f", loss {run.last_loss:.4f}" if run.last_loss is not None else ""
        console.print(
            f"run [bold]{run.id}[/] ({run.name}) [green]completed[/]: {run.step:,} steps in {duration(run.elapsed_s)}{loss}",
            highlight=False,
        )
        console.print(
            f"  sample more:  ddpm sample {run.id} --n 64\n  dashboard:    ddpm-tui\n  details:      ddpm show {run.id}"
        )
    elif run.status == "stopped":
        console.print(
            f"run [bold]{run.id}[/] ({run.name}) [magenta]stopped[/] at step {run.step:,} "
            f"(checkpointed); continue it with: ddpm resume {run.id}",
            highlight=False,
        )
    else:
        console.print(f"run {run.id} ({run.name}) is {run.status}", highlight=False)


@command("run")
def run_cmd(
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            "-p",
            help=f"{', '.join(PRESETS)} [default: quick on a CPU, classic on CUDA]",
            show_default=False,
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", "-s", metavar="KEY=VALUE", help="Override a config field (steps, lr, T, batch_size, ...); repeatable."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="A unique name for the run [default: PRESET-ID]", show_default=False)
    ] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag the run; repeatable.")] = None,
    device: DeviceOpt = "auto",
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Train in a background worker; print the run id and return.")
    ] = False,
    eval_every: Annotated[
        int | None,
        typer.Option(
            "--eval-every",
            min=0,
            help="Judge samples (FID, KID, confident share) every K steps; same as --set eval_every=K.",
            show_default=False,
        ),
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            min=1,
            help="Train on N processes (data parallel, torchrun); batch_size stays the global batch.",
            show_default=False,
        ),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus", help="Train on these GPUs, one process each (e.g. 0,1,2,3 or all); implies --nproc.", show_default=False
        ),
    ] = None,
    queue: Annotated[
        bool, typer.Option("--queue", "-q", help="Record it as queued for a scheduler (ddpm queue start) instead of starting it.")
    ] = False,
    priority: Annotated[int, typer.Option("--priority", help="With --queue: higher runs first; ties oldest first.")] = 0,
    retries: Annotated[
        int | None,
        typer.Option("--retries", min=0, help="With --queue: re-queue it after a crash this many times.", show_default=False),
    ] = None,
    json_out: JsonOpt = False,
    art: ArtOpt = None,
    db: DbOpt = None,
) -> None:
    """Start a training run (in the foreground unless --detach), or queue it (--queue)."""
    from core.config import check_split, default_preset
    from core.config import preset as make_preset
    from core.devices import device_type, plan_here, resolve_here
    from core.sources import check_available
    from core.store import open_store

    if not queue and (priority or retries is not None):
        raise UserError("--priority and --retries are for queued runs; add --queue")
    if queue and gpus is not None:
        raise UserError("--gpus pins GPUs for a run started now; a queued run gets its GPUs from the scheduler (use --nproc N)")
    # A device (or GPUs, or processes) this host lacks is refused before anything is recorded.
    launch = plan_here(device, nproc=nproc, gpus=gpus)
    if preset is None:
        preset = default_preset(device_type(resolve_here(launch.device)) if launch.nproc == 1 else launch.device)
    overrides = parse_sets(sets or [])
    if eval_every is not None:
        overrides["eval_every"] = str(eval_every)
    cfg = make_preset(preset, overrides)
    check_split(cfg, launch.nproc)
    check_available(cfg)
    with open_store(db, write=True, create=True) as store:
        run = store.create_run(
            cfg.to_dict(),
            preset=preset,
            name=name,
            tags=tags or [],
            device=device,
            in_queue=queue,
            priority=priority,
            retries=retries,
            world_size=launch.nproc,
        )
        db_path = store.path
        position = next((i for i, r in enumerate(store.waiting(), 1) if r.id == run.id), None) if queue else None
    if queue:
        if json_out:
            print_json(run.to_json())
        else:
            make_console().print(
                f"run [bold]{run.id}[/] ([bold]{run.name}[/]) is queued, number {position} in line\n"
                "  run the queue:  ddpm queue start   (watch it: ddpm queue)",
                highlight=False,
            )
        return
    if detach:
        _start_detached(db_path, run.id, launch, json_out, "is training in the background")
        return
    if launch.nproc > 1:
        _follow_processes(db_path, run.id, launch, json_out=json_out, art=art)
        return
    _train_foreground(db_path, run.id, json_out=json_out, art=art)


def _start_detached(db_path: Path, run_id: int, launch, json_out: bool, what: str, device: str | None = None) -> None:
    """A background worker for the run (torchrun's launcher for several processes). One
    process resolves the run's own device request unless ``device`` says otherwise."""
    from core.store import open_store
    from core.worker import spawn_worker

    where = launch.device if launch.nproc > 1 else device
    proc = spawn_worker(db_path, run_id, device=where, env=launch.env, nproc=launch.nproc)
    with open_store(db_path) as store:
        run = store.get_run(run_id)
    if json_out:
        print_json(run.to_json())
        return
    procs = f", {launch.nproc} processes" if launch.nproc > 1 else ""
    make_console().print(
        f"run [bold]{run.id}[/] ([bold]{run.name}[/]) {what} (pid {proc.pid}{procs})\n"
        f"  follow it:  ddpm show {run.id}   or   ddpm-tui\n  stop it:    ddpm stop {run.id}",
        highlight=False,
    )


def _follow_processes(db_path: Path, run_id: int, launch, *, json_out: bool, art: Art | None) -> None:
    """A run on several processes, in the foreground: torchrun's launcher in a session of its
    own (so Ctrl-C reaches this process only), followed through the store. Ctrl-C or a hang-up
    asks the run to stop (every rank checkpoints... rank 0 for all, at the next log window); a
    second Ctrl-C ends the launcher and its ranks."""
    from core.store import Store
    from core.train import Metrics
    from core.worker import install_stop_signals, restore_signals, spawn_worker

    console = make_console(stderr=json_out)
    view = ProgressView(console)
    stop = threading.Event()
    proc = None

    def on_signal(signum: int) -> None:
        view.stopping = True
        if signum == signal.SIGHUP:
            view.live = False
            _silence_terminal()
        with Store(db_path, create=False) as s:
            s.request_stop(run_id)

    previous = install_stop_signals(stop, on_signal)
    try:
        proc = spawn_worker(db_path, run_id, device=launch.device, env=launch.env, nproc=launch.nproc)
        with Store(db_path, create=False) as store:
            started = False
            while proc.poll() is None:
                run = store.get_run(run_id)
                if run.status == "running" and run.n_params and not started:
                    view.start_from_run(run, launch.nproc)
                    started = True
                if started:
                    view(
                        Metrics(
                            run.step,
                            {"loss": run.last_loss or 0.0, "images_per_s": run.images_per_s or 0.0, "elapsed_s": run.elapsed_s},
                        )
                    )
                time.sleep(0.5)
    except KeyboardInterrupt:  # a second Ctrl-C: end the ranks now
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    finally:
        view.close()
        restore_signals(previous)
    run = _report(db_path, run_id, json_out, console, view, art)
    if run.status == "failed":
        raise fail(
            f"run {run.id} failed at step {run.step}: {run.error} (`ddpm show {run.id}`; the ranks' output is in its worker.log)"
        )


@command("resume")
def resume_cmd(
    run_ref: RunArg,
    steps: Annotated[
        int | None, typer.Option("--steps", help="New total step count (to train a finished run further).", show_default=False)
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Continue in a background worker.")] = False,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            callback=device_option,
            metavar="DEVICE",
            help="auto, cpu, cuda, cuda:N or mps [default: as before]",
            show_default=False,
        ),
    ] = None,
    nproc: Annotated[
        int | None, typer.Option("--nproc", min=1, help="Processes to continue on [default: as before].", show_default=False)
    ] = None,
    gpus: Annotated[
        str | None, typer.Option("--gpus", help="Continue on these GPUs, one process each; implies --nproc.", show_default=False)
    ] = None,
    queue: Annotated[bool, typer.Option("--queue", "-q", help="Put it back in the queue for a scheduler instead.")] = False,
    json_out: JsonOpt = False,
    art: ArtOpt = None,
    db: DbOpt = None,
) -> None:
    """Continue a stopped, crashed, failed or (with --steps) completed run from its last checkpoint."""
    import sys

    from core.config import RunConfig, check_split
    from core.devices import plan_here
    from core.store import open_store

    if queue and gpus is not None:
        raise UserError("--gpus pins GPUs for a run started now; a queued run gets its GPUs from the scheduler (use --nproc N)")
    with open_store(db) as store:
        before = store.get_run(run_ref)
    # Refused here, before the run is queued again: a device, GPUs or processes this host lacks.
    launch = plan_here(device or before.device_request, nproc=nproc or (None if gpus else before.world_size), gpus=gpus)
    check_split(RunConfig.from_dict(before.config), launch.nproc)
    with open_store(db, write=True) as store:
        run = store.prepare_resume(before.id, total_steps=steps, in_queue=queue, world_size=launch.nproc)
        db_path = store.path
    if launch.nproc != before.world_size and not json_out:
        print(
            f"run {run.id} trained on {before.world_size} process{'es' if before.world_size != 1 else ''} and continues on "
            f"{launch.nproc}: batches, timesteps and noise go on unchanged; dropout's random streams change",
            file=sys.stderr,
        )
    if queue:
        if json_out:
            print_json(run.to_json())
        else:
            make_console().print(f"run [bold]{run.id}[/] ({run.name}) is back in the queue", highlight=False)
        return
    if detach:
        _start_detached(db_path, run.id, launch, json_out, "resumed in the background", device=device)
        return
    if launch.nproc > 1:
        _follow_processes(db_path, run.id, launch, json_out=json_out, art=art)
        return
    _train_foreground(db_path, run.id, json_out=json_out, art=art, device=device)
