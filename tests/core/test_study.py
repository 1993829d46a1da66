"""The study view on real SQLite files: swept keys read from the configs, runs grouped into
settings, figures over seeds with exact means and spreads, one protocol, ranking both ways."""

from __future__ import annotations

import json
import math

import pytest

from core.store import NewRun, Store
from core.study import StudyError, chart_data, chart_keys, list_studies, load_study, swept_keys
from tests.core.studies import DDIM, OTHER, finish, judge, sweep


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "experiments.db") as s:
        yield s


def by_label(study):
    return {s.label: s for s in study.settings}


# ---- swept keys and settings ---------------------------------------------------------------


def test_swept_keys_are_the_fields_that_differ_seed_apart_with_tuples_as_values():
    base = {"lr": 2e-3, "channel_mult": [1, 2], "seed": 0, "T": 50}
    configs = [
        base,
        {**base, "seed": 1},
        {**base, "channel_mult": (1, 2, 2)},  # a tuple as a RunConfig holds it
        {**base, "channel_mult": [1, 2], "lr": 0.002},  # the same values written otherwise
    ]
    assert swept_keys(configs) == ["channel_mult"]
    assert swept_keys(configs[:2]) == []  # seeds alone sweep nothing


def test_a_tuple_sweep_groups_its_seeds_into_settings(store):
    sweep(store, "mult", {"channel_mult": "[1],[1,2]", "lr": "1e-3,2e-3"}, seeds=2)
    study = load_study(store, "mult")
    assert study.swept == ["channel_mult", "lr"]
    assert [s.label for s in study.settings] == [
        "channel_mult=[1],lr=0.001",
        "channel_mult=[1],lr=0.002",
        "channel_mult=[1,2],lr=0.001",
        "channel_mult=[1,2],lr=0.002",
    ]
    assert [s.seeds for s in study.settings] == [[0, 1]] * 4
    assert [[r.id for r in s.runs] for s in study.settings] == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert study.settings[2].values == {"channel_mult": [1, 2], "lr": 0.001}


def test_a_key_swept_in_part_of_a_study_and_a_config_lacking_a_field_still_group(store):
    """A second sweep into the same study varies another key: the first sweep's runs keep the
    preset's value of it (objective eps), the second's the preset's lr. A run whose config
    lacks the field (an older run) is a setting of its own, shown as '-'."""
    sweep(store, "part", {"lr": "1e-3,2e-3"}, seeds=2)
    sweep(store, "part", {"objective": "eps,v"}, seeds=2)  # eps at lr 2e-3 is already a setting
    old = {k: v for k, v in store.get_run(1).config.items() if k != "objective"}
    store.create_runs([NewRun(old, "smoke", "part/old", study="part")])
    study = load_study(store, "part")
    assert study.swept == ["objective", "lr"]  # RunConfig's order: diffusion before optimisation
    runs = {s.label: [r.id for r in s.runs] for s in study.settings}
    assert runs == {
        "objective=eps,lr=0.001": [1, 2],
        "objective=eps,lr=0.002": [3, 4, 5, 6],
        "objective=v,lr=0.002": [7, 8],
        "objective=-,lr=0.001": [9],
    }
    assert by_label(study)["objective=-,lr=0.001"].values == {"objective": None, "lr": 0.001}


# ---- figures over seeds ------------------------------------------------------------------------


def test_figures_are_mean_and_sample_std_over_seeds(store):
    ids = sweep(store, "agg", {"lr": "1e-3,2e-3"}, seeds=3)
    for rid, loss, fid, ips, secs in zip(
        ids,
        (0.1, 0.2, 0.3, 0.5, 0.5, 0.5),
        (1.0, 2.0, 4.0, 10.0, 12.0, 14.0),
        (100, 200, 300, 50, 50, 50),
        (10, 20, 30, 60, 60, 60),
    ):
        finish(store, rid, loss=loss, ips=ips, elapsed=secs)
        judge(store, rid, fid=fid, confident=0.5 + fid / 100)
    study = load_study(store, "agg")
    lo, hi = by_label(study)["lr=0.001"], by_label(study)["lr=0.002"]
    assert lo.figure("fid").mean == pytest.approx(7 / 3)
    assert lo.figure("fid").std == pytest.approx(math.sqrt(7 / 3))
    assert lo.figure("fid").n == 3
    assert hi.figure("fid").mean == pytest.approx(12.0) and hi.figure("fid").std == pytest.approx(2.0)
    assert lo.figure("loss").mean == pytest.approx(0.2) and lo.figure("loss").std == pytest.approx(0.1)
    assert hi.figure("loss").std == pytest.approx(0.0)
    assert lo.figure("images_per_s").mean == pytest.approx(200.0) and lo.figure("elapsed_s").mean == pytest.approx(20.0)
    assert lo.figure("confident").mean == pytest.approx(0.5 + 7 / 300)
    assert study.figures == ["loss", "fid", "confident", "images_per_s", "elapsed_s"]
    doc = study.to_json()
    assert json.loads(json.dumps(doc)) == doc  # plain JSON
    assert doc["settings"][0]["figures"]["fid"] == {"mean": pytest.approx(7 / 3), "std": pytest.approx(math.sqrt(7 / 3)), "n": 3}


def test_one_run_has_no_spread_and_a_diverged_loss_is_left_out(store):
    ids = sweep(store, "one", {"lr": "1e-3,2e-3"}, seeds=2)
    finish(store, ids[0], loss=0.3)
    finish(store, ids[1], loss=float("nan"))
    study = load_study(store, "one")
    lo = by_label(study)["lr=0.001"]
    assert (lo.figure("loss").mean, lo.figure("loss").std, lo.figure("loss").n) == (0.3, None, 1)
    assert by_label(study)["lr=0.002"].figure("loss") is None  # queued runs have no loss yet


def test_conditional_runs_bring_class_accuracy(store):
    ids = sweep(store, "cond", {"guidance": "1,3"}, seeds=None)
    for rid, acc in zip(ids, (0.7, 0.9)):
        judge(store, rid, fid=5.0, class_accuracy=acc)
    study = load_study(store, "cond", rank="class_accuracy")
    assert [s.label for s in study.settings] == ["guidance=3", "guidance=1"]
    assert "class_accuracy" in study.figures


# ---- ranking -----------------------------------------------------------------------------------


def test_ranking_goes_each_figure_s_way_and_marks_one_best(store):
    ids = sweep(store, "rank", {"lr": "1e-3,2e-3,4e-3"})
    for rid, fid, conf in zip(ids, (30.0, 10.0, 20.0), (0.6, 0.8, 0.9)):
        finish(store, rid, loss=0.1)
        judge(store, rid, fid=fid, confident=conf)
    assert [s.label for s in load_study(store, "rank").settings] == ["lr=0.002", "lr=0.004", "lr=0.001"]  # fid: lower
    by_conf = load_study(store, "rank", rank="confident")
    assert [s.label for s in by_conf.settings] == ["lr=0.004", "lr=0.002", "lr=0.001"]  # confident: higher
    assert [s.best for s in by_conf.settings] == [True, False, False]
    assert by_conf.best.label == "lr=0.004" and by_conf.worst.label == "lr=0.001"
    assert by_conf.to_json()["better"] == "higher" and load_study(store, "rank").to_json()["better"] == "lower"


def test_settings_without_the_rank_figure_come_last_and_the_default_falls_back(store):
    ids = sweep(store, "fb", {"lr": "1e-3,2e-3,4e-3"})
    finish(store, ids[0], loss=0.3)
    finish(store, ids[2], loss=0.2)
    study = load_study(store, "fb")
    assert study.rank == "loss"  # nothing judged yet: the final loss
    assert [s.label for s in study.settings] == ["lr=0.004", "lr=0.001", "lr=0.002"]
    assert study.worst.label == "lr=0.001"  # the last that has the figure
    with pytest.raises(StudyError, match=r"has the figure 'fid' to rank by; it has: loss, images_per_s, elapsed_s"):
        load_study(store, "fb", rank="fid")


def test_an_unknown_study_names_the_known_ones(store):
    with pytest.raises(StudyError, match="no studies yet"):
        load_study(store, "nope")
    sweep(store, "b", {"lr": "1e-3,2e-3"})
    sweep(store, "a", {"lr": "1e-3,2e-3"})
    with pytest.raises(StudyError, match=r"^no study 'nope'; studies: a, b$"):
        load_study(store, "nope")


# ---- one protocol ------------------------------------------------------------------------------


def test_figures_come_from_one_protocol_and_unjudged_runs_are_named(store):
    """Most runs were judged under DDIM-50 n=1000: that is the protocol. A run judged only
    under another is named, its FID left out; a run's latest evaluation under the protocol
    counts, whatever it measured under others since."""
    ids = sweep(store, "proto", {"lr": "1e-3,2e-3"}, seeds=2)
    for rid in ids:
        finish(store, rid, loss=0.1)
    judge(store, ids[0], step=10, fid=50.0)
    judge(store, ids[0], step=20, fid=8.0)  # the latest under DDIM: this one
    judge(store, ids[0], OTHER, step=20, fid=1.0)  # later, under another protocol: not this one
    judge(store, ids[1], fid=10.0)
    judge(store, ids[2], fid=20.0)
    judge(store, ids[3], OTHER, fid=0.5)  # only under the other protocol
    study = load_study(store, "proto")
    assert study.protocol == DDIM.key == "ddim-50 eta 0, n=1000"
    lo, hi = by_label(study)["lr=0.001"], by_label(study)["lr=0.002"]
    assert (lo.figure("fid").mean, lo.figure("fid").n) == (9.0, 2)
    assert (hi.figure("fid").mean, hi.figure("fid").n) == (20.0, 1)
    assert hi.unjudged == [ids[3]] and study.unjudged == [ids[3]]
    assert hi.figure("loss").n == 2  # the loss does not depend on a protocol
    assert study.to_json()["unjudged"] == [ids[3]]


# ---- many studies, few queries -----------------------------------------------------------------


def test_a_two_hundred_run_study_is_read_in_a_few_queries(store):
    ids = sweep(store, "big", {"lr": ",".join(f"{k}e-4" for k in range(1, 11)), "objective": "eps,v"}, seeds=10)
    assert len(ids) == 200
    for rid in ids[:40]:
        judge(store, rid, fid=float(rid))
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    study = load_study(store, "big")
    store.conn.set_trace_callback(None)
    assert len(study.settings) == 20 and sum(len(s.runs) for s in study.settings) == 200
    assert len(statements) <= 4, statements


def test_list_studies_ranks_each_by_what_it_has(store):
    a = sweep(store, "a", {"lr": "1e-3,2e-3"})
    b = sweep(store, "b", {"lr": "1e-3,2e-3"})
    store.create_run({"lr": 1e-3}, preset="smoke", name="lone")  # not in a study
    finish(store, a[0], loss=0.1)
    judge(store, b[0], fid=7.0)
    judge(store, b[1], fid=3.0)
    studies = list_studies(store, rank="fid")
    assert [s.name for s in studies] == ["a", "b"]
    assert studies[0].rank == "loss" and studies[1].rank == "fid"
    assert studies[1].summary_json()["best"] == {"values": {"lr": 0.002}, "label": "lr=0.002",
                                                 "fid": {"mean": 3.0, "std": None, "n": 1}}  # fmt: skip
    assert studies[0].status == {"completed": 1, "queued": 1}


# ---- charts ------------------------------------------------------------------------------------


def test_a_chart_has_a_line_per_second_key_and_log_x_over_a_decade(store):
    ids = sweep(store, "ch", {"lr": "1e-4,1e-3", "objective": "eps,v", "loss": "l1,l2"}, seeds=2)
    for i, rid in enumerate(ids):
        judge(store, rid, fid=float(i))
    study = load_study(store, "ch")
    assert study.swept == ["objective", "loss", "lr"]
    assert chart_keys(study) == ["lr", "objective", "loss"]  # numbers first
    data = chart_data(study, "lr")
    assert data.numeric and data.log_x and data.xs == [1e-4, 1e-3]
    assert data.by == "objective" and data.pooled == ["loss"]
    assert [line.label for line in data.lines] == ["objective=eps", "objective=v"]
    # lr=1e-4, objective=eps: runs 0-3 (two losses x two seeds), fid 0..3
    first = data.lines[0].points[0]
    assert first.x == 1e-4 and first.stat.mean == pytest.approx(1.5) and first.stat.n == 4
    assert first.stat.std == pytest.approx(math.sqrt(5 / 3))
    assert "a line per objective" in data.title and "over all loss" in data.title
    cat = chart_data(study, "objective")
    assert not cat.numeric and cat.xs == ["eps", "v"] and not cat.log_x
