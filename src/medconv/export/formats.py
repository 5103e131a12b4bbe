"""Writing a network as ONNX or TorchScript, and running the written file on an input (the check against
torch that every export passes before it is kept)."""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..infer.onnx_maps import onnx_session, softmax
from .forms import Form

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
SIDECARS = {"onnx": "model.json", "torchscript": "model.pt.json"}  # one description per format
OPSET = 17


def write_network(form: Form, path: str | Path, fmt: str) -> None:
    """`form`'s network traced on its probe and saved as `fmt` (onnx: input "image" and output "logits", the
    form's axes dynamic; torchscript: torch.jit.trace)."""
    with warnings.catch_warnings():  # the tracer warns about networks' own checks of their input's size
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            options = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
            torch.onnx.export(form.module, (form.probe,), str(path), input_names=["image"], output_names=["logits"],
                              dynamic_axes=form.axes, opset_version=OPSET, **options)
        else:
            torch.jit.save(torch.jit.trace(form.module, (form.probe,), check_trace=False), str(path))


def run_network(path: str | Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """The logits a written network gives for input x (float32)."""
    if fmt == "onnx":
        return onnx_session(path).run(None, {"image": x})[0]
    with warnings.catch_warnings(), torch.no_grad():  # torch 2.9+ calls TorchScript deprecated (FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()(torch.from_numpy(x)).numpy()


def file_posteriors(path: str | Path, fmt: str, form: Form) -> np.ndarray:
    """The posteriors the written file gives for the form's probe (sigmoid or softmax over axis 1)."""
    logits = run_network(path, fmt, form.probe.numpy())
    return np.exp(-np.logaddexp(0, -logits)) if form.sigmoid else softmax(logits)


def written_and_checked(form: Form, path: str | Path, fmt: str, arch: str, limit: float) -> float:
    """Write `form` to `path` as `fmt` and return the largest difference of its posteriors on the probe from
    torch's; a network that cannot be written, or one whose posteriors differ by more than `limit`, is a
    UserError (the caller keeps no file)."""
    try:
        write_network(form, path, fmt)
    except Exception as exc:  # the exporters raise many kinds: any is "this network does not export"
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"{arch} ({form.name}) could not be exported as {fmt}: {detail}") from exc
    try:
        got = file_posteriors(path, fmt, form)
    except Exception as exc:  # onnxruntime or torch.jit refusing the file they were given
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"the {fmt} export of {arch} ({form.name}) does not run: {detail}") from exc
    if got.shape != form.expected.shape:
        raise UserError(f"the {fmt} export of {arch} ({form.name}) gives {got.shape} on the check input, torch "
                        f"{form.expected.shape}; not kept")
    difference = float(np.abs(got - form.expected).max())
    if not difference <= limit:  # NaN included
        raise UserError(f"the {fmt} export of {arch} ({form.name}) differs from the network by {difference:.2g} "
                        f"(more than {limit}); not kept")
    return difference
