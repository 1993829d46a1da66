"""Training throughput of a preset in each weight layout and precision, on this machine.

    python bench/layout.py [--preset quick] [--seconds 15] [--device cpu]

For fp32 and, where the device has bf16 (CPU bf16 units, or CUDA with amp), bf16 autocast,
it builds the real Trainer, puts its network in channels-last and in contiguous (NCHW)
layout in turn, and times its optimiser steps for ``--seconds`` after three warm-up steps
(bench/speed.py's timing). It prints images/s for each and marks the layout
:func:`core.models.place_model` chooses for that precision, so a host where the other layout
is faster shows up here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.speed import images_per_second  # noqa: E402
from core import devices  # noqa: E402
from core.config import preset  # noqa: E402
from core.models import place_model  # noqa: E402
from core.train import Trainer, resolve_device  # noqa: E402

LAYOUTS = {"channels-last": torch.channels_last, "contiguous": torch.contiguous_format}


def chosen_layout(device: torch.device, autocast: torch.dtype | None) -> str:
    """The layout place_model gives a one-parameter network on this device and precision."""
    probe = place_model(torch.nn.Conv2d(2, 2, 3), device, autocast)
    return "channels-last" if probe.weight.is_contiguous(memory_format=torch.channels_last) else "contiguous"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seconds", type=float, default=15.0, help="how long to time each setting")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = resolve_device(args.device)
    precisions = [("fp32", {"amp": "false", "cpu_bf16": "false"})]
    if devices.autocast_dtype(device, True, cpu_bf16=True) is not None:
        precisions.append(("bf16", {"amp": "true", "cpu_bf16": "true"}))
    print(f"preset {args.preset}, device {device}, {args.seconds:g} s timed per row")
    print(f"{'precision':10} {'layout':14} {'images/s':>9}")
    for name, sets in precisions:
        cfg = preset(args.preset, {"steps": str(10**9), "sample_every": "0", "checkpoint_every": "0", **sets})
        chosen = chosen_layout(device, devices.autocast_dtype(device, cfg.amp, cpu_bf16=cfg.cpu_bf16))
        for layout, fmt in LAYOUTS.items():
            trainer = Trainer(cfg, device=str(device), on_event=lambda e: None)
            trainer.net.to(memory_format=fmt)
            rate = images_per_second(trainer, args.seconds)
            mark = "  <- place_model's choice" if layout == chosen else ""
            print(f"{name:10} {layout:14} {rate:9.0f}{mark}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
