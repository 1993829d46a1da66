"""The worker against a real SQLite file: rows and files agree after every resume."""

import threading
from pathlib import Path

from core.config import preset
from core.store import Store
from core.worker import clean_run_dir, train_run

SMOKE = {"steps": 12, "log_every": 3, "sample_every": 0, "checkpoint_every": 6, "keep_checkpoints": 0}


def _agree(store: Store, rid: int) -> tuple[list[int], list[str]]:
    rows = sorted(Path(c.path).name for c in store.checkpoints(rid))
    files = sorted(p.name for p in store.run_dir(rid).glob("step-*.pt"))
    assert rows == files, (rows, files)
    return [c.step for c in store.checkpoints(rid)], files


def test_a_resume_past_an_unreadable_checkpoint_forgets_its_row_and_file(tmp_path):
    db = tmp_path / "e.db"
    with Store(db) as store:
        rid = store.create_run(preset("smoke", SMOKE).to_dict(), preset="smoke", device="cpu").id
    assert train_run(db, rid) == "completed"
    with Store(db) as store:
        assert _agree(store, rid)[0] == [6, 12]
        newest = Path(store.checkpoints(rid)[-1].path)
        newest.write_bytes(b"damaged")
        store.prepare_resume(rid, total_steps=18)
    stop = threading.Event()
    stop.set()  # stop at once: the resume reads the checkpoints, then checkpoints where it stands
    assert train_run(db, rid, stop=stop) == "stopped"
    with Store(db) as store:
        assert _agree(store, rid)[0] == [6]  # the damaged step-12 row went with its file
        assert store.get_run(rid).step == 6
        store.prepare_resume(rid)
    assert train_run(db, rid) == "completed"
    with Store(db) as store:
        assert _agree(store, rid)[0] == [6, 12, 18]


def test_cleaning_a_run_folder_keeps_only_recorded_checkpoints_and_live_writers(tmp_path):
    import os

    folder = tmp_path / "7"
    folder.mkdir()
    for name in ("step-00000003.pt", "step-00000006.pt", "step-00000009.pt"):
        (folder / name).write_bytes(b"x")
    (folder / ".step-00000012.pt.tmp-999999999").write_bytes(b"half")  # no such pid
    (folder / f".step-00000012.pt.tmp-{os.getpid()}").write_bytes(b"a live writer's")
    removed = clean_run_dir(folder, [folder / "step-00000006.pt"])
    # 3: forgotten by keep_checkpoints but not yet deleted at a kill; 9: written, never recorded
    assert sorted(p.name for p in removed) == [".step-00000012.pt.tmp-999999999", "step-00000003.pt", "step-00000009.pt"]
    assert sorted(p.name for p in folder.iterdir()) == [f".step-00000012.pt.tmp-{os.getpid()}", "step-00000006.pt"]
