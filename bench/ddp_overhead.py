"""What training one run on several processes costs or gains here, against one process with
the same global batch.

    python bench/ddp_overhead.py [--preset quick] [--nproc 2] [--steps 120] [--device cpu] [--rounds 2]

Runs ``ddpm run --preset P --nproc 1`` and ``--nproc N`` (torchrun; gloo on the CPU, NCCL on
CUDA) alternately, ``--rounds`` times each, in fresh databases, and reads each run's throughput
from its metric rows after the first log window (so process start-up and the first step's
warm-up are not counted). On a 2-core CPU two processes share the cores that one process uses
alone, so expect no speed-up: the figure is the overhead of the gradient all-reduce and the
per-window agreement. On N GPUs it is the scaling.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.store import Store  # noqa: E402


def one(preset: str, nproc: int, steps: int, device: str) -> tuple[float, float]:
    """(images/s after the first window, final loss) of one run."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "e.db"
        cmd = [sys.executable, "-m", "ddpm_tui.cli", "run", "--preset", preset, "--nproc", str(nproc), "--device", device,
               "--set", f"steps={steps}", "--set", "log_every=20", "--set", "sample_every=0", "--set", "checkpoint_every=0",
               "--json", "--db", str(db)]  # fmt: skip
        doc = json.loads(subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
        with Store(db) as store:
            _, ips = store.series(doc["id"], "images_per_s")
        return statistics.median(ips[1:] or ips), doc["last_loss"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    results: dict[int, list[tuple[float, float]]] = {1: [], args.nproc: []}
    for _ in range(args.rounds):
        for n in (1, args.nproc):
            results[n].append(one(args.preset, n, args.steps, args.device))
    base = statistics.median(r[0] for r in results[1])
    print(
        f"preset {args.preset}, {args.steps} steps, device {args.device}, {args.rounds} rounds each, global batch as the preset's"
    )
    for n, rows in results.items():
        ips = statistics.median(r[0] for r in rows)
        losses = ", ".join(f"{r[1]:.4f}" for r in rows)
        print(f"  {n} process{'es' if n > 1 else '  '}: {ips:7.1f} images/s ({ips / base:.2f}x one process); final loss {losses}")


if __name__ == "__main__":
    main()
