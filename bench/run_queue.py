"""The run queue's figures on this machine: slots kept full, how fast a freed slot refills,
the scheduler's memory, how fast `ddpm queue` answers.

    python bench/run_queue.py [--runs 8] [--slots 2] [--steps 30]

Queues ``--runs`` `smoke` runs in a fresh database, runs ``ddpm queue start --slots N --drain``
as a user would (a subprocess), and watches the database and /proc meanwhile (20 times a
second). Prints: the most runs that had a worker at once, whether all completed, each refill's
latency (a run's end to the next run's worker being started in that slot: the scheduler's
part, not the worker's start-up), the scheduler's peak resident memory, and `ddpm queue`'s
wall time (a fresh process each time, as from a shell) while the queue runs. Subprocesses run
with Python's bytecode cache on (as an installed tool does), after one warm-up call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import preset  # noqa: E402
from core.store import Store  # noqa: E402


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "queue.db"
        cfg = preset("smoke", {"steps": args.steps, "log_every": 5, "sample_every": 0, "checkpoint_every": 10}).to_dict()
        with Store(db) as store:
            ids = [store.create_run(cfg, preset="smoke", in_queue=True).id for _ in range(args.runs)]
        ddpm = [sys.executable, "-m", "ddpm_tui.cli"]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([*ddpm, "queue", "--db", str(db)], cwd=ROOT, capture_output=True, check=True, env=env)  # warm-up
        t0 = time.monotonic()
        sched = subprocess.Popen([*ddpm, "queue", "start", "--slots", str(args.slots), "--drain", "--db", str(db)],
                                 cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        spawned: dict[int, float] = {}  # run -> when its worker's pid appeared
        ended: dict[int, float] = {}  # run -> when its row read final
        slot_of: dict[int, str] = {}
        peak_workers, peak_rss, queue_times = 0, 0.0, []
        last_queue = 0.0
        with Store(db) as store:
            while sched.poll() is None:
                now = time.monotonic()
                runs = [store.get_run(i) for i in ids]
                for r in runs:
                    if r.pid and r.id not in spawned:
                        spawned[r.id] = now
                    if r.slot:
                        slot_of[r.id] = r.slot
                    if r.status in ("completed", "stopped", "failed", "crashed") and r.id not in ended:
                        ended[r.id] = now
                peak_workers = max(peak_workers, sum(1 for r in runs if r.has_worker))
                peak_rss = max(peak_rss, rss_mb(sched.pid) or 0.0)
                if now - last_queue > 2.0:
                    q0 = time.monotonic()
                    subprocess.run([*ddpm, "queue", "--db", str(db)], cwd=ROOT, capture_output=True, check=True, env=env)
                    queue_times.append(time.monotonic() - q0)
                    last_queue = time.monotonic()
                time.sleep(0.05)
            total = time.monotonic() - t0
            final = [store.get_run(i) for i in ids]
        refills = []
        by_slot: dict[str, list[int]] = {}
        for rid in sorted(spawned, key=spawned.get):
            by_slot.setdefault(slot_of.get(rid, "?"), []).append(rid)
        for order in by_slot.values():
            for prev, nxt in zip(order, order[1:]):
                refills.append(spawned[nxt] - ended[prev])
        done = sum(1 for r in final if r.status == "completed" and r.step == args.steps)
        print(f"{args.runs} smoke runs of {args.steps} steps, {args.slots} CPU slots, drained in {total:.1f}s"
              f" (scheduler exit {sched.returncode})")  # fmt: skip
        print(f"most runs with a worker at once: {peak_workers} (slots: {args.slots})")
        print(f"completed: {done} of {args.runs}")
        if refills:
            print(f"refill latency (run ended -> next worker started in its slot): median {statistics.median(refills):.2f}s, "
                  f"max {max(refills):.2f}s over {len(refills)} refills (polled every 0.05s)")  # fmt: skip
        print(f"scheduler process peak RSS: {peak_rss:.1f} MB")
        if queue_times:
            print(f"`ddpm queue` wall time, fresh process: median {statistics.median(queue_times):.2f}s, "
                  f"max {max(queue_times):.2f}s over {len(queue_times)} calls")  # fmt: skip


if __name__ == "__main__":
    main()
