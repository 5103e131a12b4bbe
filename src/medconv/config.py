"""Typed run configuration: dataclasses read from and written to YAML.

`BaseConfig` holds what every trainer shares (optimisation, schedule, precision, weight average,
reproducibility, hardware) and its checks; `TrainConfig` (classification, here) and
`segment.config.SegmentConfig` add their data and model fields.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .data.augment import TTA_MODES, parse_augment
from .errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
LEGACY_KEYS = ("amp",)  # read from older config.yaml files and ignored (amp: CUDA-only bf16, now --precision)


def check_ema(decay: float) -> None:
    """A config's `ema` (weight averaging): 0 (off) or a decay in (0, 1), else one clear line."""
    if not 0 <= decay < 1:
        raise UserError(f"--ema must be 0 (off) or a decay in (0, 1) such as 0.99, got {decay}")


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class BaseConfig:
    """The settings every training run shares; subclasses add data and model fields."""

    data_root: str | None = None      # else $MEDCONV_DATA, else ~/.medconv/data
    channels: int | None = None       # 1 or 3 (default: as the images are)
    val_fraction: float = 0.1         # images without a split: the fraction held out for validation
    test_fraction: float = 0.2        # ... and for testing
    model_options: dict = field(default_factory=dict)
    # optimisation
    epochs: int = 30
    optimizer: str = "adamw"          # adamw, adam, sgd
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9             # sgd only
    schedule: str = "cosine"          # cosine, step, constant (torch.optim.lr_scheduler, stepped per epoch)
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # step: fractions of epochs
    gamma: float = 0.1                # step: lr factor at each milestone
    warmup_epochs: int = 0            # linear warm-up from lr / (warmup + 1) before the schedule
    lr_decay: float = 1.0             # discriminative learning rates: each earlier layer group x this
    ema: float = 0.0                  # decay of an exponential moving average of the weights, e.g. 0.99 (0: off)
    precision: str = "fp32"           # training steps in fp32, or bf16/fp16 autocast (validation stays fp32)
    # reproducibility and hardware
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"              # auto, cpu, cuda, cuda:1, ...
    threads: int | None = None        # CPU threads for torch (default: torch's choice)

    CHOICES = {"optimizer": ("adamw", "adam", "sgd"), "schedule": ("cosine", "step", "constant"),
               "precision": PRECISIONS}

    def validate(self):
        """Check every field (choices, types, ranges); returns self, or raises UserError with one line."""
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{option(name)} {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        self.check_types()
        for name in ("epochs",):
            if getattr(self, name) < 1:
                raise UserError(f"{option(name)} must be at least 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UserError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise UserError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not 0 < self.lr_decay <= 1:
            raise UserError(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.epochs:
            raise UserError(f"--warmup-epochs must be 0 or more and below --epochs ({self.epochs}), "
                            f"got {self.warmup_epochs}")
        if not all(isinstance(m, (int, float)) and 0 < m < 1 for m in self.milestones):
            raise UserError(f"--milestones must be fractions of the epochs in (0, 1), got {self.milestones}")
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise UserError(f"--gamma must be a positive factor, got {self.gamma}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be at least 1, got {self.threads}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise UserError(f"{option(name)} must be in (0, 1), got {getattr(self, name)}")
        check_ema(self.ema)
        return self

    def check_types(self) -> None:
        """YAML may hold a string where a number belongs: one line naming the setting."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), str(f.type).split(" ")[0]
            if value is None and "None" in str(f.type):
                continue
            expected = {"int": int, "float": (int, float), "bool": bool, "str": str, "dict": dict,
                        "list[float]": list}.get(kind)
            if expected and (not isinstance(value, expected) or (kind in ("int", "float") and isinstance(value, bool))):
                raise UserError(f"setting {f.name}: expected {kind}, got {value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config"):
        """A config from a mapping of settings; unknown keys are an error (keys of older versions are dropped)."""
        values = {k: v for k, v in values.items() if k not in LEGACY_KEYS}
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UserError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        return cls(**values)

    def dump(self) -> str:
        """The config as YAML (config.yaml of a run)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


@dataclass
class TrainConfig(BaseConfig):
    """Everything needed to repeat a classification training run (seed included)."""

    # data
    dataset: str = "breastmnist"      # a MedMNIST 2D flag or "synthetic"; ignored when images/manifest is set
    images: str | None = None         # folder of class sub-folders (optionally under train/val/test)
    manifest: str | None = None       # CSV: path,label[,split][,group]
    download: bool = False
    size: int = 28                    # input side in pixels (MedMNIST: 28, 64, 128, 224)
    resize: int | None = None         # upsample to this side (e.g. 224, or 299 for inception_v3)
    resize_mode: str = "nearest"      # nearest (as MedMNIST's "(224)" baselines) or bilinear
    patch: int = 27                   # crchistophenotypes: side of the square nucleus patch
    train_fraction: float = 1.0       # keep this stratified fraction of the training labels
    # model
    arch: str = "simple-cnn"
    pretrain: str = "none"            # layer-wise pretraining: rbm, ae (an mlp's hidden layers), cae (convolutions)
    pretrain_epochs: int = 10         # epochs per layer
    init_from: str | None = None      # start from weights: a run directory, a .safetensors/.pth file, or a torchvision name
    finetune: str = "all"             # which weights train: all, head (frozen features), from:LAYER
    taxonomy: str | None = None       # YAML tree whose leaves are the classes: evaluate/predict --level sums them
    train_level: str | None = None    # with --taxonomy: train on this level's classes (leaf labels mapped up)
    unfreeze_every: int = 0           # gradual unfreezing: epochs before each further group unfreezes (0: off)
    # optimisation
    batch_size: int = 128
    label_smoothing: float = 0.0
    mixup: float = 0.0                # mixup's Beta(a, a) parameter: train on blends of image pairs (0: off)
    class_weights: str = "none"       # none, balanced
    augment: str = "none"             # a preset (none, light, strong, histology) or "hflip=0.5,rotate=15,..."
    tta: str = "none"                 # test-time augmentation when evaluating: none, flip, d4
    select_metric: str = "auc"        # validation metric that picks the best checkpoint: auc, acc, loss (lowest)

    CHOICES = {**BaseConfig.CHOICES, "class_weights": ("none", "balanced"), "tta": TTA_MODES,
               "select_metric": ("auc", "acc", "loss"), "resize_mode": ("nearest", "bilinear"),
               "pretrain": ("none", "rbm", "ae", "cae")}

    def validate(self) -> "TrainConfig":
        super().validate()
        parse_augment(self.augment, task="classification")
        for name in ("pretrain_epochs", "size"):
            if getattr(self, name) < 1:
                raise UserError(f"{option(name)} must be at least 1, got {getattr(self, name)}")
        if self.pretrain in ("rbm", "ae") and self.arch != "mlp":
            raise UserError(f"--pretrain {self.pretrain} pretrains the hidden layers of --arch mlp, not {self.arch}")
        if self.patch < 5 or self.patch % 2 == 0:
            raise UserError(f"--patch must be an odd number of pixels >= 5, got {self.patch}")
        if not (self.finetune in ("all", "head") or self.finetune.startswith("from:")):
            raise UserError(f"--finetune {self.finetune!r}: expected all, head or from:LAYER")
        if self.finetune != "all" and not self.init_from:
            raise UserError(f"--finetune {self.finetune} freezes weights, which only makes sense with --init-from WEIGHTS")
        if self.unfreeze_every < 0:
            raise UserError(f"--unfreeze-every must be 0 (off) or a number of epochs, got {self.unfreeze_every}")
        if self.resize is not None and self.resize < 8:
            raise UserError(f"--resize must be at least 8 pixels, got {self.resize}")
        if not 0 < self.train_fraction <= 1:
            raise UserError(f"--train-fraction must be in (0, 1], got {self.train_fraction}")
        if self.batch_size < 2:
            raise UserError(f"--batch-size must be at least 2 (batch norm cannot train on one image), got {self.batch_size}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if not (math.isfinite(self.mixup) and self.mixup >= 0):
            raise UserError(f"--mixup must be 0 (off) or a positive Beta parameter such as 0.2, got {self.mixup}")
        return self


def load_config(path: str | Path, cls=TrainConfig):
    """Read a config dataclass (TrainConfig by default) from YAML; unknown keys are an error."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"--config {path}: file not found") from None
    except yaml.YAMLError as exc:
        raise UserError(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: expected a mapping of settings")
    return cls.from_dict(values, source=str(path))


def dump_config(cfg: BaseConfig) -> str:
    return cfg.dump()
