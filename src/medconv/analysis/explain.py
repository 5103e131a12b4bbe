"""Explanations of a classifier's decisions: where in an image (or a volume) its evidence for a class lies, by
Grad-CAM on a convolutional layer or by occlusion sensitivity (MONAI's `monai.visualize`); maps in [0, 1] at the
input's size, for any 2D or 3D classifier, and for image files read as `predict` reads them."""
from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import torch
from monai.visualize import GradCAM, OcclusionSensitivity
from rich.console import Console
from torch import nn

from ..classify.predict import class_number, data_size, input_files, inputs_like_training
from ..config import TrainConfig
from ..data.datasets import fit_mode
from ..data.summary import ReadLog
from ..data.transforms import normalise
from ..data.types import unit_float
from ..data.volume_pairs import volume_name
from ..errors import UserError
from ..fileio import write_csv
from ..metrics import scores_from_logits
from ..progress import make_console
from ..report.heatmaps import heat_over_image, heat_over_volume, peak_of
from ..training.checkpoint import load_model
from ..training.engine import resolve_device
from ..training.runstate import check_finished

METHODS = ("gradcam", "occlusion")
CONVS = (nn.Conv2d, nn.Conv3d)
BATCH = 16  # images explained at a time


def forward_order(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, tuple | None]]:
    """(dotted name, module, output shape or None) of every submodule in the order the forward pass of x[:1]
    finishes them (eval mode, no gradients)."""
    seen: list[tuple[str, nn.Module, tuple | None]] = []

    def hook(name):
        return lambda m, _inputs, out: seen.append((name, m, tuple(out.shape) if torch.is_tensor(out) else None))

    hooks = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return seen


def target_layer(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> str:
    """The dotted name of the layer Grad-CAM reads: `layer` when its output is a feature map (N, C, *spatial) of
    x's dimensions, by default the last convolution the forward pass of x (N, C, *spatial) runs whose output
    has more than one position (LeNet-5's C5 has one)."""
    order = forward_order(model, x)
    convs = [name for name, m, _ in order if isinstance(m, CONVS)]
    if layer is None:
        if not convs:
            raise UserError("this network has no convolutional layer for Grad-CAM to read: use --method occlusion")
        spread = [name for name, m, shape in order if isinstance(m, CONVS) and shape and math.prod(shape[2:]) > 1]
        return (spread or convs)[-1]
    maps = {name for name, _, shape in order if shape is not None and len(shape) == x.ndim}
    if layer not in maps:
        why = "not a layer of the network" if layer not in dict(model.named_modules()) else \
            "its output is not a feature map"
        some = ", ".join(convs[-6:]) or ", ".join(sorted(maps)[-6:])
        raise UserError(f"--layer {layer}: {why}; convolutional layers, in forward order, end with {some} "
                        f"(`medconv inspect --run RUN` lists every layer)")
    return layer


def unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Each map of (N, *spatial) scaled to [0, 1] by its own minimum and maximum; a flat map becomes zeros."""
    flat = maps.reshape(len(maps), -1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    scaled = (flat - low) / (high - low).clamp_min(1e-12)
    return torch.where(high > low, scaled, torch.zeros_like(scaled)).reshape(maps.shape)


def gradcam(model: nn.Module, x: torch.Tensor, layer: str, classes: torch.Tensor) -> torch.Tensor:
    """Grad-CAM maps (N, *spatial) of x (N, C, *spatial) for classes (N,) on `layer`, upsampled to x's size,
    unscaled. MONAI leaves its hooks on the network it is given: it gets a copy, whose in-place activations (AlexNet's
    ReLUs) are made out-of-place, since a backward hook's output must not be modified in place."""
    net = copy.deepcopy(model).eval().requires_grad_(True)
    for module in net.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    cam = GradCAM(net, target_layers=layer, postprocessing=lambda m: m)
    out = torch.zeros(len(x), *x.shape[2:])
    with torch.enable_grad():
        for k in classes.unique().tolist():  # MONAI scores one class index for the whole batch
            rows = torch.nonzero(classes == k)[:, 0]
            for part in rows.split(BATCH):
                out[part] = cam(x[part.to(x.device)], class_idx=int(k))[:, 0].detach().float().cpu()
    return out


def occlusion(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, task: str) -> torch.Tensor:
    """Occlusion sensitivity maps (N, *spatial) of x (N, C, *spatial): how much the probability of each image's
    class (N,) drops when a box of about a quarter of each side around a pixel (voxel) is blurred away (MONAI's
    Gaussian occlusion); rises count as zero."""
    box = [max(1, s // 4) | 1 for s in x.shape[2:]]  # odd: centred on its pixel
    occluded = OcclusionSensitivity(model, mask_size=box, n_batch=32, verbose=False, overlap=0.5,
                                    activate=lambda logits: scores_from_logits(logits.float(), task))
    out = torch.zeros(len(x), *x.shape[2:])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using a non-tuple sequence", UserWarning)  # MONAI's indexing, on stderr
        whole = scores_from_logits(model(x).float(), task)
        for i, k in enumerate(classes.tolist()):
            probabilities, _ = occluded(x[i:i + 1])  # (1, K, *spatial): each class with the box around there
            out[i] = (whole[i, k] - torch.as_tensor(probabilities)[0, k]).clamp_min(0).cpu()
    return out


def explain(model: nn.Module, x: torch.Tensor, method: str = "gradcam", layer: str | None = None,
            class_index=None, task: str = "multi-class") -> torch.Tensor:
    """Maps (N, *spatial) in [0, 1] of where `model` finds the evidence for a class in x (N, C, H, W) or
    (N, C, D, H, W), normalised as the network takes it and on its device. `method`: gradcam (on `layer`, a
    dotted module name; default: the last convolution) or occlusion. `class_index`: an int, one per
    image (N,), or None: each image's predicted class. `task` (the run's): how logits become probabilities."""
    if method not in METHODS:
        raise UserError(f"--method {method}: expected one of {', '.join(METHODS)}")
    if method == "occlusion" and layer is not None:
        raise UserError(f"--layer {layer}: occlusion reads no layer (it occludes the input); --layer is for "
                        "gradcam")
    was_training = model.training
    model.eval()
    try:
        if class_index is None:
            with torch.no_grad():
                classes = model(x).argmax(1).cpu()
        else:
            classes = torch.as_tensor(class_index).reshape(-1).long().expand(len(x)).clone()
        if method == "occlusion":
            maps = occlusion(model, x, classes, task)
        else:
            maps = gradcam(model, x, target_layer(model, x, layer), classes)
    finally:
        model.train(was_training)
    return unit_range(maps)


def explain_files(run_dir: str | Path, inputs: list[str], out: str | Path = "explanations", method: str = "gradcam",
                  layer: str | None = None, target: str | int | None = None, which: str = "best",
                  device: str = "auto", allow_unfinished: bool = False, console: Console | None = None
                  ) -> list[dict]:
    """Explain a classification run's decision on each image file (folders: every image in them) or volume
    (NIfTI file, DICOM series folder): OUT/NAME_METHOD.png (the input with its map over it; orthogonal slices
    through the map's peak for a volume) and OUT/METHOD.csv, a row per input {path, method, class,
    probability, peak_*} (the peak in the network's input pixels). `target`: the class explained, by index or
    name (default: each input's predicted class). What reading changed is said on `console` (default stderr)."""
    device = str(resolve_device(device))
    check_finished(run_dir, allow_unfinished, which)
    model, meta = load_model(run_dir, which, device)
    if meta.get("task") == "segmentation":
        raise UserError(f"{run_dir} is a segmentation or detection run; explain takes a classification run "
                        "(medconv train)")
    volumes = len(meta["input_size"]) == 3
    files = input_files(inputs, meta)
    classes, task, chosen = meta["classes"], meta["task"], class_number(target, meta["classes"])
    explained, found = [], ReadLog()
    for start in range(0, len(files), BATCH):
        batch, log = inputs_like_training(files[start:start + BATCH], meta)
        found.merge(log)
        x = normalise(unit_float(batch), meta["mean"], meta["std"]).to(device)
        with torch.no_grad():
            scores = scores_from_logits(model(x).float(), task).cpu()
        picked = scores.argmax(1) if chosen is None else torch.full((len(x),), chosen)
        maps = explain(model, x, method, layer, picked, task).numpy()
        explained += list(zip(files[start:start + BATCH], batch, maps, scores[torch.arange(len(x)), picked].tolist(),
                              picked.tolist()))
    if not volumes:
        mode = fit_mode(TrainConfig.from_dict(meta["config"]).resize_mode, "size")
        for line in found.changes(data_size(meta), mode):
            (console or make_console()).print(f"note: {line}", highlight=False, soft_wrap=True)
    rows = []  # written once every input is explained: a broken input leaves nothing behind
    for path, image, heat, probability, k in explained:
        name = volume_name(path) if volumes else path.stem
        title = f"{path.name}: {method} for {classes[k]} (p = {probability:.3f})"
        picture = Path(out) / f"{name}_{method}.png"
        if volumes:
            heat_over_volume(unit_float(image)[0].numpy(), heat, picture, title)
        else:
            heat_over_image(unit_float(image).numpy(), heat, picture, title)
        peak = dict(zip(("peak_d", "peak_h", "peak_w")[-heat.ndim:], peak_of(heat)))
        rows.append({"path": str(path), "method": method, "class": classes[k], "probability": round(probability, 6),
                     **peak, "picture": str(picture)})
    write_csv(Path(out) / f"{method}.csv", rows)
    return rows
