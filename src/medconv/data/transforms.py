"""Normalisation and batched, per-sample random augmentation on tensors.

Augmentation runs on whole batches (one affine warp per sample via `grid_sample`), on the device
the batch lives on, drawing from torch's global generator so a seeded epoch repeats exactly.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError


@dataclass
class AugmentConfig:
    """Random augmentation, one grammar for every trainer; every field off by default.

    Whole images (classification, `augment`): hflip/vflip: probability of a horizontal/vertical flip;
    rotate: max degrees (uniform +-); rotate90: random multiples of 90 degrees; translate: max shift as a
    fraction of the size (the random-crop equivalent); scale: max relative zoom (+-); brightness/contrast:
    max relative change (+-), applied to [0, 1] intensities.
    Patches and tiles with their labels (segmentation and detection, `data.patches.augment_patches`):
    flips: horizontal and vertical flips (p 0.5 each); rot90: k x 90 degrees; elastic: max displacement
    in px of a smooth random field; intensity: contrast and brightness +-; colour: the same per channel.
    """

    hflip: float = 0.0
    vflip: float = 0.0
    rotate: float = 0.0
    rotate90: bool = False
    translate: float = 0.0
    scale: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    flips: bool = False
    rot90: bool = False
    elastic: float = 0.0
    intensity: float = 0.0
    colour: float = 0.0

    @property
    def geometric(self) -> bool:
        return bool(self.hflip or self.vflip or self.rotate or self.rotate90 or self.translate or self.scale)

    def patch_options(self) -> dict:
        """The keyword arguments of data.patches.augment_patches."""
        return {k: getattr(self, k) for k in TASK_KEYS["segmentation"]}


PRESETS = {
    "none": AugmentConfig(),
    "light": AugmentConfig(hflip=0.5, rotate=10, translate=0.06),
    "strong": AugmentConfig(hflip=0.5, rotate=15, translate=0.1, scale=0.1, brightness=0.1, contrast=0.1),
    "histology": AugmentConfig(hflip=0.5, vflip=0.5, rotate90=True, translate=0.06, brightness=0.1, contrast=0.1),
}
# which keys each kind of trainer applies (segmentation's must keep the centre pixel's label valid)
TASK_KEYS = {"classification": ("hflip", "vflip", "rotate", "rotate90", "translate", "scale", "brightness",
                                "contrast"),
             "segmentation": ("flips", "rot90", "elastic", "intensity", "colour")}


def parse_augment(spec: str, task: str | None = None) -> AugmentConfig:
    """A preset name (none, light, strong, histology) or KEY=VALUE pairs, e.g. "hflip=0.5,rotate=15" or
    "flips=1,rot90=1,elastic=4"; with `task` (classification, segmentation), keys that trainer does not
    apply are refused with one line naming the ones it does."""
    fields = {f.name: f.type for f in dataclasses.fields(AugmentConfig)}
    if spec in PRESETS:
        out = PRESETS[spec]
    else:
        values = {}
        for item in filter(None, (p.strip() for p in spec.split(","))):
            key, _, value = item.partition("=")
            if key not in fields:
                raise UserError(f"--augment {spec!r}: expected a preset ({', '.join(PRESETS)}) or KEY=VALUE pairs "
                                f"with keys {', '.join(fields)}")
            try:
                if fields[key] == "bool":
                    words = {"": True, "true": True, "yes": True, "false": False, "no": False}
                    values[key] = words[value.lower()] if value.lower() in words else float(value) != 0
                else:
                    values[key] = float(value)
            except ValueError:
                raise UserError(f"--augment {spec!r}: {key} needs a number, got {value!r}") from None
            if fields[key] != "bool" and not (math.isfinite(values[key]) and values[key] >= 0):
                raise UserError(f"--augment {spec!r}: {key} must be a number >= 0, got {value!r}")
        out = AugmentConfig(**values)
    if task is not None:
        used = [k for k in fields if getattr(out, k) != getattr(PRESETS["none"], k) and k not in TASK_KEYS[task]]
        if used:
            raise UserError(f"--augment {spec!r}: {', '.join(used)} cannot be applied to {task}; its keys are "
                            f"{', '.join(TASK_KEYS[task])}")
    return out


def uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


def augment(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Randomly warp and re-light each image of x (N, C, H, W) float in [0, 1]; same shape out."""
    n, dev = x.shape[0], x.device
    if cfg.geometric:
        theta = torch.deg2rad(uniform(n, -cfg.rotate, cfg.rotate, dev))
        if cfg.rotate90:
            theta = theta + torch.randint(0, 4, (n,), device=dev) * (math.pi / 2)
        zoom = uniform(n, 1 - cfg.scale, 1 + cfg.scale, dev)
        sx = torch.where(torch.rand(n, device=dev) < cfg.hflip, -1.0, 1.0) / zoom
        sy = torch.where(torch.rand(n, device=dev) < cfg.vflip, -1.0, 1.0) / zoom
        cos, sin = torch.cos(theta), torch.sin(theta)
        shift = uniform(2 * n, -2 * cfg.translate, 2 * cfg.translate, dev).view(n, 2)
        # output coords -> input coords: rotation, then per-axis scale/flip, then shift
        matrix = torch.stack([torch.stack([cos * sx, -sin * sx, shift[:, 0]], 1),
                              torch.stack([sin * sy, cos * sy, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if cfg.brightness or cfg.contrast:
        shape = (n, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        c = uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, dev).view(shape)
        b = uniform(n, -cfg.brightness, cfg.brightness, dev).view(shape)
        x = ((x - mean) * c + mean + b).clamp_(0, 1)
    return x


def normalise(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """(x - mean) / std per channel; x (N, C, H, W)."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, H, W) images in [0, 1] (uint8 scaled)."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    x = x.transpose(0, 1).reshape(x.shape[1], -1)
    return x.mean(1).tolist(), x.std(1).clamp_min(1e-3).tolist()


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """Test-time augmentation views of x (N, C, H, W): 'none', 'flip' (identity + h-flip), 'd4' (8 dihedral)."""
    if mode in ("none", "", None):
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    if mode == "d4":
        return [r.flip(-1) if f else r for k in range(4) for r in [torch.rot90(x, k, (-2, -1))] for f in (0, 1)]
    raise ValueError(f"unknown test-time augmentation '{mode}': expected none, flip or d4")
