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
    (or make) the same schema, and neither may fail on the other's half of the migration."""
    for attempt in range(5):
        db = tmp_path / f"e{attempt}.db"
        assert _open_together(db, 6) == []
        with Store(db) as store:
            meta = {r["key"]: r["value"] for r in store.db["meta"].rows}
            assert meta["schema_version"] == str(SCHEMA_VERSION)
            assert "runs" in store.db.table_names()


# ---- what the faces ask of the store -------------------------------------------------------


def _run(status: str, pid: int | None = None) -> Run:
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
    assert _run(status, pid).has_worker is expected


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
