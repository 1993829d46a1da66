"""``ddpm eval``: judge a run's samples (FID, KID, confident share, class entropy, or the
S-curve's distances) beside the real-data floor, and store the figures at the checkpoint's step."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ddpm_tui.cli.common import DbOpt, Device, EtaOpt, JsonOpt, RunArg, Sampler, UserError, command, make_console, print_json
from ddpm_tui.figures import figures_table


@command("eval")
def eval_cmd(
    run_ref: RunArg,
    n: Annotated[int, typer.Option("--n", min=2, help="How many samples to judge.")] = 1000,
    sampler: Annotated[Sampler, typer.Option("--sampler", help="ddpm (all T steps) or ddim.")] = Sampler.ddim,
    steps: Annotated[int, typer.Option("--steps", min=1, help="DDIM steps.")] = 50,
    eta: EtaOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the samples (and KID's subsets).")] = 0,
    checkpoint: Annotated[
        int | None, typer.Option("--checkpoint", help="Step of the checkpoint to judge [default: the latest]", show_default=False)
    ] = None,
    device: Annotated[Device, typer.Option("--device", help="Where to sample.")] = Device.auto,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Judge a run's samples (FID, KID, confident share, class entropy, real-data floor); stored at the checkpoint's step."""
    from core.config import RunConfig
    from core.evaluate import JUDGED, check_memory
    from core.store import open_store

    with open_store(db, write=True) as store:
        run = store.get_run(run_ref)
        if run.dataset not in (*JUDGED, "scurve"):
            raise UserError(
                f"run {run.id} trains on {run.dataset!r}, which has no judge; evaluation covers {', '.join(JUDGED)} and scurve"
            )
        T = int(run.config["T"])
        if sampler is Sampler.ddim and steps > T:
            raise UserError(f"--steps {steps} is more than the run's T={T}")
        check_memory(n, RunConfig.from_dict(run.config).sample_shape)
        ck = store.checkpoint_at(run.id, checkpoint)
        db_path = store.path

    from core.evaluate import evaluate
    from core.train import generate, load_for_sampling, resolve_device, to_numpy

    dev = resolve_device(device.value)
    net, diffusion, cfg, step = load_for_sampling(ck.path, dev)
    used_steps = steps if sampler is Sampler.ddim else T
    eta = cfg.eta if eta is None else eta
    t0 = time.perf_counter()
    res = generate(net, diffusion, cfg, n, device=dev, sampler=sampler.value,
                   steps=steps if sampler is Sampler.ddim else None, eta=eta, seed=seed)  # fmt: skip
    ev = evaluate(to_numpy(res.x, cfg), cfg.dataset, device=dev, seed=seed)
    seconds = time.perf_counter() - t0
    with open_store(db_path, write=True) as store:
        store.add_eval(run.id, step, n=n, sampler=sampler.value, steps=used_steps, eta=eta, seed=seed,
                       figures=ev.figures, floor=ev.floor, seconds=seconds)  # fmt: skip
    if json_out:
        print_json({"run": run.id, "name": run.name, "step": step, "n": n, "sampler": sampler.value, "steps": used_steps,
                     "eta": eta, "seed": seed, "seconds": round(seconds, 2), "figures": ev.figures, "floor": ev.floor,
                     "class_counts": ev.class_counts})  # fmt: skip
        return
    console = make_console()
    console.print(
        f"run [bold]{run.id}[/] ({run.name}) at step {step:,}: {n:,} samples, {sampler.value}-{used_steps}, seed {seed}, "
        f"judged in {seconds:.1f}s",
        highlight=False,
    )
    console.print(figures_table(ev.figures, ev.floor, n))
