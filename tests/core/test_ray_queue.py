"""The queue on a real local Ray instance (2 CPUs, no mock): runs placed by Ray, recorded on
the head through the recorder actor."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ddpm-tui[ray]')")

from core.config import preset  # noqa: E402
from core.ray_queue import NAMESPACE, RayScheduler  # noqa: E402
from core.store import Store  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def queue(store: Store, n: int, *, study: str | None = None, retries: int | None = None, **over) -> list[int]:
    cfg = preset("smoke", {"steps": 12, "log_every": 2, "sample_every": 6, "checkpoint_every": 6, **over}).to_dict()
    return [store.create_run(cfg, preset="smoke", in_queue=True, study=study, retries=retries).id for _ in range(n)]


def drain(db: Path, **kw) -> RayScheduler:
    sched = RayScheduler(db, address="auto", cpus_per_run=1, drain=True, poll_s=0.1, log=lambda t: None, **kw)
    sched.run()
    return sched


def test_a_study_drains_through_ray_recorded_once_on_the_head(cluster, tmp_path):
    db = tmp_path / "e.db"
    with Store(db) as s:
        ids = queue(s, 4, study="rs")
    sched = drain(db)
    assert [sl.name for sl in sched.slots] == ["ray:cpu/0", "ray:cpu/1"]
    with Store(db) as s:
        for rid in ids:
            run = s.get_run(rid)
            assert run.status == "completed" and run.step == 12 and run.slot.startswith("ray:cpu/")
            assert run.env["host"] and run.env["ray_node"]  # where it trained
            assert s.series(rid, "loss")[0] == [2, 4, 6, 8, 10, 12]  # every metric step once
            assert s.sample_steps(rid) == [6, 12]
            ckpts = s.checkpoints(rid)
            assert [c.step for c in ckpts] == [6, 12]
            for c in ckpts:  # the bytes written on the head are the bytes the run saved
                assert hashlib.sha256(Path(c.path).read_bytes()).hexdigest() == c.sha256
                assert Path(c.path).parent == s.run_dir(rid)


def test_a_ray_worker_killed_mid_run_reads_crashed_and_resumes_with_a_retry(cluster, tmp_path):
    db = tmp_path / "e.db"
    with Store(db) as s:
        (rid,) = queue(s, 1, retries=1, steps=80, sample_every=0, checkpoint_every=10)
    sched = RayScheduler(db, address="auto", cpus_per_run=1, drain=True, poll_s=0.1, log=lambda t: None)
    thread = threading.Thread(target=sched.run)
    thread.start()
    try:
        with Store(db) as s:
            deadline = time.monotonic() + 120
            while not ((run := s.get_run(rid)).status == "running" and run.step >= 12):
                assert time.monotonic() < deadline, "the run never trained"
                time.sleep(0.1)
            os.kill(run.pid, signal.SIGKILL)  # the Ray worker process training it
            deadline = time.monotonic() + 60
            while s.get_run(rid).attempts < 1:
                assert time.monotonic() < deadline, "the crash was not seen within 60 s"
                time.sleep(0.1)
    finally:
        thread.join(timeout=300)
    with Store(db) as s:
        run = s.get_run(rid)
        assert run.status == "completed" and run.step == 80 and run.attempts == 1
        assert s.series(rid, "loss")[0] == list(range(2, 81, 2))  # resumed from its checkpoint, every step once


def test_without_ray_installed_the_option_says_how_to_get_it(monkeypatch, tmp_path):
    import sys

    from typer.testing import CliRunner

    from ddpm_tui.cli import app

    Store(tmp_path / "e.db").close()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    res = CliRunner().invoke(app, ["queue", "start", "--ray", "auto", "--db", str(tmp_path / "e.db")])
    assert res.exit_code == 1
    assert res.stderr.strip() == "error: --ray needs Ray: pip install 'ddpm-tui[ray]' (or pip install ray)"
