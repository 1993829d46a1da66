"""The scheduler against real SQLite files, real worker processes and `smoke` runs on CPU slots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.config import preset
from core.scheduler import Scheduler, SchedulerError, Slot, accepts, plan_slots, worker_launch
from core.store import Store

ROOT = Path(__file__).resolve().parents[2]
QUICK = {"steps": 6, "log_every": 3, "sample_every": 0, "checkpoint_every": 3}


def queue(store: Store, n: int = 1, *, priority: int = 0, retries: int | None = None, **over) -> list[int]:
    cfg = preset("smoke", {**QUICK, **over}).to_dict()
    return [store.create_run(cfg, preset="smoke", in_queue=True, priority=priority, retries=retries).id for _ in range(n)]


def run_scheduler(db: Path, slots: int = 1, **kw) -> Scheduler:
    s = Scheduler(db, plan_slots(slots=slots, cores=2), drain=True, poll_s=0.05, log=lambda text: None, **kw)
    s.run()
    return s


def wait_for(predicate, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_slots_and_where_their_workers_may_look():
    gpu = plan_slots(gpus=[1, 3], per_gpu=2)
    assert [s.name for s in gpu] == ["cuda:1/0", "cuda:1/1", "cuda:3/0", "cuda:3/1"]
    cpu = plan_slots(slots=3, cores=8)
    assert [(s.name, s.threads) for s in cpu] == [("cpu/0", 2), ("cpu/1", 2), ("cpu/2", 2)]
    assert plan_slots(slots=4, cores=2)[0].threads == 1  # never less than one core
    cmd, env, n = worker_launch("/d/e.db", 7, [gpu[2]])
    assert env == {"CUDA_VISIBLE_DEVICES": "3"} and cmd[-2:] == ["--device", "cuda:0"] and n == 1  # one GPU, as cuda:0
    assert cmd[1:4] == ["-m", "core.worker", "7"]
    cmd, env, n = worker_launch("/d/e.db", 7, [gpu[0], gpu[2]])  # a run on two processes: torchrun, one GPU each
    assert env == {"CUDA_VISIBLE_DEVICES": "1,3"} and n == 2
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"] and cmd[-2:] == ["--device", "cuda"]
    cmd, env, n = worker_launch("/d/e.db", 7, [cpu[0]])
    assert env == {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2", "DDPM_THREADS": "2"} and cmd[-1] == "cpu"
    sched = Scheduler.__new__(Scheduler)
    sched.slots = plan_slots(gpus=[0, 1], per_gpu=2)
    sched.slots[0].run = sched.slots[2].run = 5  # cuda:0/0 and cuda:1/0 busy
    assert sched.choose("auto", 1) == ["cuda:0/1"]
    assert sched.choose("auto", 2) == ["cuda:0/1", "cuda:1/1"]  # two processes: two GPUs, never one twice
    assert sched.choose("auto", 3) is None  # two GPUs can never hold three processes: skipped, not waited for
    assert sched.choose("cuda:1", 1) == ["cuda:1/1"] and sched.choose("cpu", 1) is None
    sched.slots[1].run = 6
    assert sched.choose("auto", 2) == []  # the head of the queue waits for a second free GPU
    g1, c = Slot("cuda:1/0", "cuda:1"), Slot("cpu/0", "cpu")
    assert accepts(g1, "auto") and accepts(g1, "cuda") and accepts(g1, "cuda:1") and not accepts(g1, "cuda:0")
    assert not accepts(g1, "cpu") and accepts(c, "cpu") and accepts(c, "auto") and not accepts(c, "cuda")


def test_priority_then_age_decides_the_order_and_a_cancelled_run_never_starts(tmp_path):
    db = tmp_path / "e.db"
    with Store(db) as s:
        low = queue(s, 1)
        high = queue(s, 1, priority=5)
        cancelled = queue(s, 1, priority=9)
        s.request_stop(cancelled[0])
        top = queue(s, 1)
        s.move_to_front(top[0])
    run_scheduler(db, slots=1)
    with Store(db) as s:
        runs = {r.id: r for r in s.list_runs()}
    order = sorted((r.started, r.id) for r in runs.values() if r.started)
    assert [rid for _, rid in order] == [top[0], high[0], *low]
    assert runs[cancelled[0]].status == "stopped" and runs[cancelled[0]].error == "cancelled before it started"
    assert all(runs[i].status == "completed" for i in (*low, *high, *top))
    assert runs[top[0]].priority == 6  # one above the highest waiting


def test_two_slots_run_two_at_once_never_three(tmp_path):
    db = tmp_path / "e.db"
    with Store(db) as s:
        ids = queue(s, 4, steps=10)
    run_scheduler(db, slots=2)
    with Store(db) as s:
        runs = [s.get_run(i) for i in ids]
    assert all(r.status == "completed" and r.step == 10 for r in runs)
    assert {r.slot for r in runs} == {"cpu/0", "cpu/1"}
    events = sorted([(r.started, 1) for r in runs] + [(r.ended, -1) for r in runs])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    assert peak == 2


def test_one_scheduler_per_database_and_host(tmp_path):
    db = tmp_path / "e.db"
    Store(db).close()
    first = Scheduler(db, plan_slots(slots=1), log=lambda t: None)
    first.acquire()
    second = Scheduler(db, plan_slots(slots=1), log=lambda t: None)
    with pytest.raises(SchedulerError, match=f"already runs for .* on this host \\(pid {os.getpid()}\\)"):
        second.acquire()
    first._lock_file.close()  # released, as the kernel does when its holder dies
    second.acquire()
    second._lock_file.close()


def test_a_crashed_worker_is_requeued_and_resumes_to_completion(tmp_path):
    """--retries 1: a SIGKILLed worker's run reads crashed, goes back in the queue, resumes
    from its last checkpoint and completes; the attempt is counted."""
    db = tmp_path / "e.db"
    with Store(db) as s:
        (rid,) = queue(s, retries=1, steps=60, log_every=2, checkpoint_every=10)
    sched = Scheduler(db, plan_slots(slots=1, cores=2), drain=True, poll_s=0.05, log=lambda t: None)
    thread = threading.Thread(target=sched.run)
    thread.start()
    try:
        with Store(db) as s:
            run = wait_for(lambda: (r := s.get_run(rid)).step >= 12 and r.status == "running" and r, what="training")
            os.kill(run.pid, signal.SIGKILL)
            wait_for(lambda: s.get_run(rid).attempts == 1, what="the retry")
    finally:
        thread.join(timeout=300)
    with Store(db) as s:
        run = s.get_run(rid)
        assert run.status == "completed" and run.step == 60 and run.attempts == 1
        assert [c.step for c in s.checkpoints(rid)][-1] == 60
        steps, _ = s.series(rid, "loss")
        assert steps == list(range(2, 61, 2))  # every step once: resumed, not restarted


def test_a_killed_scheduler_leaves_its_workers_training_and_a_new_one_adopts_them(tmp_path):
    db = tmp_path / "e.db"
    with Store(db) as s:
        (first,) = queue(s, steps=100_000, log_every=2, checkpoint_every=50)
        (second,) = queue(s)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "core.scheduler", "--db", str(db), "--slots", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        with Store(db) as s:
            run = wait_for(lambda: (r := s.get_run(first)).status == "running" and r.step > 0 and r, what="the first run")
        proc.kill()
        proc.wait()
        with Store(db) as s:
            assert s.get_run(first).status == "running"  # its worker goes on without the scheduler
            assert s.live_schedulers() == []
        sched = Scheduler(db, plan_slots(slots=1, cores=2), drain=True, poll_s=0.05, log=lambda t: None)
        thread = threading.Thread(target=sched.run)
        thread.start()
        with Store(db) as s:
            wait_for(lambda: s.get_run(first).scheduler == sched.id, what="the adoption")
            assert s.get_run(second).status == "queued"  # its only slot is busy with the adopted run
            s.request_stop(first)
        thread.join(timeout=300)
        with Store(db) as s:
            a, b = s.get_run(first), s.get_run(second)
            assert a.status == "stopped" and a.pid == run.pid  # the same worker trained it to the end
            assert b.status == "completed" and b.started >= a.ended  # one slot: the second waited
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_run_on_two_processes_takes_two_slots(tmp_path):
    """A queued run with world_size 2 takes both CPU slots at once (torchrun, gloo); the single
    run behind it waits for a free slot."""
    db = tmp_path / "e.db"
    with Store(db) as s:
        cfg = preset("smoke", {**QUICK, "steps": 8}).to_dict()
        two = s.create_run(cfg, preset="smoke", in_queue=True, world_size=2).id
        (one,) = queue(s, steps=8)
    run_scheduler(db, slots=2)
    with Store(db) as s:
        a, b = s.get_run(two), s.get_run(one)
        assert a.status == b.status == "completed" and a.world_size == 2 and a.env["world_size"] == 2
        assert a.slot == "cpu/0+cpu/1" and b.started >= a.ended
        assert s.series(two, "loss")[0] == [3, 6, 8]
