"""Pictures for the course: a layer's receptive field on an image; first-layer filters and feature maps.

Figures are drawn with matplotlib's object API (Agg canvas, no pyplot state) and written atomically.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..fileio import atomic_write
from .empirical import empirical_gradient_map
from .receptive_field import find_layer, first_tensor, trace_network


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: str | Path) -> Path:
    atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))
    return Path(out_png)


def _display(image: np.ndarray | torch.Tensor | None, height: int, width: int) -> np.ndarray:
    """(H, W) or (H, W, 3) array in [0, 1]; accepts (H, W), (H, W, C) or (C, H, W); grey if None."""
    if image is None:
        return np.full((height, width), 0.5)
    a = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.shape[:2] != (height, width):
        raise UserError(f"image of shape {a.shape}: expected {height}x{width} to match the input shape")
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.full(a.shape, 0.5)


def plot_receptive_field(model: nn.Module, input_shape: Sequence[int], layer_name: str,
                         image: np.ndarray | None, out_png: str | Path) -> Path:
    """Two panels: the image (or grey) with the analytic field of the layer's centre unit as a square,
    and the empirical gradient map (log scale) of that unit with the same square. input_shape: (C, H, W).
    """
    if len(input_shape) != 3:
        raise UserError(f"input shape {tuple(input_shape)}: pictures need a 2D input (C, H, W)")
    from matplotlib.patches import Rectangle

    trace = trace_network(model, input_shape)
    record = find_layer(trace, layer_name)
    h, w = trace.spatial
    index = [(n - 1) // 2 for n in record.output_shape[1:]]
    (top, bottom), (left, right) = record.rf.span([0, 0] if record.rf.is_global else index)
    grad = empirical_gradient_map(model, input_shape, layer_name)
    rows, cols = np.flatnonzero(grad.any(1)), np.flatnonzero(grad.any(0))

    fig = _figure(10, 5)
    panels = fig.subplots(1, 2)
    shown = _display(image, h, w)
    panels[0].imshow(shown, cmap="gray", vmin=0, vmax=1)
    positive = grad > 0
    log = np.full(grad.shape, np.nan)
    log[positive] = np.log10(grad[positive])
    im = panels[1].imshow(log, cmap="viridis")
    fig.colorbar(im, ax=panels[1], fraction=0.046, label="log10 |gradient|")
    size = "x".join(map(str, record.rf.size))
    for ax in panels:
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False,
                               edgecolor="red", linewidth=2, label=f"analytic field {size}"))
        ax.plot([(left + right) / 2], [(top + bottom) / 2], "r+", markersize=10)
        ax.set_xlim(min(-0.5, left - 1), max(w - 0.5, right + 1))
        ax.set_ylim(max(h - 0.5, bottom + 1), min(-0.5, top - 1))
    panels[0].set_title(f"{layer_name}: centre unit, field {size}" + (" (global)" if record.rf.is_global else ""))
    extent = f"{rows[-1] - rows[0] + 1}x{cols[-1] - cols[0] + 1}" if rows.size else "empty"
    panels[1].set_title(f"gradient of the centre unit: nonzero over {extent}")
    panels[0].legend(loc="lower right", fontsize=8)
    return _save(fig, out_png)


def _grid(fig, arrays: list[np.ndarray], title: str, cmap: str | None) -> None:
    cols = math.ceil(math.sqrt(len(arrays)))
    rows = math.ceil(len(arrays) / cols)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, a in zip(axes, arrays):
        ax.imshow(a, cmap=cmap, interpolation="nearest")
    fig.suptitle(title)


def plot_filters(model: nn.Module, image: torch.Tensor, out_png: str | Path, max_maps: int = 64) -> Path:
    """The first convolution's kernels as a grid (RGB when it has 3 input channels, else averaged over
    input channels) beside its feature maps for `image`, a normalised (C, H, W) float tensor."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise UserError("image: expected a normalised (C, H, W) float tensor")
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd) and m.weight.dim() == 4]
    if not convs:
        raise UserError("the network has no 2D convolution to show")
    seen: dict[str, object] = {}

    class _Stop(Exception):
        pass

    def hook(module, inputs, output):
        seen.setdefault("conv", module)
        seen["maps"] = first_tensor(output)
        raise _Stop

    handles = [m.register_forward_hook(hook) for m in convs]
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    try:
        with torch.no_grad():
            model(image[None].to(param.device, param.dtype))
    except _Stop:
        pass
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    conv, maps = seen["conv"], seen["maps"][0].float().cpu().numpy()
    weight = conv.weight.detach().float().cpu().numpy()  # (Cout, Cin, kh, kw)
    if weight.shape[1] == 3:
        kernels = [np.moveaxis(k, 0, -1) for k in weight]
        kernels = [(k - k.min()) / (k.max() - k.min() + 1e-12) for k in kernels]
        cmap = None
    else:
        kernels, cmap = [k.mean(0) for k in weight], "gray"
    name = next(n for n, m in model.named_modules() if m is conv)
    fig = _figure(14, 7)
    left, right = fig.subfigures(1, 2)
    kh, kw = weight.shape[2:]
    _grid(left, kernels[:max_maps], f"{name}: {weight.shape[0]} kernels {kh}x{kw}", cmap)
    _grid(right, list(maps[:max_maps]), f"{name}: feature maps {maps.shape[1]}x{maps.shape[2]}"
          + (f" (first {max_maps})" if len(maps) > max_maps else ""), "viridis")
    return _save(fig, out_png)
