"""Pretraining across processes with torch.distributed, as torchrun launches it.

    torchrun --nproc_per_node=8 -m lab pretrain --method slm --scale paper

Every rank draws the same global batch from the same seeded sampler and trains on
its own contiguous shard of it (`shard`); DistributedDataParallel averages the
gradients, so a step is the step one process would take on the whole batch, and
the sampler's state, saved with every checkpoint, is the same on every rank. That
is why a run resumes on any number of ranks that divides the batch. Rank 0
alone evaluates, writes checkpoints, logs and stores the result rows; the others
wait for it at the end of the run (`barrier`).

Outside torchrun (no `WORLD_SIZE` above 1 in the environment) every function
here is what one process needs: rank 0 of a world of one.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist

from ..device import pick_device
from ..errors import LabError


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup() -> None:
    """Join the process group torchrun describes in the environment: NCCL across GPUs (one per
    rank, by `LOCAL_RANK`), gloo on CPUs."""
    if not launched() or dist.is_initialized():
        return
    cuda = pick_device().type == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise LabError(f"rank {local} of this node has no GPU of its own ({torch.cuda.device_count()} here): "
                           "give torchrun --nproc_per_node at most the number of GPUs")
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def check_batch(batch_size: int) -> None:
    if batch_size % world():
        raise LabError(f"a batch of {batch_size} sequences does not split evenly over {world()} processes: give "
                       f"torchrun an --nproc_per_node (times --nnodes) that divides {batch_size}")


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global batch (all of it in one process)."""
    return batch.chunk(world())[rank()] if world() > 1 else batch


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """`model` for the forward and backward passes: itself in one process, else under DDP."""
    if world() == 1:
        return model
    device = next(model.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def mean(value: torch.Tensor) -> float:
    """The mean of a scalar over the ranks (each rank's loss on its shard: the global batch's loss)."""
    if world() > 1:
        value = value.detach().clone()
        dist.all_reduce(value)  # a sum: gloo has no average
        value /= world()
    return value.item()


def agree(value):
    """Rank 0's `value`, on every rank (what each decides from the files on disk may differ)."""
    if world() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world() > 1:
        dist.barrier()


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the lock file `path` (rank 0 alone, for all ranks) while the block runs: two processes
    asked for the same run (a study's workers, a torchrun and a notebook) train it once, the
    second continuing from what the first wrote."""
    if not is_main():
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield
