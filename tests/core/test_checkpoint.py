import os

import pytest
import torch

from core import atomic
from core import checkpoint as ck
from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sha256_file


def test_save_then_load_round_trips_and_hashes(tmp_path):
    state = {"model": {"w": torch.arange(6.0)}, "step": 3, "config": {"lr": 1e-3, "mult": [1, 2]}}
    saved = save_checkpoint(tmp_path / "a.pt", state)
    assert saved.bytes == (tmp_path / "a.pt").stat().st_size
    assert saved.sha256 == sha256_file(tmp_path / "a.pt")
    back = load_checkpoint(tmp_path / "a.pt")
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["step"] == 3


def test_interrupted_write_keeps_the_old_file_and_leaves_no_debris(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})
    before = path.read_bytes()

    real_write = os.write

    class Boom(Exception):
        pass

    def dying_fsync(fd):  # the process "dies" after the data went out but before the rename
        raise Boom()

    monkeypatch.setattr(atomic.os, "fsync", dying_fsync)
    with pytest.raises(Boom):
        save_checkpoint(path, {"step": 2, "big": torch.zeros(10_000)})
    monkeypatch.setattr(atomic.os, "fsync", os.fsync)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
    assert real_write is os.write


def test_truncated_checkpoint_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.zeros(1000)})
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_payload_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": ck.FORMAT, "model": Payload()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)


def test_foreign_and_missing_files(tmp_path):
    torch.save({"something": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a ddpm-tui checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
