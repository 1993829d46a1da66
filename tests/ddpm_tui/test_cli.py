"""The `ddpm` CLI end to end: real smoke runs, real workers, real SQLite files."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.ddpm_tui.conftest import FAST, LONG, error_line

ROOT = Path(__file__).resolve().parents[2]


def test_run_smoke_to_completion_and_find_it_in_ls(cli):
    res = cli("run", *FAST, "--name", "first", "--tag", "demo")
    assert res.exit_code == 0, res.output
    assert "completed" in res.stdout and "ddpm sample 1" in res.stdout
    runs = cli.json("ls")
    assert len(runs) == 1
    r = runs[0]
    assert (r["id"], r["name"], r["preset"], r["status"], r["step"], r["total_steps"]) == (
        1,
        "first",
        "smoke",
        "completed",
        12,
        12,
    )
    assert r["device"] == "cpu" and r["tags"] == ["demo"] and r["config"]["steps"] == 12
    assert {"id", "name", "preset", "status", "step", "total_steps", "pid", "device", "config"} <= set(r)
    with cli.store() as s:
        steps, losses = s.series(1, "loss")
        assert steps == [3, 6, 9, 12] and all(v > 0 for v in losses)
        assert [c.step for c in s.checkpoints(1)] == [6, 12]
        assert s.latest_samples(1).data.shape == (4, 1, 28, 28)
    table = cli("ls")
    assert "first" in table.stdout and "completed" in table.stdout and "12/12" in table.stdout


def test_run_json_prints_only_the_run(cli):
    res = cli("run", *FAST, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == "completed" and doc["step"] == 12 and doc["metrics"]["loss"]["step"] == 12


def test_show_export_tag_note_rm(cli, tmp_path):
    assert cli("run", *FAST).exit_code == 0
    shown = cli("show", "1", "--art", "ascii")
    assert shown.exit_code == 0, shown.output
    assert "run 1" in shown.stdout and "samples at step 12" in shown.stdout and "checkpoints" in shown.stdout
    assert cli("tag", "1", "good", "base").exit_code == 0
    assert cli("tag", "1", "base", "--remove").exit_code == 0
    assert cli("note", "1", "first try").exit_code == 0
    doc = cli.run(1)
    assert doc["tags"] == ["good"] and doc["notes"] == "first try" and len(doc["checkpoints"]) == 2
    assert [r["id"] for r in cli.json("ls", "--tag", "good")] == [1]
    exported = cli("export", "1", "--format", "csv")
    lines = exported.stdout.splitlines()
    assert lines[0] == "step,name,value,time" and any(line.startswith("12,loss,") for line in lines)
    full = json.loads(cli("export", "1", "--format", "json").stdout)
    assert full["run"]["id"] == 1 and {"step", "name", "value", "time"} == set(full["metrics"][0])
    out = tmp_path / "m.json"
    assert cli("export", "1", "--out", str(out)).exit_code == 0 and json.loads(out.read_text())["run"]["id"] == 1
    run_dir = cli.db.parent / "experiments.runs" / "1"
    assert run_dir.exists()
    assert cli("rm", "1").exit_code == 1  # no tty, no --yes: refuses
    assert cli("rm", "1", "--yes").exit_code == 0
    assert cli.json("ls") == [] and not run_dir.exists()


def test_show_prints_the_runs_memory_and_load_beside_its_speed(cli, monkeypatch):
    assert cli("run", *FAST).exit_code == 0
    doc = cli.run(1)
    assert doc["metrics"]["rss_mb"]["step"] == 12 and doc["metrics"]["rss_mb"]["value"] > 0  # the worker's own rows
    assert "cpu_util" in doc["metrics"] and "gpu_mem_peak_mb" not in doc["metrics"]  # a CPU run
    with cli.store() as s:  # the figures a GPU run's last window would have left
        rows = [(12, "rss_mb", 1230.0), (12, "cpu_util", 98.4), (12, "gpu_mem_peak_mb", 3480.0), (12, "gpu_util", 87.0)]
        s.record(1, [(step, name, v, 0.0) for step, name, v in rows], heartbeat=False)
    monkeypatch.setenv("COLUMNS", "200")  # one line, as on a wide terminal
    line = next(x for x in cli("show", "1").stdout.splitlines() if x.strip().startswith("throughput"))
    assert re.fullmatch(r"  throughput +[\d,]+ images/s · RSS 1\.2 GB · CPU 98% · GPU mem 3\.4 GB peak · GPU 87%", line), line
    assert cli.run(1)["metrics"]["gpu_util"] == {"step": 12, "value": 87.0}


def test_sample_writes_png_and_npy_reproducibly(cli, tmp_path):
    assert cli("run", *FAST).exit_code == 0
    a, b, png = tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "grid.png"
    res = cli("sample", "1", "--n", "5", "--steps", "4", "--seed", "3", "--out", str(a), "--art", "braille")
    assert res.exit_code == 0, res.output
    assert "5 samples from run 1" in res.stdout and "\u2800" <= res.stdout[0] <= "\u28ff" or "\u2800" in res.stdout
    assert cli("sample", "1", "--n", "5", "--steps", "4", "--seed", "3", "--out", str(b)).exit_code == 0
    x = np.load(a)
    assert x.shape == (5, 28, 28) and x.dtype == np.uint8 and np.array_equal(x, np.load(b))
    assert cli("sample", "1", "--n", "4", "--sampler", "ddpm", "--checkpoint", "6", "--out", str(png)).exit_code == 0
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 28 and im.mode == "L"
    res = cli("sample", "1", "--sampler", "ddpm", "--steps", "4")
    assert res.exit_code == 1 and "always takes T=50 steps" in error_line(res)


SEED_RUN = ["run", "--preset", "scurve-seed", "--name", "toy"] + [
    f"--set={k}" for k in ("steps=4", "log_every=2", "sample_every=0", "checkpoint_every=0", "hidden=16")
]


def test_a_2d_trajectory_prints_ten_panels_from_x_T_to_x_0(cli):
    """Not a terminal (the test runner's output), so --trajectory prints the panels instead of animating."""
    assert cli(*SEED_RUN).exit_code == 0
    titles = ["x_100", "x_89", "x_78", "x_67", "x_56", "x_44", "x_33", "x_22", "x_11", "x_0"]
    for flag in ("--trajectory", "--panels"):
        res = cli("sample", "toy", "--n", "32", flag)
        assert res.exit_code == 0, res.output
        words = [w for w in res.stdout.split() if re.fullmatch(r"x_\d+", w)]
        assert words == titles
        assert res.stdout.count("\u250c") == 10 and "32 samples from run 1 (toy)" in res.stdout and "ddpm-100" in res.stdout


def test_panels_are_refused_for_an_image_run(cli):
    assert cli("run", *FAST).exit_code == 0
    res = cli("sample", "1", "--panels")
    assert res.exit_code == 1 and "--panels: run 1 draws images" in error_line(res)
    assert len(res.output.strip().splitlines()) == 1


def test_two_seeds_share_no_sample_and_the_batch_never_matters(cli, tmp_path):
    """Each sample depends on (seed, index) alone: --seed 0 and --seed 1 share no image (the
    old per-batch seeds made them share all but one batch), and the first 4 of a draw of 8
    are a draw of 4."""
    assert cli("run", *FAST).exit_code == 0
    draws = {}
    for seed, n in ((0, 8), (1, 8), (0, 4)):
        out = tmp_path / f"{seed}-{n}.npy"
        assert (
            cli("sample", "1", "--n", str(n), "--steps", "3", "--eta", "1", "--seed", str(seed), "--out", str(out)).exit_code == 0
        )
        draws[seed, n] = np.load(out)
    assert not any(np.array_equal(a, b) for a in draws[0, 8] for b in draws[1, 8])
    # the same images; a batch of another size may round one pixel level differently
    assert np.abs(draws[0, 8][:4].astype(int) - draws[0, 4]).max() <= 1


def test_detach_stop_and_resume(cli, reap_workers):
    res = cli("run", *LONG, "--detach", "--json")
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    reap_workers.append(run["pid"])
    cli.wait(run["id"], lambda d: d["status"] == "running" and d["step"] >= 4, what="the worker to train")
    stopped = cli.json("stop", str(run["id"]), "--wait")
    assert stopped["status"] == "stopped" and stopped["step"] > 0
    with cli.store() as s:
        assert s.checkpoints(run["id"])[-1].step == stopped["step"]
    done = cli.json("resume", str(run["id"]), "--steps", str(stopped["step"] + 6))
    assert done["status"] == "completed" and done["step"] == stopped["step"] + 6
    with cli.store() as s:
        steps, _ = s.series(run["id"], "loss")
    assert steps == sorted(set(steps)) and steps[-1] == done["step"]


def test_a_killed_worker_reads_crashed_and_resumes_to_completion(cli, reap_workers):
    run = cli.json("run", *LONG, "--detach")
    reap_workers.append(run["pid"])
    cli.wait(run["id"], lambda d: d["step"] >= 30, what="a checkpoint")  # one checkpoint at 20
    os.kill(run["pid"], signal.SIGKILL)
    doc = cli.wait(run["id"], lambda d: d["status"] == "crashed", timeout=10, what="crashed")
    assert [r["status"] for r in cli.json("ls", "--status", "crashed")] == ["crashed"]
    assert "crashed" in cli("stop", str(run["id"])).stdout
    done = cli.json("resume", str(run["id"]), "--steps", str(doc["step"] + 10))
    assert done["status"] == "completed"
    with cli.store() as s:
        steps, _ = s.series(run["id"], "loss")
    assert steps == list(range(2, done["step"] + 1, 2)), "the resumed curve has no gap and no duplicate"


def test_two_workers_share_one_database(cli, reap_workers):
    quick = ["--preset", "smoke", "--set", "steps=60", "--set", "log_every=1", "--set", "sample_every=20", "--detach"]
    a = cli.json("run", *quick)
    b = cli.json("run", *quick)
    reap_workers += [a["pid"], b["pid"]]
    for r in (a, b):
        cli.wait(r["id"], lambda d: d["status"] not in ("queued", "running"), timeout=120, what="both to finish")
    for r in (a, b):
        doc = cli.run(r["id"])
        assert doc["status"] == "completed", doc.get("error")
        with cli.store() as s:
            assert s.series(r["id"], "loss")[0] == list(range(1, 61))


def test_foreground_run_stops_cleanly_on_sigint_and_sighup(tmp_path):
    db = tmp_path / "e.db"
    for run_id, sig in ((1, signal.SIGINT), (2, signal.SIGHUP)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "ddpm_tui.cli", "run", *LONG, "--db", str(db)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.3)
            row = None
            if db.exists():
                with sqlite3.connect(db) as c:
                    try:
                        row = c.execute("SELECT step FROM runs WHERE id = ?", (run_id,)).fetchone()
                    except sqlite3.OperationalError:  # the file exists, its schema not yet
                        pass
            if row and row[0] >= 4:
                break
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        with sqlite3.connect(db) as c:
            status, step, error = c.execute("SELECT status, step, error FROM runs WHERE id = ?", (run_id,)).fetchone()
            (ck,) = c.execute("SELECT max(step) FROM checkpoints WHERE run = ?", (run_id,)).fetchone()
        assert status == "stopped" and ck == step and error is None, (status, step, ck, err)
        if sig == signal.SIGINT:
            assert "ddpm resume" in out


def test_compare_shows_only_differing_config(cli):
    assert cli("run", *FAST).exit_code == 0
    assert cli("run", *FAST, "--set", "lr=5e-3").exit_code == 0
    doc = cli.json("compare", "1", "2")
    assert doc["config_differences"] == {"lr": [0.002, 0.005]}
    assert set(doc["metrics"]["1"]) >= {"status", "step", "loss"}
    text = cli("compare", "1", "2", "--art", "ascii").stdout
    assert "config differences" in text and "lr" in text and "schedule" not in text


# ---- bad input: one line, the right exit code, nothing changed ------------------------------


def test_unknown_run(cli):
    assert cli("run", *FAST).exit_code == 0
    for args in (["show", "nope"], ["stop", "42"], ["sample", "7"], ["resume", "x"], ["rm", "9", "--yes"]):
        res = cli(*args)
        assert res.exit_code == 1, args
        assert "no run" in error_line(res) and "ddpm ls" in res.stderr


def test_bad_preset_and_bad_set_values_leave_no_row(cli):
    before = cli("run", *FAST)
    assert before.exit_code == 0
    for args, words in (
        (["--preset", "huge"], "quick, quick-cond, classic"),
        (["--preset", "smoke", "--set", "lr=-1"], "lr:"),
        (["--preset", "smoke", "--set", "steps=ten"], "whole number"),
        (["--preset", "smoke", "--set", "nope=1"], "unknown setting"),
        (["--preset", "smoke", "--set", "lr"], "KEY=VALUE"),
        (["--preset", "folder", "--set", "data_dir=/no/such/folder"], "not a folder"),
        (["--preset", "smoke", "--name", "../../etc"], "not allowed"),
        (["--preset", "smoke", "--set", "ema_decay=nan"], "ema_decay: expected a finite number"),
        (["--preset", "smoke", "--set", "grad_clip=inf"], "grad_clip: expected a finite number"),
        (["--preset", "smoke", "--device", "cuda"], "no CUDA GPU; use --device cpu"),
        (["--preset", "smoke", "--device", "cuda:5"], "no CUDA GPU"),
        (["--preset", "smoke", "--device", "mps"], "MPS is not available"),
    ):
        res = cli("run", *args)
        assert res.exit_code == 1, (args, res.output)
        assert words in error_line(res), res.stderr
    assert [r["id"] for r in cli.json("ls")] == [1]


def test_usage_errors_exit_2_with_one_line(cli):
    for args in (["run", "--bogus"], ["ls", "--status"], ["sample", "1", "--n", "0"], ["frobnicate"], ["run", "--device", "tpu"],
                 ["sample", "1", "--eta", "nan"], ["eval", "1", "--eta", "inf"], ["run", "--device", "cuda:x"],
                 ["sample", "1", "--sampler", "euler"]):  # fmt: skip
        res = cli(*args)
        assert res.exit_code == 2, (args, res.output)
        assert "--help" in error_line(res)
    res = cli("ls", "--status", "sleeping")
    assert res.exit_code == 1 and "queued, running" in error_line(res)


def test_foreign_junk_and_newer_databases_are_refused_untouched(tmp_path):
    from tests.ddpm_tui.conftest import Cli

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
    newer = tmp_path / "newer.db"
    Cli(newer)("ls")  # nothing created by a read
    assert not newer.exists()
    from core.store import Store

    Store(newer).close()
    with sqlite3.connect(newer) as c:
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    for path, words in ((junk, "not a SQLite database"), (foreign, "another program"), (newer, "newer ddpm-tui")):
        before = path.read_bytes()
        for args in (["ls"], ["run", *FAST]):
            res = Cli(path)(*args)
            assert res.exit_code == 1, res.output
            assert words in error_line(res)
        assert path.read_bytes() == before


def test_missing_and_corrupt_checkpoints_and_bad_out_paths(cli, tmp_path):
    res = cli("run", *FAST, "--set", "checkpoint_every=0", "--set", "steps=3", "--detach", "--json")
    # a queued run with no checkpoint yet: stop it before its worker gets far
    run = json.loads(res.stdout)
    cli("stop", str(run["id"]), "--wait")
    with cli.store() as s:
        for c in s.checkpoints(run["id"]):
            Path(c.path).unlink()
    res = cli("sample", str(run["id"]))
    assert res.exit_code == 1 and ("no checkpoint" in error_line(res) or "does not exist" in res.stderr)

    assert cli("run", *FAST).exit_code == 0
    with cli.store() as s:
        ck = s.checkpoints(2)[-1]
    Path(ck.path).write_bytes(Path(ck.path).read_bytes()[:1000])
    res = cli("sample", "2")
    assert res.exit_code == 1 and "corrupt" in error_line(res)
    res = cli("sample", "2", "--checkpoint", "6", "--out", str(tmp_path / "missing" / "x.npy"))
    assert res.exit_code == 1 and "does not exist" in error_line(res)
    res = cli("sample", "2", "--checkpoint", "5")
    assert res.exit_code == 1 and "no checkpoint at step 5" in error_line(res)
    res = cli("sample", "2", "--out", str(tmp_path / "x.jpg"))
    assert res.exit_code == 1 and ".png or .npy" in error_line(res)


def test_reading_commands_do_not_import_torch(cli):
    from tests.core.studies import digits, finish, judge, sweep

    assert cli("run", *FAST).exit_code == 0
    with cli.store() as store:  # a study with figures and digits: its table, charts and art
        for rid, fid in zip(sweep(store, "s", {"lr": "1e-3,2e-3"}), (10.0, 20.0)):
            finish(store, rid, loss=0.1)
            judge(store, rid, fid=fid)
            digits(store, rid, 100)
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ddpm_tui.cli import app\n"
        f"db = {str(cli.db)!r}\n"
        "for args in (['ls'], ['ls', '--json'], ['show', '1'], ['export', '1'], ['compare', '1', '1'], ['study'],\n"
        "             ['study', 's'], ['study', 's', '--json'], ['study', 's', '--csv'], ['--help']):\n"
        "    res = CliRunner().invoke(app, args + (['--db', db] if args != ['--help'] else []))\n"
        "    assert args[0] != 'study' or res.exit_code == 0, res.output\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_command_has_help(cli):
    """`--help` of each command (and of queue's sub-commands) renders: a typer/click pairing
    that cannot draw an option's metavar would crash here and nowhere else."""
    from typer.main import get_command

    from ddpm_tui.cli import app

    group = get_command(app)
    names = [[n] for n in group.commands] + [["queue", n] for n in group.commands["queue"].commands]
    for args in names:
        res = cli(*args, "--help")
        assert res.exit_code == 0 and "Usage" in res.stdout and "Traceback" not in res.output, (args, res.output[-300:])


def test_control_characters_in_bad_arguments_stay_on_one_line(cli):
    for junk in ("\r", "a\u2028b", "\x1b[2J", "x\u2029"):
        res = cli("show", junk)
        assert res.exit_code == 1 and len(res.stderr.strip().split("\n")) == 1 and res.stderr.count("\u2028") == 0, repr(
            res.stderr
        )
        res = cli("ls", "--status", junk)
        assert res.exit_code == 1 and "\r" not in res.stderr and "\x1b" not in res.stderr, repr(res.stderr)
