"""Kill torture for the run queue's scheduler: SIGKILL it at random moments while a study trains.

    python bench/scheduler_torture.py [--runs 10] [--kills 20] [--slots 2] [--steps 60] [--seed 0]

Queues a study of `smoke` runs, starts ``python -m core.scheduler`` (as ``ddpm queue start
--detach`` does), and ``--kills`` times waits a random 0.3-3 s, SIGKILLs the scheduler and starts
a new one, which must adopt the live workers, give back runs the dead one took but never
started, and carry on. Meanwhile it scans /proc 20 times a second for worker processes and
records any run that ever had two live workers. At the end a last scheduler drains the queue.

Prints the kills that landed, the worst number of live workers per run (must be 1), and for
every run: completed, at its last step, its loss curve with every logged step exactly once.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import preset  # noqa: E402
from core.store import Store  # noqa: E402


def live_workers(db: Path) -> dict[int, set[int]]:
    """run id -> pids of live `python -m core.worker RUN --db DB` processes (zombies excluded)."""
    out: dict[int, set[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state in ("Z", "X") or b"core.worker" not in cmd or str(db).encode() not in cmd:
            continue
        run = cmd[cmd.index(b"core.worker") + 1]
        if run.isdigit():
            out.setdefault(int(run), set()).add(int(proc.name))
    return out


def start_scheduler(db: Path, slots: int, drain: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "core.scheduler", "--db", str(db), "--slots", str(slots)] + (["--drain"] if drain else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "torture.db"
        cfg = preset("smoke", {"steps": args.steps, "log_every": 2, "sample_every": 0, "checkpoint_every": 10}).to_dict()
        with Store(db) as store:
            ids = [store.create_run(cfg, preset="smoke", in_queue=True, study="torture").id for _ in range(args.runs)]
        worst: dict[int, int] = {}
        watching = threading.Event()

        def watch() -> None:
            while not watching.is_set():
                for run, pids in live_workers(db).items():
                    worst[run] = max(worst.get(run, 0), len(pids))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t0 = time.monotonic()
        sched = start_scheduler(db, args.slots)
        landed = 0
        for _ in range(args.kills):
            time.sleep(rng.uniform(0.3, 3.0))
            with Store(db) as store:
                if all(store.get_run(i).status == "completed" for i in ids):
                    break
            os.kill(sched.pid, signal.SIGKILL)
            sched.wait()
            landed += 1
            sched = start_scheduler(db, args.slots)
        os.kill(sched.pid, signal.SIGKILL)
        sched.wait()
        last = start_scheduler(db, args.slots, drain=True)
        last.wait(timeout=1800)
        watching.set()
        watcher.join()
        total = time.monotonic() - t0
        with Store(db) as store:
            rows = []
            for i in ids:
                run = store.get_run(i)
                steps, _ = store.series(i, "loss")
                rows.append((run, steps == list(range(2, args.steps + 1, 2))))
    print(
        f"{args.runs} smoke runs of {args.steps} steps on {args.slots} CPU slots; {landed} scheduler SIGKILLs; {total:.0f}s in all"
    )
    print(f"most live workers any run had at once: {max(worst.values(), default=0)} (runs seen: {len(worst)})")
    ok = 0
    for run, curve in rows:
        good = run.status == "completed" and run.step == args.steps and curve
        ok += good
        if not good:
            print(f"  run {run.id}: {run.status} at step {run.step}, curve {'complete' if curve else 'INCOMPLETE'}")
    print(f"completed exactly once, every logged step once: {ok} of {args.runs}")


if __name__ == "__main__":
    main()
