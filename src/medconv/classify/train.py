"""Classification on the training engine: a network over whole images, chosen on validation AUC or ACC.

`train` prepares the data (MedMNIST, folders, manifests, nucleus patches), the network (from scratch,
from pretrained weights with fine-tuning options, or after layer-wise pretraining) and hands the
`ClassificationTask` to `training.engine.fit`; then the best checkpoint is evaluated on val and test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from ..config import TrainConfig
from ..data import load_dataset
from ..data.augment import parse_augment
from ..data.given import PYTHON
from ..data.reading import EpochOrder, LazyPairs, is_lazy, reading_workers
from ..data.transforms import augment, channel_stats, check_volume_augment, normalise
from ..data.types import DatasetInfo, ImageSet, unit_float
from ..errors import TrainingDiverged, UserError
from ..fileio import write_text
from ..metrics import MULTI_LABEL, acc_score, auc_score
from ..models.registry import build_model
from ..progress import make_console
from ..training.engine import fit, open_run, resolve_device
from ..training.pretrain import pretrain_mlp, write_pretrain_json
from ..training.pretrain_cae import pretrain_convolutions
from ..training.runstate import tell_data
from ..transfer.finetune import optimizer_groups, set_trainable
from ..data.volume_sets import unlabelled_volumes
from ..transfer.weights import apply_weights, prepare_source, source_normalisation
from .evaluate import finish_run
from .predict import predict_scores

AUX_WEIGHT = 0.3
PATH_FIELDS = ("images", "manifest", "data_root", "taxonomy")


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
            "task": info.task, "dataset": info.name, "mean": mean, "std": std, "config": cfg.to_dict(),
            **({"file_size": list(info.file_size), "native_sizes": [list(s) for s in info.native_sizes[:20]]}
               if info.file_size else {})}


class ClassificationTask:
    """Batches of in-memory images (shuffled per epoch, augmented on the device), cross-entropy (or BCE) with
    mixup and auxiliary-classifier losses, validation AUC / ACC / loss from the validation images."""

    columns = ["val_loss", "val_auc", "val_acc"]

    def __init__(self, cfg: TrainConfig, model: nn.Module, info: DatasetInfo, sets: dict[str, ImageSet],
                 mean: list[float], std: list[float], device: torch.device):
        self.cfg, self.model, self.info, self.mean, self.std, self.device = cfg, model, info, mean, std, device
        self.select, self.lower_is_better = f"val_{cfg.select_metric}", cfg.select_metric == "loss"
        self.loss_fn = make_loss(cfg, info, sets["train"], device)
        self.aug = parse_augment(cfg.augment)
        images, labels = sets["train"].images, targets(sets["train"].labels, info.task)
        self.lazy = is_lazy(images)  # files read per batch by worker processes, else one tensor on the device
        self.data = LazyPairs(images, labels) if self.lazy else TensorDataset(images.to(device), labels.to(device))
        self.loader: DataLoader | None = None  # lazy: made by the first batches()
        self.epoch = 0  # set by batches(): deep supervision's weights fade with it
        self.val = sets["val"]
        self.splits = {"train": sets["train"], "val": sets["val"]}  # the run's data fingerprint (the engine)

    def batches(self, epoch: int, generator: torch.Generator) -> DataLoader:
        """Shuffled batches of (images uint8/float (B, C, H, W), targets); a last batch of one image is
        dropped (batch norm cannot train on it)."""
        set_trainable(self.model, self.cfg.finetune, self.cfg.unfreeze_every, epoch)
        self.epoch = epoch
        n, size = len(self.data), self.cfg.batch_size
        if not self.lazy:
            order = RandomSampler(range(n), generator=generator)
            return DataLoader(self.data, sampler=BatchSampler(order, size, drop_last=n % size == 1), batch_size=None)
        if self.loader is None:  # one loader, its reading workers kept across epochs
            workers = reading_workers(self.cfg.workers)
            self.loader = DataLoader(self.data, sampler=EpochOrder(n, size), batch_size=None, num_workers=workers,
                                     pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                                     prefetch_factor=4 if workers else None)
        elif self.loader.persistent_workers:  # the draw a fresh loader's iterator makes (the in-memory path does
            torch.empty((), dtype=torch.int64).random_()  # each epoch): the same random numbers afterwards
        self.loader.sampler.generator = generator
        return self.loader

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        x = normalise(augment(unit_float(x), self.aug), self.mean, self.std)
        x, criterion = mixed_batch(x, y, self.loss_fn, self.cfg.mixup)
        loss = criterion(model(x).float())
        model = getattr(model, "module", model)  # the network inside DDP's wrapper (training.distributed)
        # auxiliary classifiers (GoogLeNet, Inception v3) add 0.3 x their losses, as Szegedy et al.
        aux = getattr(model, "aux_outputs", ())
        weights = getattr(model, "aux_weights", None)  # deep supervision: a weight per head, decayed (--ds-decay)
        if weights is not None:
            fade = max(0.0, 1.0 - self.epoch / self.cfg.epochs) if self.cfg.ds_decay else 1.0
            return loss + sum(w * fade * criterion(a.float()) for w, a in zip(weights, aux))
        aux_weight = getattr(model, "aux_weight", AUX_WEIGHT)
        return loss + sum(aux_weight * criterion(a.float()) for a in aux)

    def validate(self, model: nn.Module) -> dict[str, float]:
        scores = predict_scores(model, self.val.images, self.mean, self.std, self.info.task, self.device)
        if not np.isfinite(scores).all():
            raise TrainingDiverged("the network's outputs on the validation images became NaN or infinite; training "
                                   "stopped, the last good checkpoint kept")
        labels = self.val.labels.numpy()
        loss = loss_of_scores(self.loss_fn, scores, targets(self.val.labels, self.info.task), self.info.task)
        return {"val_loss": loss, "val_auc": auc_score(labels, scores, self.info.task),
                "val_acc": acc_score(labels, scores, self.info.task)}

    def status(self, row: dict) -> str:
        return f"val auc {row['val_auc']:.4f} acc {row['val_acc']:.4f}"


def check_selectable(cfg: TrainConfig, info: DatasetInfo, val: ImageSet) -> None:
    """Refuse, before training, a validation split on which the selection metric means nothing: no images,
    or (AUC of a single-label task) images of one class only."""
    if len(val) == 0:
        raise UserError("the validation split holds no images, so nothing can choose the checkpoint: give it some "
                        "(--val-fraction, or a split column / val/ folder)")
    if cfg.select_metric == "auc" and info.task != MULTI_LABEL:
        present = sorted(set(val.labels[:, 0].tolist()))
        if len(present) < 2:
            name = info.classes[present[0]] if present else "none"
            raise UserError(f"the validation split holds only class {name!r}: its AUC is undefined and cannot choose "
                            "the checkpoint; give it images of every class (--val-fraction, a split column or "
                            "val/ folder) or choose --select-metric acc or loss")


def pretrain(cfg: TrainConfig, model: nn.Module, images: torch.Tensor, mean: list[float], std: list[float],
             device: torch.device, out: Path, console: Console) -> None:
    """--pretrain: the convolutions as autoencoders (cae), or an mlp's hidden layers as RBMs or autoencoders."""
    if cfg.pretrain == "cae":
        summary = pretrain_convolutions(model, images.to(device), mean, std, cfg.pretrain_epochs, cfg.seed,
                                        console=console)
    else:
        _, summary = pretrain_mlp(model, images, mean, std, cfg.pretrain, cfg.pretrain_epochs, cfg.seed,
                                  str(device), console)
    write_pretrain_json(out, cfg, summary)  # atomic_write makes the folder


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, console: Console | None = None,
          overrides: dict | None = None, score_test: bool = True, data: dict | None = None) -> dict:
    """Train per `cfg` into run directory `out`; returns metrics.json's content.

    With `resume`, the configuration saved in the last checkpoint is used; `overrides` (options the
    user gave explicitly) may extend --epochs or change the device, and may not change anything else.
    Writes config.yaml, history.csv, checkpoints/{last,best}.safetensors (+ .json) each epoch,
    then metrics.json (val and test metrics of the best checkpoint), plots and predictions. With `cfg.ema`,
    validation, the best checkpoint and the metrics use the weight average; last keeps both (resumable).
    Without `score_test` the test split is left unscored (an exploration or a candidate that must not look at it).
    `data`: splits given in Python instead of by cfg, {"train", "val"[, "test"][, "classes"]} (data.given: arrays,
    tensors or torch Datasets); the run's config then says dataset "python".
    """
    console = console or make_console()
    if data is not None:
        if cfg.images or cfg.manifest:
            raise UserError("data given in Python and images/manifest both name the data; keep one")
        if not isinstance(data, dict) or not {"train", "val"} <= set(data):
            raise UserError("data: training needs train and val splits (and optionally test and classes)")
        if cfg.size:
            raise UserError(f"size {cfg.size}: data given in Python comes at its own size; resize= upsamples it")
        cfg.dataset = PYTHON
    cfg, run = open_run(cfg, out, resume, overrides, PATH_FIELDS)
    with run:
        source = prepare_source(cfg) if run.saved is None else None  # a resumed run has its weights
        info, sets = load_dataset(cfg, data)
        if len(info.size) == 3:
            check_volume_augment(parse_augment(cfg.augment))
        if info.summary:  # said before the checks: a refused run still shows what was read
            console.print("\n".join(f"data: {line}" for line in info.summary), highlight=False, soft_wrap=True)
        check_selectable(cfg, info, sets["val"])
        device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.arch, info.channels, info.num_outputs, info.size, **cfg.model_options).to(device)
        mean, std = ((run.saved[1]["mean"], run.saved[1]["std"]) if run.saved is not None  # as it trained so far
                     else channel_stats(sets["train"].images))
        if source is not None:
            notes = apply_weights(model, source, cfg.arch, reset_head=True)
            mean, std = source_normalisation(source, info, mean, std)
            console.print(f"initialised from {source.description}; "
                          + "; ".join(notes + [f"input mean {mean} std {std}"]))
        if cfg.pretrain != "none" and run.saved is None:
            if is_lazy(sets["train"].images) and not cfg.pretrain_data:
                raise UserError(f"--pretrain {cfg.pretrain} needs the training images in memory; use --loading memory")
            images = sets["train"].images
            if cfg.pretrain_data:  # a source domain, labels unused (Hosseini-Asl et al. 2016)
                images, described = unlabelled_volumes(cfg.pretrain_data, tuple(info.size), cfg.data_root)
                console.print(f"pretraining on {described}", highlight=False)
            pretrain(cfg, model, images, mean, std, device, run.out, console)
        write_text(run.out / "config.yaml", cfg.dump())
        tell_data(run.out, console, [], info.notes, said=info.summary)
        task = ClassificationTask(cfg, model, info, sets, mean, std, device)
        fit(task, cfg, run, run_meta(cfg, info, mean, std), console, groups=optimizer_groups(model, cfg.lr_decay))
        scored = sets if score_test else {k: v for k, v in sets.items() if k != "test"}
        return finish_run(run.out, info, scored, console=console, device=str(device))
