"""``ddpm study`` against real SQLite files holding a recorded sweep with the progress,
evaluations and sample grids its runs would have written (nothing is trained)."""

from __future__ import annotations

import csv
import io

import pytest

from core.store import Store
from ddpm_tui.cli import app
from tests.core.studies import OTHER, digits, finish, judge, sweep
from tests.ddpm_tui.conftest import Cli, error_line

FIDS = (12.0, 14.0, 30.0, 34.0, 20.0, 21.0)  # lr=1e-4: 13 ± 1.41; lr=1e-3: 32 ± 2.83; lr=1e-2: 20.5 ± 0.71


@pytest.fixture
def cli(tmp_path) -> Cli:
    """Study ``lr`` (three lrs x two seeds, all judged, each with digits) and study ``mult``
    (queued, nothing measured)."""
    cli = Cli(tmp_path / "experiments.db")
    with Store(cli.db) as store:
        ids = sweep(store, "lr", {"lr": "1e-4,1e-3,1e-2"}, seeds=2)
        for i, (rid, fid) in enumerate(zip(ids, FIDS)):
            finish(store, rid, loss=0.1 + i / 100, ips=100.0 * (i + 1), elapsed=60.0)
            judge(store, rid, fid=fid, confident=0.5 + i / 10)
            digits(store, rid, 40 * i)
        sweep(store, "mult", {"channel_mult": "[1],[1,2]"})
    return cli


def wide(cli: Cli, *args: str):
    """The command as a 200-column terminal sees it (CliRunner's default is 80)."""
    return cli.runner.invoke(app, [*args, "--db", str(cli.db)], env={"COLUMNS": "200"})


def test_the_table_ranks_settings_and_stars_the_best(cli):
    res = wide(cli, "study", "lr", "--art", "ascii")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "swept: lr" in out and "ranked by fid (lower is better)" in out
    assert "quality figures: ddim-50 eta 0, n=1000" in out
    table = [line.split() for line in out.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"])]
    assert [(row[0], row[1]) for row in table] == [("1", "\u2605"), ("2", "0.01"), ("3", "0.001")]
    assert "13.00 \u00b1 1.41" in out and "20.50 \u00b1 0.71" in out and "32.00 \u00b1 2.83" in out
    assert "fid by lr (lower is better)" in out and "lr (log scale)" in out  # the chart, log x over 1e-4..1e-2
    assert "best  lr=0.0001  fid 13.00 \u00b1 1.41  run 1" in out
    assert "worst  lr=0.001  fid 32.00 \u00b1 2.83  run 3" in out


def test_rank_by_a_higher_is_better_figure(cli):
    doc = cli.json("study", "lr", "--rank", "confident")
    assert doc["rank"] == "confident" and doc["better"] == "higher"
    assert [s["label"] for s in doc["settings"]] == ["lr=0.01", "lr=0.001", "lr=0.0001"]


def test_json_shape(cli):
    doc = cli.json("study", "lr")
    assert set(doc) >= {"study", "protocol", "swept", "rank", "settings"}
    assert (doc["study"], doc["protocol"], doc["swept"], doc["rank"]) == ("lr", "ddim-50 eta 0, n=1000", ["lr"], "fid")
    first = doc["settings"][0]
    assert first["values"] == {"lr": 0.0001} and first["runs"] == [1, 2] and first["seeds"] == [0, 1]
    assert first["best"] is True and [s["best"] for s in doc["settings"]] == [True, False, False]
    assert first["figures"]["fid"] == {"mean": 13.0, "std": pytest.approx(2**0.5), "n": 2}
    assert first["figures"]["images_per_s"] == {"mean": 150.0, "std": pytest.approx(2**0.5 * 50), "n": 2}
    assert first["steps"] == [20, 20] and first["status"] == {"completed": 2}


def test_csv_has_the_json_rows(cli):
    res = cli("study", "lr", "--csv")
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert rows[0] == ["rank", "best", "lr", "runs", "seeds", "status", "step", "total_steps",
                       "loss_mean", "loss_std", "loss_n", "fid_mean", "fid_std", "fid_n", "confident_mean", "confident_std",
                       "confident_n", "images_per_s_mean", "images_per_s_std", "images_per_s_n", "elapsed_s_mean",
                       "elapsed_s_std", "elapsed_s_n", "unjudged"]  # fmt: skip
    body = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert [(r["rank"], r["best"], r["lr"], r["runs"], r["seeds"]) for r in body] == [
        ("1", "1", "0.0001", "1 2", "0 1"),
        ("2", "0", "0.01", "5 6", "0 1"),
        ("3", "0", "0.001", "3 4", "0 1"),
    ]
    assert float(body[0]["fid_mean"]) == 13.0 and float(body[2]["fid_std"]) == pytest.approx(8**0.5)


def test_runs_judged_otherwise_are_named(cli):
    with cli.store() as store:
        judge(store, 2, OTHER, fid=1.0)  # a later evaluation under another protocol does not count
        store.conn.execute("DELETE FROM evals WHERE run = 6 AND n = 1000")
        store.conn.commit()
    doc = cli.json("study", "lr")
    assert doc["unjudged"] == [6]
    assert doc["settings"][0]["figures"]["fid"]["mean"] == 13.0
    res = wide(cli, "study", "lr")
    assert "no figures under that protocol: runs 6" in res.stdout


def test_the_list_of_studies(cli):
    res = wide(cli, "study")
    assert res.exit_code == 0, res.output
    lines = [line.split() for line in res.stdout.splitlines()]
    assert lines[1][:2] == ["lr", "6"] and "lr=0.0001" in lines[1] and "13.00" in lines[1]
    assert lines[2][:2] == ["mult", "2"] and "queued" in lines[2]
    doc = cli.json("study")
    assert [(d["study"], d["runs"], d["settings"], d["rank"]) for d in doc] == [("lr", 6, 3, "fid"), ("mult", 2, 2, None)]
    assert doc[0]["best"]["label"] == "lr=0.0001" and doc[1]["best"] is None


def test_bad_input_is_one_line(cli):
    res = cli("study", "nope")
    assert res.exit_code == 1 and error_line(res) == "error: no study 'nope'; studies: lr, mult"
    res = cli("study", "lr", "--rank", "swd")
    assert res.exit_code == 1 and "has the figure 'swd' to rank by; it has: loss, fid, confident" in error_line(res)
    res = cli("study", "lr", "--json", "--csv")
    assert res.exit_code == 1 and "choose one" in error_line(res)


def test_no_database_is_no_studies(tmp_path):
    cli = Cli(tmp_path / "none.db")
    res = cli("study")
    assert res.exit_code == 0 and "no studies yet" in res.stdout
    assert cli.json("study") == []
    assert not (tmp_path / "none.db").exists()
