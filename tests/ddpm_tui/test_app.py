"""The `ddpm-tui` dashboard driven with Textual's Pilot against real SQLite files holding real
finished `smoke` runs (trained once per module, then copied per test) and live detached
workers. Snapshot tests fix the clock and rewrite the few volatile columns (times,
throughput, loss values, sample pixels) of their own copy so the pictures are stable."""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.devices import Accelerators
from core.store import Store
from tests.ddpm_tui.conftest import FAST, LONG, SIZE, Cli, drive, make_app, rows, until

ROOT = Path(__file__).resolve().parents[2]
FROZEN = 1_750_000_000.0  # "now" for snapshot ages
FROZEN_ENV = {"device": "cpu", "cpu": "Test CPU 2-core", "precision": "fp32", "data": "device", "host": "host",
              "torch": "2.14.1", "python": "3.11.7", "ddpm_tui": "0.1.0"}  # fmt: skip


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_db(tmp_path_factory) -> Path:
    """Two finished smoke runs that differ only in lr, trained once for the whole module."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2-core box: more OpenMP threads than free cores only wait
    try:
        cli = Cli(tmp_path_factory.mktemp("base") / "experiments.db")
        for name, lr in (("lo", "1e-3"), ("hi", "3e-3")):
            res = cli("run", *FAST, "--set", f"lr={lr}", "--name", name, "--tag", "sweep")
            assert res.exit_code == 0, res.output
    finally:
        torch.set_num_threads(threads)
    with sqlite3.connect(cli.db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return cli.db


@pytest.fixture
def db(base_db, tmp_path, monkeypatch) -> Path:
    """A private copy of the module's database and its checkpoint folder."""
    shutil.copy(base_db, tmp_path / "experiments.db")
    shutil.copytree(base_db.parent / "experiments.runs", tmp_path / "experiments.runs")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # spawned workers take one core each
    return tmp_path / "experiments.db"


@pytest.fixture
def workers():
    """Pids of workers a test started; stopped (then killed) at the end whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
                time.sleep(0.2)
            except (ProcessLookupError, PermissionError):
                break
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


# ---- the runs table ------------------------------------------------------------------------


def test_table_fills_filters_sorts_and_follows_a_live_worker(db, workers):
    cli = Cli(db)
    live = cli.json("run", *LONG, "--name", "live", "--detach")
    workers.append(live["pid"])
    app = make_app(db)

    async def script(pilot):
        table = rows(app)
        assert {r["name"] for r in table.values()} == {"lo", "hi", "live"}
        assert table[1]["status"] == "completed" and "12/12" in table[1]["progress"] and table[1]["tags"] == "sweep"
        await until(pilot, lambda: rows(app)[3]["status"] == "running" and int(rows(app)[3]["progress"].split()[-1].split("/")[0].replace(",", "")) >= 4,
                    "the live row to show training steps")  # fmt: skip
        first = rows(app)[3]["progress"]
        await until(pilot, lambda: rows(app)[3]["progress"] != first, "the live row to move on its own")
        # filter as you type, then clear
        await pilot.press("slash", "h", "i")
        assert list(rows(app)) == [2]
        await pilot.press("escape")
        assert len(rows(app)) == 3 and app.focused is app.screen.table
        # sort by the next column (name), then reverse
        await pilot.press("s")
        assert app.screen.sort_key == "name" and [r["name"] for r in rows(app).values()] == ["hi", "live", "lo"]
        await pilot.press("S")
        assert [r["name"] for r in rows(app).values()] == ["lo", "live", "hi"]
        # a change made by another process (the CLI) shows up without a key press
        assert cli("tag", "1", "later").exit_code == 0
        await until(pilot, lambda: rows(app)[1]["tags"] == "sweep,later", "the tag written by the CLI")
        from ddpm_tui.app import training_elsewhere

        assert [r.id for r in training_elsewhere(app.store)] == [3]

    drive(app, script)


def test_a_poll_that_lands_while_the_app_shuts_down_does_nothing(db):
    """Textual removes a screen's widgets before it stops the app's timers: a poll tick in
    between must not query a table that is gone (it once failed CI with NoMatches)."""
    app = make_app(db)

    async def script(pilot):
        assert len(rows(app)) == 2
        await app.screen.query_one("#runs").remove()  # what shutdown does first
        app.exit()
        app.poll(force=True)  # the timer's tick in that window

    drive(app, script)


def test_the_table_shows_each_runs_study_and_device_and_filters_on_the_study(db):
    """A sweep's runs carry their study (a lone run none) and a run its device: what it
    trained on, or what it asked for while it waits. The filter finds a study's runs even
    when one was renamed away from its STUDY/ prefix."""
    cli = Cli(db)
    res = cli("sweep", "--preset", "smoke", "--set", "lr=1e-3,2e-3", "--name", "grid", "--device", "cpu")
    assert res.exit_code == 0, res.output
    with Store(db) as store:
        store.rename(4, "renamed")
    with sqlite3.connect(db) as con:  # as a 4-process run on CUDA records itself
        con.execute("UPDATE runs SET device = 'cuda:0', world_size = 4 WHERE id = 1")
    app = make_app(db)

    async def script(pilot):
        table = rows(app)
        assert {i: (r["study"], r["device"]) for i, r in table.items()} == {
            1: ("", "cuda x4"),
            2: ("", "cpu"),
            3: ("grid", "cpu"),
            4: ("grid", "cpu"),
        }
        assert [c.label.plain for c in app.screen.table.ordered_columns][2:7] == ["name", "study", "preset", "status", "device"]
        await pilot.press("slash", *"grid")
        assert set(rows(app)) == {3, 4}
        await pilot.press("escape", "s", "s")  # sort by name, then by study: lone runs last
        assert app.screen.sort_key == "study" and list(rows(app))[2:] in ([1, 2], [2, 1])

    drive(app, script)


def test_start_stop_resume_from_the_dashboard_change_the_row(db, workers):
    app = make_app(db)

    async def script(pilot):
        from textual.widgets import Input, Select

        from ddpm_tui.screens.new_run import NewRunScreen
        from ddpm_tui.screens.run import RunScreen

        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewRunScreen)
        form.query_one("#preset", Select).value = "smoke"
        await pilot.pause()
        for field, value in (("steps", "100000"), ("log_every", "2"), ("checkpoint_every", "20"), ("sample_every", "0")):
            form.query_one(f"#f-{field}", Input).value = value
        form.query_one("#f-name", Input).value = "from-tui"
        await pilot.pause()
        assert form.errors == {}
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, RunScreen), "the new run's screen")
        run = app.store.get_run("from-tui")
        workers.append(run.pid)
        assert run.config["steps"] == 100000 and run.preset == "smoke"
        await pilot.press("escape")
        await until(pilot, lambda: rows(app)[run.id]["status"] == "running", "the worker to start", timeout=120)
        app.screen.table.move_cursor(row=0)  # newest first
        assert app.screen.current_id() == run.id
        await pilot.press("x")
        await until(pilot, lambda: rows(app)[run.id]["status"] == "stopped", "the stop")
        stopped_at = app.store.get_run(run.id).step
        await pilot.press("r")
        await until(pilot, lambda: rows(app)[run.id]["status"] == "running", "the resume", timeout=120)
        resumed = app.store.get_run(run.id)
        workers.append(resumed.pid)
        await until(pilot, lambda: app.store.get_run(run.id).step > stopped_at, "training to continue past the stop")
        await pilot.press("x")
        await until(pilot, lambda: rows(app)[run.id]["status"] == "stopped", "the second stop")

    drive(app, script)


def test_the_form_rejects_a_bad_value_inline(db):
    app = make_app(db)

    async def script(pilot):
        from textual.widgets import Button, Input, Static

        await pilot.press("n")
        form = app.screen
        form.query_one("#f-lr", Input).value = "2"
        form.query_one("#f-steps", Input).value = "many"
        await pilot.pause()
        assert set(form.errors) == {"lr", "steps"}
        lr_error = form.query_one("#e-lr", Static)
        assert lr_error.display and "lr: 2.0 is out of range" in str(lr_error.content)
        assert form.query_one("#launch", Button).disabled
        await pilot.press("ctrl+s")
        assert len(app.store.list_runs()) == 2, "nothing was launched"
        form.query_one("#f-lr", Input).value = "1e-3"
        form.query_one("#f-steps", Input).value = "300"
        await pilot.pause()
        assert form.errors == {} and not form.query_one("#e-lr", Static).display
        assert not form.query_one("#launch", Button).disabled

    drive(app, script)


def test_choosing_ddim_in_the_form_of_quick_shows_and_launches_quicks_ddim(db):
    """quick samples with DPM-Solver++ and keeps DDIM's best apart (ddim_*); picking ddim in
    the form makes those the run's own, in the fields shown as in the run launched."""
    app = make_app(db)

    async def script(pilot):
        from textual.widgets import Input, Select

        await pilot.press("n")
        form = app.screen
        form.query_one("#preset", Select).value = "quick"
        await pilot.pause()

        def shown(*names: str) -> tuple[str, ...]:
            return tuple(form.query_one(f"#f-{n}", Input).value for n in names)

        fields = ("sample_steps", "eta", "eta_window", "ddim_steps", "ddim_eta", "ddim_eta_window")
        assert shown("sampler", *fields) == ("dpmpp2m", "15", "8.0", "0.75", "50", "1.8", "0.7")
        form.query_one("#f-sampler", Input).value = "ddim"
        await pilot.pause()
        assert form.errors == {}
        assert shown(*fields) == ("50", "1.8", "0.7", "None", "None", "None")
        cfg = form.config
        assert (cfg.sampler, cfg.sample_steps, cfg.eta, cfg.eta_window, cfg.ddim_eta) == ("ddim", 50, 1.8, 0.7, None)
        form.query_one("#f-ddim_eta", Input).value = "2"
        await pilot.pause()
        assert "ddim_eta: this run's own sampler is ddim; set eta" in form.errors["ddim_eta"]

    drive(app, script)


# ---- the other screens ----------------------------------------------------------------------


def test_keys_open_each_screen_and_every_action_is_in_the_palette(db):
    app = make_app(db)

    async def script(pilot):
        from textual.command import CommandPalette

        from ddpm_tui.app import ActionsProvider
        from ddpm_tui.screens.compare import CompareScreen
        from ddpm_tui.screens.explore import ExploreScreen
        from ddpm_tui.screens.help import HelpScreen
        from ddpm_tui.screens.new_run import NewRunScreen
        from ddpm_tui.screens.run import RunScreen
        from ddpm_tui.screens.sample import SampleScreen
        from ddpm_tui.widgets.art import ArtView
        from ddpm_tui.widgets.loss_chart import LossChart

        runs = app.screen
        titles = {t for t, _, _ in ActionsProvider(runs)._commands()}
        assert {
            "Open",
            "New run",
            "Stop",
            "Resume",
            "Delete",
            "Tag",
            "Mark",
            "Compare",
            "Sample",
            "Explore",
            "Filter",
            "Sort",
            "Queue",
            "Help",
            "Quit",
        } <= titles
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("escape")
        assert app.screen is runs

        await pilot.press("enter")  # run 2 ("hi") is first: newest first
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.run_id == 2
        steps, losses = screen.query_one(LossChart).series["hi"]
        assert steps == [3, 6, 9, 12] and all(v > 0 for v in losses)
        assert screen.query_one(ArtView).data.shape == (4, 1, 28, 28)
        assert {"Stop", "Resume", "Sample", "Explore", "Tag", "Notes"} <= {t for t, _, _ in ActionsProvider(screen)._commands()}
        await pilot.press("escape")
        assert app.screen is runs

        await pilot.press("n")
        assert isinstance(app.screen, NewRunScreen)
        await pilot.press("escape")
        await pilot.press("g")
        assert isinstance(app.screen, SampleScreen)
        await pilot.press("escape")
        await pilot.press("e")
        explore = app.screen
        assert isinstance(explore, ExploreScreen)
        await until(pilot, lambda: explore.abar is not None, "the schedule and MNIST to load")
        t0 = explore.t
        await pilot.press("right")
        assert explore.t == t0 + 1 and explore.query_one("#explore-now", ArtView).data.shape == (3, 1, 28, 28)
        strip = explore.query_one("#explore-strip", ArtView).data
        assert strip.shape[0] >= 2 and not (strip[0] == strip[-1]).all()  # the digit at t=0, noise at T-1
        await pilot.press("escape")

        await pilot.press("space", "space")  # mark 2, then 1
        assert runs.marked == [2, 1]
        await pilot.press("c")
        assert isinstance(app.screen, CompareScreen)
        await pilot.press("escape")
        assert app.screen is runs

    drive(app, script)


def test_explore_noises_the_s_curve_and_plays_the_reverse_process_of_a_2d_run(tmp_path):
    """The forward view of a 2-D run (numpy points) and its reverse process, sampled in a
    child process from the run's latest checkpoint."""
    cli = Cli(tmp_path / "experiments.db")
    res = cli("run", "--preset", "scurve", "--set", "steps=10", "--set", "log_every=5", "--set", "sample_every=0",
              "--set", "checkpoint_every=0", "--set", "sample_steps=5", "--name", "curve")  # fmt: skip
    assert res.exit_code == 0, res.output
    app = make_app(cli.db)

    async def script(pilot):
        from ddpm_tui.widgets.art import ArtView

        await pilot.press("e")
        explore = app.screen
        await until(pilot, lambda: explore.abar is not None, "the schedule and the S-curve to load")
        assert len(explore.abar) == 200 and explore.query_one("#explore-now", ArtView).data.shape == (512, 2)
        before = explore.query_one("#explore-now", ArtView).data
        await pilot.press("shift+right")
        assert explore.t == 50 + 20 and not (explore.query_one("#explore-now", ArtView).data == before).all()
        await pilot.press("p")
        await until(pilot, lambda: explore.reverse, "the reverse process from the child")
        assert len(explore.reverse) == len(explore.reverse_t) == 5
        assert explore.reverse[0].shape == (256, 2)  # the trajectory is that of the first batch of 256
        assert explore.reverse_t == sorted(explore.reverse_t, reverse=True)  # from noise towards the data

    drive(app, script)


def test_explore_shows_the_reverse_process_of_a_2d_run_as_ten_panels(tmp_path):
    cli = Cli(tmp_path / "experiments.db")
    res = cli("run", "--preset", "scurve-seed", "--set", "steps=4", "--set", "log_every=2", "--set", "sample_every=0",
              "--set", "checkpoint_every=0", "--set", "hidden=16", "--name", "toy")  # fmt: skip
    assert res.exit_code == 0, res.output
    app = make_app(cli.db)

    async def script(pilot):
        from textual.widgets import Static

        await pilot.press("e")
        explore = app.screen
        await until(pilot, lambda: explore.abar is not None, "the schedule and the S-curve to load")
        assert not explore.query_one("#explore-panels").display
        await pilot.press("n")
        await until(pilot, lambda: explore.panels, "the panels from the child")
        await pilot.pause()
        assert [p.title for p in explore.panels] == [
            "x_100",
            "x_89",
            "x_78",
            "x_67",
            "x_56",
            "x_44",
            "x_33",
            "x_22",
            "x_11",
            "x_0",
        ]
        view = explore.query_one("#explore-panels", Static)
        shown = str(view.render())
        assert view.display and shown.count("\u250c") == 10 and "x_100" in shown and "x_0" in shown
        assert 0 < view.region.height and view.region.bottom <= app.size.height - 1  # on screen, above the footer
        assert "ddpm-100" in str(explore.query_one("#explore-panels-title", Static).render())

    drive(app, script)


def test_compare_lists_only_the_config_keys_that_differ(db):
    app = make_app(db)

    async def script(pilot):
        await pilot.press("space", "space", "c")
        screen = app.screen
        assert screen.differences == {"lr": [0.003, 0.001]}
        chart = screen.query_one("#compare-chart")
        assert set(chart.series) == {"2 hi", "1 lo"}
        assert screen.query_one("#compare-art-1").data.shape == (4, 1, 28, 28)

    drive(app, script)


def test_compare_shows_the_grids_of_one_common_step_and_draws_them_with_the_same_noise(db):
    """The grids come from the latest step both runs have samples at; [ and ] move it over the
    steps they share; n draws each run's checkpoint at that step in a child process with one
    seed and sampler (what core.generate.draw gives for each), and n again goes back."""
    import numpy as np

    from core.generate import draw
    from core.sampling_spec import resolve_spec

    app = make_app(db)
    with Store(db) as store:
        recorded = {(rid, step): store.samples_at(rid, step).data for rid in (1, 2) for step in (6, 12)}
        spec = resolve_spec(store.get_run(1).config)
        fresh = {rid: draw(store.checkpoint_at(rid, 6).path, 4, spec, seed=0, device="cpu").data for rid in (1, 2)}
    assert not np.array_equal(fresh[1], fresh[2])

    async def script(pilot):
        from textual.widgets import Static

        await pilot.press("space", "space", "c")
        screen = app.screen

        def art(rid):
            return screen.query_one(f"#compare-art-{rid}").data

        def note():
            return str(screen.query_one("#compare-step", Static).render())

        assert screen.step == 12 and "samples at step 12 (2 of 2 steps" in note()
        assert all(np.array_equal(art(rid), recorded[rid, 12]) for rid in (1, 2))
        assert "step 12, ddim-10 eta 0" in str(screen.query_one("#compare-title-1", Static).render())
        await pilot.press("left_square_bracket")
        assert screen.step == 6 and "samples at step 6 (1 of 2 steps" in note()
        assert all(np.array_equal(art(rid), recorded[rid, 6]) for rid in (1, 2))
        await pilot.press("left_square_bracket")  # no earlier shared step: it stays
        assert screen.step == 6
        await pilot.press("n")
        assert screen.same_noise and screen.plan.step == 6
        await until(pilot, lambda: screen.noise is not None, "both fresh grids from the child processes")
        assert all(np.array_equal(art(rid), fresh[rid]) for rid in (1, 2))
        assert "same noise at step 6: ddim-10 eta 0, seed 0" in note()
        await pilot.press("n")
        assert not screen.same_noise and screen.step == 6
        assert all(np.array_equal(art(rid), recorded[rid, 6]) for rid in (1, 2))
        await pilot.press("right_square_bracket")
        assert screen.step == 12 and screen.pinned is None  # back on the latest: it follows new grids again

    drive(app, script)


def test_a_sample_grid_appears_animates_and_saves_as_png(db, tmp_path):
    app = make_app(db)
    out = tmp_path / "grid.png"

    async def script(pilot):
        from textual.widgets import Input

        from ddpm_tui.widgets.art import ArtView

        await pilot.press("g")
        screen = app.screen
        screen.query_one("#s-n", Input).value = "9"
        screen.query_one("#s-steps", Input).value = "5"
        await pilot.pause()
        await pilot.press("ctrl+r")
        await until(pilot, lambda: screen.final is not None, "sampling in the child process")
        assert screen.final.shape == (9, 1, 28, 28) and len(screen.frames) == 5
        await until(pilot, lambda: screen._timer is None, "the animation to finish")
        assert screen.query_one("#sample-art", ArtView).data is screen.final
        screen.query_one("#s-out", Input).value = str(out)
        await pilot.press("ctrl+s")
        await until(pilot, out.exists, "the PNG")

    drive(app, script)
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > 28 * 3 and im.mode == "L"


def test_a_damaged_checkpoint_is_one_line_on_the_sample_screen(db):
    """The child's ``error:`` line is what the screen says; no traceback reaches it."""
    app = make_app(db)
    with Store(db) as store:
        path = Path(store.checkpoint_at(2).path)
    path.write_bytes(path.read_bytes()[:1000])

    async def script(pilot):
        from textual.widgets import Static

        await pilot.press("g")
        screen = app.screen
        await pilot.press("ctrl+r")
        status = screen.query_one("#sample-status", Static)
        await until(pilot, lambda: "failed" in str(status.content), "the sampling process to fail")
        text = str(status.content)
        assert text.startswith(f"[red]sampling failed: checkpoint {path} is corrupt or unreadable: "), text
        assert "\n" not in text and "Traceback" not in text

    drive(app, script)


def test_leaving_the_sample_screen_kills_its_sampling_process(db):
    """No sampler outlives its screen: a 1024-sample ddpm draw is killed (and reaped) when
    the screen is dismissed, long before it could finish."""
    app = make_app(db)

    async def script(pilot):
        from textual.widgets import Input, Select

        await pilot.press("g")
        screen = app.screen
        screen.query_one("#s-sampler", Select).value = "ddpm"
        screen.query_one("#s-n", Input).value = "1024"
        await pilot.pause()
        await pilot.press("ctrl+r")
        await until(pilot, lambda: screen.job is not None and screen.job.proc is not None, "the sampling process to start")
        proc = screen.job.proc
        assert proc.poll() is None, "the draw is long: it must still be running"
        await pilot.press("escape")
        assert app.screen is not screen
        await until(pilot, lambda: proc.returncode is not None, "the sampling process to be killed")
        assert proc.returncode == -signal.SIGKILL
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)  # killed and reaped: not even a zombie is left

    drive(app, script)


def test_leaving_explore_before_its_data_arrives_leaves_the_dashboard_working(db, monkeypatch):
    """The load thread finishes after its screen has gone: its hand-back finds no widgets, and
    that must stay the thread's problem, neither an error screen nor the app's exit."""
    from ddpm_tui.screens.explore import ExploreScreen
    from ddpm_tui.screens.sample import SampleScreen

    release, returned = threading.Event(), threading.Event()
    real = ExploreScreen._data

    def held(run):
        release.wait(30)
        try:
            return real(run)
        finally:
            returned.set()

    monkeypatch.setattr(ExploreScreen, "_data", staticmethod(held))
    app = make_app(db)

    async def script(pilot):
        await pilot.press("e")
        explore = app.screen
        assert isinstance(explore, ExploreScreen)
        await pilot.press("escape")
        assert app.screen is not explore
        release.set()
        await until(pilot, returned.is_set, "the load to return")
        await pilot.pause(0.5)
        assert app.is_running and app.return_code is None
        await pilot.press("g")
        assert isinstance(app.screen, SampleScreen)

    drive(app, script)


def test_delete_asks_first_and_tag_edits_the_row(db):
    app = make_app(db)

    async def script(pilot):
        from ddpm_tui.screens.confirm import ConfirmScreen

        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert set(rows(app)) == {1, 2}
        await pilot.press("d")
        await pilot.press("y")
        await until(pilot, lambda: set(rows(app)) == {1}, "the row to go")
        assert not (db.parent / "experiments.runs" / "2").exists()
        await pilot.press("t")
        await pilot.press(*"good", "space", "minus", *"sweep", "enter")
        await until(pilot, lambda: rows(app)[1]["tags"] == "good", "the new tags")

    drive(app, script)


# ---- the process: no torch, errors, entry points ---------------------------------------------


def test_opening_the_runs_table_does_not_import_torch(db):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from core.store import open_store\n"
        "from ddpm_tui.app import DdpmApp\n"
        "async def auto(pilot):\n"
        "    from textual.widgets import DataTable\n"
        "    await pilot.pause()\n"
        "    t = pilot.app.screen.query_one(DataTable)\n"
        "    print('rows', t.row_count, 'torch', 'torch' in sys.modules, 'numpy', 'numpy' in sys.modules)\n"
        "    pilot.app.exit()\n"
        f"DdpmApp(open_store(Path({str(db)!r}), create=True)).run(headless=True, size=(120, 40), auto_pilot=auto)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "rows 2 torch False" in res.stdout, res.stdout


def test_sampling_and_exploring_leave_torch_out_of_the_dashboard(db):
    """The UI process imports no torch: a grid is drawn in a child process (so are the compare
    screen's same-noise grids), and the explore screen's schedule and data are numpy."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from core.store import open_store\n"
        "from ddpm_tui.app import DdpmApp\n"
        "async def until(pilot, cond):\n"
        "    deadline = time.monotonic() + 150\n"
        "    while not cond() and time.monotonic() < deadline:\n"
        "        await pilot.pause(0.1)\n"
        "async def auto(pilot):\n"
        "    from ddpm_tui.widgets.art import ArtView\n"
        "    await pilot.pause()\n"
        "    await pilot.press('g')\n"
        "    sample = pilot.app.screen\n"
        "    await pilot.press('ctrl+r')\n"
        "    await until(pilot, lambda: sample.final is not None and sample._timer is None)\n"
        "    grid = sample.query_one('#sample-art', ArtView).data\n"
        "    print('grid', None if grid is None else grid.shape, grid is sample.final, sample._meta)\n"
        "    await pilot.press('escape', 'e')\n"
        "    explore = pilot.app.screen\n"
        "    await until(pilot, lambda: explore.abar is not None)\n"
        "    t0 = explore.t\n"
        "    await pilot.press('right')\n"
        "    print('moved', explore.t - t0, explore.query_one('#explore-now', ArtView).data.shape)\n"
        "    await pilot.press('escape', 'space', 'space', 'c', 'n')\n"
        "    compare = pilot.app.screen\n"
        "    await until(pilot, lambda: compare.noise is not None)\n"
        "    print('same noise', sorted(compare.noise), compare.plan.step)\n"
        "    print('torch', 'torch' in sys.modules)\n"
        "    pilot.app.exit()\n"
        f"DdpmApp(open_store(Path({str(db)!r}), create=False)).run(headless=True, size=(140, 45), auto_pilot=auto)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "grid (16, 1, 28, 28) True 16 samples from run 2 at step 12, ddim-10 eta" in res.stdout, res.stdout
    assert "moved 1 (3, 1, 28, 28)" in res.stdout, res.stdout
    assert "same noise [1, 2] 12" in res.stdout, res.stdout
    assert "torch False" in res.stdout, res.stdout


def test_the_dashboard_loads_neither_the_cli_nor_torch():
    """Every screen and widget shares code with the CLI through modules of their own, so the
    dashboard never loads Typer (nor torch: sampling runs in a child process)."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import ddpm_tui.app, ddpm_tui.screens, ddpm_tui.widgets\n"
        "for pkg in (ddpm_tui.screens, ddpm_tui.widgets):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
        "print(sorted(m for m in ('typer', 'torch', 'ddpm_tui.cli') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_no_dashboard_module_imports_the_cli():
    """Not even lazily, inside a function: what both faces need lives outside ddpm_tui.cli."""
    offenders = []
    for path in sorted((ROOT / "ddpm_tui").rglob("*.py")):
        if path.relative_to(ROOT / "ddpm_tui").parts[0].removesuffix(".py") == "cli":
            continue  # the CLI itself
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            offenders += [
                f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "typer" or n.startswith("ddpm_tui.cli")
            ]
    assert offenders == []


@pytest.mark.parametrize("kind", ["text", "foreign", "folder"])
def test_a_bad_database_is_one_error_line(tmp_path, kind):
    path = tmp_path / "x.db"
    if kind == "text":
        path.write_text("hello, not sqlite\n" * 100)
    elif kind == "foreign":
        with sqlite3.connect(path) as con:
            con.execute("CREATE TABLE songs (title TEXT)")
    else:
        path.mkdir()
    res = subprocess.run(
        [sys.executable, "-m", "ddpm_tui.app", "--db", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr


def test_help_needs_no_terminal():
    res = subprocess.run([sys.executable, "-m", "ddpm_tui.app", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0 and "--db" in res.stdout and "DDPM_DB" in res.stdout


# ---- snapshots ----------------------------------------------------------------------------------


@pytest.fixture
def frozen_db(db, monkeypatch) -> Path:
    """The copy with everything that varies between machines and minutes made fixed: times,
    throughput, memory and load, devices, file sizes, loss values and the sample pixels (real
    MNIST test digits in place of the freshly sampled ones)."""
    import numpy as np

    from core.sources import load_mnist

    digits = np.ascontiguousarray(load_mnist("test")[0][:4, None])
    with sqlite3.connect(db) as con:
        con.execute(
            "UPDATE runs SET created = ? - 3600 * id, started = ? - 3600 * id + 1, ended = ? - 3600 * id + 3, heartbeat = NULL,"
            " elapsed_s = 2.0, images_per_s = 1000.0 + id, device = 'cpu', host = 'host', last_loss = 0.5 / id, env = ?",
            (FROZEN, FROZEN, FROZEN, json.dumps(FROZEN_ENV)),
        )
        con.execute("UPDATE metrics SET value = round(1.0 / (1 + step * run * 0.1), 4), time = ? + step", (FROZEN,))
        # the worker's memory and load, as a 2-core box would show them (the run screen's throughput line)
        con.execute("UPDATE metrics SET value = 1230.0 + run WHERE name = 'rss_mb'")
        con.execute("UPDATE metrics SET value = 98.0 WHERE name = 'cpu_util'")
        con.execute(
            "UPDATE samples SET data = ?, shape = ?, dtype = 'uint8', time = ?",
            (digits.tobytes(), json.dumps(list(digits.shape)), FROZEN),
        )
        con.execute("UPDATE checkpoints SET bytes = 900000, time = ?", (FROZEN,))
    monkeypatch.chdir(db.parent)  # the header shows the path as given: keep it 'experiments.db'
    return Path("experiments.db")


def snapshot_app(path: Path):
    from ddpm_tui.app import DdpmApp

    return DdpmApp(Store(path), clock=lambda: FROZEN, accelerators=Accelerators(cpu_cores=2))


def test_snapshot_runs(frozen_db, snap_compare):
    assert snap_compare(snapshot_app(frozen_db), terminal_size=SIZE)


def test_snapshot_run(frozen_db, snap_compare):
    assert snap_compare(snapshot_app(frozen_db), press=["enter"], terminal_size=SIZE)


def test_snapshot_compare(frozen_db, snap_compare):
    assert snap_compare(snapshot_app(frozen_db), press=["space", "space", "c"], terminal_size=SIZE)


def test_snapshot_queue(frozen_db, snap_compare):
    """Three runs of a study waiting behind a lone run moved to the front, no scheduler."""
    from core.store import NewRun
    from core.sweep import expand, new_runs

    with Store(frozen_db) as store:
        store.create_runs(new_runs(expand("grid", "smoke", {"lr": "1e-3,2e-3,4e-3", "channel_mult": "[1,2]"}), "grid", "smoke"))
        (lone,) = store.create_runs([NewRun(preset_config("smoke"), "smoke", "lone", in_queue=True, device="cpu")])
        store.move_to_front(lone)
    assert snap_compare(snapshot_app(frozen_db), press=["Q"], terminal_size=SIZE)


def preset_config(name: str) -> dict:
    from core.config import preset

    return preset(name).to_dict()
