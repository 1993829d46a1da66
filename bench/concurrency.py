"""Four workers and a dashboard-like reader on one database for minutes: nothing locked, nothing lost.

    python bench/concurrency.py [--minutes 3] [--workers 4]

Starts detached `smoke` runs that log a metric row every step (the heaviest write load a
worker makes), while this process reads the database the way the dashboard does, several
times a second: the runs table, a loss series, the latest samples, `data_version`. A
`ddpm ls --json` subprocess also runs every few seconds, as a user at another terminal would.
When the time is up it stops the runs and checks:

- no reader call and no worker log mentions ``database is locked`` (or any error);
- every run ends ``stopped`` or ``completed`` with a loss row for every step it reached;
- ``PRAGMA integrity_check`` is ok.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.store import Store  # noqa: E402


def ddpm(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddpm_tui.cli", *args, "--db", str(db)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "busy.db"
        ids = []
        for i in range(args.workers):
            out = ddpm(db, "run", "--preset", "smoke", "--set", "steps=10000000", "--set", "log_every=1", "--set",
                       "sample_every=50", "--set", "checkpoint_every=200", "--name", f"w{i}", "--detach", "--json")  # fmt: skip
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                return 1
            ids.append(json.loads(out.stdout)["id"])
        errors: list[str] = []
        reads = cli_reads = 0
        store = Store(db, readonly=True, create=False)
        t0 = time.monotonic()
        next_cli = t0
        while time.monotonic() - t0 < args.minutes * 60:
            try:
                store.data_version()
                store.list_runs()
                for rid in ids:
                    store.series(rid, "loss")
                    store.latest_samples(rid)
                reads += 1
            except Exception as e:
                errors.append(f"reader: {type(e).__name__}: {e}")
            if time.monotonic() >= next_cli:
                out = ddpm(db, "ls", "--json")
                cli_reads += 1
                if out.returncode:
                    errors.append(f"ddpm ls: {out.stderr.strip()}")
                next_cli = time.monotonic() + 5
            time.sleep(0.2)
        store.close()
        for rid in ids:
            out = ddpm(db, "stop", str(rid), "--wait", "--json")
            if out.returncode:
                errors.append(f"ddpm stop {rid}: {out.stderr.strip()}")
        lost = []
        with sqlite3.connect(db) as c:
            integrity = c.execute("PRAGMA integrity_check").fetchone()[0]
            for rid in ids:
                status, step = c.execute("SELECT status, step FROM runs WHERE id = ?", (rid,)).fetchone()
                steps = [
                    s for (s,) in c.execute("SELECT step FROM metrics WHERE run = ? AND name = 'loss' ORDER BY step", (rid,))
                ]
                if status not in ("stopped", "completed") or steps != list(range(1, step + 1)):
                    lost.append(f"run {rid}: {status} at step {step}, {len(steps)} loss rows")
                print(f"run {rid}: {status} at step {step:,}, {len(steps):,} loss rows (one per step)")
        for log in sorted((db.parent / f"{db.stem}.runs").glob("*/worker.log")):
            text = log.read_text()
            if "locked" in text or "Traceback" in text or "error" in text.lower():
                errors.append(f"{log}: {text.strip().splitlines()[-1]}")
        print(f"reader passes    {reads:,} in {args.minutes:g} min (+{cli_reads} `ddpm ls --json`)")
        print(f"errors           {len(errors)}" + "".join(f"\n  {e}" for e in errors[:10]))
        print(f"rows lost        {len(lost)}" + "".join(f"\n  {x}" for x in lost))
        print(f"integrity_check  {integrity}")
        return 0 if not errors and not lost and integrity == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
