"""Training on several processes (and machines) with PyTorch's DistributedDataParallel, launched by torchrun:

    torchrun --nproc_per_node 2 -m medconv.cli train --dataset breastmnist --out runs/b     # or: medconv train ... --nproc 2

torchrun starts one process per rank and sets RANK, LOCAL_RANK and WORLD_SIZE; the engine then joins the
process group (NCCL on GPUs, one GPU per local rank; gloo on CPUs). Every rank draws the same global batch from
the same seeded generator and trains on its share of it (`shard`), and DDP averages the gradients, so N processes
take the same steps as one process with the same --batch-size (up to float rounding; augmentation and dropout
draw differently, and batch-norm statistics are per process on CPUs). Validation runs whole on every rank (the
weights are the same, so are the metrics); only rank 0 writes files (fileio.writes_here) and prints. A
checkpoint holds the network without its DDP wrapper, so a run resumes with any number of processes.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..progress import distributed, rank, world_size


def join(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun (once per process); the device this rank trains on
    (cuda: the local rank's GPU)."""
    if not distributed():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def wrap(model: nn.Module, device: torch.device, partly_frozen: bool = False) -> nn.Module:
    """The model as DDP trains it (the model itself in one process); batch norm synchronised across GPUs.
    `partly_frozen`: some parameters get no gradient in some steps (--finetune, --unfreeze-every), so DDP must
    look for unused ones (an extra pass over the graph each step)."""
    if not distributed():
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device], find_unused_parameters=partly_frozen)
    return nn.parallel.DistributedDataParallel(model, find_unused_parameters=partly_frozen)


def shard(batch: Any) -> Any:
    """This rank's part of a global batch: every tensor of a (nested) tuple split into WORLD_SIZE contiguous
    parts along dim 0 (sizes differing by at most one), part RANK kept; None and other values as they are."""
    if not distributed():
        return batch
    if isinstance(batch, torch.Tensor):
        return torch.tensor_split(batch, world_size())[rank()]
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard(b) for b in batch)
    return batch


def mean(value: float, device: torch.device) -> float:
    """The mean of a number over the ranks (the value itself in one process)."""
    if not distributed():
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()) / world_size()


def barrier() -> None:
    if distributed() and dist.is_initialized():
        dist.barrier()


def abandon() -> None:
    """Leave the process group after a failure, without waiting for the other ranks (which may be dead or
    stopped), so that the process exits with its own code instead of an abort in the communication threads."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave() -> None:
    """Leave the process group at the end of a command (so the process exits cleanly)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
