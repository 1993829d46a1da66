"""``ddpm sample``: draw samples from a run's checkpoint with its EMA weights, show them as
terminal art (or animate the denoising), and write them as ``.png`` or ``.npy``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ddpm_tui.cli.common import (
    Art,
    ArtOpt,
    DbOpt,
    Device,
    EtaOpt,
    RunArg,
    Sampler,
    UserError,
    command,
    make_console,
    samples_view,
)

if TYPE_CHECKING:
    from rich.console import Console


@command("sample")
def sample_cmd(
    run_ref: RunArg,
    n: Annotated[int, typer.Option("--n", min=1, max=10_000, help="How many samples.")] = 64,
    sampler: Annotated[
        Sampler | None, typer.Option("--sampler", help="ddpm (all T steps) or ddim [default: the run's]", show_default=False)
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="DDIM steps [default: the run's]", show_default=False)
    ] = None,
    eta: EtaOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed draws the same samples.")] = 0,
    checkpoint: Annotated[
        int | None, typer.Option("--checkpoint", help="Step of the checkpoint to use [default: the latest]", show_default=False)
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write FILE.png (a grid) or FILE.npy (uint8 images, or float32 points)", show_default=False
        ),
    ] = None,
    trajectory: Annotated[bool, typer.Option("--trajectory", help="Animate the denoising in place.")] = False,
    device: Annotated[Device, typer.Option("--device", help="Where to sample.")] = Device.auto,
    art: ArtOpt = None,
    db: DbOpt = None,
) -> None:
    """Draw samples from a run with its EMA weights."""
    from core.store import open_store
    from ddpm_tui.sample_files import write_samples

    if out is not None:
        if out.suffix.lower() not in (".png", ".npy"):
            raise UserError(f"--out {out}: the file must end in .png or .npy")
        if not out.parent.exists():
            raise UserError(f"--out {out}: folder {out.parent} does not exist; create it or choose another path")
    with open_store(db) as store:
        run = store.get_run(run_ref)
        ck = store.checkpoint_at(run.id, checkpoint)
    cfg_sampler = sampler.value if sampler else run.config.get("sampler", "ddim")
    T = int(run.config["T"])
    if cfg_sampler == "ddpm" and steps not in (None, T):
        raise UserError(f"--sampler ddpm always takes T={T} steps; use --sampler ddim for --steps {steps}")
    if steps is not None and steps > T:
        raise UserError(f"--steps {steps} is more than the run's T={T}")

    from core.train import generate, load_for_sampling, resolve_device, to_numpy

    console = make_console()
    dev = resolve_device(device.value)
    net, diffusion, cfg, step = load_for_sampling(ck.path, dev)
    use_steps = (steps or cfg.sample_steps) if cfg_sampler == "ddim" else None
    frames = 24 if trajectory else 0
    t0 = time.perf_counter()
    res = generate(net, diffusion, cfg, n, device=dev, sampler=cfg_sampler, steps=use_steps,
                   eta=eta, seed=seed, trajectory_frames=frames)  # fmt: skip
    seconds = time.perf_counter() - t0
    data = to_numpy(res.x, cfg)
    if trajectory and console.is_terminal:
        _animate(console, res, cfg, art)
    else:
        console.print(samples_view(console, data, art))
    label = f"{cfg_sampler}-{use_steps or T}"
    console.print(
        f"{n} samples from run {run.id} ({run.name}) at step {step:,}, {label}, seed {seed}, in {seconds:.1f}s", highlight=False
    )
    if out is not None:
        write_samples(out, data)
        console.print(f"wrote {out}", highlight=False)


def _animate(console: Console, res, cfg, art: Art | None) -> None:
    """The denoising, frame by frame, drawn in place (x_t from noise to the final samples)."""
    from rich.console import Group as RichGroup
    from rich.live import Live
    from rich.text import Text

    from core.train import to_numpy

    with Live(console=console, refresh_per_second=12, transient=False) as live:
        for t, xt in zip(res.timesteps, res.xt):
            frame = to_numpy(xt.clamp(-1, 1) if cfg.is_image else xt, cfg)
            live.update(RichGroup(samples_view(console, frame, art), Text(f"t = {t}", style="dim")))
            time.sleep(0.08)
