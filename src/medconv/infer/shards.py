"""Prediction on several processes (`predict`, `segment predict`, `detect predict` with `--nproc N`, or under
torchrun): each rank takes every WORLD_SIZE-th input file or slide, and the per-input results are gathered over gloo
into input order on every rank; every function is a no-op in one process.

Striding rather than contiguous blocks: neighbouring inputs (a folder listed in order, slides of one scanner) tend
to cost alike, so every rank gets a like mix and they finish together, and merging by index is as exact. Rank 0
writes the CSV and prints the rows as one process would (fileio.writes_here); the per-image files (maps, masks,
overlays, heat maps) are written by the rank that computed them (fileio.own_files). Nothing here imports torch
until ranks have to talk, so the ONNX paths stay torch-free in one process."""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Callable, Sequence, TypeVar

from ..errors import UserError
from ..fileio import own_files
from ..progress import distributed, other_rank, rank, world_size

T = TypeVar("T")
PATIENCE = timedelta(days=7)  # how long a rank done with its share waits for the others (gloo's default: 30 min)


def my_share(items: Sequence[T]) -> list[T]:
    """This rank's inputs: items RANK, RANK + WORLD_SIZE, ... (all of them in one process); a rank may get none."""
    return list(items)[rank()::world_size()]


def local_device(device: str) -> str:
    """The device this rank computes on: "cuda" becomes the GPU of its LOCAL_RANK (one GPU per rank, as training
    does); any other name (cpu, cuda:N given explicitly) as it is, and in one process too."""
    if device == "cuda" and distributed():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def join_group() -> None:
    """Join torchrun's process group over gloo (once per process; one already joined, e.g. by training, is kept):
    Python objects are gathered on the CPU whichever device computes."""
    import torch.distributed as dist  # torch: only once several ranks have to talk

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=PATIENCE)


def everyone(value):
    """[the value of rank 0, of rank 1, ...] on every rank ([value] in one process); every rank must call it."""
    if not distributed():
        return [value]
    import torch.distributed as dist  # torch: only once several ranks have to talk

    join_group()
    values = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    """Wait until every rank is here (nothing to wait for in one process); every rank must call it."""
    everyone(None)


def gather_in_order(mine: list, failure: UserError | None = None, at: int | None = None) -> list:
    """The per-item results of every rank's share (mine: this rank's, in the order of my_share), merged into input
    order, on every rank (a copy of `mine` in one process); every rank must call it. `failure`: the UserError that
    stopped this rank's share at its item `at` (default: len(mine)): once all ranks are here, the one that stopped
    at the earliest input is raised on every rank (the error one process would have stopped at), so each rank can
    take back the files it wrote."""
    at = len(mine) if at is None else at
    parts = everyone((mine, None if failure is None else (at, str(failure))))
    size = len(parts)
    stops = [(stop[0] * size + r, stop[1]) for r, (_, stop) in enumerate(parts) if stop is not None]
    if stops:
        first, message = min(stops)
        if failure is not None and first == at * size + rank() % size:  # this rank's own: raised as it came
            raise failure
        raise UserError(message)
    total = sum(len(part) for part, _ in parts)
    return [parts[i % size][0][i // size] for i in range(total)]


def flattened(lists: list[list]) -> list:
    """The items of per-input lists, one after the other (detections: rows per image)."""
    return [item for items in lists for item in items]


def each_input(inputs: Sequence[str], work: Callable[[str], str], say: Callable[[str], None] = print) -> list[str]:
    """work(input) -> a line saying what it did, for this rank's share of `inputs` (each rank writing the files of
    its own share: fileio.own_files); the lines of every rank, in input order. In one process each line is said as
    it comes; under torchrun rank 0 says them all once every rank is done."""
    lines, failure = [], None
    try:
        with own_files():
            for item in my_share(inputs):
                lines.append(work(item))
                if not distributed():
                    say(lines[-1])
    except UserError as exc:
        failure = exc
    lines = gather_in_order(lines, failure)
    if distributed() and not other_rank():
        say("\n".join(lines))
    return lines
