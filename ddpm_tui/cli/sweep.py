"""``ddpm sweep``: a study in one command. A grid of settings times a few seeds, checked whole
before anything is recorded, recorded as queued runs of one study for a scheduler to run."""

from __future__ import annotations

from typing import Annotated

import typer

from ddpm_tui.cli.common import DbOpt, DeviceOpt, JsonOpt, UserError, command, make_console, parse_sets, print_json


@command("sweep")
def sweep_cmd(
    name: Annotated[
        str, typer.Option("--name", "-n", help="The study's name; its runs are named STUDY/setting.", show_default=False)
    ],
    preset: Annotated[str, typer.Option("--preset", "-p", help="The preset every run starts from.")] = "quick",
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            metavar="KEY=V1,V2",
            help="A setting and its values, split on commas (tuples in brackets: channel_mult=[1,2],[1,2,2]); repeatable.",
        ),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", min=1, help="Seeds per setting (the preset's seed, +1, +2, ...).")
    ] = None,
    random_n: Annotated[
        int | None, typer.Option("--random", min=1, help="Draw this many settings from the grid instead of all.")
    ] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag every run; repeatable.")] = None,
    priority: Annotated[int, typer.Option("--priority", help="Queue priority: higher runs first.")] = 0,
    retries: Annotated[int | None, typer.Option("--retries", min=0, help="Re-queue a crashed run this many times.")] = None,
    device: DeviceOpt = "auto",
    start: Annotated[
        bool, typer.Option("--start", help="Also start a scheduler (all GPUs, or one CPU slot per 2 cores) if none runs.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Record more than 256 runs.")] = False,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Record a grid of settings x seeds as queued runs of one study."""
    from core.store import check_study, open_store
    from core.sweep import MAX_UNCONFIRMED, describe, expand, new_runs

    check_study(name)
    runs = expand(name, preset, parse_sets(sets or []), seeds=seeds, random_n=random_n)
    if len(runs) > MAX_UNCONFIRMED and not yes:
        raise UserError(f"this sweep is {describe(runs)}; more than {MAX_UNCONFIRMED} runs needs --yes")
    new = new_runs(runs, name, preset, tags=tags or [], device=device, priority=priority, retries=retries)
    with open_store(db, write=True, create=True) as store:
        ids = store.create_runs(new)
        recorded = [store.get_run(i) for i in ids]
        db_path = store.path
    started = None
    if start:
        started = _start_scheduler(db_path)
    if json_out:
        print_json([r.to_json() for r in recorded])
        return
    console = make_console()
    console.print(f"study [bold]{name}[/]: {describe(runs)}, queued as runs {ids[0]}-{ids[-1]}", highlight=False)
    if started is not None:
        console.print(started, highlight=False)
    else:
        console.print("  run them:  ddpm queue start   (watch: ddpm queue, ddpm ls --study " + name + ")", highlight=False)


def _start_scheduler(db_path) -> str:
    """A scheduler with the default slots, unless one runs already."""
    from core import scheduler as sched
    from core.store import open_store
    from ddpm_tui.cli.queue import plan_for

    with open_store(db_path) as store:
        pid = sched.holder(sched.lock_path(store))
    if pid is not None:
        return f"  a scheduler runs already (pid {pid}); it takes them in turn"
    plan = plan_for(None, 1, None)
    proc = sched.spawn(db_path, plan)
    return f"  scheduler started in the background (pid {proc.pid}): {', '.join(s.name for s in plan)}"
