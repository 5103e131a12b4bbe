"""The one training engine every trainer runs on: classification, segmentation, detection, fine-tuning.

A task (`Task`) supplies its network, the batches of an epoch (a torch `DataLoader`), the loss of a
batch and the validation metrics; `fit` does the rest, the same way for all of them:

- epochs reseeded from (seed, epoch), so a resumed run repeats an interrupted epoch exactly and, with
  `--deterministic`, ends with bit-identical weights;
- the optimiser (AdamW, Adam or SGD, one parameter group per layer group for discriminative rates) and
  the per-epoch schedule from `torch.optim.lr_scheduler` (linear warm-up, then cosine, step or constant);
- `--precision fp32|bf16|fp16`: training steps under autocast on CPU or CUDA (fp16 with a gradient
  scaler), weights in channels-last layout; validation stays fp32; on a CPU, the network's layers are first
  checked to get fp32's gradients at that precision (training.precision: some CPUs' kernels do not);
- the weight average (`--ema`), validated and kept instead of the last step's weights;
- the NaN stop (a non-finite loss or validation metric ends the run, the last good checkpoint kept);
- the best checkpoint by the task's validation metric (higher is better; NaN never wins);
- checkpoints/last.safetensors every epoch (optimiser, average and scaler included), history.csv,
  a progress bar with steps/s and ETA on a terminal, one plain line per epoch in a log;
- the fingerprint of the data the task trains and validates on (data.fingerprint) in the checkpoints:
  `--resume` refuses a run whose data changed since it started;
- with `--tensorboard`, each history row and a grid of each epoch's first inputs in RUN_DIR/tensorboard/ (tracking).
"""
from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from rich.console import Console
from torch import nn
from torch.optim import lr_scheduler

from ..config import BaseConfig
from ..data.fingerprint import differences, fingerprint
from ..errors import TrainingDiverged, UserError
from ..fileio import remove_leftovers, write_text, writes_here
from ..progress import progress_bar
from ..report.curves import write_curves
from . import distributed
from .checkpoint import load_weights, read_checkpoint, restore_optimizer, save_checkpoint
from .ema import WeightAverage
from .lock import RunLock
from .precision import check_kernels, precision_context
from .tracking import require, track

RESUME_MAY_CHANGE = ("epochs", "device", "threads", "data_root", "tensorboard")


class Task(Protocol):
    """What a trainer supplies to `fit`.

    model: the network, on its device. columns: the validation metrics `validate` returns, in
    history.csv's order. select: the one of them that picks the best checkpoint; lower_is_better: whether
    its lowest value wins (a loss, an error) rather than its highest. Optional: splits, {split name: data}
    of what the task trains and validates on (an ImageSet or a list of SegImage), for the run's data
    fingerprint.
    """

    model: nn.Module
    columns: list[str]
    select: str
    lower_is_better: bool

    def batches(self, epoch: int, generator: torch.Generator) -> Iterable:
        """The training batches of epoch `epoch` (0-based), e.g. a DataLoader, drawn with `generator` (seeded
        from (seed, epoch) by the engine); called after model.train()."""

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The scalar training loss of one batch (runs under the engine's autocast)."""

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics of `model` (the weight average when there is one), in fp32 and eval mode."""

    def status(self, row: dict) -> str:
        """A short description of an epoch's history row for the progress line."""


@dataclass
class RunDir:
    """A run directory: its checkpoints and, when resuming, the last checkpoint's (tensors, metadata). As a
    context manager, the trainer's whole run: its lock is released at the end, and a folder the run created
    is removed when it failed before writing anything."""

    out: Path
    saved: tuple[dict, dict] | None = None
    lock: RunLock | None = None  # held from open_run until the trainer calls release()
    torch_before: dict | None = None  # the process's torch settings before the run's --threads/--deterministic

    def release(self, failed: bool = False) -> None:
        """Let other runs write here again (a folder created by a run that failed empty is removed), and give
        the process back the torch settings it had before the run (the Python API trains in the caller's)."""
        if self.lock is not None:
            self.lock.release(failed)
        if self.torch_before is not None:
            restore_torch_settings(self.torch_before)
            self.torch_before = None

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        self.release(failed=error_type is not None)

    @property
    def last(self) -> Path:
        return self.out / "checkpoints" / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.out / "checkpoints" / "best.safetensors"


def resolve_device(name: str) -> torch.device:
    """--device: auto (CUDA when there is one), cpu, cuda or cuda:N; in a torchrun launch, this rank's device
    (its local GPU), the process group joined (training.distributed)."""
    if name == "auto":
        return distributed.join(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    return distributed.join(device)


def torch_settings() -> dict:
    """The process-wide torch settings a run may change (--threads, --deterministic)."""
    return {"threads": torch.get_num_threads(), "deterministic": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark}


def restore_torch_settings(saved: dict) -> None:
    torch.set_num_threads(saved["threads"])
    torch.use_deterministic_algorithms(saved["deterministic"], warn_only=saved["warn_only"])
    torch.backends.cudnn.benchmark = saved["cudnn_benchmark"]


def set_determinism(cfg: BaseConfig) -> dict:
    """Apply --threads and --deterministic to the process; returns the settings before (torch_settings())."""
    before = torch_settings()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return before


def resumed_config(saved: dict, overrides: dict | None, source: Path, cls: type[BaseConfig]) -> BaseConfig:
    """The saved configuration, with the options a resumed run may change (more epochs, another device)."""
    cfg = cls.from_dict(saved, source=str(source))
    for key, value in (overrides or {}).items():
        if key in RESUME_MAY_CHANGE:
            setattr(cfg, key, value)
        elif value != getattr(cfg, key):
            raise UserError(f"--resume continues the run saved in {source}: --{key.replace('_', '-')} cannot change "
                            f"({getattr(cfg, key)!r} there, {value!r} given)")
    return cfg


def open_run(cfg: BaseConfig, out: str | Path, resume: bool, overrides: dict | None,
             paths: tuple[str, ...] = ()) -> tuple[BaseConfig, RunDir]:
    """(validated config, run directory) for training into `out`: the saved configuration (with `overrides`
    checked) when resuming; an error when `out` already holds a run and `resume` is not set. The config
    fields named in `paths` become absolute (evaluate may run from another folder later). The run directory
    is locked for this process (training.lock): the trainer uses the run as a context manager (`with run:`),
    which releases the lock."""
    run = RunDir(Path(out))
    if resume and not run.last.exists():
        raise UserError(f"--resume: {run.last} not found (nothing to resume)")
    if writes_here():  # rank 0 of a torchrun launch locks and writes for all ranks
        run.lock = RunLock(run.out)  # first: a run still training here is named as such
        for folder in (run.out, run.out / "checkpoints"):
            remove_leftovers(folder)  # a run killed mid-write left them; no other process writes here now
    try:
        if resume:
            run.saved = read_checkpoint(run.last)
            cfg = resumed_config(run.saved[1]["config"], overrides, run.last, type(cfg))
        elif run.last.exists() or (run.out / "metrics.json").exists():
            raise UserError(f"{run.out} already holds a run: add --resume to continue it, or choose another --out")
        cfg.validate()
        require(cfg)  # --tensorboard without the tensorboard package: refused before any data is read
    except BaseException:
        run.release(failed=True)
        raise
    for name in paths:
        if getattr(cfg, name):
            setattr(cfg, name, str(Path(getattr(cfg, name)).expanduser().resolve()))
    run.torch_before = set_determinism(cfg)
    return cfg, run


def make_optimizer(cfg: BaseConfig, model: nn.Module, groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """cfg.optimizer over `groups` (dicts with params and lr_scale, e.g. transfer.finetune's layer groups; default:
    one group of all weights), each starting at lr x its lr_scale."""
    groups = groups or [{"params": list(model.parameters()), "lr_scale": 1.0}]
    params = [{**g, "lr": cfg.lr * g.get("lr_scale", 1.0)} for g in groups]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: BaseConfig, optimizer: torch.optim.Optimizer) -> lr_scheduler.LRScheduler:
    """The per-epoch schedule: `warmup_epochs` of linear warm-up (lr (e + 1) / (warmup + 1) in epoch e), then
    cosine annealing to 0 at the last epoch, steps of x gamma at the milestones (fractions of all epochs),
    or a constant rate."""
    warm = cfg.warmup_epochs
    rest = max(1, cfg.epochs - warm)
    if cfg.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=rest)
    elif cfg.schedule == "step":
        epochs = sorted({max(1, round(m * cfg.epochs) - warm) for m in cfg.milestones})
        main = lr_scheduler.MultiStepLR(optimizer, milestones=epochs, gamma=cfg.gamma)
    else:
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not warm:
        return main
    warmup = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warm + 1), end_factor=1.0, total_iters=warm)
    return lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warm])


def base_rate(optimizer: torch.optim.Optimizer) -> float:
    """The current learning rate before layer-group scaling (what --lr and the schedule set)."""
    group = optimizer.param_groups[-1]
    return group["lr"] / group.get("lr_scale", 1.0)


def diverged_message(value: float, epoch: int, step: int, last: Path, precision: str) -> str:
    """What stopped a run whose loss became `value` at 0-based `epoch` and `step`: where its last good checkpoint
    is (if it got one), and, for reduced precision, the way out (training.precision: some CPUs' kernels)."""
    kept = f"last good checkpoint kept in {last.parent}" if last.exists() else "no checkpoint had been written yet"
    hint = (f"; it trained in {precision}: reduced precision can overflow, or, on some CPUs, give wrong gradients; "
            "try --precision fp32") if precision != "fp32" else ""
    return f"loss became {value} in epoch {epoch + 1}, step {step + 1}; training stopped, {kept}{hint}"


def write_history(path: Path, history: list[dict], fields: list[str]) -> None:
    """history.csv: one row per epoch, the `fields` columns."""
    lines = [",".join(fields)]
    lines += [",".join(f"{r[k]:.6g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in fields)
              for r in history]  # a column added since an older run's epochs stays empty there
    write_text(path, "\n".join(lines) + "\n")


def better(score: float, best: float, best_epoch: int) -> bool:
    """Whether an epoch's selection score (higher is better) beats the best so far (the first epoch always
    does; NaN never)."""
    return best_epoch == 0 or (not math.isnan(score) and (math.isnan(best) or score > best))


def trained_splits(task: Task) -> dict:
    """The data a task trains and validates on, by split (`task.splits`), for the run's data fingerprint; {} for
    a task that names none."""
    return dict(getattr(task, "splits", None) or {})


def check_same_data(saved: dict | None, current: dict, run: RunDir, console: Console) -> None:
    """Refuse to resume a run whose data changed since it started (its checkpoint's fingerprint `saved`); a run
    saved before fingerprints were kept resumes unchecked, with a note."""
    if not current:
        return
    if saved is None:
        console.print(f"note: {run.out} was started by a medconv that kept no fingerprint of its data: "
                      "resuming without checking that the data is the same", highlight=False, soft_wrap=True)
        return
    changed = differences(saved, current)
    if changed:
        raise UserError(f"--resume {run.out}: the data changed since this run started ({'; '.join(changed)}); "
                        "train a new run with another --out")


def epoch_seed(cfg: BaseConfig, epoch: int) -> int:
    """The seed of epoch `epoch`: its shuffling, sampling, augmentation and dropout depend on nothing else."""
    return cfg.seed * 1_000_003 + epoch


def fit(task: Task, cfg: BaseConfig, run: RunDir, meta: dict, console: Console,
        groups: list[dict] | None = None) -> list[dict]:
    """Train `task.model` for cfg.epochs into `run` (resuming run.saved); returns the history rows.

    meta: what the checkpoints carry besides weights (architecture, classes, normalisation, config); the
    engine adds "data", the fingerprint of trained_splits(task), and refuses to resume when it changed.
    groups: optimiser parameter groups with `lr_scale` (default: one group). Checkpoints store the selection
    score with higher better (`best_metric`, `val_metric`: the metric, negated when lower is better).
    """
    data = fingerprint(trained_splits(task))
    if run.saved is not None:
        check_same_data(run.saved[1].get("data"), data, run, console)
    if data:
        meta = {**meta, "data": data}
    model = task.model
    device = next(model.parameters()).device
    if cfg.precision != "fp32":  # the layout oneDNN and cuDNN run reduced precision fastest in
        volumes = any(isinstance(m, nn.Conv3d) for m in model.modules())
        model.to(memory_format=torch.channels_last_3d if volumes else torch.channels_last)
    frozen = getattr(cfg, "finetune", "all") != "all" or getattr(cfg, "unfreeze_every", 0) > 0
    trained = distributed.wrap(model, device, frozen)  # DDP over the ranks of a torchrun launch; else the model
    optimizer = make_optimizer(cfg, model, groups)
    scheduler = make_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    average = WeightAverage(model, cfg.ema)  # average.model: validated and kept (the model itself without --ema)
    columns = ["epoch", "lr", "train_loss", *task.columns, "seconds"]
    start, best, best_epoch, history = 0, -math.inf, 0, []
    if run.saved is not None:
        tensors, saved = run.saved
        load_weights(model, tensors, run.last, meta["arch"])
        average.restore(tensors, saved)
        start, best, best_epoch, history = (saved[k] for k in ("epoch", "best_metric", "best_epoch", "history"))
        with warnings.catch_warnings():  # stepping the schedule to where the run stopped, without training
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start):
                scheduler.step()
        restore_optimizer(optimizer, tensors, saved)
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
            group["lr"] = lr
        if "scaler" in saved:
            scaler.load_state_dict(saved["scaler"])
        console.print(f"resuming {run.out} after epoch {start} of {cfg.epochs}")
    sign = -1.0 if task.lower_is_better else 1.0
    with progress_bar(console) as bar, track(cfg, run.out, model, start) as tracker:  # tracker: --tensorboard
        task_id = bar.add_task("training", total=None, status="")
        for epoch in range(start, cfg.epochs):
            tic = time.time()
            torch.manual_seed(epoch_seed(cfg, epoch))
            lr = base_rate(optimizer)
            model.train()
            tracker.watch()  # the epoch's first inputs, for --tensorboard's grid
            batches = task.batches(epoch, torch.Generator().manual_seed(epoch_seed(cfg, epoch)))
            if epoch == start:
                bar.update(task_id, total=(cfg.epochs - start) * len(batches))
            total, count = 0.0, 0
            for step, batch in enumerate(batches):
                if epoch == start and step == 0 and cfg.precision != "fp32" and device.type == "cpu":
                    check_kernels(model, lambda: task.loss(model, distributed.shard(batch)), cfg.precision, device)
                with precision_context(cfg.precision, device):
                    loss = task.loss(trained, distributed.shard(batch))
                value = distributed.mean(loss.item(), device)  # the step's one synchronisation with the device
                if not math.isfinite(value):
                    raise TrainingDiverged(diverged_message(value, epoch, step, run.last, cfg.precision))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                average.update(model)
                total, count = total + value, count + 1
                bar.update(task_id, advance=1, status=f"epoch {epoch + 1}/{cfg.epochs} loss {total / count:.4f}")
            scheduler.step()
            average.model.eval()
            val = task.validate(average.model)
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": total / max(count, 1), **val,
                   "seconds": time.time() - tic}
            score = sign * val[task.select]
            history.append(row)
            if better(score, best, best_epoch):
                best, best_epoch = score, epoch + 1
                save_checkpoint(run.best, average.model, {**meta, "epoch": epoch + 1, "val_metric": score})
            resume_meta, resume_tensors = average.resumable()
            if cfg.precision == "fp16":
                resume_meta["scaler"] = scaler.state_dict()
            save_checkpoint(run.last, model, {**meta, "epoch": epoch + 1, "best_metric": best,
                                              "best_epoch": best_epoch, "history": history, **resume_meta},
                            optimizer, resume_tensors)
            write_history(run.out / "history.csv", history, columns)
            tracker.log(row)
            status = f"epoch {epoch + 1}/{cfg.epochs} loss {row['train_loss']:.4f} {task.status(row)} " \
                     f"(best {task.select} {sign * best:.4f} @ {best_epoch})"
            bar.update(task_id, status=status)
            if not console.is_terminal:
                console.print(status + f" [{row['seconds']:.1f}s]", highlight=False, soft_wrap=True)
    if writes_here():  # rank 0: the other ranks would draw a figure only to drop it
        write_curves(history, run.out / "plots" / "training_curves.png", best_epoch)  # every history column
    distributed.barrier()  # every rank goes on (to evaluation) once rank 0 has written the last checkpoint
    return history
