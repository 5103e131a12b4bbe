"""A pretrained network as a fixed feature extractor: pooled activations of one layer, cached on disk.

    feats = extract_features(cfg, layer="layer4")    # cfg.arch = backbone, cfg.init_from = weights
    feats.splits["train"]                            # (features (N, D) float32, labels (N, L) int64)

The layer is a node name of torchvision's feature extraction (`torchvision.models.feature_extraction`:
module names such as `layer3` or `features.6`, and functional nodes such as `flatten`); the default
is the input of the head. Maps (N, C, H, W) are averaged over space to (N, C). The cache key is a hash
of everything the features depend on: architecture, weights (their tensors), layer, normalisation
and the images and labels themselves, so a cached file can never belong to other inputs.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from ..config import TrainConfig
from ..data import load_dataset
from ..data.transforms import channel_stats, normalise
from ..data.types import DatasetInfo, unit_float
from ..fileio import atomic_write
from ..models.registry import build_model
from ..models.feature_head import LayerFeatures, graph_nodes
from ..progress import make_console
from ..training.engine import resolve_device
from .weights import apply_weights, head_name, prepare_source, source_normalisation


@dataclass
class Features:
    """Pooled features per split: splits[name] = (features (N, D) float32, labels (N, L) int64)."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    info: DatasetInfo
    layer: str
    mean: list[float]
    std: list[float]
    path: Path
    from_cache: bool
    backbone: nn.Module  # the network the features come from (weights loaded, eval mode)


def default_cache() -> Path:
    return Path(os.environ.get("MEDCONV_CACHE", Path.home() / ".medconv" / "cache")) / "features"


def default_layer(model: nn.Module, arch: str) -> str:
    """The node feeding the head (e.g. `flatten` for ResNets)."""
    nodes = graph_nodes(model, arch)
    head = head_name(model)
    return nodes[nodes.index(head) - 1] if head in nodes and nodes.index(head) > 1 else nodes[-2]


def backbone_for(cfg: TrainConfig, info: DatasetInfo, source) -> nn.Module:
    """The registry network `cfg.arch` for this dataset's inputs, with the source's weights (head left new)."""
    model = build_model(cfg.arch, info.channels, info.num_outputs, info.size, **cfg.model_options)
    if source is not None:
        apply_weights(model, source, cfg.arch, reset_head=True)
    return model.eval()


def fingerprint(*parts) -> str:
    """sha256 over tensors/arrays (their bytes) and JSON-able values, in order."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, dict) and part and all(torch.is_tensor(v) for v in part.values()):
            for key in sorted(part):
                h.update(key.encode())
                h.update(part[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        elif torch.is_tensor(part):
            h.update(part.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


@torch.no_grad()
def compute(extractor: nn.Module, images: torch.Tensor, mean, std, device: str, batch_size: int = 256) -> np.ndarray:
    out = [extractor(normalise(unit_float(images[i:i + batch_size].to(device)), mean, std)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def extract_features(cfg: TrainConfig, layer: str | None = None, cache_dir: str | Path | None = None,
                     device: str = "auto", console: Console | None = None) -> Features:
    """Features of every split of cfg's dataset at `layer` of backbone cfg.arch with weights cfg.init_from,
    read from the cache when this exact extraction was done before."""
    device = str(resolve_device(device))  # auto: CUDA when there is one
    console = console or make_console()
    cfg.validate()
    source = prepare_source(cfg, "--weights")
    info, sets = load_dataset(cfg)
    backbone = backbone_for(cfg, info, source)
    layer = layer or default_layer(backbone, cfg.arch)
    mean, std = source_normalisation(source, info, *channel_stats(sets["train"].images))
    key = fingerprint(cfg.arch, cfg.model_options, layer, mean, std, source.state if source else "random init",
                      *[t for name in sorted(sets) for t in (name, sets[name].images, sets[name].labels)])
    path = Path(cache_dir or default_cache()) / f"{cfg.arch}-{layer}-{key[:20]}.npz"
    if path.exists():
        with np.load(path) as saved:
            splits = {name: (saved[f"{name}_features"], saved[f"{name}_labels"]) for name in sets}
        console.print(f"features from cache {path}")
        return Features(splits, info, layer, mean, std, path, True, backbone)
    extractor = LayerFeatures(backbone, layer, cfg.arch).to(device)
    splits = {}
    for name, s in sets.items():
        console.print(f"extracting {cfg.arch} '{layer}' features of {len(s)} {name} images ...")
        splits[name] = (compute(extractor, s.images, mean, std, device), s.labels.numpy())
    arrays = {f"{name}_{kind}": a for name, (f, y) in splits.items() for kind, a in (("features", f), ("labels", y))}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: np.savez(open(tmp, "wb"), **arrays))  # noqa: SIM115
    console.print(f"features cached in {path}")
    return Features(splits, info, layer, mean, std, path, False, backbone)
