"""What recording a run through Ray's head actor costs, against a local worker on the same machine.

    python bench/ray_overhead.py [--presets smoke,quick] [--steps 200] [--rounds 2]

For each preset, trains one run through a local scheduler's CPU slot (a worker process writing
the database itself) and one through ``RayScheduler`` on a private local Ray instance (a Ray
actor sending every event to the head's recorder actor), alternately, ``--rounds`` times each,
with the same number of CPU threads (all the cores), and prints their training throughput read
from the runs' metric rows after the first log window (start-up is not counted) and their wall
time from queued to completed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import preset  # noqa: E402
from core.scheduler import Scheduler, plan_slots  # noqa: E402
from core.store import Store  # noqa: E402


def one(name: str, steps: int, ray_sched: bool) -> tuple[float, float]:
    """(images/s after the first window, seconds from start to completed)."""
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "e.db"
        cfg = preset(name, {"steps": steps, "log_every": 20, "sample_every": 0, "checkpoint_every": 0}).to_dict()
        with Store(db) as store:
            rid = store.create_run(cfg, preset=name, in_queue=True).id
        t0 = time.monotonic()
        if ray_sched:
            from core.ray_queue import RayScheduler

            RayScheduler(db, address="local", cpus_per_run=cores, drain=True, poll_s=0.1, log=lambda t: None).run()
        else:
            Scheduler(db, plan_slots(slots=1, cores=cores), drain=True, poll_s=0.1, log=lambda t: None).run()
        wall = time.monotonic() - t0
        with Store(db) as store:
            assert store.get_run(rid).status == "completed"
            _, ips = store.series(rid, "images_per_s")
        return statistics.median(ips[1:] or ips), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="smoke,quick")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    import ray

    print(f"{os.cpu_count()} cores, {args.steps} steps per run, {args.rounds} rounds")
    for name in args.presets.split(","):
        rows: dict[str, list[tuple[float, float]]] = {"local worker": [], "Ray actor": []}
        for _ in range(args.rounds):
            rows["local worker"].append(one(name, args.steps, False))
            rows["Ray actor"].append(one(name, args.steps, True))
            ray.shutdown()
        base = statistics.median(r[0] for r in rows["local worker"])
        for how, rs in rows.items():
            ips = statistics.median(r[0] for r in rs)
            wall = statistics.median(r[1] for r in rs)
            print(f"  {name:>6} via {how:<12}: {ips:8.1f} images/s ({ips / base:.2f}x), {wall:6.1f}s queued to completed")


if __name__ == "__main__":
    main()
