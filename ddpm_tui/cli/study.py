"""``ddpm study``: which setting wins. The studies (``ddpm sweep --name``) with their progress and
best setting, or one study's settings ranked by a figure (mean ± std over seeds, under one
sampling protocol), charts of that figure against each swept key, and the best and worst
settings' digits side by side. The numbers are :mod:`core.study`'s, the cells
:mod:`ddpm_tui.study_view`'s, the same the dashboard's Study screen shows. Reads only: no torch."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ddpm_tui.cli.common import ArtOpt, DbOpt, JsonOpt, UserError, command, make_console, print_json, samples_view

if TYPE_CHECKING:
    from rich.console import Console

    from core.study import Study


@command("study")
def study_cmd(
    name: Annotated[
        str | None, typer.Argument(help="A study's name (ddpm sweep --name); none lists the studies.", show_default=False)
    ] = None,
    rank: Annotated[
        str | None,
        typer.Option(
            "--rank",
            help="Rank the settings by this figure (fid, kid, confident, class_entropy, class_accuracy, loss, images_per_s ...) "
            "[default: fid, else the first figure the study has]",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print the settings as CSV on stdout (one row each).")] = False,
    art: ArtOpt = None,
    db: DbOpt = None,
) -> None:
    """Studies and their settings ranked: which setting wins."""
    from core.store import default_db_path, open_store
    from core.study import extreme_samples, list_studies, load_study

    if json_out and csv_out:
        raise UserError("--json and --csv both print the rows; choose one")
    path = Path(db) if db is not None else default_db_path()
    if name is None and not path.exists():
        if json_out:
            print_json([])
        elif not csv_out:
            make_console().print(f"no studies yet ({path} does not exist); record one with: ddpm sweep --name NAME")
        return
    with open_store(db) as store:
        if name is None:
            studies = list_studies(store, rank)
            _print_list(studies, json_out, csv_out)
            return
        study = load_study(store, name, rank)
        extremes = extreme_samples(store, study) if not (json_out or csv_out) else []
    if json_out:
        print_json(study.to_json())
    elif csv_out:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(study.csv_header())
        writer.writerows(study.csv_rows())
    else:
        _print_study(study, extremes, art)


def _print_list(studies: list[Study], json_out: bool, csv_out: bool) -> None:
    from ddpm_tui.study_view import expected, stat_cell, status_cell

    if json_out:
        print_json([s.summary_json() for s in studies])
        return
    if csv_out:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["study", "runs", "settings", "swept", "rank", "best", "best_mean", "best_std", "best_n", "protocol"])
        for s in studies:
            b = s.best
            st = b.figure(s.rank) if b is not None and s.rank else None
            writer.writerow([s.name, len(s.runs), len(s.settings), " ".join(s.swept), s.rank or "", b.label if b else "",
                             *(["", "", ""] if st is None else [st.mean, "" if st.std is None else st.std, st.n]),
                             s.protocol or ""])  # fmt: skip
        return
    console = make_console()
    if not studies:
        console.print("no studies yet; record one with: ddpm sweep --name NAME --set KEY=V1,V2 --seeds N")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("study", "runs", "status", "swept", "best setting", "best"):
        table.add_column(col, justify="right" if col in ("runs", "best") else "left")
    for s in studies:
        b = s.best
        best = f"{s.rank} {stat_cell(s.rank, b.figure(s.rank), expected(b, s.rank))}" if b is not None and s.rank else "-"
        table.add_row(s.name, str(len(s.runs)), status_cell(s.status), ", ".join(s.swept) or "-", b.label if b else "-", best)
    console.print(table)
    console.print("[dim]ddpm study NAME shows one study's settings ranked; --rank FIGURE ranks by another figure[/]")


def _print_study(study: Study, extremes: list, art) -> None:
    from rich.text import Text

    from core.study import chart_data
    from ddpm_tui.charts import study_chart
    from ddpm_tui.format import fitted_table
    from ddpm_tui.study_view import caption, columns, drawn_keys, heading, rows

    console = make_console()
    console.print(f"[bold]study {study.name}[/]", highlight=False)
    for line in caption(study):
        console.print("  " + line, highlight=False)
    heads = columns(study)
    numbers = set(heads[:2]) | {"runs", "steps"} | set(heads[len(study.swept) + 5 :])
    cells = [c for _, c in rows(study)]
    # A narrow terminal loses the other figures first, then the run and seed lists; never the
    # settings or the ranked figure.
    others = [h for h in reversed(heads[len(study.swept) + 5 :]) if h != heading(study.rank)]
    table = fitted_table([(h, "right" if h in numbers else "left") for h in heads], cells, console.width,
                         drop=[*others, "seeds", "runs"], keep=[*heads[: 2 + len(study.swept)], heading(study.rank)])  # fmt: skip
    console.print(table)
    for key in drawn_keys(study):
        data = chart_data(study, key)
        if data is not None:
            chart = study_chart(data, width=min(console.width, 100), height=16, color=console.color_system is not None)
            console.print(Text.from_ansi(chart))
    _print_extremes(console, study, extremes, art)


def _print_extremes(console: Console, study: Study, extremes: list, art) -> None:
    """The best and worst settings' latest digits, side by side."""
    from rich.table import Table
    from rich.text import Text

    from ddpm_tui.study_view import extreme_title

    if not extremes:
        return
    half = max(20, console.width // len(extremes) - 2)
    table = Table.grid(padding=(0, 2))
    for _ in extremes:
        table.add_column(width=half)
    titles = [Text.from_markup(extreme_title(which, s, study, grid)) for which, s, grid in extremes]
    arts = [
        samples_view(console, grid.data, art, max_rows=2, per_row=grid.per_row, width=half) if grid is not None else Text("")
        for _, _, grid in extremes
    ]
    table.add_row(*titles)
    table.add_row(*arts)
    console.print(table)
