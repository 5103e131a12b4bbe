"""`medconv export RUN`: a dense network (segment/detect --mode dense) as ONNX, RUN/model.onnx, with its
sidecar RUN/model.json; `detect predict` then runs it through onnxruntime, without importing torch."""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np

from .errors import UserError
from .fileio import atomic_write, write_json
from .infer.onnx_maps import ONNX_NAME, SIDECAR_NAME, OnnxMaps, checkpoint_stamp

MAX_DIFFERENCE = 1e-4  # largest posterior difference from torch's that an export may show on its check image


def export_onnx(run_dir: str | Path, which: str = "best") -> dict:
    """Write RUN/model.onnx (input "image" (1, C, H, W) normalised, H and W any multiples of 16; output
    "logits" (1, K, H, W)) and RUN/model.json; check the export against torch on a random image the size
    of a training tile. Returns {"onnx", "max_difference"}."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError("medconv export needs onnx and onnxruntime: pip install 'medconv[onnx]'") from None
    import torch

    from .training.checkpoint import checkpoint_path, load_model

    run_dir = Path(run_dir)
    model, meta = load_model(run_dir, which)
    if meta.get("mode") != "dense":
        raise UserError(f"{run_dir}: medconv export writes dense networks (segment or detect train --mode dense); "
                        f"this run's network is {meta.get('arch')} in {meta.get('mode', 'classification')} mode")
    model.eval()
    tile = meta["tile"]
    probe = torch.rand(meta["in_channels"], tile, tile, generator=torch.Generator().manual_seed(0))  # in [0, 1]
    options = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    axes = {"image": {2: "height", 3: "width"}, "logits": {2: "height", 3: "width"}}
    with warnings.catch_warnings():  # the tracer warns about the network's own check of the input's size
        warnings.simplefilter("ignore")
        atomic_write(run_dir / ONNX_NAME, lambda tmp: torch.onnx.export(
            model, (probe[None],), tmp, input_names=["image"], output_names=["logits"], dynamic_axes=axes,
            opset_version=17, **options))
    checkpoint = checkpoint_path(run_dir, which)
    write_json(run_dir / SIDECAR_NAME, {key: meta[key] for key in ("arch", "mode", "tile", "in_channels", "classes",
                                                                    "mean", "std")}
               | {"checkpoint": str(checkpoint.relative_to(run_dir)), "stamp": checkpoint_stamp(checkpoint)})
    from .segment.maps import MapMaker
    expected = MapMaker(model, meta)(probe).numpy()
    difference = float(np.abs(OnnxMaps(run_dir / ONNX_NAME)(probe.numpy()) - expected).max())
    if difference > MAX_DIFFERENCE:
        (run_dir / ONNX_NAME).unlink()
        raise UserError(f"the ONNX export differs from the network by {difference:.2g} (more than {MAX_DIFFERENCE}); "
                        "not kept")
    return {"onnx": str(run_dir / ONNX_NAME), "max_difference": difference}
