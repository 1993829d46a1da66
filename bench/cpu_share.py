"""Why workers split a CPU host's cores: two trainers at once, with and without sharing.

    python bench/cpu_share.py [--steps 300] [--preset smoke]

Runs the same training twice as two simultaneous processes: first each with torch's default
thread count (one per core), then each with its share (cores / 2). Prints the wall time of
each setup. On the 2-core development machine the first setup was about 8x slower: OpenMP
threads that outnumber the cores wait on each other. core.worker.CpuShare applies the share.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys, time, torch
sys.path.insert(0, {root!r})
if {threads}: torch.set_num_threads({threads})
from core.config import preset
from core.train import Trainer
cfg = preset({preset!r}, {{"steps": {steps}, "log_every": 10, "sample_every": 0, "checkpoint_every": 0}})
tr = Trainer(cfg, device="cpu")
t0 = time.perf_counter(); tr.run(); print(time.perf_counter() - t0, torch.get_num_threads())
"""


def pair(threads: int, steps: int, preset: str) -> tuple[float, list[str]]:
    code = CHILD.format(root=str(ROOT), threads=threads, steps=steps, preset=preset)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate()[0].split() for p in procs]
    return time.perf_counter() - t0, [f"{float(o[0]):.1f}s with {o[1]} threads" for o in outs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--preset", default="smoke")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} cores; two simultaneous trainers of {args.steps} steps of the {args.preset} preset")
    wall, each = pair(0, args.steps, args.preset)
    print(f"  default threads: {wall:6.1f}s wall  (training loops: {', '.join(each)})")
    wall2, each2 = pair(max(1, cores // 2), args.steps, args.preset)
    print(f"  shared threads:  {wall2:6.1f}s wall  (training loops: {', '.join(each2)})")
    print(f"  sharing is {wall / wall2:.1f}x faster")


if __name__ == "__main__":
    main()
