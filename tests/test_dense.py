"""Exact dense scanning equals the naive sliding window (ISBI 2012 slices, borders included)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from medconv.errors import UserError
from medconv.infer.dense import dense_network, dense_posteriors
from medconv.infer.sliding_window import sliding_posteriors
from medconv.models.registry import build_model

ARCHITECTURES = {  # two different poolings: 2x2/2 max (Ciresan) and overlapping 3x3/2 average
    "max2": {},
    "avg3": {"pool": "avg", "pool_kernel": 3, "widths": [16, 24, 32], "kernels": [3, 4, 3], "hidden": [64]},
}


def isbi_slice(data_root, index: int) -> torch.Tensor:
    path = data_root / "isbi2012_em" / "train" / "image" / f"{index:02d}.png"
    return torch.from_numpy(np.array(Image.open(path))).float().div(255)[None]  # (1, H, W)


def fitted(model: nn.Module, image: torch.Tensor, patch: int) -> nn.Module:
    """A few SGD steps on patches of the image (labels: brighter than the mean), so batch-norm statistics
    and weights are those of a trained network, not of the initialisation."""
    torch.manual_seed(0)
    windows = nn.functional.pad(image[None], [patch // 2] * 4, mode="reflect")[0].unfold(1, patch, 7).unfold(2, patch, 7)
    x = windows.permute(1, 2, 0, 3, 4).reshape(-1, 1, patch, patch)
    y = (x[:, 0, patch // 2, patch // 2] > image.mean()).long()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for step in range(8):
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model((x[idx] - 0.5) / 0.2), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("name", list(ARCHITECTURES))
@pytest.mark.parametrize("patch", [33, 65])
def test_dense_scanning_equals_the_sliding_window(data_root, name, patch):
    height, width = (80, 96) if patch == 33 else (40, 48)  # every pixel, borders mirror-padded
    image = isbi_slice(data_root, 3)[:, 100:100 + height, 7:7 + width]
    model = fitted(build_model("patch-cnn", 1, 2, (patch, patch), **ARCHITECTURES[name]), image, patch)
    naive = sliding_posteriors(model, image, patch, [0.5], [0.2], batch_size=700)
    dense = dense_posteriors(dense_network(model, patch), image, patch, [0.5], [0.2], tile=37)  # odd tiles too
    assert naive.shape == dense.shape == (2, height, width)
    assert float((naive - dense).abs().max()) <= 1e-5
    assert 0.05 < float(naive[1].mean()) < 0.95  # the posteriors are not constant


def test_full_slice_corners_and_stride(data_root):
    image = isbi_slice(data_root, 21)  # 512 x 512
    model = fitted(build_model("patch-cnn", 1, 2, (65, 65)), image, 65)
    dense = dense_posteriors(dense_network(model, 65), image, 65, [0.5], [0.2], tile=200)
    strided = sliding_posteriors(model, image, 65, [0.5], [0.2], stride=73)  # 8 x 8 pixels, corners included
    assert strided.shape == (2, 8, 8)
    assert float((strided - dense[:, ::73, ::73]).abs().max()) <= 1e-5


def test_networks_that_cannot_be_scanned_exactly_say_so():
    with pytest.raises(UserError, match="unpadded"):
        dense_network(build_model("simple-cnn", 1, 2, (33, 33)), 33)
    with pytest.raises(UserError, match="odd"):
        sliding_posteriors(build_model("patch-cnn", 1, 2, (33, 33)), torch.rand(1, 40, 40), 32, [0.5], [0.2])
    with pytest.raises(UserError, match="too large"):
        sliding_posteriors(build_model("patch-cnn", 1, 2, (65, 65)), torch.rand(1, 30, 40), 65, [0.5], [0.2])
    with pytest.raises(UserError, match="too small"):
        build_model("patch-cnn", 1, 2, (9, 9), widths=[8, 8], kernels=[5, 5])
    for side, kernels in ((7, [7]), (13, [3, 5]), (9, [4, 3])):  # a block's output 1x1: batch norm's trial refused
        with pytest.raises(UserError, match="too small"):
            build_model("patch-cnn", 1, 2, (side, side), widths=[4] * len(kernels), kernels=kernels)
