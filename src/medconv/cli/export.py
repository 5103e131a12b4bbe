"""medconv export: a dense network as ONNX, so that detect predict runs it with onnxruntime, without torch."""
from __future__ import annotations

import argparse

from .options import CHECKPOINT, run_dir, verb_parser

EXAMPLES = """examples:
  medconv export runs/nuclei-unet
  medconv detect predict runs/nuclei-unet slide.png --out detections.csv   # onnxruntime, no torch"""


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "export", "a dense network (segment/detect --mode dense) as ONNX, RUN/model.onnx: "
                    "detect predict then runs it with onnxruntime, without torch", EXAMPLES,
                    [run_dir("medconv segment train or detect train --mode dense"), CHECKPOINT])
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> None:
    from ..export import export_onnx  # numpy (and torch when it runs): imported here to keep medconv --help fast
    done = export_onnx(args.run_dir, args.checkpoint)
    print(f"{done['onnx']} (largest posterior difference from torch {done['max_difference']:.1e})")
