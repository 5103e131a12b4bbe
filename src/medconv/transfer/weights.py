"""Pretrained weights for a backbone: torchvision's named weights, a local file, or a medconv run.

    source = resolve_weights("IMAGENET1K_V1", arch="resnet18")     # torchvision (local cache, else download)
    source = resolve_weights("resnet18.pth", arch="resnet18")      # a file: .safetensors or .pth (no unpickling)
    source = resolve_weights("runs/pneumonia", arch="resnet18")     # the best checkpoint of a medconv run
    report = apply_weights(model, source, arch="resnet18", reset_head=True)

Shapes are adapted in two places only: the first convolution when the channel counts differ
(3 -> 1: the RGB kernels summed, which is what the RGB network computes on a grey image copied into
its three channels when the channels are normalised alike; 1 -> 3: the grey kernel divided by 3 in
each channel; `--channels 3` instead copies grey images into RGB, exactly as the weights expect), and the head (the last
fully connected layer), which is new whenever its shape differs or `reset_head` is set.
"""
from __future__ import annotations

import contextlib
import io
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import UserError
from ..training.checkpoint import checkpoint_path, read_checkpoint

# registry names whose networks are exactly torchvision's (at native input sizes), for named weights
TORCHVISION_NAMES = {"resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50", "resnet101": "resnet101",
                     "alexnet": "alexnet", "googlenet-torchvision": "googlenet", "inception_v3": "inception_v3"}
TRANSFORM_INPUT = ("inception_v3", "googlenet")  # torchvision builds these with transform_input=True for weights
DOWNLOAD_TIMEOUT = 20  # seconds without an answer before a download counts as offline


@dataclass
class SourceWeights:
    """Weights and what is known of how they were trained.

    state: tensors keyed as the backbone's state_dict; mean/std: the input normalisation they expect
    (per channel, images in [0, 1]) or None; input_size: their native side in pixels, or None.
    """

    state: dict[str, torch.Tensor]
    description: str
    mean: list[float] | None = None
    std: list[float] | None = None
    input_size: int | None = None
    arch: str | None = None
    model_options: dict | None = None


def resolve_weights(spec: str, arch: str, option: str = "--weights") -> SourceWeights:
    """Weights named by `spec`: a run directory, a .safetensors/.pth file, or a torchvision weights name
    (`IMAGENET1K_V1`, `DEFAULT`, or `ResNet18_Weights.IMAGENET1K_V1`) for `arch`."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not checkpoint_path(path).exists():
            raise UserError(f"{option} {spec}: a folder but not a medconv run (no checkpoints/best.safetensors)")
        return run_weights(path)
    if path.suffix in (".safetensors", ".pth", ".pt"):
        return file_weights(path, option)
    return torchvision_weights(spec, arch, option)


def run_weights(run_dir: Path, which: str = "best") -> SourceWeights:
    """The best (or last) checkpoint of a medconv run, with the normalisation it was trained with."""

    path = checkpoint_path(run_dir, which)
    tensors, meta = read_checkpoint(path)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return SourceWeights(state, f"run {run_dir} ({meta['arch']}, trained on {meta.get('dataset', '?')})",
                         meta["mean"], meta["std"], meta["input_size"][0], meta["arch"], meta.get("model_options"))


def file_weights(path: Path, option: str = "--weights") -> SourceWeights:
    """A state dict from .safetensors (a medconv checkpoint's `model.` tensors too) or .pth/.pt
    (torch.load with weights_only=True: tensors only, never arbitrary objects)."""
    if not path.is_file():
        raise UserError(f"{option} {path}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (unreadable file: report it in one line)
        raise UserError(f"{option} {path}: not a readable weights file ({' '.join(str(exc).split())[:160]})") from None
    for key in ("state_dict", "model"):  # training scripts often wrap the state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{option} {path}: expected a mapping of parameter names to tensors")
    for prefix in ("model.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return SourceWeights(state, f"file {path}")


def torchvision_enum(spec: str, arch: str, option: str = "--weights"):
    """torchvision's weights enum member for `arch` named by `spec`."""
    import torchvision

    tv_name = TORCHVISION_NAMES.get(arch, arch)
    try:
        enum = torchvision.models.get_model_weights(tv_name)
    except (ValueError, KeyError):
        raise UserError(f"{option} {spec}: torchvision has no named weights for --arch {arch}; "
                        "give a .safetensors/.pth file or a run directory") from None
    name = spec.split(".", 1)[1] if spec.startswith(enum.__name__ + ".") else spec
    if name not in enum.__members__:
        raise UserError(f"{option} {spec}: not a file, a run directory, or one of {enum.__name__}'s "
                        f"{', '.join(enum.__members__)}")
    return enum[name]


def cached_path(url: str) -> Path:
    """Where torch.hub keeps (or would keep) the file at `url`: $TORCH_HOME/hub/checkpoints/NAME."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def torchvision_weights(spec: str, arch: str, option: str = "--weights") -> SourceWeights:
    """torchvision's named weights, from torch.hub's cache, downloaded there when the network allows."""
    weights = torchvision_enum(spec, arch, option)
    path = cached_path(weights.url)
    if not path.exists():
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
        try:  # torch's own messages are held back so that failing offline prints one line only
            with contextlib.redirect_stderr(io.StringIO()):
                torch.hub.load_state_dict_from_url(weights.url, model_dir=str(path.parent), progress=False,
                                                   check_hash=True)
        except Exception:  # noqa: BLE001  (no network, refused, timed out, bad hash: all mean "not available")
            path.unlink(missing_ok=True)
            raise UserError(f"{option} {spec}: {type(weights).__name__}.{weights.name} is not in the local cache "
                            f"({path}) and could not be downloaded (offline?); copy {os.path.basename(path)} there, "
                            f"or pass {option} FILE.pth|FILE.safetensors") from None
        finally:
            socket.setdefaulttimeout(previous)
    source = file_weights(path, option)
    transforms = weights.transforms()
    source.description = f"torchvision {type(weights).__name__}.{weights.name}"
    source.mean, source.std = list(transforms.mean), list(transforms.std)
    if TORCHVISION_NAMES.get(arch, arch) in TRANSFORM_INPUT:  # ported weights: torchvision sets transform_input
        source.mean, source.std = [0.5] * 3, [0.5] * 3     # ... which maps ImageNet-normalised input to this
    source.input_size = int(transforms.crop_size[0])
    source.arch = arch
    return source


def head_name(model: nn.Module) -> str:
    """Dotted name of the classifier head: the last nn.Linear registered in `model`."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise UserError(f"{type(model).__name__} has no fully connected layer to serve as the head")
    return names[-1]


def first_conv_name(model: nn.Module) -> str | None:
    return next((name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def adapt_channels(weight: torch.Tensor, channels: int) -> torch.Tensor | None:
    """A first-layer kernel (O, C, k, k) for `channels` inputs: 3 -> 1 summed, 1 -> 3 divided by 3."""
    if weight.shape[1] == 3 and channels == 1:
        return weight.sum(1, keepdim=True)
    if weight.shape[1] == 1 and channels == 3:
        return weight.expand(-1, 3, -1, -1) / 3
    return None


def apply_weights(model: nn.Module, source: SourceWeights, arch: str, reset_head: bool = False) -> list[str]:
    """Copy `source` into `model` (in place). Returns notes on what was adapted or left new.

    Every tensor except the head's must be present with the same shape (the first convolution may
    differ in input channels); otherwise one UserError line says the weights belong to another network.
    """
    target = model.state_dict()
    head = head_name(model) + "."
    conv = first_conv_name(model)
    notes, new_state, misfit = [], {}, []
    for key, value in target.items():
        if key.startswith(head) and (reset_head or key not in source.state or source.state[key].shape != value.shape):
            continue
        if key not in source.state:
            if not key.endswith("num_batches_tracked"):
                misfit.append(f"{key} missing")
            continue
        weights = source.state[key]
        if weights.shape != value.shape and conv and key == f"{conv}.weight":
            adapted = adapt_channels(weights, value.shape[1])
            if adapted is not None and adapted.shape == value.shape:
                notes.append(f"first convolution {conv}: {weights.shape[1]} -> {value.shape[1]} input channels")
                weights = adapted
        if weights.shape != value.shape:
            misfit.append(f"{key} {tuple(weights.shape)} vs {tuple(value.shape)}")
            continue
        new_state[key] = weights
    if misfit:
        raise UserError(f"weights ({source.description}) do not fit --arch {arch}: {len(misfit)} tensor(s) differ, "
                        f"e.g. {'; '.join(misfit[:3])}")
    unused = [k for k in source.state if k not in target and not k.startswith(head) and "aux" not in k.lower()]
    if unused:
        raise UserError(f"weights ({source.description}) do not fit --arch {arch}: {len(unused)} tensor(s) the "
                        f"network does not have, e.g. {', '.join(unused[:3])}")
    model.load_state_dict(new_state, strict=False)
    if len([k for k in target if k.startswith(head)]) and not all(k in new_state for k in target if k.startswith(head)):
        notes.append(f"head {head[:-1]}: new, sized to {target[head + 'weight'].shape[0]} outputs")
    return notes


def native_side(cfg) -> int | None:
    """Side of the dataset's images before any --resize (None: image files at the size they share, known once
    read)."""
    if cfg.images or cfg.manifest:
        return cfg.size
    return cfg.patch if cfg.dataset == "crchistophenotypes" else cfg.size or 28


def prepare_source(cfg, option: str = "--init-from") -> SourceWeights | None:
    """The weights cfg.init_from names (None without). Sets cfg.resize to the size they were trained at
    when the images differ and no --resize was given (saved with the run, so prediction repeats it), and
    takes a source run's architecture options when it has the same architecture and none were given."""
    if not cfg.init_from:
        return None
    source = resolve_weights(cfg.init_from, cfg.arch, option)
    if source.model_options and source.arch == cfg.arch and not cfg.model_options:
        cfg.model_options = dict(source.model_options)
    if cfg.resize is None and source.input_size and source.input_size != native_side(cfg):
        cfg.resize = source.input_size
    return source


def source_normalisation(source: SourceWeights | None, info, mean: list[float], std: list[float]):
    """The input normalisation to use with `source`: its own when it brings one (averaged over RGB for a
    grey input), else the dataset's (mean, std)."""
    if source is None or not source.mean:
        return mean, std
    if len(source.mean) == info.channels:
        return list(source.mean), list(source.std)
    if info.channels == 1:
        return [sum(source.mean) / len(source.mean)], [sum(source.std) / len(source.std)]
    return mean, std
