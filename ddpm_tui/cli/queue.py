"""``ddpm queue``: the run queue of a database and the scheduler that works it off.

``ddpm queue`` shows the slots (which run trains where, its step and ETA) and the waiting list;
``queue start`` runs a scheduler for the database (``--gpus``/``--per-gpu`` on a GPU host,
``--slots`` on a CPU host; ``--detach`` returns at once, ``--drain`` returns when nothing is
queued or running); ``queue stop`` stops taking new runs (``--now`` also stops the running ones,
each with a checkpoint); ``queue top RUN`` moves a waiting run to the front. The scheduler
itself is :mod:`core.scheduler`; nothing here imports torch.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Annotated

import typer

from ddpm_tui.cli.common import DbOpt, JsonOpt, RunArg, UserError, command, guarded, make_console, print_json

queue_app = typer.Typer(
    name="queue",
    help="The run queue: show it, start or stop its scheduler, reorder it.",
    no_args_is_help=False,
    add_completion=False,
)


@queue_app.callback(invoke_without_command=True)
@guarded
def queue_status(ctx: typer.Context, json_out: JsonOpt = False, db: DbOpt = None) -> None:
    """Show the slots (which run trains where, step, ETA) and the waiting runs in order."""
    if ctx.invoked_subcommand is not None:
        return
    from core.scheduler import queue_state
    from core.store import default_db_path, open_store

    path = db if db is not None else default_db_path()
    if not path.exists():
        if json_out:
            print_json({"schedulers": [], "slots": [], "waiting": []})
        else:
            make_console().print(f"no runs yet ({path} does not exist); queue one with: ddpm run --queue")
        return
    with open_store(path) as store:
        state = queue_state(store)
    if json_out:
        print_json(
            {
                "schedulers": [
                    {k: s[k] for k in ("id", "host", "pid", "started", "stopping", "retries")} for s in state.schedulers
                ],
                "slots": [{**slot, "run": run.to_json() if run is not None else None} for slot, run in state.slots],
                "waiting": [r.to_json() for r in state.waiting],
                "unattended": [r.to_json() for r in state.unattended],
            }
        )
        return
    from ddpm_tui.queue_view import queue_tables

    console = make_console()
    for renderable in queue_tables(state):
        console.print(renderable)


@command("start", group=queue_app)
def queue_start(
    gpus: Annotated[
        str | None, typer.Option("--gpus", help="GPUs to fill: 0,1,2,3 or all [default: all on a CUDA host]", show_default=False)
    ] = None,
    per_gpu: Annotated[int, typer.Option("--per-gpu", min=1, help="Runs per GPU at once.")] = 1,
    slots: Annotated[
        int | None,
        typer.Option(
            "--slots", min=1, help="CPU slots, each with its share of the cores [default: one per 2 cores]", show_default=False
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="Re-queue a crashed run this many times (runs may set their own).")
    ] = 0,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="auto|ADDRESS|local",
            help="Work the queue off on a Ray cluster (pip install 'ddpm-tui[ray]').",
            show_default=False,
        ),
    ] = None,
    cpus_per_run: Annotated[
        int | None,
        typer.Option(
            "--cpus-per-run", min=1, help="With --ray: CPUs each run asks for [default: 1 with GPUs, else 2].", show_default=False
        ),
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run the scheduler in the background and return.")] = False,
    drain: Annotated[bool, typer.Option("--drain", help="Return when nothing is queued or running.")] = False,
    db: DbOpt = None,
) -> None:
    """Run a scheduler for this database: it fills every slot with queued runs until stopped."""
    from core import scheduler as sched
    from core.store import open_store

    if gpus is not None and slots is not None:
        raise UserError("--gpus and --slots exclude each other: GPU slots on a GPU host, CPU slots (--slots) on a CPU host")
    if ray is not None and (gpus is not None or slots is not None):
        raise UserError(
            "--ray lets Ray place the runs on the cluster's GPUs or CPUs; drop --gpus and --slots (--cpus-per-run sizes a CPU run)"
        )
    if ray is None and cpus_per_run is not None:
        raise UserError("--cpus-per-run is for --ray; a local scheduler's CPU slots split the cores (--slots N)")
    if ray is not None:
        from core.ray_queue import require_ray

        require_ray()  # one line saying how to install it, before anything starts
    plan = plan_for(gpus, per_gpu, slots) if ray is None else []
    with open_store(db, write=True) as store:
        db_path = store.path
        pid = sched.holder(sched.lock_path(store))
    if pid is not None:
        raise UserError(f"a scheduler already runs for {db_path} on this host (pid {pid}); `ddpm queue stop` stops it")
    console = make_console()
    where = ", ".join(s.name for s in plan) if ray is None else f"Ray cluster {ray}"
    if detach:
        proc = sched.spawn(db_path, plan, retries=retries, drain=drain, ray=ray, cpus_per_run=cpus_per_run)
        console.print(
            f"scheduler started in the background (pid {proc.pid}): {where}\n  watch it:  ddpm queue   stop it:  ddpm queue stop",
            highlight=False,
        )
        return

    def say(text: str) -> None:
        console.print(text, highlight=False)

    if ray is not None:
        from core.ray_queue import RayScheduler

        scheduler = RayScheduler(db_path, address=ray, cpus_per_run=cpus_per_run, retries=retries, drain=drain, log=say)
        where = f"Ray cluster {ray}: {', '.join(s.name for s in scheduler.slots)}"
    else:
        scheduler = sched.Scheduler(db_path, plan, retries=retries, drain=drain, log=say)
    previous = {
        s: signal.signal(s, lambda signum, frame: scheduler.interrupted.set())
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    console.print(
        f"scheduler pid {os.getpid()}: {where} ({'until the queue is empty' if drain else 'Ctrl-C leaves the runs training'})",
        highlight=False,
    )
    t0 = time.monotonic()
    try:
        started = scheduler.run()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    console.print(
        f"scheduler done: started {started} run{'s' if started != 1 else ''} in {time.monotonic() - t0:.0f}s", highlight=False
    )


def plan_for(gpus: str | None, per_gpu: int, slots: int | None):
    """The slots a start asks for, checked against this machine (asked of torch in a child,
    so this command stays light)."""
    from core.devices import parse_gpus, probe_isolated
    from core.scheduler import default_slots, plan_slots

    if slots is not None:
        return plan_slots(slots=slots)
    acc = probe_isolated()
    if gpus is not None:
        return plan_slots(gpus=parse_gpus(gpus, acc), per_gpu=per_gpu)
    if acc.cuda:
        return plan_slots(gpus=list(range(acc.cuda)), per_gpu=per_gpu)
    return default_slots(acc)


@command("stop", group=queue_app)
def queue_stop(
    now: Annotated[bool, typer.Option("--now", help="Also stop the running runs, each with a checkpoint.")] = False,
    db: DbOpt = None,
) -> None:
    """Stop taking new runs (running runs go on, unless --now)."""
    from core.store import open_store

    with open_store(db, write=True) as store:
        asked = store.stop_schedulers(now=now)
    if not asked:
        make_console().print("no scheduler runs for this database", highlight=False)
        return
    pids = ", ".join(str(s["pid"]) for s in asked)
    what = "stops its runs with a checkpoint, then exits" if now else "takes no new runs and exits when its running runs end"
    make_console().print(f"scheduler (pid {pids}) {what}", highlight=False)


@command("top", group=queue_app)
def queue_top(run_ref: RunArg, json_out: JsonOpt = False, db: DbOpt = None) -> None:
    """Move a waiting run to the front of the queue."""
    from core.store import open_store

    with open_store(db, write=True) as store:
        run = store.move_to_front(run_ref)
    if json_out:
        print_json(run.to_json())
    else:
        make_console().print(f"run {run.id} ({run.name}) is next in the queue (priority {run.priority})", highlight=False)


def _register() -> None:
    from ddpm_tui.cli import app

    app.add_typer(queue_app)


_register()
