"""The dashboard's Study screen driven with Pilot against a real SQLite file holding a recorded
sweep with its runs' progress, evaluations and digits (nothing is trained): reached from the
runs table, its keys, live figures, Enter to compare a setting's runs, and a snapshot."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core.devices import Accelerators
from core.store import Store
from tests.core.studies import digits, finish, judge, sweep
from tests.ddpm_tui.conftest import SIZE, drive, make_app, until

ROOT = Path(__file__).resolve().parents[2]
FROZEN = 1_750_000_000.0
# lr x objective x 2 seeds: fid by (lr, objective), confident the other way round.
FIDS = {("1e-4", "eps"): (30.0, 32.0), ("1e-4", "v"): (25.0, 27.0), ("1e-3", "eps"): (12.0, 14.0), ("1e-3", "v"): (18.0, 22.0)}


def record(db: Path) -> Path:
    """Study ``grid`` (runs 1-8, every one finished, judged, with digits) and a lone run 9."""
    with Store(db) as store:
        ids = sweep(store, "grid", {"lr": "1e-4,1e-3", "objective": "eps,v"}, seeds=2)
        fids = [f for pair in FIDS.values() for f in pair]
        for i, (rid, fid) in enumerate(zip(ids, fids)):
            finish(store, rid, loss=0.05 + i / 1000, ips=400.0 + i, elapsed=120.0)
            judge(store, rid, fid=fid, confident=0.9 - fid / 100)
            digits(store, rid, 30 * i)
        store.create_run(store.get_run(1).config, preset="smoke", name="lone")
    return db


@pytest.fixture
def db(tmp_path) -> Path:
    return record(tmp_path / "experiments.db")


def table_text(table) -> list[list[str]]:
    return [[str(getattr(v, "plain", v)) for v in table.get_row(key)] for key in table.rows]


async def open_study(pilot, app, run_id: int) -> None:
    from ddpm_tui.screens.study import StudyScreen

    table = app.screen.table
    await until(pilot, lambda: str(run_id) in table.keys, "the runs table")
    table.move_cursor(row=table.keys.index(str(run_id)))
    await pilot.press("y")
    await until(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen.study is not None, "the study screen")


def test_y_opens_the_study_ranked_and_its_keys_change_rank_and_chart(db):
    app = make_app(db)

    async def script(pilot):
        await pilot.press("y")  # the lone run (newest, under the cursor) has no study
        assert type(app.screen).__name__ == "RunsScreen"
        await open_study(pilot, app, 3)
        screen = app.screen
        assert screen.study.name == "grid" and screen.rank == "fid" and screen.x_key == "lr"
        rows = table_text(screen.table)
        # columns: # ★ objective lr runs seeds steps loss fid confident img/s time
        assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
            ("1", "\u2605", "eps", "0.001", "5-6"),
            ("2", "", "v", "0.001", "7-8"),
            ("3", "", "v", "0.0001", "3-4"),
            ("4", "", "eps", "0.0001", "1-2"),
        ]
        assert rows[0][8] == "13.00 \u00b1 1.41" and rows[1][8] == "20.00 \u00b1 2.83"
        chart = screen.query_one("#study-chart").data
        assert chart.key == "lr" and chart.log_x and [line.label for line in chart.lines] == ["objective=eps", "objective=v"]
        await pilot.press("f")  # next figure after fid: confident, higher is better
        assert screen.rank == "confident"
        assert [r[4] for r in table_text(screen.table)] == ["5-6", "7-8", "3-4", "1-2"]
        assert screen.query_one("#study-chart").data.figure == "confident"
        await pilot.press("k")  # the chart's x: the next swept key
        assert screen.x_key == "objective" and screen.query_one("#study-chart").data.by == "lr"
        await pilot.press("escape")
        assert type(app.screen).__name__ == "RunsScreen"

    drive(app, script)


def test_enter_compares_the_setting_s_runs(db):
    app = make_app(db)

    async def script(pilot):
        from ddpm_tui.screens.compare import CompareScreen

        await open_study(pilot, app, 1)
        await pilot.press("down", "enter")  # the second setting: lr=1e-3, objective v (runs 7, 8)
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), "the compare screen")
        assert app.screen.run_ids == [7, 8]

    drive(app, script)


def test_the_study_fills_in_live_as_runs_are_judged(db):
    """A better evaluation recorded by another process (a run still being judged) moves its
    setting to the top without a key press; the best digits follow."""
    app = make_app(db)

    async def script(pilot):
        await open_study(pilot, app, 1)
        screen = app.screen
        assert screen._art_keys["best"][0] == 5
        with Store(db) as other:
            judge(other, 1, step=20, fid=1.0, confident=0.99)
            judge(other, 2, step=20, fid=3.0, confident=0.99)
        await until(pilot, lambda: table_text(screen.table)[0][4] == "1-2", "the new best setting")
        assert table_text(screen.table)[0][8] == "2.00 \u00b1 1.41"
        assert screen._art_keys["best"][0] == 1

    drive(app, script)


def test_the_keys_are_in_help_and_the_palette(db):
    app = make_app(db)

    async def script(pilot):
        from ddpm_tui.app import ActionsProvider
        from ddpm_tui.screens.help import HelpScreen, declared

        runs = app.screen
        assert ("y", "Study") in {(b.key, b.description) for b in declared(runs)}
        assert "Study" in {t for t, _, _ in ActionsProvider(runs)._commands()}
        assert "y opens the study" in runs.HELP
        await open_study(pilot, app, 1)
        study = app.screen
        assert {"Rank by", "Chart key"} <= {t for t, _, _ in ActionsProvider(study)._commands()}
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen) and app.screen.over is study
        assert {("f", "Rank by"), ("k", "Chart key")} <= {(b.key, b.description) for b in declared(study)}

    drive(app, script)


def test_the_study_screen_does_not_import_torch(db):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from core.store import open_store\n"
        "from ddpm_tui.app import DdpmApp\n"
        "async def auto(pilot):\n"
        "    await pilot.pause()\n"
        "    pilot.app.screen.table.move_cursor(row=1)\n"
        "    await pilot.press('y')\n"
        "    await pilot.pause(0.5)\n"
        "    screen = pilot.app.screen\n"
        "    print('settings', len(screen.study.settings), 'art', screen._art_keys['best'] is not None)\n"
        "    await pilot.press('f', 'k', 'enter')\n"
        "    await pilot.pause(0.5)\n"
        "    print(type(pilot.app.screen).__name__, 'torch', 'torch' in sys.modules)\n"
        "    pilot.app.exit()\n"
        f"DdpmApp(open_store(Path({str(db)!r}))).run(headless=True, size=(140, 45), auto_pilot=auto)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "settings 4 art True" in res.stdout and "CompareScreen torch False" in res.stdout, res.stdout


# ---- snapshot --------------------------------------------------------------------------------


@pytest.fixture
def frozen_db(db, monkeypatch) -> Path:
    """Real MNIST digits for the samples and fixed times: nothing varies between machines."""
    import numpy as np

    from core.sources import load_mnist

    images = np.ascontiguousarray(load_mnist("test")[0][:4, None])
    with sqlite3.connect(db) as con:
        con.execute("UPDATE runs SET created = ? - 3600 * id, started = NULL, ended = ?, heartbeat = NULL", (FROZEN, FROZEN))
        con.execute(
            "UPDATE samples SET data = ?, shape = ?, time = ?", (images.tobytes(), json.dumps(list(images.shape)), FROZEN)
        )
        con.execute("UPDATE evals SET time = ? + id", (FROZEN,))
    monkeypatch.chdir(db.parent)
    return Path("experiments.db")


def test_snapshot_study(frozen_db, snap_compare):
    from ddpm_tui.app import DdpmApp

    app = DdpmApp(Store(frozen_db), clock=lambda: FROZEN, accelerators=Accelerators(cpu_cores=2))
    assert snap_compare(app, press=["down", "y"], terminal_size=SIZE)
