"""The naive sliding window: the patch classifier evaluated on the patch around every pixel (or every
s-th), in batches. The reference that exact dense scanning must equal, and the cost it removes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import normalise
from ..errors import UserError


def padded_input(image: torch.Tensor, patch: int, mean: list[float], std: list[float]) -> torch.Tensor:
    """image (C, H, W) in [0, 1], normalised, then mirror-padded ("reflect", as the patch sampler) by
    patch // 2 on every side: (C, H + P - 1, W + P - 1)."""
    if patch % 2 == 0:
        raise UserError(f"--patch must be odd (a centre pixel), got {patch}")
    half = patch // 2
    if half >= min(image.shape[1:]):
        raise UserError(f"--patch {patch} is too large for a {image.shape[1]}x{image.shape[2]} image: "
                        f"mirror padding needs patch // 2 < the image side")
    x = normalise(image.float().unsqueeze(0), mean, std)
    return F.pad(x, (half, half, half, half), mode="reflect")[0]


@torch.no_grad()
def sliding_posteriors(model: nn.Module, image: torch.Tensor, patch: int, mean: list[float], std: list[float],
                       stride: int = 1, batch_size: int = 1024, device: str | torch.device = "cpu",
                       progress=None) -> torch.Tensor:
    """Softmax posteriors (K, ceil(H / stride), ceil(W / stride)) of the pixels (y, x) = (i * stride, j * stride)
    of image (C, H, W) in [0, 1]: one forward pass of `model` per patch, `batch_size` patches at a time.
    `progress(done, total)` is called after each batch."""
    model = model.eval()
    padded = padded_input(image, patch, mean, std)
    windows = padded.unfold(1, patch, stride).unfold(2, patch, stride)  # (C, H', W', P, P): a view, no copy
    _, rows, cols = windows.shape[:3]
    windows = windows.permute(1, 2, 0, 3, 4)  # (H', W', C, P, P)
    total, out = rows * cols, []
    for start in range(0, total, batch_size):
        idx = torch.arange(start, min(start + batch_size, total))
        batch = windows[idx // cols, idx % cols].to(device)  # (B, C, P, P)
        out.append(torch.softmax(model(batch).float(), 1).cpu())
        if progress:
            progress(min(start + batch_size, total), total)
    return torch.cat(out).T.reshape(-1, rows, cols)
