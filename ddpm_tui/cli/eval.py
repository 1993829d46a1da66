"""``ddpm eval``: judge a run's samples (FID, KID, confident share, class entropy, or the
S-curve's distances) beside the real-data floor, and store the figures at the checkpoint's step."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ddpm_tui.cli.common import (
    DbOpt,
    DeviceOpt,
    EtaOpt,
    EtaWindowOpt,
    JsonOpt,
    RunArg,
    SamplerOpt,
    StepsOpt,
    UserError,
    command,
    make_console,
    print_json,
)
from ddpm_tui.figures import figure, figures_table


@command("eval")
def eval_cmd(
    run_ref: RunArg,
    n: Annotated[int, typer.Option("--n", min=2, help="How many samples to judge.")] = 1000,
    sampler: SamplerOpt = None,
    steps: StepsOpt = None,
    eta: EtaOpt = None,
    eta_window: EtaWindowOpt = None,
    guidance: Annotated[
        str | None,
        typer.Option(
            "--guidance",
            metavar="W[,W...]",
            help="A conditional run's guidance; several (0,1,2,4) judge each and print a table [default: the run's].",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed for the samples (and KID's subsets).")] = 0,
    checkpoint: Annotated[
        int | None, typer.Option("--checkpoint", help="Step of the checkpoint to judge [default: the latest]", show_default=False)
    ] = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Judge a run's samples (FID, KID, confident share, class entropy, real-data floor); stored at the checkpoint's step.

    Samples are drawn the run's own way (its sampler, steps, eta, eta window and guidance, as --eval-every
    does) unless the options say otherwise; the figures are stored with that protocol, and only
    figures of one protocol are ever compared. A class-conditional run's samples are balanced
    over its classes, and its figures add class accuracy: the share the judge reads, confidently,
    as the class asked for.
    """
    from core.config import RunConfig
    from core.evaluate import EVALUATED, check_memory
    from core.sampling_spec import Protocol, resolve_spec, sample_labels
    from core.store import open_store

    scales = _scales(guidance)
    with open_store(db, write=True) as store:
        run = store.get_run(run_ref)
        if run.dataset not in EVALUATED:
            raise UserError(
                f"run {run.id} trains on {run.dataset!r}, which has no judge; evaluation covers {', '.join(EVALUATED)}"
            )
        specs = [resolve_spec(run.config, sampler.value if sampler else None, steps, eta, w, eta_window) for w in scales]
        check_memory(n, RunConfig.from_dict(run.config).sample_shape)
        ck = store.checkpoint_at(run.id, checkpoint)
        db_path = store.path
    labels = sample_labels(run.config, n, None)

    from core.evaluate import evaluate
    from core.generate import draw

    docs, results = [], []
    for spec in specs:
        t0 = time.perf_counter()
        drawn = draw(ck.path, n, spec, seed=seed, device=device)
        ev = evaluate(drawn.data, drawn.cfg.dataset, device=drawn.device, seed=seed, labels=labels, config=drawn.cfg)
        seconds = time.perf_counter() - t0
        protocol = Protocol(spec, n, seed)
        with open_store(db_path, write=True) as store:
            store.add_eval(
                run.id, drawn.step, protocol=protocol, figures=ev.figures, floor=ev.floor, seconds=seconds, detail=ev.detail
            )
        results.append((spec, drawn, ev, seconds))
        docs.append({"run": run.id, "name": run.name, "step": drawn.step, "n": n, "sampler": spec.sampler, "steps": spec.steps,
                     "eta": spec.eta, "eta_window": spec.eta_window, "guidance": spec.guidance, "seed": seed, "protocol": protocol.key, "device": drawn.device,
                     "seconds": round(seconds, 2), "figures": ev.figures, "floor": ev.floor, "class_counts": ev.class_counts,
                     "detail": ev.detail})  # fmt: skip
    if json_out:
        print_json(docs[0] if len(docs) == 1 else docs)
        return
    console = make_console()
    if len(results) == 1:
        spec, drawn, ev, seconds = results[0]
        console.print(
            f"run [bold]{run.id}[/] ({run.name}) at step {drawn.step:,}: {n:,} samples, {spec.label}, seed {seed}, "
            f"on {drawn.device}, judged in {seconds:.1f}s",
            highlight=False,
        )
        console.print(figures_table(ev.figures, ev.floor, n))
        if ev.detail.get("class_accuracy"):
            per = "  ".join(f"{k}: {v:.0%}" for k, v in ev.detail["class_accuracy"].items())
            console.print(f"[bold]class accuracy[/] by class  {per}", highlight=False)
        return
    console.print(guidance_table(run, results, n), highlight=False)


def _scales(text: str | None) -> list[float | None]:
    """``--guidance 0,1,2,4`` as numbers (the range is the run's to check); none: the run's own."""
    if text is None:
        return [None]
    out = []
    for part in text.split(","):
        try:
            out.append(float(part))
        except ValueError:
            raise UserError(f"--guidance {text!r}: expected numbers separated by commas, e.g. 0,1,2,4") from None
    return out


def guidance_table(run, results, n: int):
    """One row per guidance scale: class accuracy (worst class), FID, class entropy, confident."""
    from rich.table import Table

    t = Table(title=f"run {run.id} ({run.name}): {n:,} samples balanced over the classes per scale", title_justify="left",
              box=None, header_style="bold", pad_edge=False)  # fmt: skip
    for col in ("guidance", "class accuracy", "worst class", "FID", "class entropy", "confident", "protocol"):
        t.add_column(col, justify="left" if col == "protocol" else "right")
    for spec, _, ev, _ in results:
        f = ev.figures
        t.add_row(f"{spec.guidance:g}", figure("confident", f.get("class_accuracy")), figure("confident", f.get("class_accuracy_min")),
                  figure("fid", f.get("fid")), figure("class_entropy", f.get("class_entropy")), figure("confident", f.get("confident")),
                  spec.label)  # fmt: skip
    return t
