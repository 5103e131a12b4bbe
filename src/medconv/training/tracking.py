"""TensorBoard logs of a run (`--tensorboard`): each epoch's history row and a grid of its first training inputs.

The engine calls `require` when a run opens (a missing `tensorboard` package is one clear line, before any data
is read), then `track` around its epochs: `watch` as an epoch starts, `log` once its history row is written.
The inputs are caught as the network receives them (a forward pre-hook, disarmed after the epoch's first call),
so the grid shows what it was fed: augmented, normalised, mixed up; each image is scaled to its own range.
Only the process that writes the run (rank 0 of a torchrun launch) writes logs; the other ranks do nothing.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torchvision.utils import make_grid

from ..config import BaseConfig
from ..errors import UserError
from ..fileio import writes_here

FOLDER = "tensorboard"
IMAGES = 8      # inputs shown per epoch
SIDE = 256      # the largest side an input is shown at (larger ones are scaled down)
INSTALL = "--tensorboard needs the tensorboard package: pip install tensorboard (or pip install 'medconv[tensorboard]')"


def require(cfg: BaseConfig) -> None:
    """With --tensorboard, refuse to start without the tensorboard package (one line, how to install it)."""
    if getattr(cfg, "tensorboard", False):
        try:
            import tensorboard  # noqa: F401
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise UserError(INSTALL) from None


class Tracker:
    """The TensorBoard writer of one run; without --tensorboard (or on a rank that does not write) a no-op."""

    def __init__(self, folder: Path | None, model: nn.Module, start: int = 0):
        self.writer, self.model, self.inputs, self.hook = None, model, None, None
        if folder is not None:
            from torch.utils.tensorboard import SummaryWriter

            # a resumed run repeats the epochs after `start`: events logged for them before it stopped are hidden
            self.writer = SummaryWriter(str(folder), purge_step=start + 1 if start else None)

    def watch(self) -> None:
        """Catch the first few inputs of the network's next call (the epoch's first training step)."""
        if self.writer is not None and self.hook is None:
            self.inputs = None
            self.hook = self.model.register_forward_pre_hook(self.catch)

    def catch(self, module: nn.Module, args: tuple) -> None:
        if not module.training:  # a validation call (an epoch without training steps): wait for a training one
            return
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and x.dim() in (4, 5):
            self.inputs = x[:IMAGES].detach().float().cpu()
        self.hook.remove()
        self.hook = None

    def log(self, row: dict) -> None:
        """An epoch's history row: each number as a scalar at step `epoch`, and the grid of the inputs caught."""
        if self.writer is None:
            return
        step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, float(value), step)
        if self.inputs is not None:
            self.writer.add_image("inputs", grid(self.inputs), step)
            self.inputs = None
        self.writer.flush()

    def close(self) -> None:
        if self.hook is not None:
            self.hook.remove()
            self.hook = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def grid(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1]: inputs (N, C, H, W), or volumes (N, C, D, H, W) by their middle slice, side by side;
    inputs of other than 1 or 3 channels by their first, each image scaled to its own range."""
    if x.dim() == 5:
        x = x[:, :, x.shape[2] // 2]
    if x.shape[1] not in (1, 3):
        x = x[:, :1]
    side = max(x.shape[-2:])
    if side > SIDE:
        x = nn.functional.interpolate(x, scale_factor=SIDE / side, mode="area")
    x = torch.nan_to_num(x)
    return make_grid(x, nrow=math.ceil(math.sqrt(len(x))), padding=2, normalize=True, scale_each=True, pad_value=1.0)


@contextlib.contextmanager
def track(cfg: BaseConfig, out: Path, model: nn.Module, start: int = 0) -> Iterator[Tracker]:
    """The run's Tracker (writing RUN_DIR/tensorboard/ with --tensorboard, on the writing rank), closed at the end."""
    on = getattr(cfg, "tensorboard", False) and writes_here()
    tracker = Tracker(Path(out) / FOLDER if on else None, model, start)
    try:
        yield tracker
    finally:
        tracker.close()
