"""--nproc N: a training command run again under torchrun with N processes on this machine (torchrun's
--standalone rendezvous); several machines use torchrun itself (docs/verbs.md). Torch-free until it launches."""
from __future__ import annotations

import os
import subprocess
import sys

from ..errors import UserError


def without_nproc(argv: list[str]) -> list[str]:
    """The command line without its --nproc N (or --nproc=N)."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            out.append(item)
    return out


def check_devices(nproc: int, device: str | None) -> None:
    """Refuse more processes than this machine has GPUs (training on CUDA) or CPU cores (on the CPU)."""
    import torch

    on_gpu = (device or "auto") != "cpu" and torch.cuda.is_available()
    available = torch.cuda.device_count() if on_gpu else (os.cpu_count() or 1)
    if nproc > available:
        kind = "GPUs" if on_gpu else "CPU cores"
        raise UserError(f"--nproc {nproc}: this machine has {available} {kind}; one process per "
                        f"{'GPU' if on_gpu else 'core'} at most")


def launch(nproc: int, device: str | None, argv: list[str]) -> int:
    """Run `medconv ARGV` (without --nproc) under torchrun with `nproc` processes; its exit code."""
    check_devices(nproc, device)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "medconv.cli", *without_nproc(argv)]
    return subprocess.call(command)
