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
    JsonOpt,
    RunArg,
    SamplerOpt,
    StepsOpt,
    UserError,
    command,
    make_console,
    print_json,
)
from ddpm_tui.figures import figures_table


@command("eval")
def eval_cmd(
    run_ref: RunArg,
    n: Annotated[int, typer.Option("--n", min=2, help="How many samples to judge.")] = 1000,
    sampler: SamplerOpt = None,
    steps: StepsOpt = None,
    eta: EtaOpt = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed for the samples (and KID's subsets).")] = 0,
    checkpoint: Annotated[
        int | None, typer.Option("--checkpoint", help="Step of the checkpoint to judge [default: the latest]", show_default=False)
    ] = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Judge a run's samples (FID, KID, confident share, class entropy, real-data floor); stored at the checkpoint's step.

    Samples are drawn the run's own way (its sampler, steps and eta, as --eval-every does)
    unless --sampler, --steps or --eta say otherwise; the figures are stored with that
    protocol, and only figures of one protocol are ever compared.
    """
    from core.config import RunConfig
    from core.evaluate import JUDGED, check_memory
    from core.sampling_spec import Protocol, resolve_spec
    from core.store import open_store

    with open_store(db, write=True) as store:
        run = store.get_run(run_ref)
        if run.dataset not in (*JUDGED, "scurve"):
            raise UserError(
                f"run {run.id} trains on {run.dataset!r}, which has no judge; evaluation covers {', '.join(JUDGED)} and scurve"
            )
        spec = resolve_spec(run.config, sampler.value if sampler else None, steps, eta)
        check_memory(n, RunConfig.from_dict(run.config).sample_shape)
        ck = store.checkpoint_at(run.id, checkpoint)
        db_path = store.path

    from core.evaluate import evaluate
    from core.generate import draw

    t0 = time.perf_counter()
    drawn = draw(ck.path, n, spec, seed=seed, device=device)
    ev = evaluate(drawn.data, drawn.cfg.dataset, device=drawn.device, seed=seed)
    seconds = time.perf_counter() - t0
    protocol = Protocol(spec, n, seed)
    with open_store(db_path, write=True) as store:
        store.add_eval(run.id, drawn.step, protocol=protocol, figures=ev.figures, floor=ev.floor, seconds=seconds)
    if json_out:
        print_json({"run": run.id, "name": run.name, "step": drawn.step, "n": n, "sampler": spec.sampler, "steps": spec.steps,
                    "eta": spec.eta, "seed": seed, "protocol": protocol.key, "device": drawn.device, "seconds": round(seconds, 2),
                    "figures": ev.figures, "floor": ev.floor, "class_counts": ev.class_counts})  # fmt: skip
        return
    console = make_console()
    console.print(
        f"run [bold]{run.id}[/] ({run.name}) at step {drawn.step:,}: {n:,} samples, {spec.label}, seed {seed}, "
        f"on {drawn.device}, judged in {seconds:.1f}s",
        highlight=False,
    )
    console.print(figures_table(ev.figures, ev.floor, n))
