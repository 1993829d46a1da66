"""What recording a run in SQLite costs the training loop.

    python bench/store_overhead.py [--steps 200] [--preset quick]

Trains with exactly what the worker attaches to the loop (core.worker.Recorder for events,
the per-step stop-request check and CpuShare) writing to a real database, times every call
into them, and prints their share of the training time. A second line repeats it for the
`smoke` preset logging every step, the worst case: tiny steps, a metric row every step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import preset
from core.store import Store
from core.train import Trainer
from core.worker import CpuShare, Recorder


def measure(name: str, overrides: dict, steps: int) -> None:
    cfg = preset(name, {"steps": steps, "sample_every": 0, "checkpoint_every": 0, **overrides})
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "bench.db")
        run = store.create_run(cfg.to_dict(), preset=name)
        store.claim(run.id, device="cpu")
        recorder, share = Recorder(store, run.id), CpuShare(store)
        spent = {"events": 0.0, "stop checks": 0.0}
        calls = {"events": 0, "stop checks": 0}

        def on_event(ev) -> None:
            t0 = time.perf_counter()
            recorder(ev)
            spent["events"] += time.perf_counter() - t0
            calls["events"] += 1

        def should_stop() -> bool:
            t0 = time.perf_counter()
            share()
            stop = store.stop_requested(run.id)
            spent["stop checks"] += time.perf_counter() - t0
            calls["stop checks"] += 1
            return stop

        tr = Trainer(cfg, device="cpu", on_event=on_event, should_stop=should_stop)
        t0 = time.perf_counter()
        tr.run()
        recorder.flush()
        total = time.perf_counter() - t0
        rows = len(store.metrics(run.id))
        store.close()
    cost = sum(spent.values())
    detail = ", ".join(f"{k} {v * 1e3:.1f} ms over {calls[k]} calls" for k, v in spent.items())
    print(f"{name:6s} log_every={cfg.log_every:<3d} {tr.step} steps in {total:.1f}s, {rows} metric rows: "
          f"recording {cost * 1e3:.1f} ms = {100 * cost / total:.2f}% of training ({detail})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--preset", default="quick")
    args = ap.parse_args()
    measure(args.preset, {}, args.steps)
    measure("smoke", {"log_every": 1}, 2000)


if __name__ == "__main__":
    main()
