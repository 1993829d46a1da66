"""One run on two processes (torchrun, gloo on the CPU), through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

import numpy as np

from tests.ddpm_tui.conftest import error_line

DDP = ["--preset", "smoke", "--set", "log_every=2", "--set", "checkpoint_every=10", "--set", "sample_every=0"]


def _pids(*args: str) -> list[int]:
    out = subprocess.run(["pgrep", *args], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_two_process_run_completes_samples_and_resumes_on_one(cli, tmp_path):
    res = cli("run", *DDP, "--set", "steps=20", "--nproc", "2", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["status"], doc["step"], doc["world_size"], doc["env"]["world_size"]) == ("completed", 20, 2, 2)
    assert cli("ls").stdout.count("cpu x2") == 1
    with cli.store() as s:
        assert s.series(1, "loss")[0] == list(range(2, 21, 2))  # every step once: only rank 0 records
        assert [c.step for c in s.checkpoints(1)] == [10, 20]
    out = tmp_path / "x.npy"
    assert cli("sample", "1", "--n", "4", "--steps", "3", "--out", str(out)).exit_code == 0
    assert np.load(out).shape == (4, 28, 28)  # the checkpoint holds the unwrapped network
    res = cli("resume", "1", "--nproc", "1", "--steps", "30")
    assert res.exit_code == 0, res.output
    assert "trained on 2 processes and continues on 1" in res.stderr
    doc = cli.run(1)
    assert (doc["status"], doc["step"], doc["world_size"]) == ("completed", 30, 1)
    with cli.store() as s:
        assert s.series(1, "loss")[0] == list(range(2, 31, 2))


def test_killing_one_rank_ends_the_run_and_leaves_no_process(cli, reap_workers):
    res = cli("run", *DDP, "--set", "steps=100000", "--nproc", "2", "--detach", "--json")
    assert res.exit_code == 0, res.output
    rid = json.loads(res.stdout)["id"]
    doc = cli.wait(rid, lambda d: d["status"] == "running" and d["step"] >= 4, timeout=120, what="training on 2 ranks")
    (launcher,) = _pids("-f", f"torch.distributed.run.*{cli.db}")
    ranks = _pids("-P", str(launcher))  # torchrun's children: the two ranks
    reap_workers.extend([launcher, *ranks])
    assert len(ranks) == 2 and doc["pid"] in ranks
    os.kill(next(p for p in ranks if p != doc["pid"]), signal.SIGKILL)  # rank 1
    t0 = time.monotonic()
    doc = cli.wait(rid, lambda d: d["status"] in ("failed", "crashed"), timeout=60, what="the run to end")
    assert time.monotonic() - t0 < 60
    assert doc["status"] == "crashed" or "another of the run's 2 processes stopped" in doc["error"]
    deadline = time.monotonic() + 30
    while _pids("-f", f"core.worker {rid} --db {cli.db}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _pids("-f", f"core.worker {rid} --db {cli.db}") == []  # neither rank nor the launcher is left
    assert sqlite3.connect(cli.db).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_bad_process_requests_are_one_line_and_record_nothing(cli):
    for args, words in (
        (["--nproc", "3"], "more than this machine's"),
        (["--gpus", "0,1"], "no CUDA GPU"),
        (["--nproc", "2", "--set", "batch_size=15"], "batch_size: 15 does not split into 2 processes"),
        (["--queue", "--gpus", "0"], "a queued run gets its GPUs from the scheduler"),
    ):
        res = cli("run", "--preset", "smoke", *args)
        assert res.exit_code == 1, (args, res.output)
        assert words in error_line(res), (args, res.stderr)
    res = cli("run", "--preset", "smoke", "--nproc", "0")
    assert res.exit_code == 2 and "--help" in error_line(res)
    assert cli.json("ls") == []
