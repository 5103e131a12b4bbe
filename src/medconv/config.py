"""Typed run configuration: dataclasses read from and written to YAML.

`BaseConfig` holds what every trainer shares (optimisation, schedule, precision, weight average,
reproducibility, hardware) and its checks; `TrainConfig` (classification, here) and
`segment.config.SegmentConfig` add their data and model fields.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .data.augment import TTA_MODES, parse_augment
from .data.images import parse_window
from .data.volumes import parse_spacing
from .errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
LEGACY_KEYS = ("amp",)  # read from older config.yaml files and ignored (amp: CUDA-only bf16, now --precision)
SEED_LIMIT = 2 ** 32  # numpy's seeds: 0 .. 2**32 - 1
DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")
# a field's annotation (its first word) -> the Python types its value may have, and what the message asks for
TYPES = {"int": (int, "a whole number"), "float": ((int, float), "a number"), "bool": (bool, "true or false"),
         "str": (str, "a string"), "dict": (dict, "a mapping of KEY: VALUE"),
         "list[float]": (list, "a list of numbers such as [0.5, 0.75]"),
         "list[str]": ((list, str), "a list of names such as [background, nucleus]")}
ELEMENTS = {"list[float]": (int, float), "list[str]": str}  # ... and the types of a list's elements


def check_ema(decay: float) -> None:
    """A config's `ema` (weight averaging): 0 (off) or a decay in (0, 1), else one clear line."""
    if not 0 <= decay < 1:
        raise UserError(f"--ema must be 0 (off) or a decay in (0, 1) such as 0.99, got {decay}")


def option(name: str) -> str:
    """The command-line option of a configuration field (model_options: --model-option, given per KEY=VALUE)."""
    return "--model-option" if name == "model_options" else "--" + name.replace("_", "-")


def check_seed(seed, name: str = "--seed") -> None:
    """A random seed: a whole number from 0 to 2**32 - 1 (numpy's range), else one clear line."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise UserError(f"{name} must be a whole number from 0 to {SEED_LIMIT - 1}, got {seed!r}")


def config_classes() -> list[type]:
    """The run configurations: BaseConfig's subclasses imported so far (segment.config's SegmentConfig wherever
    the command line or a segmentation module is loaded)."""
    found, todo = [], [BaseConfig]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


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
    # tracking
    tensorboard: bool = False         # TensorBoard logs in RUN_DIR/tensorboard/ (needs the tensorboard package)

    CHOICES = {"optimizer": ("adamw", "adam", "sgd"), "schedule": ("cosine", "step", "constant"),
               "precision": PRECISIONS}
    KIND = "run"  # what the subclass configures, for messages: "classification run (medconv train)"

    def validate(self):
        """Check every field (types, choices, ranges, finite numbers); returns self, or raises UserError with one
        line. The CLI's options and a YAML file's settings land in these fields, so both are refused alike."""
        self.check_types()
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed and not (getattr(self, name) is None is defaults[name]):
                raise UserError(f"{option(name)} {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
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
        if self.val_fraction + self.test_fraction >= 1:
            raise UserError(f"--val-fraction {self.val_fraction} and --test-fraction {self.test_fraction} leave no "
                            "training images: together they must stay below 1")
        if self.channels not in (None, 1, 3):
            raise UserError(f"--channels must be 1 or 3 (unset: as the images are), got {self.channels}")
        check_seed(self.seed)
        if not DEVICE.fullmatch(self.device):
            raise UserError(f"--device {self.device!r}: expected auto, cpu, cuda or cuda:N")
        check_ema(self.ema)
        return self

    def check_types(self, source: str | None = None) -> None:
        """Each field's value of the type its annotation names (YAML may hold a string where a number belongs),
        and each float finite: one line naming the setting (and `source`, the file it came from)."""
        where = f"{source}: " if source else ""
        for f in dataclasses.fields(self):
            value, annotation = getattr(self, f.name), str(f.type)
            kind = annotation.split(" ")[0]
            if (value is None and "None" in annotation) or kind not in TYPES:
                continue
            accepted, wanted = TYPES[kind]
            element = ELEMENTS.get(kind)
            wrong = (not isinstance(value, accepted) or (isinstance(value, bool) and kind != "bool")
                     or (element is not None and isinstance(value, list)
                         and any(isinstance(v, bool) or not isinstance(v, element) for v in value)))
            if wrong:
                raise UserError(f"{where}setting {f.name} ({option(f.name)}): expected {wanted}, got {value!r}")
            if kind == "float" and not math.isfinite(value):
                raise UserError(f"{where}{option(f.name)} must be a finite number, got {value}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config"):
        """A config from a mapping of settings; unknown keys are an error (keys of older versions are dropped)."""
        values = {k: v for k, v in values.items() if k not in LEGACY_KEYS}
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            other = next((c for c in config_classes() if c is not cls and not issubclass(cls, c)
                          and set(values) <= {f.name for f in dataclasses.fields(c)}), None)
            if other is not None:  # e.g. a classifier's run resumed by segment train
                where = "" if source == "config" else f"{source}: "
                raise UserError(f"{where}these are the settings of a {other.KIND}, not of a {cls.KIND}")
            raise UserError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        cfg = cls(**values)
        cfg.check_types(source)
        return cfg

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
    size: int | None = None           # input side in pixels; unset: image files at the size they share, MedMNIST at 28
    resize: int | None = None         # upsample to this side (e.g. 224, or 299 for inception_v3)
    resize_mode: str | None = None    # resize, pad, crop, nearest, bilinear; unset: resize for --size, nearest for --resize
    window: str | None = None         # grey values shown as CENTER,WIDTH or a CT preset (lung, bone, ...)
    spacing: str | None = None        # volumes: resample to this voxel spacing in mm: one number, or D,H,W
    loading: str = "auto"             # image files: memory (read once), lazy (read as needed), auto (memory if it fits)
    workers: int | None = None        # processes reading files for lazy loading (unset: 0 on <= 2 cores, else cores / 4, <= 4)
    patch: int = 27                   # crchistophenotypes: side of the square nucleus patch
    train_fraction: float = 1.0       # keep this stratified fraction of the training labels
    # model
    arch: str = "simple-cnn"
    pretrain: str = "none"            # layer-wise pretraining: rbm, ae (an mlp's hidden layers), cae (convolutions)
    pretrain_epochs: int = 10         # epochs per layer
    pretrain_data: str | None = None  # cae: a source domain to pretrain on (MedMNIST flag, msd_hippocampus, folder)
    init_from: str | None = None      # start from weights: a run directory, a .safetensors/.pth file, or a torchvision name
    finetune: str = "all"             # which weights train: all, head (frozen features), from:LAYER
    taxonomy: str | None = None       # YAML tree whose leaves are the classes: evaluate/predict --level sums them
    train_level: str | None = None    # with --taxonomy: train on this level's classes (leaf labels mapped up)
    unfreeze_every: int = 0           # gradual unfreezing: epochs before each further group unfreezes (0: off)
    ds_decay: bool = False            # deep supervision's auxiliary loss weights fade linearly to 0 over the epochs
    # optimisation
    batch_size: int = 128
    label_smoothing: float = 0.0
    mixup: float = 0.0                # mixup's Beta(a, a) parameter: train on blends of image pairs (0: off)
    class_weights: str = "none"       # none, balanced
    augment: str = "none"             # a preset (none, light, strong, histology) or "hflip=0.5,rotate=15,..."
    tta: str = "none"                 # test-time augmentation when evaluating: none, flip, d4
    select_metric: str = "auc"        # validation metric that picks the best checkpoint: auc, acc, loss (lowest)

    CHOICES = {**BaseConfig.CHOICES, "class_weights": ("none", "balanced"), "tta": TTA_MODES,
               "select_metric": ("auc", "acc", "loss"),
               "resize_mode": ("resize", "pad", "crop", "nearest", "bilinear"), "loading": ("auto", "memory", "lazy"),
               "pretrain": ("none", "rbm", "ae", "cae")}
    KIND = "classification run (medconv train)"

    def validate(self) -> "TrainConfig":
        super().validate()
        parse_augment(self.augment, task="classification")
        if self.pretrain_epochs < 1:
            raise UserError(f"--pretrain-epochs must be at least 1, got {self.pretrain_epochs}")
        if self.size is not None and self.size < 1:
            raise UserError(f"--size must be at least 1, got {self.size}")
        parse_window(self.window)
        parse_spacing(self.spacing)
        if self.workers is not None and self.workers < 0:
            raise UserError(f"--workers must be 0 (read in the training process) or more, got {self.workers}")
        if self.pretrain in ("rbm", "ae") and self.arch != "mlp":
            raise UserError(f"--pretrain {self.pretrain} pretrains the hidden layers of --arch mlp, not {self.arch}")
        if self.patch < 5 or self.patch % 2 == 0:
            raise UserError(f"--patch must be an odd number of pixels >= 5, got {self.patch}")
        if not (self.finetune in ("all", "head") or self.finetune.startswith("from:")):
            raise UserError(f"--finetune {self.finetune!r}: expected all, head or from:LAYER")
        if self.finetune != "all" and not self.init_from and self.pretrain == "none":
            raise UserError(f"--finetune {self.finetune} freezes weights, which only makes sense with --init-from "
                            "WEIGHTS or --pretrain")
        if self.pretrain_data and self.pretrain != "cae":
            raise UserError("--pretrain-data names a source domain for --pretrain cae")
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
        check_model_options(self.arch, self.model_options)
        return self


# What a model option's value must be, by option name, in every architecture that takes it: (kind, what the
# message asks for). The model registry checks these where a network is built (with each architecture's own
# option names, which it alone knows); a configuration checks the values of the names it finds here, without
# importing torch. A builder's own table (models.registry.register(options=...)) overrides an entry.
MODEL_OPTIONS: dict[str, tuple] = {
    "widths": ("ints", "a list of positive whole numbers such as [32,64] (one per block)"),
    "kernels": ("ints", "a list of positive whole numbers such as [5,4,4] (a kernel side per block)"),
    "hidden": ("ints0", "a list of positive whole numbers such as [256] (one per hidden layer; [] for none)"),
    "features": ("ints", "a list of positive whole numbers such as [32,32,64,128,256,32]"),
    "convs_per_block": ("int", "a positive whole number such as 2"),
    "stem_stride": ("int", "1 (full resolution) or 2 (halved)"),
    "pool_kernel": ("int", "a positive whole number such as 2"),
    "dropout": ("fraction", "a number in [0, 1) such as 0.3"),
    "dropout_aux": ("fraction", "a number in [0, 1) such as 0.7"),
    "deep_supervision": ("floats", "a list of loss weights of 0 or more such as [0.3,0.3] (one per block but the last)"),
    "batch_norm": ("bool", "true or false"),
    "aux_logits": ("bool", "true or false"),
    "c3_table": ("bool", "true or false"),
    "lrn": ("bool", "true or false"),
    "activation": (("sigmoid", "tanh", "relu"), "one of sigmoid, tanh, relu"),
    "pool": (("max", "avg"), "max or avg"),
    "inception": (("reduced", "naive"), "reduced or naive"),
}


def whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_model_option(arch: str, key: str, value, kind: tuple | None) -> None:
    """One model option's value against its kind: ints (a non-empty list of positive whole numbers, or one, or
    "32,64"), ints0 (the same, or empty), floats (a non-empty list of numbers of 0 or more), int (positive),
    fraction ([0, 1)), bool, or a tuple of choices; None: unchecked."""
    if kind is None:
        return
    what, wanted = kind
    if what in ("ints", "ints0"):
        items = (value.split(",") if value.strip() else []) if isinstance(value, str) else \
            [value] if whole(value) else value
        try:
            items = [int(v) if isinstance(v, str) and v.strip().isdigit() else v for v in items]
        except TypeError:  # not a list at all
            items = None
        ok = isinstance(items, list) and all(whole(v) and v >= 1 for v in items) and (bool(items) or what == "ints0")
    elif what == "floats":
        items = value.split(",") if isinstance(value, str) else [value] if isinstance(value, (int, float)) else value
        try:
            items = [float(v) for v in items if not isinstance(v, bool)] if isinstance(items, list) else None
        except (TypeError, ValueError):
            items = None
        ok = bool(items) and all(math.isfinite(v) and v >= 0 for v in items)
    elif what == "int":
        ok = whole(value) and value >= 1
    elif what == "fraction":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and 0 <= value < 1
    elif what == "bool":
        ok = isinstance(value, bool)
    else:  # the choices
        ok = isinstance(value, str) and value in what
    if not ok:
        raise UserError(f"model option {key} {value!r} of --arch {arch}: expected {wanted}")


def check_model_options(arch: str, options: dict) -> None:
    """The values of --arch's --model-option settings whose names MODEL_OPTIONS knows (torch-free; the model
    registry checks the names against the architecture's own when it builds the network)."""
    if not isinstance(options, dict):
        raise UserError(f"model options of --arch {arch}: expected a mapping of KEY: VALUE, got {options!r}")
    for key, value in options.items():
        check_model_option(arch, key, value, MODEL_OPTIONS.get(key))


def load_config(path: str | Path, cls=TrainConfig):
    """Read a config dataclass (TrainConfig by default) from YAML; unknown keys are an error."""
    values = read_settings(path)
    if "members" in values:  # load_members reads those; here it would be an unknown setting
        raise UserError(f"--config {path}: an ensemble's file (members: ...); only `medconv train --config` takes "
                        "one, and not as a member of another")
    return cls.from_dict(values, source=str(path))


def load_members(path: str | Path, cls=TrainConfig) -> dict[str, BaseConfig] | None:
    """The members of an ensemble's config file, {name: config}, or None when `path` is the config of one run.
    An ensemble's file holds one key, `members`: a mapping of at least two names (each a run folder's name) to a
    config file (relative to this one) or to the settings themselves."""
    values = read_settings(path)
    if "members" not in values:
        return None
    members = values["members"]
    if set(values) != {"members"}:
        raise UserError(f"--config {path}: an ensemble's file holds `members` alone, not also "
                        f"{', '.join(sorted(set(values) - {'members'}))}; settings go in the members' files")
    if not isinstance(members, dict) or len(members) < 2:
        raise UserError(f"--config {path}: `members` must map at least two names to config files or settings")
    configs = {}
    for name, member in members.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(name)):
            raise UserError(f"--config {path}: member name {name!r} must be a folder name (letters, digits, - _ .)")
        if isinstance(member, str):
            configs[str(name)] = load_config(Path(path).parent / member, cls)
        elif isinstance(member, dict):
            configs[str(name)] = cls.from_dict(member, source=f"{path}: members: {name}")
        else:
            raise UserError(f"--config {path}: member {name} must be a config file's name or a mapping of settings")
    return configs


def read_settings(path: str | Path) -> dict:
    """The mapping of settings in a YAML file, or one clear line on what is wrong with the file."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UserError(f"--config {path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"--config {path}: a folder; expected a YAML file") from None
    except UnicodeDecodeError:
        raise UserError(f"--config {path}: not a text file (not UTF-8); expected YAML") from None
    except OSError as exc:
        raise UserError(f"--config {path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: expected a mapping of settings")
    return values


def dump_config(cfg: BaseConfig) -> str:
    return cfg.dump()
