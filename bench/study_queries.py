"""Queries over many runs on this machine: `ddpm ls --where/--sort`, `ddpm ls --study`,
`ddpm study` (when there is one), and the dashboard's runs screen opening and answering a
filter keystroke, on a database of 10,000 runs.

    python bench/study_queries.py [--runs 10000] [--repeat 5] [--db PATH]

Builds the database with the store's own bulk methods (one transaction for the runs, then a
result and an evaluation per run): lr, objective and seed vary, runs fall into studies of 100,
and one study, ``big``, holds 200. Each command runs ``--repeat`` times as a fresh process, as
from a shell, with Python's bytecode cache on (as an installed tool has it) after one warm-up
call; the median is printed. The dashboard is timed in this process under Textual's Pilot.
Last, whether any of them imported torch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import preset  # noqa: E402
from core.sampling_spec import Protocol, SamplingSpec  # noqa: E402
from core.store import NewRun, Store  # noqa: E402

DDPM = [sys.executable, "-m", "ddpm_tui.cli"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
PROTOCOL = Protocol(SamplingSpec("ddim", 50, 0.0, None), 1000, 0)


def build(db: Path, n: int) -> float:
    """``n`` completed runs, each with a final loss, two loss rows and one evaluation."""
    rng = random.Random(0)
    t0 = time.monotonic()
    base = preset("quick").to_dict()
    specs = []
    for i in range(n):
        lr, obj, seed = rng.choice([5e-4, 1e-3, 2e-3, 4e-3]), rng.choice(["eps", "v", "x0"]), i % 3
        study = "big" if i < 200 else f"s{i // 100}"
        cfg = {**base, "lr": lr, "objective": obj, "seed": seed}
        specs.append(NewRun(cfg, "quick", name=f"{study}/lr={lr},objective={obj},seed={seed},i={i}", study=study))
    with Store(db) as store:
        ids = store.create_runs(specs)
        for rid in ids:
            loss = rng.uniform(0.02, 0.08)
            store.record(rid, [(1000, "loss", loss * 1.5, 0.0), (2000, "loss", loss, 0.0)], heartbeat=False,
                         progress={"status": "completed", "step": 2000, "last_loss": loss, "images_per_s": rng.uniform(300, 900),
                                   "elapsed_s": rng.uniform(60, 600)})  # fmt: skip
            fid = rng.uniform(5, 80)
            store.add_eval(rid, 2000, protocol=PROTOCOL, figures={"fid": fid, "kid": fid / 2000, "confident": rng.random()},
                           floor={"fid": 1.0}, seconds=10.0)  # fmt: skip
    return time.monotonic() - t0


def cli_median(args: list[str], db: Path, repeat: int) -> tuple[float, int]:
    """Median wall time of a fresh `ddpm ...` process, and its output's line count."""
    cmd = [*DDPM, *args, "--db", str(db)]
    subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, check=True)  # warm-up: bytecode cache, page cache
    times, lines = [], 0
    for _ in range(repeat):
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)
        times.append(time.monotonic() - t0)
        lines = len(proc.stdout.splitlines())
    return statistics.median(times), lines


def dashboard(db: Path, n: int, repeat: int) -> tuple[float, list[float], int]:
    """Seconds from starting the app to a full runs table, and each filter keystroke's answer
    (the key press until the table shows the filtered rows)."""
    from core.devices import Accelerators
    from ddpm_tui.app import DdpmApp
    from ddpm_tui.screens.runs import TABLE_ROWS, RunsScreen

    out: dict = {}

    async def main():
        t0 = time.monotonic()
        app = DdpmApp(Store(db), poll_s=60.0, accelerators=Accelerators(cpu_cores=2))
        async with app.run_test(size=(140, 45)) as pilot:
            screen = lambda: next(s for s in app.screen_stack if isinstance(s, RunsScreen))  # noqa: E731
            full = min(n, TABLE_ROWS)  # the screen holds the first rows of its sorted, filtered list
            while not (app.screen_stack and isinstance(app.screen, RunsScreen) and len(screen().table.keys) == full):
                await pilot.pause(0.01)
            out["open"] = time.monotonic() - t0
            await pilot.press("slash", *"fid<3")
            keys = []
            for i in range(repeat):  # fid<30 <-> fid<3: the table changes at every key
                t1 = time.monotonic()
                await pilot.press("0" if i % 2 == 0 else "backspace")
                keys.append(time.monotonic() - t1)
            out["keys"], out["shown"] = keys, len(screen().table.keys)

    asyncio.run(main())
    return out["open"], out["keys"], out["shown"]


def torch_free(db: Path) -> bool:
    """The commands timed here, run in one process: is torch in sys.modules after them?"""
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom ddpm_tui.cli import app\n"
        f"for a in (['ls', '--where', 'fid<30', '--sort', 'fid'], ['ls', '--study', 'big'], ['export', '--all', '-f', 'csv']):\n"
        f"    r = CliRunner().invoke(app, a + ['--db', {str(db)!r}]); assert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)
    return proc.stdout.strip() == "False"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--db", type=Path, help="keep the database here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "study.db"
        if db.exists():
            sys.exit(f"{db} exists; pass a new path")
        built = build(db, args.runs)
        print(f"built {args.runs:,} runs (studies of 100, one of 200) in {built:.1f}s: {db}", flush=True)
        rows = []
        for label, cmd, target in (
            ("ddpm --help (start-up alone)", ["--help"], None),
            ('ddpm ls --where "fid<30" --sort fid', ["ls", "--where", "fid<30", "--sort", "fid"], 0.5),
            ("  the same, --limit 50", ["ls", "--where", "fid<30", "--sort", "fid", "--limit", "50"], 0.5),
            ("  the same, --json", ["ls", "--where", "fid<30", "--sort", "fid", "--json"], 0.5),
            ("ddpm ls --study big", ["ls", "--study", "big"], None),
            ("ddpm ls (every run)", ["ls"], None),
            ("ddpm export --all -f csv", ["export", "--all", "-f", "csv"], None),
        ):
            secs, lines = cli_median(cmd if cmd != ["--help"] else ["ls", "--help"], db, args.repeat)
            rows.append((label, secs, target, f"{lines:,} lines"))
        has_study = subprocess.run([*DDPM, "study", "--help"], cwd=ROOT, env=ENV, capture_output=True).returncode == 0
        if has_study:
            secs, lines = cli_median(["study", "big"], db, args.repeat)
            rows.append(("ddpm study big (200 runs)", secs, 1.0, f"{lines:,} lines"))
        else:
            rows.append(("ddpm study big", None, 1.0, "no `ddpm study` in this tree"))
        opened, keys, shown = dashboard(db, args.runs, args.repeat)
        rows.append((f"dashboard: runs screen open ({args.runs:,} runs)", opened, 1.0, "in-process, Pilot"))
        rows.append(("dashboard: one filter keystroke", statistics.median(keys), None,
                     f"max {max(keys) * 1000:.0f} ms; {shown:,} rows after")),  # fmt: skip
        # Pilot's press waits for the app to settle, which costs time of its own: the same
        # keystrokes on 20 runs are that floor, and the difference is what 10,000 runs add.
        small = Path(tmp) / "small.db"
        build(small, 20)
        _, floor_keys, _ = dashboard(small, 20, args.repeat)
        rows.append(("  the same on 20 runs (Pilot's own cost)", statistics.median(floor_keys), None, "the floor"))
        rows.append((f"  what {args.runs:,} runs add to a keystroke", statistics.median(keys) - statistics.median(floor_keys),
                     1 / 60, "one frame at 60 Hz")),  # fmt: skip
        width = max(len(r[0]) for r in rows)
        print(f"\n{'what':<{width}}  {'median':>9}  {'target':>8}  note")
        for label, secs, target, note in rows:
            s = f"{secs * 1000:7.0f} ms" if secs is not None else "        -"
            t = f"< {target * 1000:.0f} ms" if target else ""
            print(f"{label:<{width}}  {s}  {t:>8}  {note}")
        print(f"\ntorch imported by ls / export (one process): {'no' if torch_free(db) else 'YES'}; "
              f"by this process (dashboard included): {'yes' if 'torch' in sys.modules else 'no'}")  # fmt: skip


if __name__ == "__main__":
    main()
