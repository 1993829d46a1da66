"""`ddpm run --queue`, `ddpm sweep`, `ddpm queue` and their bad inputs, against real files."""

from __future__ import annotations

import json

import torch

from tests.ddpm_tui.conftest import error_line


def test_queued_runs_wait_in_order_and_show_in_the_queue(cli):
    for args in (["--name", "a"], ["--name", "b", "--priority", "3"], ["--name", "c", "--retries", "2"]):
        res = cli("run", "--queue", "--preset", "smoke", *args)
        assert res.exit_code == 0, res.output
    doc = cli.json("queue")
    assert [r["name"] for r in doc["waiting"]] == ["b", "a", "c"] and doc["slots"] == [] and doc["schedulers"] == []
    assert doc["waiting"][2]["retries"] == 2 and doc["waiting"][0]["priority"] == 3
    assert cli("queue", "top", "c").exit_code == 0
    assert [r["name"] for r in cli.json("queue")["waiting"]] == ["c", "b", "a"]
    text = cli("queue").stdout
    assert "no scheduler runs" in text and "waiting (3, taken in this order)" in text
    assert cli("stop", "a").exit_code == 0  # a queued run is cancelled at once
    assert [r["name"] for r in cli.json("queue")["waiting"]] == ["c", "b"]
    assert cli.run("a")["status"] == "stopped"
    assert cli("rm", "b", "--yes").exit_code == 0
    assert [r["name"] for r in cli.json("queue")["waiting"]] == ["c"]


def test_a_sweep_records_its_grid_as_one_study_or_nothing(cli):
    res = cli("sweep", "--preset", "smoke", "--set", "lr=1e-3,2e-3", "--set", "objective=eps,v", "--seeds", "2",
              "--name", "grid", "--tag", "t", "--priority", "2", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    runs = json.loads(res.stdout)
    assert len(runs) == 8 and {r["study"] for r in runs} == {"grid"} and all(r["tags"] == ["t"] for r in runs)
    assert runs[0]["name"] == "grid/lr=1e-3,objective=eps,seed=0" and runs[0]["priority"] == 2
    assert [r["name"] for r in cli.json("ls", "--study", "grid")] == [r["name"] for r in reversed(runs)]
    assert all(r["study"] is None for r in cli.json("ls") if r["study"] != "grid")
    before = len(cli.json("ls"))
    res = cli("sweep", "--preset", "smoke", "--set", "lr=1e-3,-2", "--set", "T=50,0", "--name", "bad")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert sorted(line.split(":")[1].strip() for line in res.stderr.strip().splitlines()) == ["T", "lr"]
    res = cli("sweep", "--preset", "smoke", "--set", "lr=1e-3,2e-3,3e-3", "--set", "seed=" + ",".join(map(str, range(100))),
              "--name", "big")  # fmt: skip
    assert res.exit_code == 1 and "300 runs" in error_line(res) and "--yes" in error_line(res)
    res = cli("sweep", "--preset", "smoke", "--set", "lr=1e-3,2e-3", "--set", "objective=eps,v", "--seeds", "2", "--name", "grid")
    assert res.exit_code == 1 and "exists already" in error_line(res)
    assert len(cli.json("ls")) == before  # nothing of the refused sweeps was recorded
    res = cli("ls", "--study", "nope")
    assert res.exit_code == 1 and "studies: grid" in error_line(res)


def test_bad_queue_input_is_one_line_and_records_nothing(cli):
    assert cli("run", "--queue", "--preset", "smoke", "--name", "ok").exit_code == 0
    for args, words in (
        (["run", "--queue", "--preset", "smoke", "--device", "cuda"], "no CUDA GPU"),
        (["run", "--queue", "--preset", "smoke", "--device", "cuda:5"], "no CUDA GPU"),
        (["run", "--preset", "smoke", "--priority", "2"], "add --queue"),
        (["queue", "top", "nope"], "no run 'nope'"),
        (["queue", "top", "ok", "--json"], None),
        (["sweep", "--preset", "smoke", "--set", "lr=1e-3,[2", "--name", "x"], "unbalanced brackets"),
        (["sweep", "--preset", "smoke", "--name", "a/b"], "study name 'a/b' is not allowed"),
        (["queue", "start", "--gpus", "0,1", "--slots", "2"], "exclude each other"),
    ):
        res = cli(*args)
        if words is None:
            assert res.exit_code == 0, res.output
            continue
        assert res.exit_code == 1, (args, res.output)
        assert words in error_line(res), (args, res.stderr)
    if not torch.cuda.is_available():
        res = cli("queue", "start", "--gpus", "0")
        assert res.exit_code == 1 and "use --slots N for CPU slots" in error_line(res)
    res = cli("queue", "start", "--per-gpu", "0")
    assert res.exit_code == 2 and "--help" in error_line(res)
    assert [r["name"] for r in cli.json("ls")] == ["ok"]


def test_queue_start_drains_the_queue_on_cpu_slots(cli):
    for _ in range(3):
        assert cli("run", "--queue", "--preset", "smoke", "--set", "steps=6", "--set", "log_every=3").exit_code == 0
    res = cli("queue", "start", "--slots", "2", "--drain")
    assert res.exit_code == 0, res.output
    assert "started 3 runs" in res.stdout
    runs = cli.json("ls")
    assert [r["status"] for r in runs] == ["completed"] * 3 and {r["slot"] for r in runs} == {"cpu/0", "cpu/1"}
    assert all(r["device"] == "cpu" for r in runs)
    assert cli.json("queue") == {"schedulers": [], "slots": [], "waiting": [], "unattended": []}
