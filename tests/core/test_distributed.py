"""Data parallelism proven on the CPU with gloo: the same step whatever the world size."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from core.config import preset
from core.data import TensorDataset, load_dataset
from core.distributed import SINGLE, ProcessGroup
from core.train import Trainer

CFG = {"steps": 3, "batch_size": 16, "grad_accum": 2, "sample_every": 0, "checkpoint_every": 0, "warmup": 0}


def _digits() -> TensorDataset:
    full = load_dataset(preset("smoke"))
    return TensorDataset(full.data[:256].clone(), full.labels[:256].clone())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, out: str) -> None:
    """One rank: two optimiser steps (of two micro-batches each) on its slices; rank 0 saves
    the weights."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    group = ProcessGroup(rank, world, rank)
    group.join(torch.device("cpu"))
    try:
        tr = Trainer(preset("smoke", CFG), device="cpu", dataset=_digits(), group=group)
        losses = [tr.train_step()[0] for _ in range(2)]
        mean, _ = group.window(sum(losses), False)
        if group.is_main:
            torch.save({"net": tr.net.state_dict(), "loss": float(mean)}, out)
    finally:
        group.leave()


def test_two_processes_take_the_same_steps_as_one_on_the_same_global_batch(tmp_path):
    """World size 2 on the global batch of 16 (each rank 8 per micro-batch, gradients averaged
    by DDP) ends with the parameters of one process stepping on those 16: the batch, timesteps
    and noise are drawn for the whole micro-batch on every rank and sliced."""
    torch.set_num_threads(1)
    one = Trainer(preset("smoke", CFG), device="cpu", dataset=_digits(), group=SINGLE)
    single_loss = float(sum(one.train_step()[0] for _ in range(2)))
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    ours = one.net.state_dict()
    worst = max((two["net"][k].float() - ours[k].float()).abs().max().item() for k in ours)
    assert worst < 1e-5, worst
    assert abs(two["loss"] - single_loss) < 1e-5  # the reported loss is the global batch's


def test_a_batch_that_does_not_split_is_refused_in_one_line():
    import pytest

    from core.config import ConfigError

    with pytest.raises(
        ConfigError, match="batch_size: 16 does not split into 3 processes x 2 micro-batches; use a multiple of 6"
    ):
        Trainer(preset("smoke", CFG), device="cpu", dataset=_digits(), group=ProcessGroup(0, 3, 0))
