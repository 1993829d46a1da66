"""``ddpm sample``: draw samples from a run's checkpoint with its EMA weights, show them as
terminal art (or animate the denoising, or for a 2-D run print it as ten scatter panels,
:mod:`ddpm_tui.reverse_panels`), and write them as ``.png`` or ``.npy``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ddpm_tui.cli.common import (
    Art,
    ArtOpt,
    ClassOpt,
    DbOpt,
    DeviceOpt,
    EtaOpt,
    EtaWindowOpt,
    GuidanceOpt,
    RunArg,
    SamplerOpt,
    SeedOpt,
    StepsOpt,
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
    n: Annotated[
        int | None,
        typer.Option(
            "--n", min=1, max=10_000, help="How many samples [default: 64; 40 for a conditional run].", show_default=False
        ),
    ] = None,
    sampler: SamplerOpt = None,
    steps: StepsOpt = None,
    eta: EtaOpt = None,
    eta_window: EtaWindowOpt = None,
    classes: ClassOpt = None,
    guidance: GuidanceOpt = None,
    seed: SeedOpt = 0,
    checkpoint: Annotated[
        int | None, typer.Option("--checkpoint", help="Step of the checkpoint to use [default: the latest]", show_default=False)
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write FILE.png (a grid) or FILE.npy (uint8 images, float32 points, float32 (N, C, L) sequences in the data's units)",
            show_default=False,
        ),
    ] = None,
    trajectory: Annotated[
        bool,
        typer.Option(
            "--trajectory",
            help="Animate the denoising in place; a 2-D run's shows as ten scatter panels x_T ... x_0 when output is not a terminal.",
        ),
    ] = False,
    panels: Annotated[
        bool, typer.Option("--panels", help="A 2-D run's reverse process as ten scatter panels x_T ... x_0, not animated.")
    ] = False,
    device: DeviceOpt = "auto",
    art: ArtOpt = None,
    db: DbOpt = None,
) -> None:
    """Draw samples from a run with its EMA weights."""
    from core.sampling_spec import classes_text, parse_classes, per_row, resolve_spec, sample_labels
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
    spec = resolve_spec(run.config, sampler.value if sampler else None, steps, eta, guidance, eta_window)
    wanted = parse_classes(classes)
    conditional = run.config.get("cond") == "class"
    n = n or (len(wanted or range(int(run.config.get("num_classes", 10)))) * 4 if conditional else 64)
    labels = sample_labels(run.config, n, wanted)  # refused here, in one line, before torch loads
    points = run.config.get("dataset") == "scurve"
    if panels and not points:
        raise UserError(f"--panels: run {run.id} draws images; the panels are for 2-D (scurve) runs, use --trajectory to animate")

    from core.generate import draw
    from ddpm_tui.reverse_panels import frames_for

    console = make_console()
    panels = panels or (trajectory and points and not console.is_terminal)
    frames = frames_for(spec.steps) if panels else 24 if trajectory else 0
    drawn = draw(ck.path, n, spec, seed=seed, device=device, trajectory_frames=frames, classes=wanted)
    rows = per_row(labels)
    if panels:
        _print_panels(console, drawn)
    elif trajectory and console.is_terminal:
        _animate(console, drawn, art, rows)
    else:
        console.print(samples_view(console, drawn.data, art, per_row=rows))
    what = f", classes {classes_text(wanted)} one a row" if conditional and rows else ""
    console.print(
        f"{n} samples from run {run.id} ({run.name}) at step {drawn.step:,}, {spec.label}{what}, seed {seed}, "
        f"on {drawn.device}, in {drawn.seconds:.1f}s",
        highlight=False,
    )
    if out is not None:
        write_samples(out, drawn.data, per_row=rows)
        console.print(f"wrote {out}", highlight=False)


def _print_panels(console: Console, drawn) -> None:
    """The reverse process of a 2-D draw as ten scatter panels, x_T first."""
    from ddpm_tui.reverse_panels import panels_text, reverse_panels

    found = reverse_panels(drawn.start, drawn.frames, drawn.timesteps, drawn.cfg.T)
    console.print(panels_text(found, width=console.width, color=console.color_system is not None))


def _animate(console: Console, drawn, art: Art | None, rows: int | None = None) -> None:
    """The denoising, frame by frame, drawn in place (x_t from noise to the final samples)."""
    from rich.console import Group as RichGroup
    from rich.live import Live
    from rich.text import Text

    with Live(console=console, refresh_per_second=12, transient=False) as live:
        for t, frame in zip(drawn.timesteps, drawn.frames):
            live.update(RichGroup(samples_view(console, frame, art, per_row=rows), Text(f"t = {t}", style="dim")))
            time.sleep(0.08)
