"""``ddpm show``: everything about one run on one screen (progress, config against its preset,
loss curve, quality figures, latest samples, checkpoints, notes), or as one JSON document."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ddpm_tui.cli.common import ArtOpt, DbOpt, JsonOpt, RunArg, command, make_console, print_json, run_doc, samples_view
from ddpm_tui.figures import figures_table

if TYPE_CHECKING:
    from rich.console import Console

    from core.store import Run, Store


@command("show")
def show_cmd(run_ref: RunArg, json_out: JsonOpt = False, art: ArtOpt = None, db: DbOpt = None) -> None:
    """Everything about one run: progress, config, loss curve, latest samples, checkpoints."""
    from core.store import open_store

    with open_store(db) as store:
        run = store.get_run(run_ref)
        if json_out:
            doc = run_doc(store, run)
            doc["checkpoints"] = [
                {"step": c.step, "path": c.path, "bytes": c.bytes, "sha256": c.sha256} for c in store.checkpoints(run.id)
            ]
            latest = store.latest_samples(run.id)
            doc["eval"] = store.latest_eval(run.id)
            doc["samples"] = (
                None
                if latest is None
                else {"step": latest.step, "n": int(latest.data.shape[0]), "sampler": latest.sampler, "steps": latest.steps}
            )
            print_json(doc)
            return
        console = make_console()
        _show_header(console, store, run)
        _show_config(console, run)
        steps, losses = store.series(run.id, "loss")
        if losses:
            from rich.text import Text

            from ddpm_tui.charts import loss_chart

            chart = loss_chart({run.name: (steps, losses)}, width=min(console.width, 100), height=14,
                               color=console.color_system is not None, title="loss (log scale)")  # fmt: skip
            console.print(Text.from_ansi(chart))
        ev = store.latest_eval(run.id)
        if ev is not None:
            console.print(f"[bold]quality[/] at step {ev['step']:,}: {ev['protocol']}, seed {ev['seed']}", highlight=False)
            console.print(figures_table(ev["figures"], ev["floor"], ev["n"]))
        latest = store.latest_samples(run.id)
        if latest is not None:
            what = f"samples at step {latest.step:,} ({latest.label}, EMA weights)"
            console.print(f"[bold]{what}[/]")
            console.print(samples_view(console, latest.data, art, per_row=latest.per_row))
        ckpts = store.checkpoints(run.id)
        if ckpts:
            console.print("[bold]checkpoints[/]  " + "  ".join(f"{c.step:,} ({c.bytes / 1e6:.1f} MB)" for c in ckpts))
        if run.notes:
            console.print(f"[bold]notes[/]  {run.notes}")


def _show_header(console: Console, store: Store, run: Run) -> None:
    from core import sysinfo
    from ddpm_tui.format import STATUS_STYLE, duration, progress, run_facts

    st = STATUS_STYLE.get(run.status, "")
    console.print(f"[bold]run {run.id}[/]  {run.name}  [{st}]{run.status}[/]  {run.preset} preset", highlight=False)
    rows = [
        (
            "progress",
            progress(run.step, run.total_steps) + (f", ETA {duration(run.seconds_left)}" if run.seconds_left is not None else ""),
        ),
        *run_facts(run, system=store.latest_values(run.id, sysinfo.NAMES)),
    ]
    if run.error:
        rows.append(("error", f"[red]{run.error}[/]"))
    if run.status == "crashed":
        rows.append(("hint", f"the worker is gone; continue with: ddpm resume {run.id}"))
    for k, v in rows:
        console.print(f"  [dim]{k:<11}[/]{v}", highlight=False)


def _show_config(console: Console, run: Run) -> None:
    from core.config import PRESETS, RunConfig
    from ddpm_tui.format import KEY_FIELDS, preset_differences, value

    base = RunConfig(**PRESETS.get(run.preset, {})).to_dict() if run.preset in PRESETS else {}
    changed = preset_differences(run.config, base)
    keys = list(KEY_FIELDS) + [k for k in changed if k not in KEY_FIELDS]
    parts = []
    for k in keys:
        if k in run.config:
            mark = "[yellow]*[/]" if k in changed else ""
            parts.append(f"{k}={value(run.config[k])}{mark}")
    console.print("  [dim]config     [/]" + "  ".join(parts), highlight=False)
    if changed:
        console.print("  [dim]           * changed from the preset[/]")
