"""`medconv export RUN [--format onnx|torchscript]`: a run's network written as ONNX or TorchScript for any kind
of run (export.forms), each file checked against torch on a seeded random probe of the training input size
before it is kept, with a sidecar describing the files, the run's normalisation and classes, and the checkpoint
it was made from (by size and modification time, so a stale export is noticed).

Files: RUN/model.onnx (RUN/model.pt for TorchScript) is the whole-input network: a classifier, a U-Net, or a
patch classifier's dense-scanning form; a patch classifier itself is RUN/model_patch.onnx (.pt). The sidecar is
RUN/model.json for ONNX (what `detect predict` and `predict` run through onnxruntime) and RUN/model.pt.json for
TorchScript."""
from __future__ import annotations

from pathlib import Path

from ..classify.predict import reading_description
from ..errors import UserError
from ..fileio import atomic_write, write_json
from ..infer.onnx_maps import checkpoint_stamp
from ..training.checkpoint import checkpoint_path, load_model
from .formats import SIDECARS, SUFFIXES, written_and_checked
from .forms import export_forms

MAX_DIFFERENCE = 1e-4  # the largest posterior difference from torch's an export may show on its probe
DESCRIBED = ("arch", "mode", "dims", "task", "in_channels", "num_classes", "input_size", "classes", "mean", "std",
             "patch", "tile")  # checkpoint metadata copied into the sidecar


def export_run(run_dir: str | Path, which: str = "best", fmt: str = "onnx") -> dict:
    """Write the run's network(s) as `fmt` (onnx or torchscript) with their sidecar. Returns the sidecar's
    content: {format, kind, forms: {name: {file, image, logits, max_difference}}, notes (a patch classifier
    without a dense form says why), ...}."""
    if fmt not in SUFFIXES:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(SUFFIXES)}")
    if fmt == "onnx":
        try:
            import onnxruntime  # noqa: F401  (the check runs the export with it: known missing before any work)
        except ImportError:
            raise UserError("medconv export needs onnx and onnxruntime: pip install 'medconv[onnx]'") from None
    run_dir = Path(run_dir)
    if run_dir.suffix == ".safetensors":
        raise UserError(f"{run_dir}: medconv export takes a run directory (made by train, segment train or detect "
                        "train), not a checkpoint file")
    checkpoint = checkpoint_path(run_dir, which)
    stamp = checkpoint_stamp(checkpoint) if checkpoint.exists() else None  # before reading: a newer file is stale
    model, meta = load_model(run_dir, which)
    kind, forms, notes = export_forms(model, meta)
    sidecar, described = run_dir / SIDECARS[fmt], {}
    paths = [run_dir / f"{form.stem}{SUFFIXES[fmt]}" for form in forms]
    try:
        for form, path in zip(forms, paths):
            found = []
            atomic_write(path, lambda tmp: found.append(written_and_checked(form, tmp, fmt, meta["arch"],
                                                                            MAX_DIFFERENCE)))
            described[form.name] = {"file": path.name, **form.shapes, "max_difference": found[0]}
    except UserError:  # keep none of this format's files: no half of a patch classifier's pair, no older export
        for path in [*paths, sidecar]:
            path.unlink(missing_ok=True)
        raise
    description = {"format": fmt, "kind": kind, "forms": described, **({"notes": notes} if notes else {}),
                   **{key: meta[key] for key in DESCRIBED if key in meta},
                   **({"reading": reading_description(meta)} if kind == "classifier" and len(meta["input_size"]) == 2
                      else {}),
                   "checkpoint": str(checkpoint.relative_to(run_dir)), "stamp": stamp}
    write_json(sidecar, description)
    return description
