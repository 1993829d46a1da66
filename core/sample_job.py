"""Draw samples from a checkpoint in a process of its own and leave them in an ``.npz`` file.

    python -m core.sample_job --checkpoint PATH --n N --sampler S --steps K --eta E
        [--guidance W] [--class C ...] --seed X --device D --frames F --threads T --out FILE
        [--parent PID]

The dashboard never imports torch: torch costs its process about 1 GB of memory and seconds
to import, and a sampling thread holding the GIL makes the interface stutter. Its sample and
explore screens run this module instead (:mod:`ddpm_tui.sample_client`), wait for it, and
kill it when the user leaves. The drawing itself is :func:`core.generate.draw`, as for
``ddpm sample``.

The file holds ``data`` (the samples as the store keeps them), ``frames`` (the trajectory's
frames stacked, oldest first; empty for ``--frames 0``), ``timesteps``, ``step`` (the
checkpoint's), ``label`` (the spec's), ``labels`` (each sample's class for a conditional run,
in order, so a grid can show one class a row; empty for an unconditional one), ``start`` (x_T,
the noise the trajectory starts from; empty for ``--frames 0``), ``device`` and ``seconds``
(the sampling, without loading). It is written atomically, so a reader never sees
half of it.

``--guidance`` and ``--class`` (repeatable) are for a class-conditional run; left out, it draws
every class in turn at the run's own guidance, so a caller that never passes them (an older
dashboard) still gets a valid grid. An unconditional run refuses both in one line.

A problem the user can fix (a missing or damaged checkpoint, a spec the run cannot honour, a
device this host lacks) is one line ``error: ...`` on stderr and exit status 1; on success
nothing is written to stderr. With ``--parent`` the job ends itself when that process (its
parent, the dashboard) dies, so a dashboard that crashes leaves no sampler behind.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from core.atomic import atomic_write_bytes
from core.choices import SAMPLERS
from core.errors import DDPMError


def _end_with_parent(parent: int, every: float = 0.5) -> None:
    """Exit soon after ``parent`` goes: this process is then re-parented. (The pid is given,
    not read at start, in case the parent died before this process got that far.)"""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run(args: argparse.Namespace) -> None:
    import torch

    from core.generate import draw
    from core.sampling_spec import SamplingSpec

    torch.set_num_threads(max(1, min(torch.get_num_threads(), args.threads)))  # OMP_NUM_THREADS still caps it
    # draw checks the spec against the checkpoint's run
    spec = SamplingSpec(args.sampler, args.steps, args.eta, args.guidance, args.eta_window)
    drawn = draw(
        args.checkpoint, args.n, spec, seed=args.seed, device=args.device, trajectory_frames=args.frames, classes=args.classes
    )
    buf = io.BytesIO()
    np.savez(
        buf, data=drawn.data, frames=np.stack(drawn.frames) if drawn.frames else np.zeros((0,), np.uint8),
        timesteps=np.asarray(drawn.timesteps, dtype=np.int64), step=drawn.step, label=drawn.spec.label,
        labels=np.asarray(drawn.labels or [], dtype=np.int64), device=drawn.device, seconds=drawn.seconds,
        start=drawn.start if drawn.start is not None else np.zeros((0,), np.uint8),
    )  # fmt: skip
    atomic_write_bytes(args.out, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m core.sample_job", description="Draw samples from a checkpoint into an .npz file."
    )
    ap.add_argument("--checkpoint", required=True, type=Path, help="the checkpoint file")
    ap.add_argument("--n", required=True, type=int, help="how many samples")
    ap.add_argument("--sampler", required=True, help=" or ".join(SAMPLERS))
    ap.add_argument("--steps", required=True, type=int, help="network calls (T for ddpm)")
    ap.add_argument("--eta", required=True, type=float, help="ddim's or dpmpp2m's noise (1 for ddpm)")
    ap.add_argument("--eta-window", type=float, default=1.0, help="an eta above 1 applies where t < this * T [default: 1]")
    ap.add_argument("--guidance", type=float, default=None, help="a conditional run's guidance [default: the run's]")
    ap.add_argument(
        "--class", dest="classes", type=int, action="append", default=None, help="a class to draw, repeatable [default: all]"
    )
    ap.add_argument("--seed", type=int, default=0, help="the same seed draws the same samples")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    ap.add_argument("--frames", type=int, default=0, help="frames of the denoising trajectory to keep")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="at most this many CPU threads")
    ap.add_argument("--out", required=True, type=Path, help="the .npz file to write")
    ap.add_argument("--parent", type=int, default=None, help="end when this process (the parent) is gone")
    args = ap.parse_args(argv)
    if args.n < 1 or args.frames < 0:
        ap.error("--n must be at least 1 and --frames at least 0")
    if args.parent is not None:
        _end_with_parent(args.parent)
    try:
        run(args)
    except DDPMError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
