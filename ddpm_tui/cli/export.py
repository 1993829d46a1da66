"""``ddpm export``: a run's metric rows as CSV or JSON, on stdout or written atomically to a file."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ddpm_tui.cli.common import DbOpt, RunArg, UserError, command


class Format(enum.StrEnum):
    csv = "csv"
    json = "json"


@command("export")
def export_cmd(
    run_ref: RunArg,
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="csv (metric rows) or json (the run and its metric rows).")
    ] = Format.json,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file [default: stdout]", show_default=False)
    ] = None,
    db: DbOpt = None,
) -> None:
    """Export a run's metrics as CSV or JSON."""
    import csv
    import io

    from core.store import open_store

    if out is not None and not out.parent.exists():
        raise UserError(f"folder {out.parent} does not exist; create it or choose another --out")
    with open_store(db) as store:
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
