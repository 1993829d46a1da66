"""``ddpm export``: a run's metric rows, or one row per run (``--all``, ``--study``) with every
config field and its final figures, as CSV or JSON, on stdout or written atomically to a file."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ddpm_tui.cli.common import DbOpt, UserError, command


class Format(enum.StrEnum):
    csv = "csv"
    json = "json"


def _csv(columns: list[str], rows: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


@command("export")
def export_cmd(
    run_ref: Annotated[
        str | None, typer.Argument(help="Run id or name (or --all / --study for one row per run).", show_default=False)
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option("--format", "-f", help="csv or json: a run's metric rows (json: with the run), or one row per run."),
    ] = Format.json,
    all_runs: Annotated[
        bool, typer.Option("--all", help="One row per run: who it is, every config field, its final figures.")
    ] = False,
    study: Annotated[
        str | None, typer.Option("--study", help="Like --all, for this study's runs only.", show_default=False)
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file [default: stdout]", show_default=False)
    ] = None,
    db: DbOpt = None,
) -> None:
    """Export a run's metrics, or every run's config and final figures, as CSV or JSON."""
    from core.store import open_store

    table = all_runs or study is not None
    if table and run_ref is not None:
        raise UserError(f"name a run ({run_ref}) or pass --all / --study, not both")
    if not table and run_ref is None:
        raise UserError("name a run to export its metrics, or pass --all (or --study NAME) for one row per run")
    if out is not None and not out.parent.exists():
        raise UserError(f"folder {out.parent} does not exist; create it or choose another --out")
    with open_store(db) as store:
        if table:
            from ddpm_tui import table_rows

            runs = store.list_runs(study=study)
            if study is not None and not runs:
                known = sorted({r.study for r in store.list_runs() if r.study})
                raise UserError(f"no study {study!r}" + (f"; studies: {', '.join(known)}" if known else ""))
            columns, rows = table_rows.export_rows(table_rows.facts(store, runs, store.latest_evals(study)))
            what = f"{len(rows)} runs"
        else:
            run = store.get_run(run_ref)
            rows = store.metrics(run.id)
            columns = ["step", "name", "value", "time"]
            what = f"{len(rows)} metric rows"
    if fmt is Format.csv:
        text = _csv(columns, rows)
    elif table:
        text = json.dumps(rows, indent=2) + "\n"
    else:
        text = json.dumps({"run": run.to_json(), "metrics": rows}, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        from core.atomic import atomic_write_bytes

        atomic_write_bytes(out, text.encode())
        print(f"wrote {out} ({what})", file=sys.stderr)
