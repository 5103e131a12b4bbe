"""Typed configuration of a segmentation or detection run (`medconv segment train`, `detect train`)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..config import BaseConfig, check_model_options, option
from ..data.augment import AugmentConfig, parse_augment
from ..data.images import parse_window
from ..data.readers import suffix
from ..data.volumes import parse_spacing
from ..errors import UserError

MASK_TYPES = ("labels", "binary", "instances")
VOLUME_ARCHS = ("unet3d",)
VOLUME_DATASETS = ("msd_hippocampus", "hippocampus")


def manifest_lists_volumes(manifest: Path) -> bool:
    """Whether a segmentation manifest's first image is a volume: a NIfTI file or a folder (a DICOM series)."""
    if not manifest.is_file():
        return False
    with open(manifest, newline="") as fh:
        rows = csv.DictReader(fh)
        column = next((c for c in rows.fieldnames or [] if c.strip().lower() == "image"), None)
        first = next(rows, None)
    if column is None or first is None or not (first.get(column) or "").strip():
        return False
    path = manifest.parent / first[column].strip()
    return path.is_dir() or suffix(path) in (".nii", ".nii.gz")


@dataclass
class SegmentConfig(BaseConfig):
    """Everything needed to repeat a segmentation training run (seed included)."""

    # data
    dataset: str | None = None        # isbi2012 (the challenge layout under the data root), or None
    manifest: str | None = None       # CSV: image,mask[,roi][,split]
    points: str | None = None         # detection: CSV image,x,y[,class] (1-based x = column), images in --images
    mpp: float | None = None          # micrometres per pixel, when known (tolerances in um)
    images: str | None = None         # folders matched by file stem
    masks: str | None = None
    roi: str | None = None
    value_map: str | None = None      # mask value -> class, e.g. "255:0,0:1"
    window: str | None = None         # grey values shown as CENTER,WIDTH or a CT preset (lung, bone, ...)
    spacing: str | None = None        # volumes: resample to this voxel spacing in mm: one number, or D,H,W
    mask_type: str | None = None      # labels (class indices, or --value-map), binary (non-zero = foreground) or
                                      # instances (object ids: foreground, ids kept for AJI); None: labels, but
                                      # masks that look like object ids are refused
    classes: list[str] | None = None
    val_fraction: float = 0.2
    # model
    mode: str = "patch"               # patch (a patch classifier) or dense (a dense prediction network)
    arch: str | None = None           # patch mode: patch-cnn (default) or a registry classifier; dense mode: unet
    patch: int = 65                   # patch mode: side of the odd patch around each labelled pixel
    tile: int = 128                   # dense mode: side of the training tiles
    balance: str = "class"            # patch mode: class-balanced centres, or none (pixel frequencies)
    hard_negatives: str | None = None  # point data, patch mode: a first detector run whose false positives on the
    hard_fraction: float = 0.25       # training images are drawn as this fraction of every batch
    radius: float = 4.0               # point data (crchistophenotypes): disc radius around each centre
    target: str = "disc"              # point data: disc (class 1 within radius) or proximity (soft: 1 / (1 + d^2 / 2)
                                      # at distance d <= radius from the nearest centre, 0 beyond; as SC-CNN)
    class_weights: str = "none"       # none, balanced (inverse frequency in the loss)
    border_weight: float = 0.0        # dense mode: w0 of U-Net's separation-border weights (10 in the paper; 0: off)
    border_sigma: float = 5.0         # their width in px (sigma)
    # optimisation
    epochs: int = 20
    samples_per_epoch: int | None = None  # patches (default 20000) or tiles (--mode dense, default 400) per epoch
    batch_size: int | None = None     # patches (default 128) or tiles (--mode dense, default 8) per step
    augment: str = "flips=1,rot90=1"  # flips, rot90, elastic (max px), intensity (+-), colour (+- per channel)
    select_metric: str = "f1"         # validation metric choosing the checkpoint: f1 (foreground), pixel_error,
                                      # detection_f1 (point data: F1 of the tuned local maxima of the centre maps)

    CHOICES = {**BaseConfig.CHOICES, "mode": ("patch", "dense"), "balance": ("class", "none"),
               "class_weights": ("none", "balanced"), "select_metric": ("f1", "pixel_error", "detection_f1"),
               "target": ("disc", "proximity")}
    KIND = "segmentation or detection run (medconv segment train, detect train)"

    def validate(self) -> "SegmentConfig":
        if isinstance(self.classes, str):
            self.classes = [c.strip() for c in self.classes.split(",")]
        super().validate()
        parse_window(self.window)
        parse_spacing(self.spacing)
        if self.window and (self.points or self.dataset == "crchistophenotypes"):
            raise UserError("--window shows grey values (CT in HU) for segmentation; detection reads its images' "
                            "colours as they are")
        if self.classes is not None and (len(self.classes) < 2 or not all(self.classes)
                                         or len(set(self.classes)) < len(self.classes)):
            raise UserError(f"--classes {','.join(self.classes)!r}: expected two or more distinct names in class "
                            "order, e.g. background,nucleus")
        if self.value_map is not None:
            from ..data.segmentation import parse_value_map  # numpy: kept out of medconv --help
            parse_value_map(self.value_map)
        if self.mpp is not None and not self.mpp > 0:
            raise UserError(f"--mpp must be a positive number of micrometres per pixel, got {self.mpp}")
        if not self.radius > 0:
            raise UserError(f"--radius must be a positive number of pixels, got {self.radius}")
        if not 0 < self.hard_fraction <= 1:
            raise UserError(f"--hard-fraction must be in (0, 1], got {self.hard_fraction}")
        for name in ("patch", "tile", "samples_per_epoch", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"{option(name)} must be at least 1, got {getattr(self, name)}")
        point_data = self.dataset == "crchistophenotypes" or bool(self.points)
        self.check_mask_type(point_data)
        if not point_data and (self.target != "disc" or self.select_metric == "detection_f1"):
            raise UserError("--target proximity and --select-metric detection_f1 need point annotations "
                            "(--points CSV or --dataset crchistophenotypes)")
        if self.hard_negatives and (not point_data or self.mode != "patch"):
            raise UserError("--hard-negatives needs point annotations and --mode patch (it adds patches at a first "
                            "detector's false positives)")
        if self.volumetric():
            self.validate_volumes()
        elif self.spacing is not None:
            raise UserError("--spacing resamples volumes (NIfTI files, DICOM series); these data are 2D images")
        elif self.arch in VOLUME_ARCHS:
            raise UserError(f"--arch {self.arch} segments volumes (a --manifest of NIfTI files or DICOM series "
                            "folders, or --dataset msd_hippocampus); these data are 2D images")
        self.arch = self.arch or ("patch-cnn" if self.mode == "patch" else "unet")
        if self.mode == "dense" and self.arch not in ("unet", *VOLUME_ARCHS):
            raise UserError(f"--mode dense needs a network with per-pixel outputs (--arch unet), not {self.arch}")
        if self.mode == "patch" and self.arch == "unet":
            raise UserError("--arch unet labels every pixel of a tile: use it with --mode dense")
        if self.mode == "patch" and (self.patch < 3 or self.patch % 2 == 0):
            raise UserError(f"--patch must be odd and at least 3 (the patch labels its centre pixel), got {self.patch}")
        if self.mode == "dense" and self.arch not in VOLUME_ARCHS and (self.tile < 16 or self.tile % 16):
            raise UserError(f"--tile must be a multiple of 16 (the U-Net halves it four times), got {self.tile}")
        if self.border_weight < 0 or self.border_sigma <= 0:
            raise UserError(f"--border-weight must be >= 0 and --border-sigma > 0, got {self.border_weight} and "
                            f"{self.border_sigma}")
        if self.border_weight and (self.mode != "dense" or point_data):
            raise UserError("--border-weight weighs the borders between objects of label masks: it needs --mode dense "
                            "and masks (not point annotations)")
        defaults = {"patch": (20000, 128), "dense": (400, 8)}[self.mode]
        self.samples_per_epoch = self.samples_per_epoch or defaults[0]
        self.batch_size = self.batch_size or defaults[1]
        for name in ("samples_per_epoch", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{option(name)} must be at least 1, got {getattr(self, name)}")
        tile_augment(self.augment)
        check_model_options(self.arch, self.model_options)
        return self

    def volumetric(self) -> bool:
        """Whether the data are volumes: --dataset msd_hippocampus, or a manifest whose first image is a NIfTI
        file or a folder (a DICOM series)."""
        if self.dataset is not None:
            return str(self.dataset).lower() in VOLUME_DATASETS
        return self.manifest is not None and manifest_lists_volumes(Path(self.manifest))

    def validate_volumes(self) -> None:
        """Volumes are segmented densely by a 3D network (--arch unet3d by default) on crops of --tile voxels a
        side at most (a multiple of 8: the U-Net halves them three times)."""
        self.arch = self.arch or "unet3d"
        if self.arch not in VOLUME_ARCHS:
            raise UserError(f"volumes are segmented by a 3D network ({', '.join(VOLUME_ARCHS)}), not --arch "
                            f"{self.arch}")
        self.mode = "dense"  # a 3D network labels every voxel of a crop; patch classifiers are 2D
        if self.tile < 8 or self.tile % 8:
            raise UserError(f"--tile must be a multiple of 8 for volumes (crops of that side at most), got {self.tile}")
        if self.points or self.roi or self.border_weight or self.hard_negatives or self.images:
            raise UserError("volumes take a --manifest image,mask[,split][,subject] (or --dataset msd_hippocampus); "
                            "--images/--masks folders, --roi, --points, --border-weight and --hard-negatives are 2D")

    def check_mask_type(self, point_data: bool) -> None:
        """--mask-type: one of MASK_TYPES, for masks of --images/--masks or --manifest, with --value-map only
        as labels, and two classes when binary or instances."""
        kind = self.mask_type
        if kind is None:
            return
        if kind not in MASK_TYPES:
            raise UserError(f"--mask-type {kind!r}: expected one of {', '.join(MASK_TYPES)}")
        if self.dataset is not None or point_data:
            raise UserError(f"--mask-type describes the masks of --images/--masks or --manifest; "
                            f"{'--points' if self.points else '--dataset ' + str(self.dataset)} brings its own")
        if kind != "labels" and self.value_map is not None:
            raise UserError(f"--value-map maps class labels: use it with --mask-type labels, not {kind}")
        if kind != "labels" and self.classes is not None and len(self.classes) != 2:
            raise UserError(f"--mask-type {kind} gives two classes (background, foreground), but --classes "
                            f"names {len(self.classes)}: {','.join(self.classes)}")


def tile_augment(spec: str) -> AugmentConfig:
    """--augment of a segmentation run (flips, rot90, elastic, intensity, colour; see data.transforms)."""
    return parse_augment(spec, task="segmentation")
