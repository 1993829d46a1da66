"""The store opened by several processes at once, on real SQLite files."""

import os
import threading
from pathlib import Path

import pytest

from core.store import SCHEMA_VERSION, Run, Store, StoreError, open_store


def _open_together(db: Path, n: int) -> list[Exception]:
    gate = threading.Barrier(n)
    errors: list[Exception] = []

    def open_it() -> None:
        gate.wait()
        try:
            Store(db).close()
        except Exception as e:  # the test reports whatever escapes
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_many_openers_of_a_new_file_all_get_one_schema(tmp_path):
    """Two `ddpm run --detach` into a fresh path open it at the same moment: both must find
    (or make) the same schema, and neither may fail on the other's half of the migration,
    nor on the other's switch to WAL (about 1 race in 100 lost it at once, before the retry)."""
    for attempt in range(40):
        db = tmp_path / f"e{attempt}.db"
        assert _open_together(db, 6) == []
        with Store(db) as store:
            meta = {r["key"]: r["value"] for r in store.db["meta"].rows}
            assert meta["schema_version"] == str(SCHEMA_VERSION)
            assert "runs" in store.db.table_names()


def test_a_failed_migration_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    """The schema is made in one transaction: with sqlite-utils 3, Table.create committed
    it half-way, and a failure left a file with tables but no schema version."""
    import sqlite3

    import pytest

    from core import migrations

    def boom(db):
        db["half"].create({"id": int}, pk="id")
        raise RuntimeError("migration failed")

    monkeypatch.setitem(migrations.MIGRATIONS, 2, boom)
    with pytest.raises(RuntimeError, match="migration failed"):
        Store(tmp_path / "e.db")
    conn = sqlite3.connect(tmp_path / "e.db")
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    monkeypatch.undo()
    with Store(tmp_path / "e.db") as store:  # and the next open makes the whole schema
        assert {"runs", "metrics", "samples", "checkpoints", "evals", "meta"} <= set(store.db.table_names())


def _run(store: Store, **config) -> int:
    return store.create_run({"steps": 10, **config}, preset="smoke").id


def test_two_workers_claiming_one_run_at_once_one_wins(tmp_path):
    """The claim is one conditional UPDATE: whoever comes second is refused, whatever the
    interleaving (two live pids: this process and its parent)."""
    import os

    db = tmp_path / "e.db"
    with Store(db) as store:
        ids = [_run(store) for _ in range(10)]
    for rid in ids:
        gate = threading.Barrier(2)
        results: list[str] = []

        def claim(pid: int, rid=rid, gate=gate, results=results) -> None:
            with Store(db) as s:
                gate.wait()
                try:
                    s.claim(rid, device="cpu", pid=pid)
                    results.append("won")
                except Exception as e:
                    results.append(type(e).__name__)

        threads = [threading.Thread(target=claim, args=(pid,)) for pid in (os.getpid(), os.getppid())]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["StoreError", "won"], results
        with Store(db) as s:
            run = s.get_run(rid)
            assert run.status == "running" and run.pid in (os.getpid(), os.getppid())


def test_status_as_readers_see_it(tmp_path):
    """'crashed' is never stored: a running row whose worker is gone reads crashed (a dead
    pid here, a stale heartbeat from another host); a live or fresh one reads running."""
    import os
    import time

    from core.store import STALE_AFTER

    with Store(tmp_path / "e.db") as store:
        ids = [_run(store) for _ in range(6)]
        now = time.time()
        rows = [
            ("running", os.getpid(), store._here, now),  # this live process
            ("running", 2**22 + 12345, store._here, now),  # no such pid
            ("running", 1, "another-host", now - 1),  # fresh heartbeat elsewhere
            ("running", 1, "another-host", now - STALE_AFTER - 1),  # stale elsewhere
            ("queued", 2**22 + 12345, store._here, now),  # spawned, died before claiming
            ("queued", None, None, None),  # waiting
        ]
        for rid, (status, pid, host, beat) in zip(ids, rows):
            store.conn.execute(
                "UPDATE runs SET status = ?, pid = ?, host = ?, heartbeat = ? WHERE id = ?", (status, pid, host, beat, rid)
            )
        store.conn.commit()
        assert [store.get_run(r).status for r in ids] == ["running", "crashed", "running", "crashed", "crashed", "queued"]
        assert [r.status for r in sorted(store.list_runs(), key=lambda r: r.id)] == [store.get_run(r).status for r in ids]


def test_truncation_forgets_everything_past_the_resume_step(tmp_path):
    import numpy as np

    from core.sampling_spec import Protocol, SamplingSpec

    spec = SamplingSpec("ddim", 5, 0.0)
    with Store(tmp_path / "e.db") as store:
        rid = _run(store)
        store.record(rid, [(s, "loss", 1.0 / s, 0.0) for s in range(1, 11)], {"step": 10})
        for step in (5, 10):
            store.add_samples(rid, step, np.zeros((2, 1, 4, 4), np.uint8), spec)
            store.add_eval(rid, step, protocol=Protocol(spec, 10), figures={"fid": 1.0}, floor={}, seconds=0.1)
            store.add_checkpoint(rid, step, tmp_path / f"step-{step}.pt", 1, "0" * 64)
        store.truncate_after(rid, 5)
        assert store.series(rid, "loss")[0] == [1, 2, 3, 4, 5]
        assert store.sample_steps(rid) == [5] and [e["step"] for e in store.evals(rid)] == [5]
        assert [c.step for c in store.checkpoints(rid)] == [5] and store.get_run(rid).step == 5


def test_figures_are_series_per_protocol(tmp_path):
    """A `ddpm eval` (DDIM-50) and --eval-every (the run's own spec) at one step are two
    series, never one curve; the latest figures say which protocol they were measured under."""
    from core.sampling_spec import Protocol, SamplingSpec

    own, fifty = Protocol(SamplingSpec("ddim", 10, 1.8), 100), Protocol(SamplingSpec("ddim", 50, 0.0), 1000)
    with Store(tmp_path / "e.db") as store:
        rid = _run(store)
        store.add_eval(rid, 5, protocol=own, figures={"fid": 40.0}, floor={}, seconds=1)
        store.add_eval(rid, 10, protocol=own, figures={"fid": 30.0}, floor={}, seconds=1)
        store.add_eval(rid, 10, protocol=fifty, figures={"fid": 20.0}, floor={}, seconds=1)
        assert store.figure_series(rid, "fid") == {own.key: ([5, 10], [40.0, 30.0]), fifty.key: ([10], [20.0])}
        assert store.latest_figure_for_all("fid") == {rid: (20.0, fifty.key)}
        assert store.latest_metrics(rid)["fid"] == (10, 20.0)
        assert store.latest_eval(rid)["protocol"] == fifty.key


# ---- what the faces ask of the store -------------------------------------------------------


def _row(status: str, pid: int | None = None) -> Run:
    return Run(id=1, name="r", preset="smoke", status=status, config={}, device="cpu", total_steps=10, pid=pid)


@pytest.mark.parametrize(
    ("status", "pid", "expected"),
    [
        ("running", 123, True),
        ("queued", 123, True),  # spawned, not yet claimed: its worker is on its way
        ("queued", None, False),  # nobody has been started for it
        ("crashed", 123, False),  # its worker is gone
        ("completed", 123, False),
        ("stopped", None, False),
        ("failed", 123, False),
    ],
)
def test_has_worker_is_running_or_queued_with_a_pid(status, pid, expected):
    assert _row(status, pid).has_worker is expected


def test_runs_with_checkpoints_names_only_runs_that_have_one(tmp_path):
    with Store(tmp_path / "e.db") as store:
        assert store.runs_with_checkpoints() == set()
        ids = [store.create_run({"steps": 10}, preset="smoke").id for _ in range(3)]
        for step in (3, 6):
            store.add_checkpoint(ids[0], step, tmp_path / f"a-{step}.pt", 10, "0" * 64)
        store.add_checkpoint(ids[2], 3, tmp_path / "c-3.pt", 10, "0" * 64)
        assert store.runs_with_checkpoints() == {ids[0], ids[2]}


def _writable_except(monkeypatch, locked: Path) -> None:
    """As if the process may not write ``locked`` (works when the tests run as root, who may)."""
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if Path(p) == locked and mode & os.W_OK else real(p, mode, **kw)
    )


@pytest.mark.parametrize("locked", ["file", "folder"])
def test_open_store_falls_back_to_read_only(tmp_path, monkeypatch, locked):
    db = tmp_path / "e.db"
    with Store(db) as store:
        store.create_run({"steps": 10}, preset="smoke", name="kept")
    _writable_except(monkeypatch, db if locked == "file" else tmp_path)
    with open_store(db) as store:
        assert store.readonly
        assert [r.name for r in store.list_runs()] == ["kept"]
    with open_store(db, create=True) as store:  # the dashboard's way: still read-only, not an error
        assert store.readonly


def test_open_store_writable_and_missing(tmp_path):
    db = tmp_path / "e.db"
    with pytest.raises(StoreError, match="no database"):
        open_store(db)
    with pytest.raises(StoreError, match="no database"):
        open_store(db, write=True)
    assert not db.exists()  # a reader leaves no empty file behind
    with open_store(db, write=True, create=True) as store:
        assert not store.readonly
    with open_store(db) as store:
        assert not store.readonly


def test_move_up_passes_exactly_one_run_whatever_the_priorities(tmp_path):
    """The queue is ordered by priority, then id: a run moved up one place passes its
    neighbour and nobody else, with equal priorities (a sweep), mixed ones, and a queue
    that runs started or were cancelled from; the first run stays first."""
    import random

    rng = random.Random(7)
    with Store(tmp_path / "e.db") as store:
        ids = [store.create_run({"steps": 10}, preset="smoke", in_queue=True, priority=rng.choice([0, 0, 0, 1, 3])).id
               for _ in range(12)]  # fmt: skip
        store.request_stop(ids[4])  # cancelled: no longer waiting, its priority is left alone
        store.create_run({"steps": 10}, preset="smoke")  # not in the queue at all
        untouched = {r.id: r.priority for r in store.list_runs() if not r.in_queue or r.status != "queued"}
        for _ in range(60):
            before = [r.id for r in store.waiting()]
            i = rng.randrange(len(before))
            moved = store.move_up(before[i])
            after = [r.id for r in store.waiting()]
            expected = list(before)
            if i:
                expected[i - 1], expected[i] = expected[i], expected[i - 1]
            assert after == expected, (i, before, after)
            assert moved.id == before[i]
        assert {r.id: r.priority for r in store.list_runs() if r.id in untouched} == untouched


def test_move_up_on_a_sweep_changes_few_priorities_and_refuses_a_run_not_waiting(tmp_path):
    with Store(tmp_path / "e.db") as store:
        ids = [store.create_run({"steps": 10}, preset="smoke", in_queue=True).id for _ in range(4)]
        store.move_up(ids[1])  # second to first: it alone rises
        assert [(r.id, r.priority) for r in store.waiting()] == [(ids[1], 1), (ids[0], 0), (ids[2], 0), (ids[3], 0)]
        store.move_up(ids[3])  # last past third: the two ahead of the third rise with it, in their order
        assert [(r.id, r.priority) for r in store.waiting()] == [(ids[1], 2), (ids[0], 1), (ids[3], 1), (ids[2], 0)]
        assert store.move_up(ids[1]).priority == 2  # the first stays first, unchanged
        lone = store.create_run({"steps": 10}, preset="smoke")
        with pytest.raises(StoreError, match="not waiting in the queue"):
            store.move_up(lone.id)


def test_an_eta_window_is_recorded_and_rows_from_before_it_read_as_drawn_without_one(tmp_path, monkeypatch):
    """Figures drawn with and without a window are two series; a file written before the
    window existed (schema 5) is migrated, and its rows keep the protocol they had."""
    import sqlite3

    import numpy as np

    import core.store
    from core.sampling_spec import Protocol, SamplingSpec

    db = tmp_path / "w.db"
    monkeypatch.setattr(core.store, "SCHEMA_VERSION", SCHEMA_VERSION - 1)
    with Store(db) as store:
        rid = _run(store)
    with sqlite3.connect(db) as c:  # what the older version wrote: no eta_window column
        assert "eta_window" not in [r[1] for r in c.execute("PRAGMA table_info(evals)")]
        c.execute(
            "INSERT INTO evals (run, step, n, sampler, steps, eta, seed, figures, floor, seconds, time)"
            " VALUES (?, 5, 100, 'ddim', 50, 1.8, 0, '{\"fid\": 30.0}', '{}', 1, 1)",
            (rid,),
        )
    monkeypatch.setattr(core.store, "SCHEMA_VERSION", SCHEMA_VERSION)
    plain, windowed = Protocol(SamplingSpec("ddim", 50, 1.8), 100), Protocol(SamplingSpec("ddim", 50, 1.8, eta_window=0.7), 100)
    with Store(db) as store:
        assert store.evals(rid)[0]["protocol"] == plain.key
        store.add_eval(rid, 10, protocol=plain, figures={"fid": 28.0}, floor={}, seconds=1)
        store.add_eval(rid, 10, protocol=windowed, figures={"fid": 21.0}, floor={}, seconds=1)
        assert store.figure_series(rid, "fid") == {plain.key: ([5, 10], [30.0, 28.0]), windowed.key: ([10], [21.0])}
        assert store.latest_figure_for_all("fid") == {rid: (21.0, windowed.key)}
        assert store.latest_evals()[rid]["protocol"] == windowed.key == "ddim-50 eta 1.8 window 0.7, n=100"
        store.add_samples(rid, 10, np.zeros((4, 1, 2, 2), np.uint8), windowed.spec)
        assert store.latest_samples(rid).label == "ddim-50 eta 1.8 window 0.7"
