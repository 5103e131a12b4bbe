"""Posterior maps (K, H, W) of whole images from a trained segmentation network, by any of the three ways:
the naive sliding window and exact dense scanning of a patch classifier, or a dense network over the whole
image (or, for large images, over overlapping blended tiles: MONAI's sliding_window_inference), with
optional flip or d4 test-time augmentation.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from ..data.transforms import normalise
from ..errors import UserError
from ..infer.dense import dense_batch_posteriors, dense_network
from ..infer.fused import inference_form
from ..infer.sliding_window import sliding_posteriors
from ..infer.views import unet_padding, views_mean
from ..progress import progress_bar

METHODS = ("auto", "dense", "sliding")
WHOLE_IMAGE_PIXELS = 1024 * 1024  # larger images go through tiles (memory); smaller ones through one pass (speed)


class MapMaker:
    """Turns images (C, H, W) in [0, 1] into posteriors (K, H, W) for one trained network.

    meta: the checkpoint metadata (mode, patch or tile, mean, std). method: for patch classifiers,
    dense (exact dense scanning), sliding (one forward pass per pixel) or auto (dense when the network
    can be rewritten, else sliding). tta: "none", "flip" (mean over 4 flips) or "d4" (flips and 90-degree
    turns: 8 views), each view's map turned back before averaging.
    """

    def __init__(self, model: nn.Module, meta: dict, method: str = "auto", tta: str = "none",
                 device: str = "cpu"):
        if method not in METHODS:
            raise UserError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
        self.model, self.meta, self.device, self.tta = model.eval(), meta, device, tta
        self.mode = meta["mode"]
        self.method, self.dense = method, None
        if self.mode == "patch" and method in ("auto", "dense"):
            try:
                self.dense = dense_network(model, meta["patch"]).to(device)
                self.method = "dense"
            except UserError:
                if method == "dense":
                    raise
                self.method = "sliding"
        elif self.mode == "dense":
            self.method = "tiles"
            self.model = inference_form(self.model)  # batch norm folded in, channels_last: twice as fast on a CPU

    def __call__(self, image: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """Posteriors (K, H, W) of image (C, H, W); with tta, the mean over the views' maps turned back."""
        return self.batch(image[None], stride)[0]

    @torch.no_grad()
    def batch(self, images: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """Posteriors (N, K, H, W) of images (N, C, H, W) of one size, each view of all N in one pass of the
        network: each image's map is the one it gets alone (to float rounding, about 1e-7). The sliding window
        (method sliding, or a stride) cannot batch: it maps the images one at a time."""
        return views_mean(images, lambda view: self.one_view(view, stride), self.tta, lambda x, dims: x.flip(dims),
                          lambda x, k: torch.rot90(x, k, (-2, -1)))

    def arrays(self, images: np.ndarray) -> np.ndarray:
        """batch on numpy: images (N, C, H, W) float32 in [0, 1] -> posteriors (N, K, H, W) float32."""
        return self.batch(torch.from_numpy(images)).numpy()

    def one_view(self, images: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """Posteriors (N, K, H, W) of images (N, C, H, W), without test-time augmentation."""
        mean, std = self.meta["mean"], self.meta["std"]
        if self.mode == "patch":
            if self.method == "dense" and stride == 1:
                return dense_batch_posteriors(self.dense, images, self.meta["patch"], mean, std, device=self.device)

            with progress_bar(Console(stderr=True)) as bar:  # one forward pass per pixel: minutes per image
                task = bar.add_task("sliding window", total=None, status="")
                return torch.stack([sliding_posteriors(
                    self.model, image, self.meta["patch"], mean, std, stride, device=self.device,
                    progress=lambda done, total: bar.update(task, completed=done, total=total)) for image in images])
        return self.tiled(images)

    def tiled(self, images: torch.Tensor) -> torch.Tensor:
        """A dense network's posteriors (N, K, H, W) of images (N, C, H, W): in one pass over the whole images,
        mirrored out to a multiple of 16 pixels, when each has at most WHOLE_IMAGE_PIXELS; else over overlapping
        tiles blended with Gaussian weights (MONAI's sliding_window_inference)."""
        x = normalise(images.float(), self.meta["mean"], self.meta["std"]).to(self.device)
        height, width = x.shape[-2:]
        if height * width <= WHOLE_IMAGE_PIXELS:
            rows, cols, mode = unet_padding(height, width)
            padded = F.pad(x, (0, cols, 0, rows), mode="replicate" if mode == "edge" else mode)
            logits = self.model(padded)[..., :height, :width]  # channels_last weights: the convolutions run channels_last
        else:
            from monai.inferers import sliding_window_inference

            tile = self.meta["tile"]
            logits = sliding_window_inference(x, (tile, tile), 4, self.model, overlap=0.25, mode="gaussian")
        return torch.softmax(logits.float(), 1).contiguous().cpu()
