"""medconv detect train|tune|predict|evaluate: detection from probability maps (centre maps, smoothed local maxima,
matched F1)."""
from __future__ import annotations

import argparse
import json

from ..errors import UserError
from ..segment.config import SegmentConfig
from .fields import TTA
from .options import (ALLOW_UNFINISHED, DEVICE, JSON, NO_TEST, RESUMABLE, SHARDED, check_not_inside, config_options,
                      device, inputs, number, out_file, parent, print_csv, run_dir, slide_options, split, training_run,
                      tta, verb_actions, verb_parser)

EXAMPLES = """examples:
  medconv detect train --dataset crchistophenotypes --patch 27 --radius 4 --out runs/nuclei-det
  medconv detect train --dataset crchistophenotypes --mode dense --target proximity --select-metric detection_f1 \
--out runs/nuclei-unet
  medconv detect tune runs/nuclei-det --tolerance 8
  medconv detect predict runs/nuclei-det images/*.png --out detections.csv
  medconv detect predict runs/nuclei-det images/ --nproc 2 --out detections.csv   # 2 processes
  medconv export runs/nuclei-unet   # then detect predict runs without torch (onnxruntime)
  medconv detect evaluate runs/nuclei-det --split val --tolerance 6"""


def tolerance(default: float | None, mpp: bool) -> argparse.ArgumentParser:
    """--tolerance and --tolerance-um (and --mpp where no run configuration gives it)."""
    p, unset = parent(), "the run's" if default is None else default
    p.add_argument("--tolerance", type=number(0, low_open=True), default=default, metavar="PX",
                   help=f"match distance in px between a detection and a point (default: {unset})")
    p.add_argument("--tolerance-um", type=number(0, low_open=True), default=None, metavar="UM",
                   help="match distance in micrometres, in place of --tolerance (needs --mpp)")
    if mpp:
        p.add_argument("--mpp", type=number(0, low_open=True), default=None, metavar="UM",
                       help="micrometres per pixel of the images (default: the run's --mpp)")
    return p


def add_parser(subparsers) -> None:
    actions = verb_actions(subparsers, "detect", "detection from probability maps: centre maps, smoothed local "
                           "maxima, matched F1", EXAMPLES)
    run, classifier = run_dir("medconv detect train"), parent()
    classifier.add_argument("--classifier", default=None, metavar="RUN_DIR", help="type each detection with this "
                            "nucleus-type classifier run (medconv train --dataset crchistophenotypes): a class column "
                            "in predict, per-class scores in evaluate (needs classed points)")
    q = verb_parser(actions, "train", "train a centre-map network on discs around points, then choose the peak "
                    "parameters on validation", EXAMPLES,
                    [RESUMABLE, NO_TEST, tolerance(6.0, mpp=False), config_options(SegmentConfig)])
    q.set_defaults(func=run_train)
    q = verb_parser(actions, "tune", "choose a trained run's peak parameters and test-time augmentation again on its "
                    "validation images (e.g. for another --tolerance)", EXAMPLES,
                    [run, tolerance(None, True), tta("none,d4", "default: none,d4", several=True), DEVICE,
                     ALLOW_UNFINISHED])
    q.set_defaults(func=run_tune)
    q = verb_parser(actions, "predict", "detections of image files as CSV image,x,y,score (1-based x, y), and "
                    "each image with its detections circled (with --out)", EXAMPLES,
                    [run, inputs(), classifier, tta(None, "default: none, the fastest; a line names the one the run "
                                                          "chose on validation, if another"), device(exported=True),
                     ALLOW_UNFINISHED, slide_options(
                         "detect at this level tile by tile over the tissue; x, y in level-0 pixels",
                         "the network's receptive radius + the smoothing's reach + the peaks' minimum distance",
                         batch="; an ONNX export maps one at a time"),
                     SHARDED])
    q.add_argument("--out", default=None, metavar="CSV", type=out_file("detections.csv"),
                   help="CSV file to write, a row per detection, and beside it a folder of the images with their "
                        "detections circled (detections.csv: detections_overlays/) (default: print the CSV, no "
                        "overlays)")
    q.add_argument("--no-overlays", dest="overlays", action="store_false",
                   help="write the CSV file of --out only, not the pictures of the detections beside it")
    q.add_argument("--nms-radius", type=number(0), default=None, metavar="PX",
                   help="drop detections within PX pixels of a higher-scoring one (default: off)")
    q.set_defaults(func=run_predict)
    q = verb_parser(actions, "evaluate", "precision, recall, F1 (TP/FP/FN summed over images), PR curve, overlays",
                    EXAMPLES, [run, split("val"), tolerance(None, True), classifier, JSON, DEVICE, ALLOW_UNFINISHED])
    q.set_defaults(func=run_evaluate)


def pixels(tolerance: float | None, tolerance_um: float | None, mpp: float | None) -> float | None:
    """A match distance in pixels: --tolerance, or --tolerance-um divided by --mpp."""
    if tolerance_um is None:
        return tolerance
    if not mpp:
        raise UserError("--tolerance-um needs the pixel size: give --mpp (micrometres per pixel)")
    return tolerance_um / mpp


def check_classifier(classifier: str | None, run_dir: str) -> None:
    """--classifier: a classification run whose network takes the images the detector reads (as many channels),
    checked before any image is read or any file written."""
    if not classifier:
        return
    from pathlib import Path

    from ..training.checkpoint import checkpoint_path, read_checkpoint  # torch: typing the detections needs it
    if not Path(classifier).exists():
        raise UserError(f"--classifier {classifier}: not found (expected a run of medconv train --dataset "
                        "crchistophenotypes)")
    _, meta = read_checkpoint(checkpoint_path(classifier), tensors=False)
    if meta.get("task") == "segmentation":
        raise UserError(f"--classifier {classifier} is a segmentation or detection run; expected a nucleus-type "
                        "classifier (medconv train --dataset crchistophenotypes)")
    _, detector = read_checkpoint(checkpoint_path(run_dir), tensors=False)
    if meta.get("in_channels") != detector.get("in_channels"):
        raise UserError(f"--classifier {classifier} takes {meta.get('in_channels')}-channel images, but the detector "
                        f"{run_dir} reads {detector.get('in_channels')}-channel ones: use a classifier trained with "
                        f"--channels {detector.get('in_channels')}")


def run_train(args: argparse.Namespace) -> None:
    from ..detect import pipeline  # torch: imported here to keep medconv --help fast
    cfg, resume = training_run(args, SegmentConfig)
    pipeline.train_detector(cfg, args.out, pixels(args.tolerance, args.tolerance_um, cfg.mpp),
                            score_test=args.score_test, **resume)


def run_tune(args: argparse.Namespace) -> None:
    from ..detect import pipeline  # torch: imported here to keep medconv --help fast
    mpp = args.mpp or (pipeline.run_config(args.run_dir).mpp if args.tolerance_um else None)
    distance = pixels(args.tolerance, args.tolerance_um, mpp) or pipeline.read_params(args.run_dir)["tolerance"]
    augmentations = tuple(t.strip() for t in args.tta.split(","))
    if not augmentations or set(augmentations) - set(TTA):
        raise UserError(f"--tta {args.tta!r}: expected a comma-separated list of none, flip, d4")
    pipeline.tune_detector(args.run_dir, distance, tta=augmentations, device=args.device,
                           allow_unfinished=args.allow_unfinished)


def run_predict(args: argparse.Namespace) -> None:
    # not the pipeline (torch): an ONNX export predicts through onnxruntime, and this process must not import torch
    from ..detect.overlays import overlay_folder
    from ..detect.predict import predict_detections
    check_classifier(args.classifier, args.run_dir)
    if args.out is not None and args.overlays:  # read again as images by the next run on that folder
        check_not_inside(str(overlay_folder(args.out)), args.inputs, "--out's overlay folder",
                         "write the CSV outside it, or add --no-overlays")
    rows = predict_detections(args.run_dir, args.inputs, args.out, args.device, args.classifier, args.nms_radius,
                              args.tta, allow_unfinished=args.allow_unfinished, overlays=args.overlays,
                              slide_level=args.slide_level, slide_tile=args.slide_tile, halo=args.halo,
                              tile_batch=args.tile_batch)
    from ..progress import other_rank
    if args.out is None and rows and not other_rank():  # under torchrun every rank has all rows; rank 0 prints
        print_csv(rows)


def run_evaluate(args: argparse.Namespace) -> None:
    from ..detect import pipeline  # torch: imported here to keep medconv --help fast
    check_classifier(args.classifier, args.run_dir)
    mpp = args.mpp or (pipeline.run_config(args.run_dir).mpp if args.tolerance_um else None)
    m = pipeline.evaluate_detection(args.run_dir, args.split, pixels(args.tolerance, args.tolerance_um, mpp),
                                    args.device, classifier=args.classifier, allow_unfinished=args.allow_unfinished)
    print(json.dumps(m, indent=2, default=float) if args.json else
          f"{args.split} ({m['images']} images, within {m['tolerance']} px): precision {m['precision']:.4f}  "
          f"recall {m['recall']:.4f}  F1 {m['f1']:.4f}  (TP {m['tp']}, FP {m['fp']}, FN {m['fn']})"
          + (f"\ntyped: weighted F1 {m['typed']['weighted_f1']:.4f}, " + ", ".join(
              f"{c} {v['f1']:.4f}" for c, v in m["typed"]["per_class"].items()) if "typed" in m else ""))
