"""``ddpm compare``: runs side by side (config differences, loss curves, final metrics,
samples), optionally ranked by a metric. The metrics are :func:`ddpm_tui.figures.final_metrics`,
the same the dashboard's compare screen shows."""

from __future__ import annotations

from typing import Annotated

import typer

from ddpm_tui.cli.common import ArtOpt, DbOpt, JsonOpt, UserError, command, make_console, print_json, samples_view
from ddpm_tui.figures import LOWER_IS_BETTER, final_metrics, metrics_table, ranked


@command("compare")
def compare_cmd(
    runs: Annotated[list[str], typer.Argument(help="Two or more run ids or names.")],
    rank: Annotated[
        str | None,
        typer.Option(
            "--rank",
            help="Order the runs by a metric's latest value, best first (e.g. fid, confident, loss).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    art: ArtOpt = None,
    db: DbOpt = None,
) -> None:
    """Compare runs: config differences, loss curves, final metrics, samples."""
    from core.store import open_store
    from ddpm_tui.format import config_differences

    if len(runs) < 2:
        raise UserError("compare needs at least two runs, e.g. ddpm compare 3 4")
    with open_store(db) as store:
        rs = [store.get_run(r) for r in runs]
        if len({r.id for r in rs}) < len(rs):
            raise UserError("the same run is named twice; name different runs")
        finals, protocol = final_metrics(store, rs)
        if rank is not None:
            if not any(isinstance(finals[r.id].get(rank), (int, float)) for r in rs):
                raise UserError(f"--rank {rank}: none of these runs has that metric (evaluate them with ddpm eval RUN)")
            rs = ranked(rs, finals, rank)
        missing = [r.id for r in rs if protocol is not None and "figures at step" not in finals[r.id]]
        diffs = config_differences([r.config for r in rs])
        curves = {f"{r.id} {r.name}": store.series(r.id, "loss") for r in rs}
        samples = {r.id: store.latest_samples(r.id) for r in rs}
    if json_out:
        doc = {"runs": [r.to_json() for r in rs], "config_differences": diffs, "metrics": {str(k): v for k, v in finals.items()},
               "protocol": protocol}  # fmt: skip
        if rank is not None:
            doc["ranking"] = {"metric": rank, "order": [r.id for r in rs], "protocol": protocol}
        print_json(doc)
        return
    from rich.table import Table
    from rich.text import Text

    from ddpm_tui.charts import loss_chart
    from ddpm_tui.format import value

    console = make_console()
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
    title = (
        f"final metrics, ranked by {rank} ({'lower' if rank in LOWER_IS_BETTER else 'higher'} is better)"
        if rank
        else "final metrics"
    )
    console.print(f"[bold]{title}[/]")  # not a table title, which would wrap to the table's width
    if protocol is not None:
        console.print(f"[dim]quality figures: {protocol}, the protocol most of these runs were judged under[/]", highlight=False)
    console.print(metrics_table(rs, finals))
    if missing:
        ids = " ".join(map(str, missing))
        console.print(
            f"[yellow]not judged under that protocol: {ids}[/] (ddpm eval RUN with the same --sampler, --steps and --n)"
        )
    for r in rs:
        s = samples[r.id]
        if s is None:
            continue
        console.print(f"[bold]{r.id} {r.name}[/] [dim]step {s.step:,}[/]")
        console.print(samples_view(console, s.data, art, max_rows=1))
