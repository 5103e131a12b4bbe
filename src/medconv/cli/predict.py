"""medconv predict: class probabilities of image files, from a trained classifier."""
from __future__ import annotations

import argparse

from .options import ALLOW_UNFINISHED, CHECKPOINT, DEVICE, LEVEL, inputs, out_file, print_csv, run_dir, tta, verb_parser

EXAMPLES = "example: medconv predict runs/breast scans/*.png --out preds.csv"


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "predict", "class probabilities for image files or folders", EXAMPLES,
                    [run_dir("medconv train"), inputs("image files (PNG, JPEG, TIFF, DICOM) or folders"),
                     CHECKPOINT, tta(None, "default: as trained"), DEVICE, LEVEL, ALLOW_UNFINISHED])
    p.add_argument("--out", default=None, metavar="CSV", type=out_file("predictions.csv"),
                   help="CSV file to write, a row per image (default: print)")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> None:
    from ..classify.predict import predict_files  # torch: imported here to keep medconv --help fast
    rows = predict_files(args.run_dir, args.inputs, args.out, args.checkpoint, args.tta, args.device, level=args.level,
                         allow_unfinished=args.allow_unfinished)
    if args.out is None:
        print_csv(rows)
    else:
        print(f"{len(rows)} predictions -> {args.out}")
