"""Normalisation and batched, per-sample random augmentation on tensors.

Augmentation runs on whole batches (one affine warp per sample via `grid_sample`), on the device
the batch lives on, drawing from torch's global generator so a seeded epoch repeats exactly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import UserError
from .augment import AugmentConfig


def uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


VOLUME_AUGMENT = ("hflip", "vflip", "rotate90", "brightness", "contrast")  # what augment does for volumes


def check_volume_augment(cfg: AugmentConfig) -> None:
    """Refuse, for volumes, the warps augment only does in 2D (rotate, translate, scale), in one line."""
    warps = [name for name in ("rotate", "translate", "scale") if getattr(cfg, name)]
    if warps:
        raise UserError(f"--augment {', '.join(warps)}: volumes take {', '.join(VOLUME_AUGMENT)} (flips, quarter "
                        "turns, intensity); 2D warps are not applied to them")


def augment(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Randomly warp and re-light each image of x (N, C, H, W) float in [0, 1]; same shape out. Volumes (N, C,
    D, H, W): flips (hflip along W, vflip along H and, with its probability, along D), quarter turns in the
    H-W plane, brightness and contrast (check_volume_augment refuses the rest)."""
    if x.ndim == 5:
        return augment_volumes(x, cfg)
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


def augment_volumes(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """augment for volumes (N, C, D, H, W), per sample, drawing from torch's global generator."""
    n, dev = x.shape[0], x.device
    each = (n, 1, 1, 1, 1)
    for p, axis in ((cfg.hflip, -1), (cfg.vflip, -2), (cfg.vflip, -3)):
        if p:
            x = torch.where((torch.rand(n, device=dev) < p).view(each), x.flip(axis), x)
    if cfg.rotate90:
        k = torch.randint(0, 4, (n,), device=dev)
        x = torch.stack([torch.rot90(v, int(t), (-2, -1)) for v, t in zip(x, k)]) if x.shape[-1] == x.shape[-2] else x
    if cfg.brightness or cfg.contrast:
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        c = uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, dev).view(each)
        b = uniform(n, -cfg.brightness, cfg.brightness, dev).view(each)
        x = ((x - mean) * c + mean + b).clamp_(0, 1)
    return x


def normalise(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """(x - mean) / std per channel; x (N, C, H, W) or volumes (N, C, D, H, W)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s


def channel_stats(images: torch.Tensor, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, H, W) images in [0, 1] (uint8 scaled), summed in float64 chunk by
    chunk: the same for a tensor and for images read when indexed (data.reading.LazyImages)."""
    total = torch.zeros(3, images.shape[1], dtype=torch.float64)  # count, sum, sum of squares per channel
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk]
        x = (x.float() / 255.0 if x.dtype == torch.uint8 else x).double()  # uint8 as the network sees it (float32)
        x = x.transpose(0, 1).reshape(x.shape[1], -1)
        total += torch.stack([torch.full((x.shape[0],), float(x.shape[1]), dtype=torch.float64), x.sum(1),
                              x.pow(2).sum(1)])
    n, s, q = total
    var = (q - s * s / n) / (n - 1).clamp_min(1)
    return (s / n).tolist(), var.clamp_min(0).sqrt().clamp_min(1e-3).tolist()


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """Test-time augmentation views of x (N, C, H, W): 'none', 'flip' (identity + h-flip), 'd4' (8 dihedral)."""
    if mode in ("none", "", None):
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    if mode == "d4":
        return [r.flip(-1) if f else r for k in range(4) for r in [torch.rot90(x, k, (-2, -1))] for f in (0, 1)]
    raise ValueError(f"unknown test-time augmentation '{mode}': expected none, flip or d4")
