"""medconv predict: class probabilities of image files, from a trained classifier (through its ONNX export,
without torch, when it has a current one and the files need no resampling)."""
from __future__ import annotations

import argparse

from .options import ALLOW_UNFINISHED, CHECKPOINT, LEVEL, device, inputs, out_file, print_csv, run_dir, tta, verb_parser

EXAMPLES = """examples:
  medconv predict runs/breast scans/*.png --out preds.csv
  medconv export runs/breast && medconv predict runs/breast scans/   # onnxruntime, no torch"""


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "predict", "class probabilities for image files or folders", EXAMPLES,
                    [run_dir("medconv train"), inputs("image files (PNG, JPEG, TIFF, DICOM) or folders"),
                     CHECKPOINT, tta(None, "default: as trained"), device(exported=True), LEVEL, ALLOW_UNFINISHED])
    p.add_argument("--out", default=None, metavar="CSV", type=out_file("predictions.csv"),
                   help="CSV file to write, a row per image (default: print)")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> None:
    from ..classify.onnx_predict import predict_exported  # numpy and onnxruntime: no torch
    options = dict(which=args.checkpoint, tta=args.tta, device=args.device, level=args.level,
                   allow_unfinished=args.allow_unfinished)
    rows = predict_exported(args.run_dir, args.inputs, args.out, **options)
    if rows is None:
        from ..classify.predict import predict_files  # torch: imported here to keep medconv --help fast
        rows = predict_files(args.run_dir, args.inputs, args.out, **options)
    if args.out is None:
        print_csv(rows)
    else:
        print(f"{len(rows)} predictions -> {args.out}")
