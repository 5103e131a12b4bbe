"""medconv predict: class probabilities of image files, from a trained classifier (through its ONNX export,
without torch, when it has a current one and the files need no resampling); with --slide-level, class heat maps of
whole slides (torch only)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from .options import (ALLOW_UNFINISHED, CHECKPOINT, LEVEL, SHARDED, check_target, device, inputs, number, print_csv,
                      run_dir, slide_options, tta, verb_parser)

EXAMPLES = """examples:
  medconv predict runs/breast scans/*.png --out preds.csv
  medconv predict runs/breast scans/ --nproc 4 --out preds.csv   # 4 processes, rows in input order
  medconv export runs/breast && medconv predict runs/breast scans/   # onnxruntime, no torch
  medconv predict runs/nuclei slide.svs --slide-level 1 --stride 27 --class epithelial --out heatmaps"""


def csv_or_folder(text: str) -> str:
    """An argparse type: --out, a CSV file to write, or with --slide-level a folder (check_target either way;
    run_predict refuses the kind that does not fit the mode)."""
    check_target(text, "folder" if Path(text).expanduser().is_dir() else "file", "predictions.csv")
    return text


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "predict", "class probabilities for image files or folders", EXAMPLES,
                    [run_dir("medconv train"), inputs("image files (PNG, JPEG, TIFF, DICOM) or folders"),
                     CHECKPOINT, tta(None, "default: as trained"), device(exported=True), LEVEL, ALLOW_UNFINISHED,
                     slide_options("classify the window of the run's input size around every --stride-th pixel of "
                                   "this level, over the tissue only, into a class heat map (NAME_heatmap.tif, "
                                   "NAME_heatmap.png in the --out folder)", None,
                                   "rounded to a multiple of --stride, at least the window"), SHARDED])
    p.add_argument("--stride", type=number(1, whole=True), default=None, metavar="PX",
                   help="with --slide-level: pixels of the level between the centres of the windows classified, the "
                        "heat map's cell size (default: the window side, windows side by side)")
    p.add_argument("--class", dest="target", default=None, metavar="K|NAME",
                   help="with --slide-level: the class whose map NAME_heatmap.png draws, by index or name "
                        "(default: the last class)")
    p.add_argument("--out", default=None, metavar="CSV|DIR", type=csv_or_folder,
                   help="CSV file to write, a row per image (default: print); with --slide-level the folder for "
                        "NAME_heatmap.tif (float32: the class probabilities, then a tissue channel, 1 where "
                        "classified and 0 on glass, whose probabilities are 0) and NAME_heatmap.png")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> None:
    if args.slide_level is not None:
        run_slides(args)
        return
    if args.stride is not None or args.target is not None:
        raise UserError("--stride and --class go with --slide-level (whole slides)")
    if args.out is not None and Path(args.out).expanduser().is_dir():
        raise UserError(f"--out {args.out} is a folder; expected a CSV file name such as "
                        f"{Path(args.out) / 'predictions.csv'}")
    from ..classify.onnx_predict import predict_exported  # numpy and onnxruntime: no torch
    options = dict(which=args.checkpoint, tta=args.tta, device=args.device, level=args.level,
                   allow_unfinished=args.allow_unfinished)
    rows = predict_exported(args.run_dir, args.inputs, args.out, **options)
    if rows is None:
        from ..classify.predict import predict_files  # torch: imported here to keep medconv --help fast
        rows = predict_files(args.run_dir, args.inputs, args.out, **options)
    from ..progress import other_rank
    if other_rank():  # under torchrun every rank has all rows; rank 0 prints them
        return
    if args.out is None:
        print_csv(rows)
    else:
        print(f"{len(rows)} predictions -> {args.out}")


def run_slides(args: argparse.Namespace) -> None:
    if args.out is None or Path(args.out).expanduser().is_file():
        raise UserError(f"--slide-level: --out names the folder for the heat maps (NAME_heatmap.tif, .png), got "
                        f"{args.out or 'none'}")
    from ..classify.slide_heatmap import predict_slide_heatmap  # torch: imported here to keep medconv --help fast
    from ..infer.shards import each_input, local_device
    from ..training.engine import resolve_device
    device = local_device(str(resolve_device(args.device)))  # under torchrun: the rank's own GPU

    def heat_map(path: str) -> str:
        done = predict_slide_heatmap(args.run_dir, path, args.out, args.slide_level, args.slide_tile, args.stride,
                                     args.target, args.checkpoint, args.tta, device, args.level, args.allow_unfinished)
        return (f"{path}: {done['tissue_tiles']} of {done['tiles']} tiles hold tissue, {done['windows']} windows "
                f"({done['grid'][0]}x{done['grid'][1]} cells every {done['stride']} px) in {done['seconds']:.1f} s, "
                f"{done['tiles_per_second']:.1f} tiles/s -> {', '.join(done['files'])}")
    each_input(args.inputs, heat_map)  # under torchrun: each rank maps its share of the slides
