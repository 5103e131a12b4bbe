"""medconv segment train|predict|evaluate: patch classifiers (sliding window or exact dense scanning) and dense
networks."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import load_config
from ..errors import UserError
from ..segment.config import SegmentConfig
from .options import (ALLOW_UNFINISHED, DEVICE, JSON, NO_TEST, RESUMABLE, SHARDED, check_not_inside, config_options,
                      inputs, number, out_folder, parent, print_csv, run_dir, slide_options, split, training_run, tta,
                      verb_actions, verb_parser)

EXAMPLES = """examples:
  medconv segment train --dataset isbi2012 --mode patch --patch 65 --epochs 20 --out runs/em
  medconv segment train --dataset isbi2012 --mode dense --arch unet --out runs/em-unet
  medconv segment predict runs/em slice.png --method dense --out maps/
  medconv segment predict runs/em slices/ --nproc 2 --out maps/   # 2 processes, each maps its share
  medconv segment evaluate runs/em --split test --method sliding
  medconv segment evaluate runs/em-unet --split test --tta d4 --thin"""


def add_parser(subparsers) -> None:
    actions = verb_actions(subparsers, "segment", "segmentation: patch classifiers (sliding window or exact dense "
                           "scanning) and dense networks", EXAMPLES)
    q = verb_parser(actions, "train", "train a patch classifier (--mode patch) or a U-Net (--mode dense)", EXAMPLES,
                    [RESUMABLE, NO_TEST, config_options(SegmentConfig)])
    q.set_defaults(func=run_train)
    scan = parent()
    scan.add_argument("--method", default="auto", choices=["auto", "dense", "sliding"],
                      help="patch classifiers: exact dense scanning, or one pass per pixel (default: auto = dense "
                           "when the network allows)")
    scan.add_argument("--thin", action="store_true", help="membranes (ISBI): grow the cells below a seed threshold "
                      "over the map until they meet, leaving one-pixel membranes (seeds chosen on the validation "
                      "images by Rand error; evaluate adds the thinned Rand error)")
    run, shared = run_dir("medconv segment train"), [scan, tta("none", "default: none"), DEVICE, ALLOW_UNFINISHED]
    q = verb_parser(actions, "predict", "posterior maps, masks and overlays of image files", EXAMPLES,
                    [run, inputs(), *shared, slide_options(
                        "map this level tile by tile over the tissue into NAME_prob.tif and NAME_mask.tif, tiled "
                        "pyramidal TIFFs (two-class runs)",
                        "the network's receptive radius, so tiles give the whole-image map", batch=""), SHARDED])
    q.add_argument("--out", required=True, metavar="DIR", type=out_folder,
                   help="folder for NAME_prob.png, NAME_mask.png, NAME_overlay.png")
    q.add_argument("--threshold", type=number(0, 1), default=None, metavar="P",
                   help="foreground probability cut, in [0, 1] (default: the one chosen on the run's validation "
                        "images, else 0.5)")
    q.add_argument("--closing", type=number(0, whole=True), default=0, metavar="PX",
                   help="morphological closing of the mask: radius in px (default: 0, none)")
    q.add_argument("--format", default="png", choices=["png", "tif"],
                   help="probability maps: 16-bit PNG or float32 TIFF (default: png)")
    q.add_argument("--sigma", type=number(0), default=0.0, metavar="PX",
                   help="Gaussian smoothing of the map first: sigma in px (default: 0, none)")
    q.add_argument("--opening", type=number(0, whole=True), default=0, metavar="PX",
                   help="morphological opening of the mask: radius in px (default: 0, none)")
    q.add_argument("--fill-holes", action="store_true", help="fill the holes in the objects of the mask")
    q.add_argument("--min-size", type=number(0, whole=True), default=0, metavar="PX",
                   help="drop objects of fewer pixels than this (default: 0, keep all)")
    q.add_argument("--instances", action="store_true", help="separate touching objects (watershed)")
    q.set_defaults(func=run_predict)
    q = verb_parser(actions, "evaluate", "pixel error, Rand error, Dice/IoU of a run on a split", EXAMPLES,
                    [run, *shared, split("test"), JSON])
    q.set_defaults(func=run_evaluate)


def volume_run(run: str) -> bool:
    """Whether a run directory holds a segmentation run on volumes (by its RUN/config.yaml); anything else goes
    the 2D way, whose loading says what is wrong with it."""
    try:
        return load_config(Path(run) / "config.yaml", SegmentConfig).volumetric()
    except UserError:
        return False


def run_train(args: argparse.Namespace) -> None:
    from ..segment.train import train_segmentation  # torch: imported here to keep medconv --help fast
    from ..segment.volume_train import train_volume_segmentation
    cfg, resume = training_run(args, SegmentConfig)
    volumes = volume_run(args.out) if resume else cfg.validate().volumetric()
    trainer = train_volume_segmentation if volumes else train_segmentation
    trainer(cfg, args.out, score_test=args.score_test, **resume)


def run_predict(args: argparse.Namespace) -> None:
    check_not_inside(args.out, args.inputs)
    from ..segment.evaluate import predict_segmentation  # torch: imported here to keep medconv --help fast
    from ..segment.volume_maps import predict_volumes
    from ..infer.shards import each_input, local_device
    from ..progress import other_rank
    if args.slide_level is not None:
        from ..segment.slide_predict import predict_slide

        def slide_map(path: str) -> str:
            done = predict_slide(args.run_dir, path, args.out, args.slide_level, args.slide_tile, args.halo, args.tta,
                                 local_device(args.device), floats=args.format == "tif",
                                 allow_unfinished=args.allow_unfinished, threshold=args.threshold,
                                 tile_batch=args.tile_batch)
            return (f"{path}: {done['tissue_tiles']} of {done['tiles']} tiles hold tissue, "
                    f"{done['tiles_per_second']:.1f} tiles/s (up to {done['tile_batch']} at a time) -> "
                    f"{done['file']}, {done['mask']}")
        each_input(args.inputs, slide_map)  # under torchrun: each rank maps its share of the slides
        return
    if volume_run(args.run_dir):
        rows = predict_volumes(args.run_dir, args.inputs, args.out, args.tta, args.device,
                               allow_unfinished=args.allow_unfinished)  # under torchrun: each rank its share
        if other_rank():  # rank 0 prints for all
            return
        print(f"{len(args.inputs)} label maps (NAME_labels.nii.gz, NAME_slices.png) -> {args.out}")
        if rows:
            print_csv(rows)
        return
    predict_segmentation(args.run_dir, args.inputs, args.out, args.method, args.threshold, args.sigma, args.opening,
                         args.fill_holes, args.min_size, args.instances, args.tta, args.device, closing=args.closing,
                         fmt=args.format, thin=args.thin, allow_unfinished=args.allow_unfinished)


def run_evaluate(args: argparse.Namespace) -> None:
    from ..segment.evaluate import evaluate_segmentation, metrics_name, summary_figures  # torch: not in --help
    from ..segment.volume_maps import evaluate_volumes, volume_summary
    if volume_run(args.run_dir):
        m = evaluate_volumes(args.run_dir, args.split, device=args.device, tta=args.tta,
                             allow_unfinished=args.allow_unfinished)
        print(json.dumps(m, indent=2) if args.json else
              f"{args.split} ({m['n']} volumes): {volume_summary(m)}  -> "
              f"{args.run_dir}/{metrics_name(args.split, args.tta)}")
        return
    m = evaluate_segmentation(args.run_dir, args.split, args.method, device=args.device, tta=args.tta, thin=args.thin,
                              allow_unfinished=args.allow_unfinished)
    print(json.dumps(m, indent=2) if args.json else
          f"{args.split} ({m['n']} images, {m['method']}): {summary_figures(m)}"
          + (f"  thinned Rand error {m['thinned']['rand_error']:.4f}" if "thinned" in m else "")
          + f"  -> {args.run_dir}/{metrics_name(args.split, args.tta)}")
