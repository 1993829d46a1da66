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


def _parse_gpus(text: str, count: int) -> list[int]:
    if text.strip().lower() == "all":
        return list(range(count))
    gpus = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise UserError(f"--gpus {text}: expected GPU indices such as 0,1,2,3 (or all)")
        gpus.append(int(part))
    bad = [g for g in gpus if g >= count]
    if bad:
        have = "GPU 0" if count == 1 else f"GPUs 0 to {count - 1}"
        raise UserError(f"--gpus {text}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} ({have})")
    return sorted(dict.fromkeys(gpus))


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
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run the scheduler in the background and return.")] = False,
    drain: Annotated[bool, typer.Option("--drain", help="Return when nothing is queued or running.")] = False,
    db: DbOpt = None,
) -> None:
    """Run a scheduler for this database: it fills every slot with queued runs until stopped."""
    from core import scheduler as sched
    from core.store import open_store

    if gpus is not None and slots is not None:
        raise UserError("--gpus and --slots exclude each other: GPU slots on a GPU host, CPU slots (--slots) on a CPU host")
    plan = plan_for(gpus, per_gpu, slots)
    with open_store(db, write=True) as store:
        db_path = store.path
        pid = sched.holder(sched.lock_path(store))
    if pid is not None:
        raise UserError(f"a scheduler already runs for {db_path} on this host (pid {pid}); `ddpm queue stop` stops it")
    console = make_console()
    where = ", ".join(s.name for s in plan)
    if detach:
        proc = sched.spawn(db_path, plan, retries=retries, drain=drain)
        console.print(
            f"scheduler started in the background (pid {proc.pid}): {where}\n  watch it:  ddpm queue   stop it:  ddpm queue stop",
            highlight=False,
        )
        return
    scheduler = sched.Scheduler(
        db_path, plan, retries=retries, drain=drain, log=lambda text: console.print(text, highlight=False)
    )
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
    from core.devices import probe_isolated
    from core.scheduler import default_slots, plan_slots

    if slots is not None:
        return plan_slots(slots=slots)
    acc = probe_isolated()
    if gpus is not None:
        if not acc.cuda:
            raise UserError(
                f"--gpus: {acc.no_cuda_reason().removesuffix('; use --device cpu (or auto)')}; use --slots N for CPU slots"
            )
        return plan_slots(gpus=_parse_gpus(gpus, acc.cuda), per_gpu=per_gpu)
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
