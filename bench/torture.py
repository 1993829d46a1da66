"""Kill a training worker at random moments, many times, and check that nothing is lost.

    python bench/torture.py [--kills 40] [--steps 1000] [--seed 0] [--keep DIR]

Starts one detached `smoke` run that logs a metric row every step and checkpoints every
third step (so a random moment often falls inside a checkpoint write or a metrics
transaction), then, over and over: waits until the worker is training, sleeps a random
0-0.8 s, SIGKILLs it and checks

- the database passes ``PRAGMA integrity_check``;
- the run reads ``crashed`` (no worker is alive, whatever its row last said);
- every ``step-*.pt`` file in the run's folder loads (``weights_only``): no checkpoint is
  half-written under its real name (a kill during a write leaves only a temp file, which
  the next worker removes);
- ``ddpm resume RUN --detach`` starts it again.

At the end the run must finish ``completed`` with a loss curve that has every step exactly
once: no gap, no duplicate. Prints one line per kill and a summary; exit code 1 if any kill
was not survived. ``tests/ddpm_tui/test_faults.py`` runs a short version of it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.store import pid_alive  # noqa: E402


@dataclass
class Kill:
    n: int
    step: int  # the run's recorded step when it was killed
    delay: float
    mid_write: bool  # a temp checkpoint file was left behind: the kill fell inside a write
    problems: list[str] = field(default_factory=list)

    @property
    def survived(self) -> bool:
        return not self.problems


def ddpm(db: Path, *args: str) -> dict:
    """Run the real CLI (as a subprocess, as a user would) and return its --json document."""
    out = subprocess.run(
        [sys.executable, "-m", "ddpm_tui.cli", *args, "--db", str(db), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"ddpm {' '.join(args)}: exit {out.returncode}: {out.stderr.strip()}")
    return json.loads(out.stdout)


def wait_for(pred, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def row(db: Path, run_id: int) -> dict:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as c:
        c.row_factory = sqlite3.Row
        return dict(c.execute("SELECT status, step, pid FROM runs WHERE id = ?", (run_id,)).fetchone())


def integrity(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as c:
        return c.execute("PRAGMA integrity_check").fetchone()[0]


def check_files(folder: Path) -> list[str]:
    from core.checkpoint import CheckpointError, load_checkpoint

    bad = []
    for p in sorted(folder.glob("step-*.pt")):
        try:
            load_checkpoint(p)
        except CheckpointError as e:
            bad.append(str(e))
    return bad


def torture(workdir: Path, kills: int, steps: int, seed: int = 0, log=print) -> tuple[list[Kill], dict]:
    """Run the whole experiment in ``workdir``; returns each kill and the final check."""
    rng = random.Random(seed)
    db = workdir / "torture.db"
    sets = [f"steps={steps}", "log_every=1", "checkpoint_every=3", "sample_every=7", "keep_checkpoints=2", f"seed={seed}"]
    run = ddpm(db, "run", "--preset", "smoke", *[a for s in sets for a in ("--set", s)], "--name", "torture", "--detach")
    rid, folder = run["id"], db.parent / f"{db.stem}.runs" / str(run["id"])
    results: list[Kill] = []
    for n in range(1, kills + 1):
        start = row(db, rid)["step"]
        # Training again (the resumed worker has loaded torch and its checkpoint and taken a step).
        r = wait_for(lambda s=start: (lambda x: x if x["status"] == "running" and x["step"] > s else None)(row(db, rid)),
                     120, f"run {rid} to train after kill {n - 1}")  # fmt: skip
        if r["step"] >= steps - 2:
            log(f"run reached step {r['step']} of {steps}: stopping the kills early")
            break
        delay = rng.uniform(0.0, 0.8)
        time.sleep(delay)
        pid = row(db, rid)["pid"]
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for(lambda p=pid: not pid_alive(p), 30, f"worker {pid} to die")
        k = Kill(n, row(db, rid)["step"], delay, any(folder.glob(".*.tmp-*")))
        if (ic := integrity(db)) != "ok":
            k.problems.append(f"integrity_check: {ic}")
        status = ddpm(db, "show", str(rid))["status"]
        if status == "completed" and not k.problems:
            # The worker finished the run during the random delay: the signal found no one.
            log(f"run completed at step {k.step} before kill {n} landed: stopping the kills (raise --steps for more)")
            break
        if status != "crashed":
            k.problems.append(f"status {status!r}, expected 'crashed'")
        k.problems += check_files(folder)
        try:
            ddpm(db, "resume", str(rid), "--detach")
        except RuntimeError as e:
            k.problems.append(str(e))
        results.append(k)
        log(f"kill {n:3d}  at step {k.step:4d}  after {delay:.2f}s  {'mid-write ' if k.mid_write else ''}"
            f"{'ok' if k.survived else 'LOST: ' + '; '.join(k.problems)}")  # fmt: skip
        if not k.survived:
            break
    final = wait_for(lambda: (lambda x: x if x["status"] not in ("queued", "running") else None)(row(db, rid)),
                     600, f"run {rid} to finish")  # fmt: skip
    with sqlite3.connect(db) as c:
        loss_steps = [s for (s,) in c.execute("SELECT step FROM metrics WHERE run = ? AND name = 'loss' ORDER BY step", (rid,))]
    end = {
        "status": final["status"],
        "step": final["step"],
        "curve_complete": loss_steps == list(range(1, steps + 1)),
        "integrity": integrity(db),
        "bad_files": check_files(folder),
        "leftover_temp_files": [p.name for p in folder.glob(".*.tmp-*")],
    }
    return results, end


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=40)
    ap.add_argument("--steps", type=int, default=1000, help="total steps of the run (it must outlast the kills)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp folder)")
    args = ap.parse_args()
    t0 = time.time()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        results, end = torture(args.keep, args.kills, args.steps, args.seed)
    else:
        with tempfile.TemporaryDirectory() as d:
            results, end = torture(Path(d), args.kills, args.steps, args.seed)
    survived = sum(k.survived for k in results)
    ok = survived == len(results) and end["status"] == "completed" and end["curve_complete"] and end["integrity"] == "ok"
    ok = ok and not end["bad_files"] and not end["leftover_temp_files"]
    print(f"kills survived   {survived}/{len(results)}  ({sum(k.mid_write for k in results)} fell inside a checkpoint write)")
    print(f"final run        {end['status']} at step {end['step']}, loss curve every step exactly once: {end['curve_complete']}")
    print(f"database         integrity_check {end['integrity']}; unreadable checkpoints {len(end['bad_files'])}; "
          f"leftover temp files {len(end['leftover_temp_files'])}")  # fmt: skip
    print(f"took             {time.time() - t0:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
