"""``ddpm compare``: runs side by side (config differences, loss curves, final metrics,
samples), optionally ranked by a metric. The metrics are :func:`ddpm_tui.figures.final_metrics`,
the same the dashboard's compare screen shows; the grids come from one common training step
(:mod:`ddpm_tui.compare_samples`), or with ``--same-noise`` are drawn afresh from each run's
checkpoint at that step with one seed and sampler. Torch is imported only for ``--same-noise``."""

from __future__ import annotations

from typing import Annotated

import typer

from ddpm_tui.cli.common import (
    ArtOpt,
    DbOpt,
    DeviceOpt,
    JsonOpt,
    SamplerOpt,
    SeedOpt,
    StepsOpt,
    UserError,
    command,
    make_console,
    print_json,
    samples_view,
)
from ddpm_tui.figures import LOWER_IS_BETTER, final_metrics, metrics_table, ranked


@command("compare")
def compare_cmd(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Argument(help="Two or more run ids or names.")],
    rank: Annotated[
        str | None,
        typer.Option(
            "--rank",
            help="Order the runs by a metric's latest value, best first (e.g. fid, confident, loss).",
            show_default=False,
        ),
    ] = None,
    step: Annotated[
        int | None,
        typer.Option(
            "--step",
            min=0,
            help="Show every run's samples from this training step [default: the latest step all runs have samples at]",
            show_default=False,
        ),
    ] = None,
    same_noise: Annotated[
        bool,
        typer.Option(
            "--same-noise",
            help="Draw fresh grids from each run's checkpoint at the step (default: the latest all runs have) "
            "with one seed and sampler, so the same noise becomes each run's digit.",
        ),
    ] = False,
    seed: SeedOpt = 0,
    sampler: SamplerOpt = None,
    steps: StepsOpt = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    art: ArtOpt = None,
    db: DbOpt = None,
) -> None:
    """Compare runs: config differences, loss curves, final metrics, samples from one step."""
    from core.store import open_store
    from ddpm_tui.compare_samples import same_noise_plan, stored_grids
    from ddpm_tui.format import config_differences

    if len(runs) < 2:
        raise UserError("compare needs at least two runs, e.g. ddpm compare 3 4")
    if not same_noise:
        given = [f"--{p}" for p in ("seed", "sampler", "steps", "device") if _given(ctx, p)]
        if given:
            raise UserError(f"{', '.join(given)}: only for fresh grids; add --same-noise (the stored grids are drawn already)")
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
        plan = (
            same_noise_plan(store, rs, step, sampler=sampler.value if sampler else None, steps=steps, seed=seed)
            if same_noise
            else None
        )
        view = stored_grids(store, rs, step) if plan is None else None
    if json_out:
        doc = {"runs": [r.to_json() for r in rs], "config_differences": diffs, "metrics": {str(k): v for k, v in finals.items()},
               "protocol": protocol}  # fmt: skip
        if rank is not None:
            doc["ranking"] = {"metric": rank, "order": [r.id for r in rs], "protocol": protocol}
        if plan is not None:  # the plan only: the document holds no pixels, so nothing is drawn for it
            doc.update(step=plan.step, same_noise=True, shared_steps=plan.shared, sampling=plan.as_dict())
        else:
            assert view is not None
            doc.update(step=view.step, same_noise=False, shared_steps=view.shared,
                       sample_steps={str(k): g.step if g else None for k, g in view.grids.items()})  # fmt: skip
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
    if plan is not None:
        from ddpm_tui.compare_samples import draw_same_noise

        grids = draw_same_noise(plan, device)
        console.print(
            f"[bold]same noise at step {plan.step:,}[/]: {plan.spec.label}, seed {plan.seed}, {plan.n} from each checkpoint",
            highlight=False,
        )
        for r in rs:
            console.print(f"[bold]{r.id} {r.name}[/] [dim]step {plan.step:,}[/]")
            console.print(samples_view(console, grids[r.id], art, max_rows=1))
        return
    assert view is not None
    if view.step is not None:
        console.print(f"[bold]samples at step {view.step:,}[/] [dim](all these runs have samples at {_steps(view.shared)})[/]")
    elif view.note:
        console.print(f"[yellow]{view.note}[/]", highlight=False)
    for r in rs:
        s = view.grids[r.id]
        if s is None:
            continue
        console.print(f"[bold]{r.id} {r.name}[/] [dim]step {s.step:,}, {s.label}[/]", highlight=False)
        console.print(samples_view(console, s.data, art, max_rows=1))


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the command line set option ``name`` (Typer ships its own click, so the
    source is read by name)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _steps(steps: list[int]) -> str:
    from ddpm_tui.compare_samples import steps_text

    return "step " + steps_text(steps) if len(steps) == 1 else "steps " + steps_text(steps)
