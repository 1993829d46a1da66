"""One run on several processes: PyTorch's own data parallelism, launched by torchrun.

``ddpm run --nproc N`` starts ``python -m torch.distributed.run --nproc-per-node N -m
core.worker RUN --db PATH`` (torchrun's launcher), which sets RANK, WORLD_SIZE and LOCAL_RANK
for each process; :class:`ProcessGroup` reads them and joins the group with NCCL on CUDA and
gloo on the CPU. The model is wrapped in DistributedDataParallel, which averages gradients
across ranks.

What a rank does, and why:

- ``batch_size`` is the global batch. Every rank draws the whole micro-batch's indices,
  timesteps and noise from the same (seed, step) generators and trains on its slice, so the
  global batch is the same whatever the number of processes: a run's results do not depend on
  how many trained it, and a checkpoint resumes at another world size on the same streams.
- Rank 0 alone opens the database, writes metrics, grids and checkpoints, and keeps the EMA;
  the other ranks never touch the store (on other machines they could not: SQLite stays on
  rank 0's machine). Rank 0 hands them the run's config and resume state by broadcast.
- Ranks agree once per log window, with one small all-reduce: the window's loss (the global
  batch's) and whether to stop (a stop request seen by rank 0, a signal seen by any rank).
  That window boundary is already the loop's one host synchronisation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

# Rank 0 samples, judges and checkpoints while the others wait at their next collective:
# give that wait room (the defaults, 10 min for NCCL, would cut a long evaluation short).
TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ProcessGroup:
        """The group torchrun started this process in (a single process without it)."""
        env = os.environ if environ is None else environ
        world = int(env.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        return cls(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")))

    def device(self, device_type: str) -> torch.device:
        """This rank's device: its own GPU (LOCAL_RANK among the visible ones) or the CPU."""
        if device_type == "cuda":
            return torch.device("cuda", self.local_rank)
        return torch.device(device_type)

    def join(self, device: torch.device) -> None:
        """Join the process group: NCCL on CUDA, gloo on the CPU."""
        import torch.distributed as dist

        if not self.distributed or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=self.rank, world_size=self.world_size, timeout=TIMEOUT)

    def leave(self) -> None:
        import torch.distributed as dist

        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def broadcast(self, obj: Any = None) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; tensors included)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def window(self, loss_sum: torch.Tensor, stop: bool) -> tuple[torch.Tensor, bool]:
        """The log window's agreement, one all-reduce: the mean of the ranks' loss sums (the
        global batch's loss) and whether any rank wants to stop."""
        if not self.distributed:
            return loss_sum, stop
        import torch.distributed as dist

        both = torch.stack([loss_sum.float(), torch.tensor(float(stop), device=loss_sum.device)])
        dist.all_reduce(both, op=dist.ReduceOp.SUM)
        return both[0] / self.world_size, bool(both[1] > 0)


SINGLE = ProcessGroup()


def wrap(net: torch.nn.Module, group: ProcessGroup, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``net`` for a group of several processes; ``net`` itself
    alone. DDP broadcasts rank 0's weights at construction, so every rank starts equal."""
    if not group.distributed:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
