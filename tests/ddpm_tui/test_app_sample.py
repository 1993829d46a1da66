"""The sample screen on a class-conditional run and an unconditional one: every sampler the
engine has, a class picker and a guidance field only where the run can use them, and a grid
of one class a row drawn in the child process exactly as ``core.generate.draw`` draws it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from core.choices import SAMPLERS
from core.store import Store
from tests.ddpm_tui.conftest import FAST, Cli, drive, make_app, until


@pytest.fixture(scope="module")
def base_db(tmp_path_factory) -> Path:
    """Run 1 unconditional, run 2 class-conditional with its own guidance 1.5 (both smoke,
    12 steps), trained once for the module."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cli = Cli(tmp_path_factory.mktemp("base") / "experiments.db")
        assert cli("run", *FAST, "--name", "plain").exit_code == 0
        res = cli("run", *FAST, "--set", "cond=class", "--set", "guidance=1.5", "--name", "cond")
        assert res.exit_code == 0, res.output
    finally:
        torch.set_num_threads(threads)
    with sqlite3.connect(cli.db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return cli.db


@pytest.fixture
def db(base_db, tmp_path, monkeypatch) -> Path:
    shutil.copy(base_db, tmp_path / "experiments.db")
    shutil.copytree(base_db.parent / "experiments.runs", tmp_path / "experiments.runs")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path / "experiments.db"


def text(widget) -> str:
    return str(widget.content)


async def sample_screen_on(pilot, run_id: int):
    """Open the sample screen (it starts on the first run, the conditional one) and pick a run."""
    from textual.widgets import Select

    await pilot.press("g")
    screen = pilot.app.screen
    screen.query_one("#s-run", Select).value = run_id
    await pilot.pause()
    return screen


def test_a_conditional_run_draws_the_classes_asked_for_one_a_row_under_the_guidance_given(db):
    app = make_app(db)
    shown = {}

    async def script(pilot):
        from textual.widgets import Input, Select, Static

        from ddpm_tui.screens.sample import SampleScreen
        from ddpm_tui.widgets.art import ArtView

        await pilot.press("g")  # run 2, the conditional one, is first
        screen = app.screen
        assert isinstance(screen, SampleScreen) and screen.query_one("#s-run", Select).value == 2
        sampler = screen.query_one("#s-sampler", Select)
        assert {v for _, v in sampler._options} == set(SAMPLERS)  # every sampler the engine has
        assert screen.query_one("#s-cond").display and not screen.query_one("#s-cond-note").display
        assert screen.query_one("#s-guidance", Input).value == "1.5"  # the run's own
        assert screen.query_one("#s-class", Input).value == ""  # every class, one a row

        sampler.value = "dpmpp2m"
        await pilot.pause()
        eta = screen.query_one("#s-eta", Input)
        assert not screen.query_one("#s-steps", Input).disabled and not eta.disabled
        assert eta.value == "0"  # DPM-Solver++'s ODE: the run's DDIM eta is not carried over
        screen.query_one("#s-steps", Input).value = "3"
        screen.query_one("#s-n", Input).value = "4"
        screen.query_one("#s-class", Input).value = "3,5"
        screen.query_one("#s-guidance", Input).value = "2"
        await pilot.pause()
        assert text(screen.query_one("#sample-error", Static)) == ""
        await pilot.press("ctrl+r")
        await until(pilot, lambda: screen.final is not None, "sampling in the child process")
        assert screen.labels == [3, 3, 5, 5] and screen.final.shape == (4, 1, 28, 28)
        shown["final"] = screen.final
        await until(pilot, lambda: screen._timer is None, "the animation to finish")
        art = screen.query_one("#sample-art", ArtView)
        assert art.data is screen.final and art.per_row == 2  # a row of 3s over a row of 5s
        status = text(screen.query_one("#sample-status", Static))
        assert "dpmpp2m-3 w 2" in status and "classes 3,5 one a row" in status, status

    drive(app, script)
    from core.generate import draw
    from core.sampling_spec import SamplingSpec

    with Store(db) as store:
        path = store.checkpoint_at(2).path
    here = draw(path, 4, SamplingSpec("dpmpp2m", 3, 0.0, 2.0), seed=0, device="cpu", classes=[3, 5])
    assert here.labels == [3, 3, 5, 5]
    assert np.array_equal(shown["final"], here.data)  # the child drew what draw draws


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("#s-guidance", "nan", "guidance: 'nan' is not a finite number"),
        ("#s-guidance", "inf", "guidance: 'inf' is not a finite number"),
        ("#s-guidance", "-1", "guidance: must be between 0.0 and 20.0"),
        ("#s-guidance", "two", "guidance: 'two' is not a number"),
        ("#s-class", "3,x", "classes '3,x': expected a class such as 7, a range such as 0-9, or a list such as 1,7"),
        ("#s-class", "12", "classes 12: this run's classes are 0 to 9"),
    ],
)
def test_a_bad_guidance_or_class_is_one_line_and_draws_nothing(db, field, value, message):
    app = make_app(db)

    async def script(pilot):
        from textual.widgets import Input, Static

        await pilot.press("g")
        screen = app.screen
        screen.query_one(field, Input).value = value
        await pilot.pause()
        assert text(screen.query_one("#sample-error", Static)) == message
        await pilot.press("ctrl+r")
        await pilot.pause(0.3)
        assert screen.job is None and screen.final is None

    drive(app, script)


def test_an_unconditional_run_hides_the_class_and_guidance_fields_and_draws_without_them(db):
    app = make_app(db)

    async def script(pilot):
        from textual.widgets import Input, Select, Static

        screen = await sample_screen_on(pilot, 1)
        note = screen.query_one("#s-cond-note", Static)
        assert not screen.query_one("#s-cond").display and note.display
        assert "unconditional" in text(note)
        screen.query_one("#s-guidance", Input).value = "nan"  # hidden, so not read
        screen.query_one("#s-n", Input).value = "2"
        screen.query_one("#s-steps", Input).value = "2"
        await pilot.pause()
        args = screen.check()
        assert args is not None and args["spec"].guidance is None and args["classes"] is None
        await pilot.press("ctrl+r")
        await until(pilot, lambda: screen.final is not None, "sampling in the child process")
        assert screen.labels is None and screen.query_one("#sample-art").per_row is None
        screen.query_one("#s-run", Select).value = 2
        await pilot.pause()
        assert screen.query_one("#s-cond").display and not note.display
        assert screen.query_one("#s-guidance", Input).value == "1.5"

    drive(app, script)


def test_the_eta_window_field_reaches_the_draw_and_is_read_as_the_cli_reads_it(db):
    """The window is drawn with (the status names it, the child draws what draw draws), an
    out-of-range one is refused in one line, and with an eta at most 1, where it changes
    nothing, it is left out of the spec rather than refused."""
    app = make_app(db)
    shown = {}

    async def script(pilot):
        from textual.widgets import Input, Select, Static

        screen = await sample_screen_on(pilot, 1)
        window = screen.query_one("#s-window", Input)
        assert window.value == "1" and not window.disabled  # the run's own: no window
        for field, value in (("#s-steps", "2"), ("#s-n", "2"), ("#s-eta", "1.8"), ("#s-window", "1.5")):
            screen.query_one(field, Input).value = value
        await pilot.pause()
        assert text(screen.query_one("#sample-error", Static)) == "eta window: must be between 0.0 and 1.0"
        window.value = "0.5"
        await pilot.pause()
        assert screen.check()["spec"].label == "ddim-2 eta 1.8 window 0.5"
        screen.query_one("#s-eta", Input).value = "0.5"
        await pilot.pause()
        assert screen.check()["spec"].label == "ddim-2 eta 0.5" and window.value == "0.5"
        screen.query_one("#s-eta", Input).value = "1.8"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: screen.final is not None, "sampling in the child process")
        shown["final"] = screen.final
        await until(pilot, lambda: screen._timer is None, "the animation to finish")
        assert "ddim-2 eta 1.8 window 0.5" in text(screen.query_one("#sample-status", Static))
        screen.query_one("#s-sampler", Select).value = "ddpm"
        await pilot.pause()
        assert window.disabled

    drive(app, script)
    from core.generate import draw
    from core.sampling_spec import SamplingSpec

    with Store(db) as store:
        path = store.checkpoint_at(1).path
    here = draw(path, 2, SamplingSpec("ddim", 2, 1.8, eta_window=0.5), seed=0, device="cpu")
    assert np.array_equal(shown["final"], here.data)


def test_picking_ddim_on_a_dpm_solver_run_fills_in_the_runs_own_ddim_settings(db):
    """A run like quick samples with DPM-Solver++ at eta 8 and keeps DDIM's best apart
    (ddim_steps, ddim_eta, ddim_eta_window): picking a sampler in the form shows that sampler's
    steps, eta and window as `ddpm sample --sampler` resolves them, and back again."""
    from textual.widgets import Input, Select

    from core.sampling_spec import resolve_spec

    sampling = {"sampler": "dpmpp2m", "sample_steps": 6, "eta": 8.0, "eta_window": 0.75,
                "ddim_steps": 9, "ddim_eta": 1.8, "ddim_eta_window": 0.7}  # fmt: skip
    res = Cli(db)("run", *FAST, *(a for k, v in sampling.items() for a in ("--set", f"{k}={v}")), "--name", "fast")
    assert res.exit_code == 0, res.output
    with Store(db) as store:
        run = max(store.list_runs(), key=lambda r: r.id)
    assert {k: run.config[k] for k in sampling} == sampling
    rid = run.id
    app = make_app(db)

    async def script(pilot):
        screen = await sample_screen_on(pilot, rid)

        def fields() -> tuple[str, ...]:
            return tuple(screen.query_one(f, Input).value for f in ("#s-steps", "#s-eta", "#s-window"))

        assert screen.query_one("#s-sampler", Select).value == "dpmpp2m" and fields() == ("6", "8", "0.75")
        screen.query_one("#s-sampler", Select).value = "ddim"
        await pilot.pause()
        assert fields() == ("9", "1.8", "0.7")
        assert resolve_spec(run.config, "ddim").label == "ddim-9 eta 1.8 window 0.7"
        screen.query_one("#s-sampler", Select).value = "dpmpp2m"
        await pilot.pause()
        assert fields() == ("6", "8", "0.75")

    drive(app, script)
