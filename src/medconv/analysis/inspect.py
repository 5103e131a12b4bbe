"""`medconv inspect`: the network a user names (an architecture or a trained run), ready to analyse."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import UserError

NATIVE_INPUT = {"inception_v3": (3, 299, 299), "lenet5": (1, 32, 32)}


def parse_shape(text: str, dims: int | tuple[int, ...] = (3, 4), option: str = "--input") -> tuple[int, ...]:
    """'3x224x224' -> (3, 224, 224), '1x28x28x28' -> a volume's (C, D, H, W); '200x200' with dims=2."""
    dims = (dims,) if isinstance(dims, int) else dims
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in dims or min(shape, default=0) < 1:
        example = " or ".join({2: "200x200", 3: "3x224x224", 4: "1x28x28x28"}[d] for d in dims)
        raise UserError(f"{option} {text!r}: expected {' or '.join(map(str, dims))} positive sizes joined by x, "
                        f"e.g. {example}")
    return shape


def model_to_inspect(arch: str | None = None, run_dir: str | Path | None = None, input_shape: str | None = None,
                     num_classes: int = 1000, options: dict | None = None) -> tuple[nn.Module, tuple[int, ...]]:
    """(eval-mode model, input shape (C, H, W)): a registry architecture, or a run's trained network."""
    from ..models.registry import REGISTRY, build_model
    from ..training.checkpoint import load_model

    if run_dir is not None:
        model, meta = load_model(run_dir)
        shape = parse_shape(input_shape) if input_shape else (meta["in_channels"], *meta["input_size"])
        return model, shape
    if arch is None:
        raise UserError("inspect: name an architecture (see --list) or give --run RUN_DIR")
    volume = (1, 64, 64, 64) if getattr(REGISTRY.get(arch), "dims", 2) == 3 else (3, 224, 224)
    shape = parse_shape(input_shape) if input_shape else NATIVE_INPUT.get(arch, volume)
    model = build_model(arch, shape[0], num_classes, shape[1:], **(options or {}))
    return model.eval(), shape


def list_architectures() -> list[dict]:
    from ..models.registry import REGISTRY, available

    return [{"name": name, "summary": REGISTRY[name].summary} for name in available()]


def read_input_image(path: str | Path, shape: tuple[int, ...], run_dir: str | Path | None):
    """An image file as the network's input (C, H, W): resized, and normalised as the run was."""
    import torch

    from ..data.images import prepare_image, read_image
    from ..data.transforms import normalise

    x = prepare_image(read_image(path), shape[0], shape[1:])
    if run_dir is not None:
        from ..training.checkpoint import checkpoint_path, read_checkpoint
        _, meta = read_checkpoint(checkpoint_path(run_dir))
        x = normalise(x[None], meta["mean"], meta["std"])[0]
    return x.to(torch.float32)


def inspect(arch: str | None = None, run_dir: str | None = None, input_shape: str | None = None,
            num_classes: int = 1000, options: dict | None = None, depth: int | None = None,
            compare_paper: bool = False, plot_rf: str | None = None, layer: str | None = None,
            filters: str | None = None, image: str | None = None) -> dict:
    """Layer table (and optionally GoogLeNet's Table 1 comparison and pictures) as a dict:
    {"table": LayerTable, "paper": [...], "pictures": {...}}."""
    from .layers import layer_table
    from .paper import compare_table1
    from .pictures import plot_filters, plot_receptive_field
    from .receptive_field import last_spatial_layer

    model, shape = model_to_inspect(arch, run_dir, input_shape, num_classes, options)
    result: dict = {"table": layer_table(model, shape, depth=depth), "pictures": {}}
    if compare_paper:
        if arch != "googlenet" or shape != (3, 224, 224) or depth != 1:
            raise UserError("--compare-paper compares `googlenet --input 3x224x224 --depth 1` with Table 1 of "
                            "Szegedy et al. 2014")
        result["paper"] = compare_table1(result["table"])
    pixels = read_input_image(image, shape, run_dir) if image else None
    if plot_rf:
        layer = layer or last_spatial_layer(model, shape)
        result["pictures"]["receptive_field"] = str(plot_receptive_field(model, shape, layer, pixels, plot_rf))
        result["layer"] = layer
    if filters:
        if pixels is None:
            raise UserError("--filters needs --image IMG: the feature maps are those of that image")
        result["pictures"]["filters"] = str(plot_filters(model, pixels, filters))
    return result
