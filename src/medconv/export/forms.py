"""The networks a run exports, each with the input it is traced with and checked on, and the posteriors torch
gives for that input. Kinds of run: classifier (2D or 3D input, `medconv train`), patch (a patch classifier,
exported both as it is and in its exact dense-scanning form), dense (a 2D U-Net) and dense3d (a 3D U-Net)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.transforms import normalise
from ..errors import UserError
from ..infer.dense import DenseScan, dense_network, dense_posteriors
from ..metrics import MULTI_LABEL

PROBE_BATCH = 2  # classifiers' probe: a batch, so the exported batch axis is seen to vary
KINDS = ("classifier", "patch", "dense", "dense3d")


@dataclass
class Form:
    """One network to export. name: classifier, patch or dense (what it computes); stem: its file name without
    suffix; module: normalised input "image" -> "logits"; probe: a normalised input (seeded random images in
    [0, 1], normalised), the one it is traced with and checked on; expected: torch's posteriors of the probe
    (numpy, the logits' shape); axes: the dynamic axes of image and logits; shapes: the sidecar's words for
    image and logits; sigmoid: posteriors by a sigmoid per output (multi-label), else a softmax over axis 1."""

    name: str
    stem: str
    module: nn.Module
    probe: torch.Tensor
    expected: np.ndarray
    axes: dict
    shapes: dict
    sigmoid: bool = False


def run_kind(meta: dict) -> str:
    """classifier, patch, dense or dense3d, from a checkpoint's metadata."""
    if meta.get("mode") == "patch":
        return "patch"
    if meta.get("mode") == "dense":
        return "dense3d" if meta.get("dims") == 3 else "dense"
    return "classifier"


def probe_images(shape: tuple[int, ...]) -> torch.Tensor:
    """Seeded random images in [0, 1] of `shape` (the same for every export)."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def posteriors(module: nn.Module, x: torch.Tensor, sigmoid: bool = False) -> np.ndarray:
    logits = module(x).float()
    return (torch.sigmoid(logits) if sigmoid else torch.softmax(logits, 1)).numpy()


def side_text(size) -> str:
    return "x".join(str(s) for s in size)


def classifier_form(model: nn.Module, meta: dict) -> Form:
    """A classifier: images (N, C, H, W) or volumes (N, C, D, H, W) at the training input size -> (N, K)."""
    size, channels = tuple(meta["input_size"]), meta["in_channels"]
    x = normalise(probe_images((PROBE_BATCH, channels, *size)), meta["mean"], meta["std"])
    sigmoid = meta.get("task") == MULTI_LABEL
    axes = "N, C, D, H, W" if len(size) == 3 else "N, C, H, W"
    shapes = {"image": f"({axes}), C = {channels}, {side_text(size)}, in [0, 1] then (x - mean) / std; any N",
              "logits": f"(N, {meta['num_classes']}): {'sigmoid' if sigmoid else 'softmax'} gives the probabilities"}
    return Form("classifier", "model", model, x, posteriors(model, x, sigmoid), {"image": {0: "N"}, "logits": {0: "N"}},
                shapes, sigmoid)


def patch_forms(model: nn.Module, meta: dict) -> tuple[list[Form], list[str]]:
    """A patch classifier: as it is (patches (N, C, P, P) -> (N, K), file stem model_patch) and its exact
    dense-scanning form (image (1, C, H, W) -> every pixel's logits (1, K, H, W), stem model), checked against
    infer.dense.dense_posteriors on a tile-sized image; a network that cannot be rewritten gets the first alone
    (and a note saying why)."""
    patch, channels, classes = meta["patch"], meta["in_channels"], meta["num_classes"]
    mean, std = meta["mean"], meta["std"]
    patches = normalise(probe_images((PROBE_BATCH, channels, patch, patch)), mean, std)
    forms = [Form("patch", "model_patch", model, patches, posteriors(model, patches),
                  {"image": {0: "N"}, "logits": {0: "N"}},
                  {"image": f"(N, {channels}, {patch}, {patch}) patches, in [0, 1] then (x - mean) / std; any N",
                   "logits": f"(N, {classes}): the centre pixel's, softmax gives its posteriors"})]
    try:
        dense = dense_network(model, patch)
    except UserError as exc:
        return forms, [f"no dense-scanning form: {exc}"]
    side = max(meta.get("tile") or 0, patch)
    image = probe_images((channels, side, side))
    spatial = {2: "H", 3: "W"}
    forms.insert(0, Form("dense", "model", DenseScan(dense, patch), normalise(image[None], mean, std),
                         dense_posteriors(dense, image, patch, mean, std)[None].numpy(),
                         {"image": spatial, "logits": spatial},
                         {"image": f"(1, {channels}, H, W), in [0, 1] then (x - mean) / std; any H and W above "
                                   f"{patch // 2} (mirror-padded by {patch // 2} inside)",
                          "logits": f"(1, {classes}, H, W): softmax gives every pixel's posteriors, those of the "
                                    f"{patch}x{patch} patch centred on it"}))
    return forms, []


def dense_form(model: nn.Module, meta: dict, dims: int) -> Form:
    """A dense network: a 2D U-Net on a tile (1, C, T, T), or a 3D one on a training crop (1, C, D, H, W)."""
    channels, classes = meta["in_channels"], meta["num_classes"]
    size = tuple(meta["input_size"]) if dims == 3 else (meta["tile"], meta["tile"])
    x = normalise(probe_images((1, channels, *size)), meta["mean"], meta["std"])
    names = ("D", "H", "W")[-dims:]
    spatial = {2 + i: name for i, name in enumerate(names)}
    sides = "each side a multiple of 2 ** (levels - 1)" if dims == 3 else "H and W multiples of 16"
    shapes = {"image": f"(1, {channels}, {', '.join(names)}), in [0, 1] then (x - mean) / std; {sides} (trained on "
                       f"{side_text(size)})",
              "logits": f"(1, {classes}, {', '.join(names)}): softmax gives every {'voxel' if dims == 3 else 'pixel'}'s "
                        "posteriors"}
    return Form("dense", "model", model, x, posteriors(model, x), {"image": spatial, "logits": spatial}, shapes)


def export_forms(model: nn.Module, meta: dict) -> tuple[str, list[Form], list[str]]:
    """(kind, the forms to export, notes) of a run's network (eval mode) and its metadata."""
    kind = run_kind(meta)
    model.eval()
    if kind == "classifier":
        return kind, [classifier_form(model, meta)], []
    if kind == "patch":
        return (kind, *patch_forms(model, meta))
    return kind, [dense_form(model, meta, 3 if kind == "dense3d" else 2)], []
