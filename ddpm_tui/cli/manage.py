"""``ddpm stop``, ``rm``, ``tag`` and ``note``: the small commands that change a run's row
(and, for ``rm``, its checkpoint files). Each is one store call and one line of output."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from ddpm_tui.cli.common import DbOpt, JsonOpt, RunArg, UserError, command, make_console, print_json


@command("stop")
def stop_cmd(
    run_ref: RunArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the run has stopped.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")] = 120.0,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Ask a run to stop: it checkpoints at its next step and ends 'stopped'."""
    from core.store import open_store

    with open_store(db, write=True) as store:
        run = store.get_run(run_ref)
        if not run.active:
            msg = f"run {run.id} ({run.name}) is {run.status}; nothing to stop"
            if run.status == "crashed":
                msg += f" (its worker is gone; continue it with: ddpm resume {run.id})"
            if json_out:
                print_json(run.to_json())
            else:
                make_console().print(msg, highlight=False)
            return
        run = store.request_stop(run.id)
        deadline = time.monotonic() + timeout
        while wait and run.active and time.monotonic() < deadline:
            time.sleep(0.2)
            run = store.get_run(run.id)
    if json_out:
        print_json(run.to_json())
    elif run.active:
        if wait:
            raise UserError(
                f"run {run.id} did not stop within {timeout:g}s; it is {run.status} (try again, or look at ddpm show {run.id})"
            )
        make_console().print(f"stop requested: run {run.id} ({run.name}) checkpoints and stops at its next step", highlight=False)
    else:
        make_console().print(f"run {run.id} ({run.name}) is {run.status} at step {run.step:,}", highlight=False)


@command("rm")
def rm_cmd(
    run_ref: RunArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOpt = None,
) -> None:
    """Delete a run: its rows and its checkpoint files."""
    from core.store import open_store

    with open_store(db, write=True) as store:
        run = store.get_run(run_ref)
        if not yes:
            if not sys.stdin.isatty():
                raise UserError(f"deleting run {run.id} ({run.name}) needs confirmation; pass --yes")
            if not typer.confirm(f"delete run {run.id} ({run.name}), its metrics, samples and checkpoints?"):
                raise typer.Exit(1)
        store.delete_run(run.id)
    make_console().print(f"deleted run {run.id} ({run.name})", highlight=False)


@command("tag")
def tag_cmd(
    run_ref: RunArg,
    tags: Annotated[list[str], typer.Argument(help="Tags to add (or remove).")],
    remove: Annotated[bool, typer.Option("--remove", "-r", help="Remove the tags instead.")] = False,
    db: DbOpt = None,
) -> None:
    """Add tags to a run (or remove them)."""
    from core.store import open_store

    with open_store(db, write=True) as store:
        run = store.get_run(run_ref)
        for t in tags:
            run = store.remove_tag(run.id, t) if remove else store.add_tag(run.id, t)
    make_console().print(f"run {run.id} ({run.name}) tags: {', '.join(run.tags) or '-'}", highlight=False)


@command("note")
def note_cmd(
    run_ref: RunArg,
    text: Annotated[str, typer.Argument(help="The note.")],
    append: Annotated[bool, typer.Option("--append", "-a", help="Add to the existing notes instead of replacing them.")] = False,
    db: DbOpt = None,
) -> None:
    """Write a note on a run."""
    from core.store import open_store

    with open_store(db, write=True) as store:
        run = store.set_notes(run_ref, text, append=append)
    make_console().print(f"run {run.id} ({run.name}) notes: {run.notes}", highlight=False)
