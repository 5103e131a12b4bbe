"""Typed run configuration: a dataclass, read from and written to YAML."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UserError


def check_ema(decay: float) -> None:
    """A config's `ema` (weight averaging): 0 (off) or a decay in (0, 1), else one clear line."""
    if not 0 <= decay < 1:
        raise UserError(f"--ema must be 0 (off) or a decay in (0, 1) such as 0.99, got {decay}")


@dataclass
class TrainConfig:
    """Everything needed to repeat a training run (seed included)."""

    # data
    dataset: str = "breastmnist"      # a MedMNIST 2D flag or "synthetic"; ignored when images/manifest is set
    images: str | None = None         # folder of class sub-folders (optionally under train/val/test)
    manifest: str | None = None       # CSV: path,label[,split][,group]
    data_root: str | None = None      # else $MEDCONV_DATA, else ~/.medconv/data
    download: bool = False
    size: int = 28                    # input side in pixels (MedMNIST: 28, 64, 128, 224)
    resize: int | None = None         # upsample to this side (e.g. 224, or 299 for inception_v3)
    resize_mode: str = "nearest"      # nearest (as MedMNIST's "(224)" baselines) or bilinear
    patch: int = 27                   # crchistophenotypes: side of the square nucleus patch
    channels: int | None = None       # 1 or 3 (default: as the images are); 3 copies grey into RGB, 1 takes RGB's luminance
    val_fraction: float = 0.1         # folders without a split column
    test_fraction: float = 0.2
    train_fraction: float = 1.0       # keep this stratified fraction of the training labels
    # model
    arch: str = "simple-cnn"
    model_options: dict = field(default_factory=dict)
    pretrain: str = "none"            # layer-wise pretraining: rbm, ae (an mlp's hidden layers), cae (convolutions)
    pretrain_epochs: int = 10         # epochs per layer
    init_from: str | None = None      # start from weights: a run directory, a .safetensors/.pth file, or a torchvision name (IMAGENET1K_V1)
    finetune: str = "all"             # which weights train: all, head (frozen features), from:LAYER
    lr_decay: float = 1.0             # discriminative learning rates: each earlier layer group x this
    taxonomy: str | None = None       # YAML tree whose leaves are the classes: evaluate/predict --level sums them
    train_level: str | None = None    # with --taxonomy: train on this level's classes (leaf labels mapped up)
    unfreeze_every: int = 0           # gradual unfreezing: epochs before each further group unfreezes (0: off)
    # optimisation
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "adamw"          # adamw, adam, sgd
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9             # sgd only
    schedule: str = "cosine"          # cosine, step, constant
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # step: fractions of epochs
    gamma: float = 0.1                # step: lr factor at each milestone
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    mixup: float = 0.0                # mixup's Beta(a, a) parameter: train on blends of image pairs (0: off)
    ema: float = 0.0                  # decay of an exponential moving average of the weights, e.g. 0.99 (0: off)
    class_weights: str = "none"       # none, balanced
    augment: str = "none"             # a preset (none, light, strong, histology) or "hflip=0.5,rotate=15,..."
    tta: str = "none"                 # test-time augmentation when evaluating: none, flip, d4
    amp: bool = True                  # mixed precision (bfloat16), CUDA only
    # reproducibility and hardware
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"              # auto, cpu, cuda, cuda:1, ...
    threads: int | None = None        # CPU threads for torch (default: torch's choice)
    select_metric: str = "auc"        # validation metric that picks the best checkpoint: auc, acc

    def validate(self) -> "TrainConfig":
        choices = {"optimizer": ("adamw", "adam", "sgd"), "schedule": ("cosine", "step", "constant"),
                   "class_weights": ("none", "balanced"), "tta": ("none", "flip", "d4"),
                   "select_metric": ("auc", "acc"), "resize_mode": ("nearest", "bilinear"),
                   "pretrain": ("none", "rbm", "ae", "cae")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        from .data.transforms import parse_augment
        parse_augment(self.augment)
        for f in dataclasses.fields(self):  # YAML may hold a string where a number belongs
            value, kind = getattr(self, f.name), str(f.type).split(" ")[0]
            if value is None and "None" in str(f.type):
                continue
            expected = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(kind)
            if expected and (not isinstance(value, expected) or (kind in ("int", "float") and isinstance(value, bool))):
                raise UserError(f"setting {f.name}: expected {kind}, got {value!r}")
        for name in ("epochs", "pretrain_epochs", "size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.pretrain in ("rbm", "ae") and self.arch != "mlp":
            raise UserError(f"--pretrain {self.pretrain} pretrains the hidden layers of --arch mlp, not {self.arch}")
        if self.patch < 5 or self.patch % 2 == 0:
            raise UserError(f"--patch must be an odd number of pixels >= 5, got {self.patch}")
        if not (self.finetune in ("all", "head") or self.finetune.startswith("from:")):
            raise UserError(f"--finetune {self.finetune!r}: expected all, head or from:LAYER")
        if self.finetune != "all" and not self.init_from:
            raise UserError(f"--finetune {self.finetune} freezes weights, which only makes sense with --init-from WEIGHTS")
        if not 0 < self.lr_decay <= 1:
            raise UserError(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
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
        if self.mixup < 0:
            raise UserError(f"--mixup must be 0 (off) or a positive Beta parameter such as 0.2, got {self.mixup}")
        check_ema(self.ema)
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be in (0, 1), got {getattr(self, name)}")
        if self.lr <= 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        return cls(**values)


def load_config(path: str | Path, cls=TrainConfig):
    """Read a TrainConfig (or another config dataclass with from_dict) from YAML; unknown keys are an error."""
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


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
