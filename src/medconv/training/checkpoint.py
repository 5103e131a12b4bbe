"""Checkpoints as safetensors + a JSON sidecar (never pickle), written atomically.

The metadata (architecture, classes, input shape, normalisation, versions, and for `last` the
optimizer's non-tensor state) is stored inside the safetensors header too, so the weights and
their description can never disagree; the sidecar `.json` is a readable copy.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ..errors import UserError
from ..fileio import atomic_write, write_json
from ..models.registry import build_model
from ..version import __version__

FORMAT = "medconv-checkpoint-1"


def library_versions() -> dict:
    return {"medconv": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version()}


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(path: Path, model: nn.Module, meta: dict, optimizer: torch.optim.Optimizer | None = None,
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write path (.safetensors) and its .json sidecar; `optimizer` makes it resumable; `extra`: more tensors
    under their own prefix (the weight average's `ema.` state)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tensors.update(extra or {})
    meta = {"format": FORMAT, **meta, "versions": library_versions()}
    if optimizer is not None:
        optim_tensors, meta["optimizer"] = _flatten_optimizer(optimizer)
        tensors.update(optim_tensors)
    header = {"medconv": json.dumps(meta, default=float)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    write_json(path.with_suffix(".json"), meta)


def read_checkpoint(path: Path, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a checkpoint file; without `tensors`, ({}, metadata): the header only."""
    if not path.exists():
        raise UserError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("medconv", "null"))
        weights = load_file(str(path)) if tensors else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint {path} is not a readable safetensors file ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} was not written by medconv (no '{FORMAT}' metadata)")
    return weights, meta


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    """Load the `model.` tensors, with one clear line when they belong to another architecture."""
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise UserError(f"checkpoint {path} does not fit --arch {arch}: {detail}") from None


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    saved = meta["optimizer"]
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in saved["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups):  # saved by a medconv with one group for all weights
        flat = [i for g in groups for i in g["params"]]
        sizes = [len(g["params"]) for g in optimizer.param_groups]
        if len(flat) != sum(sizes):
            raise UserError(f"the checkpoint's optimizer holds {len(flat)} tensors, the network {sum(sizes)}: "
                            "it cannot be resumed")
        base, start, regrouped = {k: v for k, v in groups[0].items() if k != "params"}, 0, []
        for group, n in zip(optimizer.param_groups, sizes):
            extra = {k: group[k] for k in ("lr_scale", "name") if k in group}
            regrouped.append({**base, **extra, "params": flat[start:start + n]})
            start += n
        groups = regrouped
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """RUN_DIR/checkpoints/{best,last}.safetensors, or a .safetensors path given directly."""
    p = Path(run_dir)
    if p.suffix == ".safetensors":
        return p
    if not p.is_dir():
        raise UserError(f"run directory {p} not found")
    return p / "checkpoints" / f"{which}.safetensors"


def load_model(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The trained network of a run (eval mode) and its metadata."""

    path = checkpoint_path(run_dir, which)
    tensors, meta = read_checkpoint(path)
    model = build_model(meta["arch"], meta["in_channels"], meta["num_classes"], tuple(meta["input_size"]),
                        **meta.get("model_options", {}))
    load_weights(model, tensors, path, meta["arch"])
    return model.to(device).eval(), meta
