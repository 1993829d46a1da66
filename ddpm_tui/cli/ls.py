"""``ddpm ls``: the runs as a table (or JSON), newest first, with their latest FID when any
run has one. Reads only, so it never imports torch and answers at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ddpm_tui.cli.common import DbOpt, JsonOpt, UserError, command, make_console, print_json

# Keys the table shows already: sorting by another adds it as a column.
SHOWN = {"id", "name", "preset", "status", "device", "step", "total_steps", "last_loss", "fid", "images_per_s", "created", "tags"}


# The table's rows unless --limit says otherwise: a terminal's worth. Drawing thousands of
# rows takes Rich seconds and scrolls them past; --json is never cut.
TABLE_ROWS = 50


@command("ls")
def ls_cmd(
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only runs in this status (queued, running, completed, stopped, failed, crashed).",
            show_default=False,
        ),
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only runs with this tag.", show_default=False)] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Only the runs of this study (ddpm sweep --name).", show_default=False)
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            "-w",
            metavar="EXPR",
            help="Only runs where KEY OP VALUE holds (= != < <= > >= ~), e.g. fid<30, objective=v, name~lr; "
            "KEY is a config field, run field, figure or metric; repeat to AND them.",
            show_default=False,
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option("--sort", metavar="KEY", help="Sort by KEY (-KEY: descending); runs without it last.", show_default=False),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most N runs (after --sort).", show_default=False)
    ] = None,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """List runs, newest first (or by --sort), filtered by --status, --tag, --study and --where."""
    from core.store import STATUSES, default_db_path, open_store
    from ddpm_tui import table_rows

    if status is not None and status not in STATUSES:
        raise UserError(f"--status {status!r} is not one of {', '.join(STATUSES)}")
    path = Path(db) if db is not None else default_db_path()
    if not path.exists():
        if json_out:
            print_json([])
        else:
            make_console().print(f"no runs yet ({path} does not exist); start one with: ddpm run")
        return
    with open_store(db) as store:
        q = evals = None
        if where or sort:
            evals = store.latest_evals(study)
            q = table_rows.bind(list(where or []), sort, evals)
        # Filters on figures narrow the runs down from the evaluations alone, before any run is decoded.
        ids = table_rows.judged_candidates(q, evals) if q is not None else None
        runs = store.list_runs(status=status, tag=tag, study=study, ids=ids)
        if study is not None and not runs and not store.list_runs(study=study):
            known = sorted({r.study for r in store.list_runs() if r.study})
            raise UserError(
                f"no study {study!r}" + (f"; studies: {', '.join(known)}" if known else "; record one with ddpm sweep")
            )
        extra: str | None = None
        if q is not None:
            items = table_rows.apply(q, table_rows.facts(store, runs, evals, q.metrics), limit)
            runs = [f.run for f in items]
            if q.sort is not None and q.sort.key not in SHOWN:
                extra = q.sort.key
                extras = {f.run.id: f.get(extra) for f in items}
        elif limit is not None:
            runs = runs[:limit]
        if evals is not None:  # the FID column from the evaluation the query read
            fids = {rid: (ev["figures"]["fid"], ev["protocol"]) for rid, ev in evals.items() if "fid" in ev["figures"]}
        else:
            fids = store.latest_figure_for_all("fid")
    if json_out:
        print_json([{**r.to_json(), "fid": fids[r.id][0] if r.id in fids else None,
                     "fid_protocol": fids[r.id][1] if r.id in fids else None} for r in runs])  # fmt: skip
        return
    console = make_console()
    if not runs:
        console.print("no runs match" if (status or tag or study or where) else "no runs yet; start one with: ddpm run")
        return
    cut = len(runs) if limit is not None or len(runs) <= TABLE_ROWS else TABLE_ROWS
    matched, runs = len(runs), runs[:cut]
    from ddpm_tui.format import STATUS_STYLE, age, device_label, fitted_table, number

    columns = [("id", "right"), ("name", "left"), ("preset", "left"), ("status", "left"), ("device", "left"), ("step", "right"),
               ("loss", "right"), ("fid", "right"), ("img/s", "right"), ("age", "right"), ("tags", "left")]  # fmt: skip
    if not fids:
        columns.remove(("fid", "right"))
    if extra is not None:  # the sort key, when no column shows it
        columns.append((extra, "right"))
    # Each run's latest FID; those measured under a protocol other than the most common one
    # are marked, since FIDs of different protocols are not comparable.
    shown = [fids[r.id][1] for r in runs if r.id in fids]
    usual = max(set(shown), key=shown.count) if shown else None
    cells = []
    for r in runs:
        fid = [(f"{fids[r.id][0]:.2f}" + ("*" if fids[r.id][1] != usual else "")) if r.id in fids else "-"] if fids else []
        cells.append([
            str(r.id), r.name, r.preset, f"[{STATUS_STYLE.get(r.status, '')}]{r.status}[/]", device_label(r), f"{r.step:,}/{r.total_steps:,}",
            number(r.last_loss), *fid, number(r.images_per_s and round(r.images_per_s)), age(r.created), ",".join(r.tags),
            *([number(extras[r.id])] if extra is not None else []),
        ])  # fmt: skip
    # On a narrow terminal the least telling columns go first; what a run is told by stays whole.
    table = fitted_table(columns, cells, console.width, drop=["tags", "age", "preset", "img/s", "device", "loss"],
                         keep=["id", "status", "step", "fid", extra or "fid"])  # fmt: skip
    console.print(table)
    if cut < matched:
        console.print(f"[dim]{cut} of {matched:,} runs shown; --limit N shows N, --json all of them[/]", highlight=False)
    if len(set(shown)) > 1:
        console.print(f"[dim]fid: {usual}; * under another protocol (ddpm show RUN says which)[/]", highlight=False)
