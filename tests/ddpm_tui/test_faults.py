"""Faults done for real: SIGKILL at random moments, a file size limit in the middle of a run,
a database nobody may write, hostile names and values, and fuzzed command lines."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.checkpoint import load_checkpoint
from core.store import Store
from tests.ddpm_tui.conftest import FAST, Cli, error_line

ROOT = Path(__file__).resolve().parents[2]


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def _without_root_file_powers() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from
    the bounding set, so that root obeys file modes like any other user."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for cap in (1, 2, 3):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    """The short version of bench/torture.py: every kill leaves a sound database, a
    `crashed` run and whole checkpoints; the resumed run ends with every step once."""
    torture = _bench("torture")
    kills, end = torture.torture(tmp_path, kills=4, steps=300, seed=1, log=lambda *a: None)
    assert len(kills) >= 3
    assert [k.problems for k in kills] == [[] for _ in kills]
    assert end == {"status": "completed", "step": 300, "curve_complete": True, "integrity": "ok", "bad_files": [],
                   "leftover_temp_files": []}  # fmt: skip


FULL_DISK = textwrap.dedent(
    """
    import resource, sys
    from core.config import preset
    from core.store import Store
    from core.train import CheckpointSaved
    from core.worker import install_stop_signals, train_run
    import threading

    db = sys.argv[1]
    cfg = preset("smoke", {"channels": 32, "steps": 40, "checkpoint_every": 3, "sample_every": 0, "log_every": 1})
    with Store(db) as s:
        rid = s.create_run(cfg.to_dict(), preset="smoke", name="full").id
    install_stop_signals(threading.Event())  # as the worker does: SIGXFSZ becomes an error

    def on_event(ev):  # after the first checkpoint the disk is 'full' for anything as big
        if isinstance(ev, CheckpointSaved) and ev.step == 3:
            resource.setrlimit(resource.RLIMIT_FSIZE, (ev.bytes // 2, resource.RLIM_INFINITY))

    try:
        train_run(db, rid, device="cpu", on_event=on_event)
    except Exception as e:
        print("raised:", e)
    """
)


def test_a_checkpoint_that_cannot_be_written_fails_the_run_and_keeps_the_previous_one(tmp_path):
    db = tmp_path / "full.db"
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(db)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "could not write checkpoint" in out.stdout
    cli = Cli(db)
    doc = cli.json("show", "1")
    assert doc["status"] == "failed" and doc["step"] == 6
    assert "could not write checkpoint" in doc["error"] and "step-00000003.pt) is kept" in doc["error"]
    assert [c["step"] for c in doc["checkpoints"]] == [3]
    folder = tmp_path / "full.runs" / "1"
    assert sorted(p.name for p in folder.glob("*.pt")) == ["step-00000003.pt"] and not list(folder.glob(".*tmp*"))
    assert load_checkpoint(folder / "step-00000003.pt")["step"] == 3
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done = cli.json("resume", "1")  # space is back: the run goes on from step 3
    assert done["status"] == "completed" and done["step"] == 40
    with cli.store() as s:
        assert s.series(1, "loss")[0] == list(range(1, 41))


def test_a_read_only_database_can_be_listed_and_shown():
    """Made read-only for real: file 0444 in a 0555 folder. When the tests run as root, who
    could write anyway, the readers run without root's power to override file modes."""
    base = Path(tempfile.mkdtemp(prefix="ddpm-ro-"))
    try:
        os.chmod(base, 0o755)
        db = base / "ro" / "e.db"
        db.parent.mkdir()
        assert Cli(db)("run", *FAST).exit_code == 0
        before = {p.name: p.read_bytes() for p in db.parent.iterdir() if p.is_file()}
        assert sorted(before) == ["e.db"], "a finished run left a connection open (its WAL is not folded in)"
        for p in db.parent.iterdir():
            if p.is_file():
                os.chmod(p, 0o444)
        os.chmod(db.parent, 0o555)
        as_other = {"preexec_fn": _without_root_file_powers} if os.geteuid() == 0 else {}
        env = {**os.environ, "HOME": str(base)}
        outs = [
            subprocess.run(
                [sys.executable, "-m", "ddpm_tui.cli", *args, "--db", str(db)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                **as_other,
            )  # fmt: skip
            for args in (["ls"], ["show", "1", "--art", "ascii"], ["ls", "--json"])
        ]
        for out in outs:
            assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
        assert "completed" in outs[0].stdout and "12/12" in outs[0].stdout
        assert "config" in outs[1].stdout
        writer = subprocess.run([sys.executable, "-m", "ddpm_tui.cli", "tag", "1", "x", "--db", str(db)], cwd=ROOT,
                                capture_output=True, text=True, timeout=60, env=env, **as_other)  # fmt: skip
        assert writer.returncode == 1 and writer.stderr.startswith("error: ") and len(writer.stderr.strip().splitlines()) == 1
        after = {p.name: p.read_bytes() for p in db.parent.iterdir() if p.is_file()}
        assert after == before
    finally:
        for dirpath, _dirs, _ in os.walk(base):
            os.chmod(dirpath, stat.S_IRWXU)
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_out_of_range_values_get_one_line_each(cli):
    for value, words in (("lr=-1", "lr:"), ("T=0", "T:"), ("batch_size=100000", "batch_size"),
                         ("schedule=exponential", "schedule:")):  # fmt: skip
        res = cli("run", "--preset", "smoke", "--set", value)
        assert res.exit_code == 1, (value, res.output)
        assert words in error_line(res)
    assert cli.json("ls") == []


def test_hostile_names_never_become_paths(cli):
    assert cli("run", *FAST, "--name", "ok-name").exit_code == 0
    for name in ("../../escape", "$(touch pwned)", "x; rm -rf /", "..", ".hidden", "a\nb", "7", "/abs"):
        res = cli("run", *FAST, "--name", name)
        assert res.exit_code == 1 and "not allowed" in error_line(res), name
    assert cli("run", *FAST, "--name", "study/lr=1e-3,seed=0").exit_code == 0  # a sweep's names: still no path
    folder = cli.db.parent / f"{cli.db.stem}.runs"
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2"]  # run folders are named by id, never by name
    assert not (cli.db.parent / "pwned").exists()


ARGS = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
COMMANDS = st.sampled_from([["show"], ["stop"], ["resume"], ["rm", "--yes"], ["tag"], ["note"], ["export", "--format"],
                            ["sample", "1", "--n"], ["sample", "1", "--steps"], ["ls", "--status"], ["compare", "1"]])  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "e.db"
    assert Cli(db)("run", *FAST).exit_code == 0
    return db


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmd=COMMANDS, junk=st.lists(ARGS, min_size=1, max_size=2))
def test_fuzzed_commands_never_show_a_traceback(fuzz_db, cmd, junk):
    cli = Cli(fuzz_db)
    if cmd[0] in ("rm", "resume", "stop"):
        with cli.store() as s:
            try:
                s.get_run(junk[0])
                return  # junk that names the one real run would act on it; the point is junk
            except Exception:
                pass
    res = cli(*cmd, *junk)
    assert res.exit_code in (0, 1, 2), res.output
    if res.exit_code:
        error_line(res)  # one line, `error: ...`, no traceback
    assert "Traceback" not in res.output


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(["steps", "lr", "T", "batch_size", "schedule", "channel_mult", "amp", "eta", "nope"]) | ARGS,
       value=ARGS)  # fmt: skip
def test_fuzzed_set_values_never_show_a_traceback(tmp_path_factory, key, value):
    cli = Cli(tmp_path_factory.mktemp("set") / "e.db")
    # steps=0 is always refused, so nothing trains; the fuzzed value is parsed and checked too
    res = cli("run", "--preset", "smoke", "--set", f"{key}={value}", "--set", "steps=0")
    assert res.exit_code in (1, 2), res.output
    assert "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) >= 1 and res.stderr.startswith("error: "), res.stderr


def test_a_foreground_run_past_a_file_size_limit_fails_with_the_workers_message(tmp_path):
    """`ddpm run` in the foreground shares the worker's signal set-up: SIGXFSZ is ignored,
    so the checkpoint write fails as an error and the run reads `failed` with the message,
    instead of the process dying and the run reading `crashed`."""
    import resource

    db = tmp_path / "e.db"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, resource.RLIM_INFINITY))

    proc = subprocess.run(
        [sys.executable, "-m", "ddpm_tui.cli", "run", "--preset", "smoke", "--set", "channels=32", "--set", "steps=6",
         "--set", "checkpoint_every=3", "--set", "sample_every=0", "--device", "cpu", "--db", str(db)],
        capture_output=True, text=True, preexec_fn=limit, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-500:])
    assert "could not write checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    with Store(db, create=False) as s:
        run = s.get_run(1)
        assert run.status == "failed" and "could not write checkpoint" in run.error
