"""`ddpm eval`, `ddpm run --eval-every`, and the figures in ls / show / compare."""

import json

from tests.ddpm_tui.conftest import FAST, error_line


def test_eval_stores_figures_as_metrics_of_the_run(cli):
    assert cli("run", *FAST).exit_code == 0
    doc = cli.json("eval", "1", "--n", "40", "--steps", "5", "--seed", "2")
    assert (doc["run"], doc["step"], doc["n"], doc["sampler"], doc["steps"], doc["seed"]) == (1, 12, 40, "ddim", 5, 2)
    assert set(doc["figures"]) == {"fid", "kid", "kid_std", "confident", "class_entropy"} == set(doc["floor"])
    assert doc["figures"]["fid"] > doc["floor"]["fid"]  # 12 steps of a tiny model: far from real digits
    with cli.store() as s:
        latest = s.latest_metrics(1)
        assert latest["fid"] == (12, doc["figures"]["fid"]) and latest["confident"][0] == 12
        (ev,) = s.evals(1)
        assert (ev["n"], ev["sampler"], ev["steps"], ev["seed"]) == (40, "ddim", 5, 2) and ev["floor"] == doc["floor"]
    shown = cli.run(1)
    assert shown["eval"]["figures"] == doc["figures"] and shown["metrics"]["fid"]["step"] == 12
    assert cli.json("ls")[0]["fid"] == doc["figures"]["fid"] and doc["protocol"] == "ddim-5 eta 0, n=40"
    assert cli.json("ls")[0]["fid_protocol"] == doc["protocol"]
    text = cli("show", "1", "--art", "ascii").stdout
    assert "quality" in text and "floor (40 real)" in text
    assert "fid" in cli("ls").stdout


def test_an_eta_window_is_judged_as_a_protocol_of_its_own(cli, tmp_path):
    """--eta-window reaches the samples and the record: its figures are another series, the
    JSON says the window, and `ddpm sample` draws other digits with it; a window that cannot
    apply is refused in one line and nothing is recorded."""
    assert cli("run", *FAST, "--set", "eta=1.8").exit_code == 0
    plain = cli.json("eval", "1", "--n", "20", "--steps", "5")
    windowed = cli.json("eval", "1", "--n", "20", "--steps", "5", "--eta-window", "0.5")
    assert (plain["eta_window"], windowed["eta_window"]) == (1.0, 0.5)
    assert (plain["protocol"], windowed["protocol"]) == ("ddim-5 eta 1.8, n=20", "ddim-5 eta 1.8 window 0.5, n=20")
    with cli.store() as s:
        assert set(s.figure_series(1, "fid")) == {plain["protocol"], windowed["protocol"]}
    for args in ([], ["--eta-window", "0.5"]):
        assert cli("sample", "1", "--n", "4", "--steps", "5", *args, "--out", str(tmp_path / f"{len(args)}.npy")).exit_code == 0
    assert not (tmp_path / "0.npy").read_bytes() == (tmp_path / "2.npy").read_bytes()
    res = cli("eval", "1", "--n", "20", "--eta", "0.5", "--eta-window", "0.5")
    assert res.exit_code == 1 and "eta_window: it confines an eta above 1, and eta 0.5 adds no extra noise" in error_line(res)
    res = cli("sample", "1", "--eta-window", "1.5")
    assert res.exit_code == 2 and "--help" in error_line(res)
    with cli.store() as s:
        assert len(s.evals(1)) == 2


def test_compare_ranks_runs_by_fid(cli):
    assert cli("run", *FAST).exit_code == 0
    assert cli("run", *FAST, "--set", "steps=3").exit_code == 0
    for ref in ("1", "2"):
        assert cli("eval", ref, "--n", "30", "--steps", "4").exit_code == 0
    doc = cli.json("compare", "1", "2", "--rank", "fid")
    fids = {int(k): v["fid"] for k, v in doc["metrics"].items()}
    assert doc["ranking"]["order"] == sorted(fids, key=fids.get)
    assert "ranked by fid (lower is better)" in cli("compare", "2", "1", "--rank", "fid", "--art", "ascii").stdout
    res = cli("compare", "1", "2", "--rank", "swd")
    assert res.exit_code == 1 and "none of these runs has that metric" in error_line(res)


def test_compare_ranks_only_under_one_protocol(cli):
    """Runs judged under different protocols are compared under the one most of them share;
    a run judged only otherwise shows no quality figures and is named, never ranked with
    figures of another protocol."""
    for _ in range(3):
        assert cli("run", *FAST).exit_code == 0
    for ref, steps in (("1", "4"), ("2", "4"), ("3", "6")):
        assert cli("eval", ref, "--n", "30", "--steps", steps).exit_code == 0
    doc = cli.json("compare", "1", "2", "3", "--rank", "fid")
    assert doc["protocol"] == doc["ranking"]["protocol"] == "ddim-4 eta 0, n=30"
    assert "fid" not in doc["metrics"]["3"] and doc["ranking"]["order"][-1] == 3
    text = cli("compare", "1", "2", "3", "--art", "ascii").stdout
    assert "quality figures: ddim-4 eta 0, n=30" in text and "not judged under that protocol: 3" in text
    ls = cli("ls").stdout
    assert "fid: ddim-4 eta 0, n=30; * under another protocol" in ls


def test_eval_every_judges_during_training(cli):
    res = cli("run", "--preset", "scurve", "--set", "steps=40", "--set", "log_every=10", "--set", "sample_every=0",
              "--set", "checkpoint_every=0", "--set", "eval_n=64", "--set", "sample_steps=5", "--eval-every", "20", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["config"]["eval_every"] == 20
    with cli.store() as s:
        assert [e["step"] for e in s.evals(1)] == [20, 40]
        ((protocol, (steps, values)),) = s.figure_series(1, "curve_distance").items()
        assert steps == [20, 40] and all(v > 0 for v in values) and protocol == "ddim-5 eta 0, n=64"
        assert s.series(1, "curve_distance") == ([], [])  # figures are not metric rows: they carry a protocol
        assert set(s.evals(1)[0]["floor"]) == {"curve_distance", "swd"}


def test_eval_bad_input(cli):
    res = cli("run", *FAST, "--set", "checkpoint_every=0", "--detach", "--json")
    run = json.loads(res.stdout)
    cli("stop", str(run["id"]), "--wait")
    with cli.store() as s:
        for c in s.checkpoints(run["id"]):
            s.conn.execute("DELETE FROM checkpoints WHERE run = ? AND step = ?", (run["id"], c.step))
        s.conn.commit()
    res = cli("eval", str(run["id"]), "--n", "10")
    assert res.exit_code == 1 and "has no checkpoint yet" in error_line(res)
    assert cli("run", *FAST).exit_code == 0
    res = cli("eval", "2", "--n", "5000000000")
    assert res.exit_code == 1 and "GiB is available; use --n" in error_line(res)
    res = cli("eval", "2", "--steps", "500")
    assert res.exit_code == 1 and "steps: 500 is out of range; the run has T=50" in error_line(res)
    res = cli("run", "--preset", "folder", "--set", "data_dir=/tmp", "--eval-every", "10")
    assert res.exit_code == 1 and "eval_every" in error_line(res)
    with cli.store() as s:
        assert s.evals(2) == []


def test_a_conditional_run_draws_the_classes_asked_for_and_judges_each_guidance(cli, tmp_path):
    import numpy as np

    res = cli("run", *FAST, "--set", "cond=class", "--set", "sample_n=20")
    assert res.exit_code == 0, res.output
    out = tmp_path / "sevens.npy"
    res = cli("sample", "1", "--class", "7", "--class", "1-2", "--n", "6", "--steps", "3", "--out", str(out), "--art", "ascii")
    assert res.exit_code == 0, res.output
    assert "classes 7,1,2 one a" in " ".join(res.stdout.split()) and np.load(out).shape == (6, 28, 28)
    png = tmp_path / "sevens.png"  # the saved grid too: one class a row (3 rows of 2, each 28 + 2 padding)
    assert cli("sample", "1", "--class", "7", "--class", "1-2", "--n", "6", "--steps", "3", "--out", str(png)).exit_code == 0
    from PIL import Image

    assert Image.open(png).size == (2 * 30 + 2, 3 * 30 + 2)
    docs = cli.json("eval", "1", "--n", "20", "--steps", "3", "--guidance", "0,1,3")
    assert [d["guidance"] for d in docs] == [0.0, 1.0, 3.0] and all("class_accuracy" in d["figures"] for d in docs)
    assert [d["protocol"] for d in docs] == [f"ddim-3 eta 0 w {w}, n=20" for w in (0, 1, 3)]
    assert set(docs[0]["detail"]["class_accuracy"]) == {str(c) for c in range(10)}
    table = cli("eval", "1", "--n", "20", "--steps", "3", "--guidance", "0,2").stdout
    assert "accuracy" in table and "worst" in table and "ddim-3 eta" in table
    with cli.store() as s:
        latest = s.latest_samples(1)
        assert latest.per_row == 2 and latest.labels == [c for c in range(10) for _ in range(2)]
    for args, words in (
        (["sample", "1", "--class", "12"], "this run's classes are 0 to 9"),
        (["sample", "1", "--class", "seven"], "expected a class such as 7"),
        (["eval", "1", "--guidance", "0,x"], "expected numbers separated by commas"),
        (["eval", "1", "--guidance", "25"], "guidance: 25.0 is out of range"),
    ):
        res = cli(*args)
        assert res.exit_code == 1 and words in error_line(res), (args, res.stderr)
    assert cli("run", *FAST).exit_code == 0
    res = cli("sample", "2", "--guidance", "2")
    assert res.exit_code == 1 and "unconditional" in error_line(res)
    res = cli("sample", "2", "--sampler", "dpmpp2m", "--steps", "3", "--n", "2", "--art", "ascii")
    assert res.exit_code == 0 and "dpmpp2m-3" in res.stdout
