"""medconv export: any trained network as ONNX or TorchScript, checked against torch; predict and detect predict
then run an ONNX export with onnxruntime, without torch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import CHECKPOINT, run_dir, verb_parser

EXAMPLES = """examples:
  medconv export runs/breast                       # RUN/model.onnx + RUN/model.json
  medconv predict runs/breast scans/*.png          # onnxruntime, no torch
  medconv export runs/isbi-patch --format torchscript   # RUN/model.pt (dense form), RUN/model_patch.pt
  medconv export runs/nuclei-unet
  medconv detect predict runs/nuclei-unet slide.png --out detections.csv   # onnxruntime, no torch"""


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "export", "a trained network as ONNX (RUN/model.onnx) or TorchScript (RUN/model.pt), "
                    "checked against torch; a patch classifier also in its dense-scanning form. predict and detect "
                    "predict then run an ONNX export with onnxruntime, without torch", EXAMPLES,
                    [run_dir("medconv train, segment train or detect train"), CHECKPOINT])
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"], dest="fmt",
                   help="onnx: RUN/model.onnx and its description RUN/model.json, run by onnxruntime; torchscript: "
                        "RUN/model.pt and RUN/model.pt.json, loaded by torch.jit.load (default: onnx)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> None:
    from ..export.run import export_run  # torch: imported here to keep medconv --help fast
    done = export_run(args.run_dir, args.checkpoint, args.fmt)
    for note in done.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    for name, form in done["forms"].items():
        print(f"{Path(args.run_dir) / form['file']}: {name} (largest posterior difference from torch {form['max_difference']:.1e})")
