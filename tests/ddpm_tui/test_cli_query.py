"""Many runs at once: ``ddpm ls --where/--sort/--limit``, ``ddpm export --all/--study``, and the
dashboard's runs filter reading the same expressions (under Pilot). Runs are recorded with
the store's own methods, as a sweep and ``ddpm eval`` record them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from core.config import preset
from core.sampling_spec import Protocol, SamplingSpec
from core.store import NewRun, Store
from tests.ddpm_tui.conftest import Cli, drive, error_line, make_app, rows

PROTOCOL = Protocol(SamplingSpec("ddim", 50, 0.0, None), 100, 0)


@pytest.fixture
def db(tmp_path) -> Path:
    """Four runs: study s (1: lr 1e-3 eps fid 40, 2: lr 2e-3 v fid 20 tagged good, 3: lr 4e-3
    v fid 25) and a lone run 4 never evaluated; run 1 has a final loss, run 2 a grad_norm."""
    path = tmp_path / "experiments.db"
    with Store(path) as store:
        specs = [
            NewRun(
                preset("smoke", {"lr": lr, "objective": obj, "seed": i}).to_dict(),
                "smoke",
                name=f"s/lr={lr},objective={obj}",
                study="s",
                tags=["good"] if i == 1 else [],
            )
            for i, (lr, obj) in enumerate([(1e-3, "eps"), (2e-3, "v"), (4e-3, "v")])
        ]
        ids = store.create_runs(specs)
        ids.append(store.create_run(preset("smoke", {"channel_mult": "1"}).to_dict(), preset="smoke", name="lone").id)
        for rid, fid in zip(ids, [40.0, 20.0, 25.0]):
            store.add_eval(rid, 5, protocol=PROTOCOL, figures={"fid": fid + 10, "kid": 0.5}, floor={}, seconds=1.0)
            store.add_eval(rid, 10, protocol=PROTOCOL, figures={"fid": fid, "kid": fid / 1000}, floor={}, seconds=1.0)
        store.set_progress(ids[0], last_loss=0.05, step=10, images_per_s=120.0)
        store.record(ids[1], [(10, "grad_norm", 1.5, 0.0)], heartbeat=False)
    return path


def ids(cli: Cli, *args: str) -> list[int]:
    return [r["id"] for r in cli.json("ls", *args)]


def test_ls_where_filters_and_ands_expressions(db):
    cli = Cli(db)
    assert ids(cli, "--where", "fid<30") == [3, 2]  # the latest evaluation's figure
    assert ids(cli, "--where", "fid<30", "--where", "lr>=3e-3") == [3]
    assert ids(cli, "--where", "objective=v", "--where", "name~LR=0.002") == [2]
    assert ids(cli, "--where", "channel_mult=1") == [4]
    assert ids(cli, "--where", "tags=good") == [2]
    assert ids(cli, "--where", "grad_norm>1") == [2]
    assert ids(cli, "--where", "last_loss<0.1", "--where", "images_per_s>100") == [1]
    assert ids(cli, "--where", "fid>0", "--study", "s", "--tag", "good") == [2]
    assert ids(cli, "--where", "fid>1000") == []


def test_ls_sort_and_limit(db):
    cli = Cli(db)
    assert ids(cli, "--sort", "fid") == [2, 3, 1, 4]  # without the key: last
    assert ids(cli, "--sort", "-fid") == [1, 3, 2, 4]
    assert ids(cli, "--sort", "-lr", "--limit", "3") == [3, 4, 2]  # ties (2e-3) keep newest first
    assert ids(cli, "--limit", "1") == [4]  # newest first
    assert ids(cli, "--where", "fid<30", "--sort", "fid", "--limit", "1") == [2]


def test_ls_json_keeps_its_fields(db):
    doc = Cli(db).json("ls", "--where", "fid<30", "--sort", "fid")
    assert doc[0]["id"] == 2 and doc[0]["fid"] == 20.0 and doc[0]["fid_protocol"] == PROTOCOL.key
    assert {"name", "status", "step", "total_steps", "config", "device", "tags", "study"} <= set(doc[0])


def test_ls_table_shows_a_sort_key_that_is_not_a_column(db, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    cli = Cli(db)
    out = cli("ls", "--sort", "lr", "--where", "fid<100").stdout
    header, *lines = out.splitlines()
    assert header.split()[-1] == "lr" and lines[0].split()[0] == "1" and "0.001" in lines[0]
    assert cli("ls", "--sort", "fid").stdout.splitlines()[0].split()[-1] == "tags"  # fid has its column


@pytest.mark.parametrize(
    "args, message",
    [
        (["--where", "fid<<3"], "--where \"fid<<3\": expected a value after '<' at column 5"),
        (["--where", "fdi<3"], "unknown key 'fdi'; nearest: fid"),
        (["--where", "fid<nan"], "'nan' is not a finite number"),
        (["--where", "lr>abc"], "lr is a number and 'abc' is not one"),
        (["--sort", "fdi"], "--sort \"fdi\": unknown key 'fdi'; nearest: fid"),
        (["--sort", "-"], "expected a key"),
    ],
)
def test_ls_bad_expressions_are_one_line(db, args, message):
    res = Cli(db)("ls", *args)
    assert res.exit_code == 1 and message in error_line(res) and res.stdout == ""


def test_ls_limit_must_be_positive(db):
    assert Cli(db)("ls", "--limit", "0").exit_code == 2


def test_export_all_as_csv_has_a_column_per_config_field_and_the_final_figures(db):
    from core.config import FIELDS

    res = Cli(db)("export", "--all", "--format", "csv")
    assert res.exit_code == 0, res.output
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["id"] for r in table] == ["4", "3", "2", "1"]
    cols = list(table[0])
    assert cols[:6] == ["id", "name", "study", "status", "preset", "device"]
    assert set(FIELDS) <= set(cols) and {"last_loss", "images_per_s", "fid", "kid", "eval_step"} <= set(cols)
    one = table[3]
    assert (one["lr"], one["objective"], one["channel_mult"], one["fid"], one["eval_step"]) == (
        "0.001",
        "eps",
        "1,2",
        "40.0",
        "10",
    )
    assert (one["last_loss"], one["images_per_s"], one["study"]) == ("0.05", "120.0", "s")
    assert table[0]["fid"] == "" and table[0]["study"] == "" and table[0]["channel_mult"] == "1"


def test_export_study_as_json_is_the_same_rows_as_objects(db, tmp_path):
    cli = Cli(db)
    out = tmp_path / "s.json"
    res = cli("export", "--study", "s", "--out", str(out))
    assert res.exit_code == 0 and "3 runs" in res.stderr
    doc = json.loads(out.read_text())
    assert [r["id"] for r in doc] == [3, 2, 1] and doc[1]["fid"] == 20.0 and doc[1]["tags"] == "good"
    assert doc[2]["last_loss"] == 0.05 and doc[0]["last_loss"] is None and doc[0]["lr"] == 0.004
    rows_csv = list(csv.DictReader(io.StringIO(cli("export", "--study", "s", "-f", "csv").stdout)))
    assert list(rows_csv[0]) == list(doc[0])


def test_export_of_one_run_is_unchanged_and_bad_combinations_are_one_line(db):
    cli = Cli(db)
    with Store(db) as store:
        store.record(1, [(3, "loss", 0.5, 1.0)], heartbeat=False)
    res = cli("export", "1", "-f", "csv")
    assert res.stdout.splitlines() == ["step,name,value,time", "3,loss,0.5,1.0"]
    assert set(json.loads(cli("export", "1").stdout)) == {"run", "metrics"}
    for args, message in ((["export"], "name a run"), (["export", "1", "--all"], "not both"), (["export", "--study", "nope"], "no study 'nope'; studies: s")):  # fmt: skip
        res = cli(*args)
        assert res.exit_code == 1 and message in error_line(res)


# ---- the dashboard's filter ------------------------------------------------------------------


def summary(app) -> str:
    return str(app.screen.query_one("#runs-summary").render())


def test_dashboard_filter_reads_expressions_and_words(db):
    app = make_app(db)

    async def script(pilot):
        assert len(rows(app)) == 4
        await pilot.press("slash", *"fid<30")
        assert set(rows(app)) == {2, 3} and "2 of 4 runs" in summary(app)
        await pilot.press(*" good")  # a plain word still matches as before, ANDed
        assert set(rows(app)) == {2}
        await pilot.press("escape", "slash", *"lr >= 3e-3")  # spaced operators glue together
        assert set(rows(app)) == {3}

    drive(app, script)


def test_dashboard_filter_shows_a_bad_expression_and_keeps_the_last_good_filter(db):
    app = make_app(db)

    async def script(pilot):
        await pilot.press("slash", *"objective=v")
        assert set(rows(app)) == {2, 3}
        box = app.screen.query_one("#filter")
        box.value = "objective=v fid<"  # as if typed at once: typing 'fid' first would filter by the word
        await pilot.pause()
        assert set(rows(app)) == {2, 3}  # the table holds still while it is half typed
        assert "filter \"fid<\": expected a value after '<' at column 5" in summary(app)
        await pilot.press("end", *"30")
        assert set(rows(app)) == {2, 3} and "filter" not in summary(app)
        await pilot.press("<")
        assert set(rows(app)) == {2, 3} and "fid is a number and '30<' is not one" in summary(app)
        for text, message in (("fdi<3", "unknown key 'fdi'; nearest: fid"), ("fid<nan", "'nan' is not a finite number"),
                              ("tags>x", "tags is a list")):  # fmt: skip
            box.value = text
            await pilot.pause()
            assert message in summary(app) and set(rows(app)) == {2, 3}
        await pilot.press("escape")
        assert len(rows(app)) == 4 and "filter" not in summary(app)

    drive(app, script)


def many(path: Path, n: int) -> None:
    """``n`` more runs, each judged with fid = its index."""
    with Store(path) as store:
        new = store.create_runs([NewRun(preset("smoke", {"seed": i}).to_dict(), "smoke", name=f"m{i}") for i in range(n)])
        for i, rid in enumerate(new):
            store.add_eval(rid, 10, protocol=PROTOCOL, figures={"fid": float(i)}, floor={}, seconds=1.0)


def test_the_ls_table_shows_the_first_rows_and_says_how_many_more(db, monkeypatch):
    from ddpm_tui.cli import ls

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(ls, "TABLE_ROWS", 5)
    many(db, 6)
    cli = Cli(db)
    lines = cli("ls", "--where", "fid<100", "--sort", "fid").stdout.splitlines()
    assert [line.split()[0] for line in lines[1:6]] == ["5", "6", "7", "8", "9"]  # fid 0 to 4
    assert "5 of 9 runs shown" in lines[6] and "--limit N" in lines[6]
    out = cli("ls", "--where", "fid<100", "--sort", "fid", "--limit", "7").stdout.splitlines()
    assert len(out) == 8 and "shown" not in " ".join(out)  # a --limit is shown whole
    assert len(cli.json("ls")) == 10  # JSON is never cut


def test_the_dashboard_shows_the_first_rows_and_says_how_many_more(db, monkeypatch):
    from ddpm_tui.screens import runs

    monkeypatch.setattr(runs, "TABLE_ROWS", 5)
    many(db, 6)
    app = make_app(db)

    async def script(pilot):
        assert list(rows(app)) == [10, 9, 8, 7, 6] and "showing the first 5 of 10 runs" in summary(app)
        await pilot.press("slash", *"fid<2")
        assert list(rows(app)) == [6, 5] and "showing" not in summary(app)

    drive(app, script)
