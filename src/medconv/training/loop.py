"""The training loop: per-epoch seeding, validation-based model selection, checkpoints, resume.

Each epoch reseeds torch's generator from (seed, epoch), so an epoch's shuffling, augmentation and
dropout depend on nothing but the epoch number: a run resumed from the last checkpoint repeats the
interrupted epoch exactly and, with --deterministic, ends with the same weights.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

from ..config import TrainConfig, dump_config
from ..data import load_dataset
from ..data.transforms import augment, channel_stats, normalise, parse_augment
from ..data.types import DatasetInfo, ImageSet, unit_float
from ..errors import TrainingDiverged, UserError
from ..fileio import write_text
from ..metrics import MULTI_LABEL, acc_score, auc_score
from ..models.registry import build_model
from ..prediction import predict_scores
from ..transfer.finetune import optimizer_groups, set_trainable
from ..transfer.weights import apply_weights, prepare_source, source_normalisation
from .checkpoint import (
    load_weights,
    read_checkpoint,
    restore_optimizer,
    save_checkpoint,
)
from .ema import WeightAverage

AUX_WEIGHT = 0.3
HISTORY_FIELDS = ["epoch", "lr", "train_loss", "val_loss", "val_auc", "val_acc", "seconds"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None


def set_determinism(cfg: TrainConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch `epoch` (0-based): linear warm-up, then cosine, step or constant."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "cosine":
        t = (epoch - cfg.warmup_epochs) / max(1, cfg.epochs - cfg.warmup_epochs)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** sum(epoch >= round(m * cfg.epochs) for m in cfg.milestones)
    return cfg.lr


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """One parameter group per layer group, each with its `lr_scale` (discriminative rates, --lr-decay)."""
    params = optimizer_groups(model, cfg.lr_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_loss(cfg: TrainConfig, info: DatasetInfo, train: ImageSet, device: torch.device) -> nn.Module:
    """Cross-entropy (label smoothing, optional balanced class weights), or BCE for multi-label tasks."""
    if info.task == MULTI_LABEL:
        pos = train.labels.float().mean(0).clamp(1e-3, 1 - 1e-3)
        weight = ((1 - pos) / pos).to(device) if cfg.class_weights == "balanced" else None
        return nn.BCEWithLogitsLoss(pos_weight=weight)
    weight = None
    if cfg.class_weights == "balanced":
        counts = torch.bincount(train.labels[:, 0], minlength=info.num_outputs).float().clamp_min(1)
        weight = (counts.sum() / (len(counts) * counts)).to(device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def mixed_batch(x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module, alpha: float):
    """Mixup (Zhang et al. 2018): x (B, C, H, W) blended with a shuffled copy of itself by lam ~ Beta(alpha,
    alpha); returns the blend and loss(logits) = lam * loss(logits, y) + (1 - lam) * loss(logits, y shuffled).
    alpha 0: the batch and loss unchanged."""
    if alpha <= 0:
        return x, lambda logits: loss_fn(logits, y)
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(x), device=x.device)
    return (lam * x + (1 - lam) * x[perm],
            lambda logits: lam * loss_fn(logits, y) + (1 - lam) * loss_fn(logits, y[perm]))


def targets(labels: torch.Tensor, task: str) -> torch.Tensor:
    return labels.float() if task == MULTI_LABEL else labels[:, 0]


@torch.no_grad()
def loss_of_scores(loss_fn: nn.Module, scores: np.ndarray, target: torch.Tensor, task: str) -> float:
    """The training loss of probabilities (N, K): log p are logits with the same softmax, logit p
    the same sigmoid, so this equals the loss of the network's own logits."""
    p = torch.from_numpy(scores).double()
    logits = torch.logit(p, 1e-7) if task == MULTI_LABEL else torch.log(p.clamp_min(1e-12))
    device = next((b.device for b in loss_fn.buffers()), "cpu")  # class weights live on the model's device
    return float(loss_fn(logits.float().to(device), target.to(device)))


def run_meta(cfg: TrainConfig, info: DatasetInfo, mean: list[float], std: list[float]) -> dict:
    """What load_model and predict need besides the weights."""
    return {"arch": cfg.arch, "model_options": cfg.model_options, "in_channels": info.channels,
            "num_classes": info.num_outputs, "input_size": list(info.size), "classes": info.classes,
            "task": info.task, "dataset": info.name, "mean": mean, "std": std, "config": cfg.to_dict()}


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False, disable=not console.is_terminal)


RESUME_MAY_CHANGE = ("epochs", "device", "threads", "data_root")


def resumed_config(saved: dict, overrides: dict | None, source: Path, cls=TrainConfig):
    """The saved configuration, with the options a resumed run may change (more epochs, another device)."""
    cfg = cls.from_dict(saved, source=str(source))
    for key, value in (overrides or {}).items():
        if key in RESUME_MAY_CHANGE:
            setattr(cfg, key, value)
        elif value != getattr(cfg, key):
            raise UserError(f"--resume continues the run saved in {source}: --{key.replace('_', '-')} cannot change "
                            f"({getattr(cfg, key)!r} there, {value!r} given)")
    return cfg


def open_run(cfg, out: Path, resume: bool, overrides: dict | None, cls=TrainConfig):
    """(validated config, saved last checkpoint or None, last path, best path) of a run directory: the saved
    configuration (with `overrides` checked) when resuming; an error when `out` already holds a run."""
    last_path, best_path = out / "checkpoints" / "last.safetensors", out / "checkpoints" / "best.safetensors"
    saved = None
    if resume:
        if not last_path.exists():
            raise UserError(f"--resume: {last_path} not found (nothing to resume)")
        saved = read_checkpoint(last_path)
        cfg = resumed_config(saved[1]["config"], overrides, last_path, cls)
    elif last_path.exists() or (out / "metrics.json").exists():
        raise UserError(f"{out} already holds a run: add --resume to continue it, or choose another --out")
    return cfg.validate(), saved, last_path, best_path


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, console: Console | None = None,
          overrides: dict | None = None) -> dict:
    """Train per `cfg` into run directory `out`; returns metrics.json's content.

    With `resume`, the configuration saved in the last checkpoint is used; `overrides` (options the
    user gave explicitly) may extend --epochs or change the device, and may not change anything else.
    Writes config.yaml, history.csv, checkpoints/{last,best}.safetensors (+ .json) each epoch,
    then metrics.json (val and test metrics of the best checkpoint), plots and predictions. With `cfg.ema`,
    validation, the best checkpoint and the metrics use the weight average; last keeps both (resumable).
    """
    console = console or Console(stderr=True)
    out = Path(out)
    cfg, saved, last_path, best_path = open_run(cfg, out, resume, overrides)
    for name in ("images", "manifest", "data_root", "taxonomy"):  # evaluate may run from another folder later
        if getattr(cfg, name):
            setattr(cfg, name, str(Path(getattr(cfg, name)).expanduser().resolve()))
    set_determinism(cfg)
    source = prepare_source(cfg) if saved is None else None  # a resumed run has its weights
    info, sets = load_dataset(cfg)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, info.channels, info.num_outputs, info.size, **cfg.model_options).to(device)
    mean, std = channel_stats(sets["train"].images)
    if source is not None:
        notes = apply_weights(model, source, cfg.arch, reset_head=True)
        mean, std = source_normalisation(source, info, mean, std)
        console.print(f"initialised from {source.description}; " + "; ".join(notes + [f"input mean {mean} std {std}"]))
    optimizer = make_optimizer(cfg, model)
    average = WeightAverage(model, cfg.ema)  # average.model: validated and kept (the model without --ema)
    meta = run_meta(cfg, info, mean, std)
    start, best, best_epoch, history = 0, -math.inf, 0, []
    if saved is not None:
        tensors, smeta = saved
        load_weights(model, tensors, last_path, cfg.arch)
        restore_optimizer(optimizer, tensors, smeta)
        average.restore(tensors, smeta)
        mean, std = smeta["mean"], smeta["std"]
        meta = run_meta(cfg, info, mean, std)
        start, best, best_epoch, history = smeta["epoch"], smeta["best_metric"], smeta["best_epoch"], smeta["history"]
        console.print(f"resuming {out} after epoch {start} of {cfg.epochs}")
    if cfg.pretrain != "none" and saved is None:
        from .pretrain import pretrain_mlp, write_pretrain_json
        from .pretrain_cae import pretrain_convolutions
        if cfg.pretrain == "cae":
            summary = pretrain_convolutions(model, sets["train"].images.to(device), mean, std, cfg.pretrain_epochs,
                                            cfg.seed, console=console)
        else:
            _, summary = pretrain_mlp(model, sets["train"].images, mean, std, cfg.pretrain, cfg.pretrain_epochs,
                                      cfg.seed, str(device), console)
        write_pretrain_json(out, cfg, summary)  # atomic_write makes the folder
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", dump_config(cfg))
    if info.notes:
        console.print("\n".join(f"note: {n}" for n in info.notes))

    loss_fn = make_loss(cfg, info, sets["train"], device)
    aug = parse_augment(cfg.augment)
    train_images, train_labels = sets["train"].images.to(device), targets(sets["train"].labels, info.task).to(device)
    val = sets["val"]
    use_amp = cfg.amp and device.type == "cuda"
    n = len(train_images)
    steps = math.ceil(n / cfg.batch_size)
    with progress_bar(console) as bar:
        task = bar.add_task("training", total=(cfg.epochs - start) * steps, status="")
        for epoch in range(start, cfg.epochs):
            tic = time.time()
            torch.manual_seed(cfg.seed * 1_000_003 + epoch)
            lr = learning_rate(cfg, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            model.train()
            set_trainable(model, cfg.finetune, cfg.unfreeze_every, epoch)
            order = torch.randperm(n, device=device)
            total, count = 0.0, 0
            for b in range(steps):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                if len(idx) < 2:  # batch norm cannot train on a single image
                    continue
                x = train_images[idx]
                x = normalise(augment(unit_float(x), aug), mean, std)
                x, criterion = mixed_batch(x, train_labels[idx], loss_fn, cfg.mixup)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss = criterion(model(x).float())
                    # auxiliary classifiers (GoogLeNet, Inception v3) add 0.3 x their losses, as Szegedy et al.
                    aux_weight = getattr(model, "aux_weight", AUX_WEIGHT)
                    loss = loss + sum(aux_weight * criterion(a.float()) for a in getattr(model, "aux_outputs", ()))
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"loss became {loss.item()} in epoch {epoch + 1}, batch {b + 1}; "
                                           f"training stopped, last good checkpoint kept in {last_path.parent}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                average.update(model)
                total += loss.item() * len(idx)
                count += len(idx)
                bar.update(task, advance=1, status=f"epoch {epoch + 1}/{cfg.epochs} loss {total / count:.4f}")
            scores = predict_scores(average.model, val.images, mean, std, info.task, device)
            if not np.isfinite(scores).all():
                raise TrainingDiverged(f"the network's outputs became NaN or infinite in epoch {epoch + 1}; training "
                                       f"stopped, last good checkpoint kept in {last_path.parent}")
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": total / max(count, 1),
                   "val_loss": loss_of_scores(loss_fn, scores, targets(val.labels, info.task), info.task),
                   "val_auc": auc_score(val.labels.numpy(), scores, info.task),
                   "val_acc": acc_score(val.labels.numpy(), scores, info.task), "seconds": time.time() - tic}
            history.append(row)
            metric = row[f"val_{cfg.select_metric}"]
            if best_epoch == 0 or (not math.isnan(metric) and (math.isnan(best) or metric > best)):
                best, best_epoch = metric, epoch + 1
                save_checkpoint(best_path, average.model, {**meta, "epoch": epoch + 1, "val_metric": metric})
            resume_meta, resume_tensors = average.resumable()
            save_checkpoint(last_path, model, {**meta, "epoch": epoch + 1, "best_metric": best, "best_epoch": best_epoch,
                                               "history": history, **resume_meta}, optimizer, resume_tensors)
            write_history(out / "history.csv", history)
            status = (f"epoch {epoch + 1}/{cfg.epochs} loss {row['train_loss']:.4f} val auc {row['val_auc']:.4f} "
                      f"acc {row['val_acc']:.4f} (best {cfg.select_metric} {best:.4f} @ {best_epoch})")
            bar.update(task, status=status)
            if not console.is_terminal:
                console.print(status + f" [{row['seconds']:.1f}s]", highlight=False)

    from ..evaluation import finish_run
    return finish_run(out, info, sets, console=console, device=str(device))


def write_history(path: Path, history: list[dict], fields: list[str] = HISTORY_FIELDS) -> None:
    """history.csv: one row per epoch, the `fields` columns."""
    lines = [",".join(fields)]
    lines += [",".join(f"{r[k]:.6g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in fields)
              for r in history]  # a column added since an older run's epochs stays empty there
    write_text(path, "\n".join(lines) + "\n")
