"""What the EMA of the weights costs a training step, on this machine.

    python bench/ema_cost.py [--preset quick] [--rounds 5] [--steps 20] [--device auto]

Trains the preset with the Trainer and, alternating in rounds so that background load falls on
both alike, times (1) whole training steps with the on-device EMA (core/ema.py: one foreach
lerp, a Python float weight, the count on the host) and (2) whole training steps with
torch.optim.swa_utils.AveragedModel doing the same average (what the Trainer used before,
which copies its count to the device each step). Prints images/s for each and the EMA update
alone in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.optim.swa_utils import AveragedModel

from core.config import preset
from core.train import Trainer, ema_decay_at, resolve_device


class AveragedEMA:
    """AveragedModel behind the EMA interface the Trainer calls."""

    def __init__(self, model: torch.nn.Module):
        self.decay = 0.0
        self.inner = AveragedModel(model, multi_avg_fn=lambda e, p, n: torch._foreach_lerp_(e, p, 1.0 - self.decay))

    def update(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.inner.update_parameters(model)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(tr: Trainer, steps: int) -> float:
    sync(tr.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    sync(tr.device)
    return (time.perf_counter() - t0) / steps


def time_updates(ema, model: torch.nn.Module, device: torch.device, n: int = 200) -> float:
    sync(device)
    t0 = time.perf_counter()
    for i in range(n):
        ema.update(model, ema_decay_at(i, 0.995))
    sync(device)
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="training steps per round and variant")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    cfg = preset(args.preset, {"steps": 10**9, "sample_every": 0, "checkpoint_every": 0})
    tr = Trainer(cfg, device=dev)
    ours, theirs = tr.ema, AveragedEMA(tr.model)
    for _ in range(3):  # warm-up
        tr.train_step()
    step_s: dict[str, list[float]] = {"core.ema.EMA": [], "AveragedModel": []}
    update_s: dict[str, list[float]] = {"core.ema.EMA": [], "AveragedModel": []}
    for _ in range(args.rounds):
        for name, ema in (("core.ema.EMA", ours), ("AveragedModel", theirs)):
            tr.ema = ema
            step_s[name].append(time_steps(tr, args.steps))
            update_s[name].append(time_updates(ema, tr.model, dev))
    tr.ema = ours
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {dev}, preset {args.preset}, "
          f"batch {cfg.batch_size}, {tr.n_params:,} parameters, {args.rounds} rounds of {args.steps} steps")  # fmt: skip
    for name in step_s:
        ips = [cfg.batch_size / s for s in step_s[name]]
        us = [1e6 * s for s in update_s[name]]
        print(f"{name:>14}: {statistics.median(ips):7.1f} images/s (rounds {min(ips):.1f}-{max(ips):.1f}), "
              f"EMA update {statistics.median(us):8.1f} us")  # fmt: skip


if __name__ == "__main__":
    main()
