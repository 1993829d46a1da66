"""What recording memory and load (core/sysinfo.py) costs the training loop, on this machine.

    python bench/sysinfo_cost.py [--preset quick] [--rounds 6] [--windows 2] [--device auto]

The trainer reads the system figures once per log window, after the window's one host sync.
This trains the preset with the Trainer and, alternating in rounds so that background load
falls on both alike, times whole log windows (``log_every`` training steps, the sync, then
either the run's readers or none) and prints images/s for each; then the read alone, in
microseconds, and its share of a window. The second figure is the one to trust on a busy
machine: the first difference is usually smaller than the noise between rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from core import sysinfo
from core.config import preset
from core.train import Trainer, resolve_device


def time_windows(tr: Trainer, windows: int) -> float:
    """Seconds per training step over ``windows`` log windows, reading as the loop does."""
    t0 = time.perf_counter()
    for _ in range(windows):
        total = torch.zeros((), device=tr.device)
        for _ in range(tr.cfg.log_every):
            loss, _gn = tr.train_step()
            total += loss
        float(total)  # the window's one host sync
        tr.system.read()
    return (time.perf_counter() - t0) / (windows * tr.cfg.log_every)


def time_reads(reader: sysinfo.Readers, n: int = 2000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        reader.read()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--windows", type=int, default=2, help="log windows per round and variant")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    cfg = preset(args.preset, {"steps": 10**9, "sample_every": 0, "checkpoint_every": 0})
    tr = Trainer(cfg, device=dev)
    readers, none = tr.system, sysinfo.Readers()
    names = sorted(readers.read())
    for _ in range(3):  # warm-up
        tr.train_step()
    step_s: dict[str, list[float]] = {"no readers": [], "readers": []}
    read_s: list[float] = []
    for r in range(args.rounds):
        order = (("no readers", none), ("readers", readers))
        for name, system in order if r % 2 == 0 else order[::-1]:
            tr.system = system
            step_s[name].append(time_windows(tr, args.windows))
        read_s.append(time_reads(readers))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {dev}, preset {args.preset}, "
          f"batch {cfg.batch_size}, log_every {cfg.log_every}, {args.rounds} rounds of {args.windows} windows; "
          f"reads {', '.join(names)}{'; dropped ' + str(readers.dropped) if readers.dropped else ''}")  # fmt: skip
    for name, times in step_s.items():
        ips = [cfg.batch_size / s for s in times]
        print(f"{name:>10}: {statistics.median(ips):7.1f} images/s (rounds {min(ips):.1f}-{max(ips):.1f})")
    read, step = statistics.median(read_s), statistics.median(step_s["no readers"])
    print(f"one read: {read * 1e6:.1f} us (rounds {min(read_s) * 1e6:.1f}-{max(read_s) * 1e6:.1f}) = "
          f"{100 * read / (step * cfg.log_every):.5f}% of a {cfg.log_every}-step window of {step * 1e3:.1f} ms steps")  # fmt: skip


if __name__ == "__main__":
    main()
