"""The `medconv` command: argument parsing and dispatch only; each verb calls one library function."""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys

from .config import TrainConfig, load_config
from .errors import TrainingDiverged, UserError
from .segment.config import SegmentConfig

TRAIN_HELP = {
    "dataset": "MedMNIST 2D flag (breastmnist, pneumoniamnist, pathmnist, ...), 'synthetic' or 'crchistophenotypes' (nucleus patches)",
    "images": "folder of class sub-folders (optionally under train/ val/ test/)",
    "manifest": "CSV with columns path,label[,split][,group]",
    "data_root": "where MedMNIST files are (default: $MEDCONV_DATA, else ~/.medconv/data)",
    "download": "download the MedMNIST file when it is missing",
    "arch": "network (see medconv inspect --list), or any torchvision classification model name",
    "augment": "augmentation: a preset (none, light, strong, histology) or e.g. hflip=0.5,rotate=15,translate=0.1,contrast=0.1",
    "tta": "test-time augmentation at evaluation: none, flip, d4",
    "mixup": "mixup: train on blends of image pairs with weights ~ Beta(A, A), e.g. 0.2 (0: off)",
    "ema": "validate and keep an exponential moving average of the weights with this decay per step, e.g. 0.99 "
           "(0: off)",
    "deterministic": "deterministic algorithms (a resumed run ends with the same weights)",
    "amp": "mixed precision: training steps in bfloat16 autocast on CUDA (no effect on the CPU; segment and detect "
           "train choose theirs with --precision)",
    "train_fraction": "use this stratified fraction of the training labels",
    "select_metric": "validation metric that picks the best checkpoint",
    "pretrain": "layer-wise pretraining: rbm (contrastive divergence) or ae (autoencoders) for --arch mlp, "
                "cae (convolutional autoencoders) for a CNN's convolutions",
    "taxonomy": "YAML tree whose leaves are the dataset's classes (evaluate/predict --level NAME sum them up)",
    "train_level": "with --taxonomy: train on the classes of this level (each leaf label mapped to its class)",
    "resize": "upsample images to this side, e.g. 224 (MedMNIST '(224)') or 299 for inception_v3 "
              "(default with --init-from: the size the weights were trained at)",
    "init_from": "start from weights: a run directory, a .safetensors/.pth file, or torchvision's IMAGENET1K_V1",
    "finetune": "with --init-from: all (every weight trains), head (a frozen feature extractor), from:LAYER",
    "lr_decay": "discriminative learning rates: each earlier layer group trains at this x the next one's",
    "unfreeze_every": "gradual unfreezing: the head first, then one more layer group every N epochs (0: off)",
    "patch": "crchistophenotypes: side of the square RGB patch centred on each nucleus (odd, >= 5)",
}


SEGMENT_HELP = {
    "ema": TRAIN_HELP["ema"],
    "precision": "training arithmetic: fp32, or bf16 (bfloat16 autocast; ./run bench precision_speed measures the gain "
                 "on your machine, about 3x for U-Net steps on a CPU with AMX; validation maps stay fp32)",
    "dataset": "isbi2012 (ISBI 2012 EM membranes under the data root: train 00-19, val 20-24, test 25-29), "
               "cpm15 (CPM-15 nuclei, instance maps kept for AJI) or crchistophenotypes (nucleus centres as discs)",
    "radius": "point data: radius in pixels of the disc labelled around each centre",
    "target": "point data: disc (class 'centre' within --radius) or proximity (soft labels 1/(1+d^2/2) within "
              "--radius of the nearest centre, as SC-CNN)",
    "select_metric": "validation metric that picks the checkpoint: f1, pixel_error, or detection_f1 (point data)",
    "hard_negatives": "point data, patch mode: a first detector run; its false positives on the training images "
                      "become extra background patches (hard-negative mining)",
    "hard_fraction": "with --hard-negatives: the fraction of every batch drawn at those false positives",
    "points": "detection: CSV with columns image,x,y[,class] (1-based x = column, y = row) for the files in --images",
    "mpp": "micrometres per pixel, when known (lets --tolerance-um set the match distance)",
    "manifest": "CSV with columns image,mask[,roi][,split]",
    "images": "folder of images (matched to --masks by file stem)",
    "masks": "folder of label masks", "roi": "folder of region-of-interest masks (outside: not trained or scored)",
    "value_map": "mask value -> class, e.g. 255:0,0:1", "classes": "class names, e.g. background,nucleus",
    "mode": "patch (classify the patch around each pixel) or dense (a U-Net on tiles)",
    "arch": "patch-cnn (patch mode) or unet (dense mode)", "patch": "odd patch side in pixels, e.g. 33, 65, 95",
    "tile": "dense mode: training tile side (multiple of 16)",
    "balance": "patch mode: class (each class equally often) or none",
    "augment": "flips=1,rot90=1,elastic=PX,intensity=X,colour=X (colour: per channel, for stains; or none)",
    "samples_per_epoch": "patches (patch mode, default 20000) or tiles (dense mode, default 400) per epoch",
    "batch_size": "patches (default 128) or tiles (dense mode, default 8) per step",
}
TRANSFER_FIELDS = ("dataset", "images", "manifest", "data_root", "download", "size", "resize", "resize_mode", "patch",
                   "channels", "val_fraction", "test_fraction", "train_fraction", "model_options", "seed",
                   "select_metric")


def add_config_options(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None,
                       config_class=TrainConfig, help_texts: dict | None = None) -> None:
    """One option per field of `config_class` (or per field in `only`), default None so only given options
    override --config."""
    help_texts = TRAIN_HELP if help_texts is None else help_texts
    for f in dataclasses.fields(config_class):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{help_texts.get(f.name, f.name.replace('_', ' '))} (default: {default})"
        if f.name == "model_options":
            parser.add_argument("--model-option", action="append", metavar="KEY=VALUE", dest="model_options",
                                help="architecture option, e.g. widths=32,64,128 (repeatable)")
        elif isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif isinstance(default, list):
            parser.add_argument(flag, default=None, metavar="A,B", help=help_text,
                                type=lambda s: [float(v) for v in s.split(",")])
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
            parser.add_argument(flag, type=kind, default=None, help=help_text)


def parse_model_options(items: list[str] | None) -> dict:
    options = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--model-option {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def explicit_options(args: argparse.Namespace, config_class=TrainConfig) -> dict:
    """The settings given on the command line, by field name (model options merged)."""
    given = {}
    for f in dataclasses.fields(config_class):
        value = getattr(args, f.name, None)
        if f.name == "model_options":
            value = parse_model_options(value)
            for key in ("hidden", "activation"):  # shortcuts for the mlp's options
                if getattr(args, key, None) is not None:
                    value[key] = getattr(args, key)
            value = value or None
        if value is not None:
            given[f.name] = value
    return given


def config_from_args(args: argparse.Namespace, config_class=TrainConfig):
    """--config's settings (or the defaults), overridden by the options given on the command line."""
    cfg = load_config(args.config, config_class) if args.config else config_class()
    for name, value in explicit_options(args, config_class).items():
        setattr(cfg, name, {**cfg.model_options, **value} if name == "model_options" else value)
    return cfg


EXAMPLES = {
    "demo": "example: medconv demo            (BreastMNIST if at hand, else synthetic lesions)",
    "train": "example: medconv train --dataset breastmnist --arch resnet18 --epochs 30 --augment light --out runs/breast",
    "evaluate": "example: medconv evaluate runs/breast --split test --json",
    "predict": "example: medconv predict runs/breast scans/*.png --out preds.csv",
    "pretrain": "example: medconv pretrain --dataset breastmnist --hidden 500,500 --method rbm --epochs 10 --out runs/stack",
    "experiment": "example: medconv experiment vanishing-gradient --dataset breastmnist --out runs/vanishing",
    "transfer": "examples:\n  medconv transfer extract --backbone resnet18 --weights IMAGENET1K_V1 --dataset breastmnist\n"
                "  medconv transfer fit --backbone simple-cnn --weights runs/pneumonia --dataset breastmnist "
                "--out runs/breast-frozen\n  medconv evaluate runs/breast-frozen --split test",
    "segment": "examples:\n  medconv segment train --dataset isbi2012 --mode patch --patch 65 --epochs 20 --out runs/em\n"
               "  medconv segment train --dataset isbi2012 --mode dense --arch unet --out runs/em-unet\n"
               "  medconv segment predict runs/em slice.png --method dense --out maps/\n"
               "  medconv segment evaluate runs/em --split test --method sliding\n"
               "  medconv segment evaluate runs/em-unet --split test --tta d4 --thin",
    "detect": "examples:\n  medconv detect train --dataset crchistophenotypes --patch 27 --radius 4 --out runs/nuclei-det\n"
              "  medconv detect train --dataset crchistophenotypes --mode dense --target proximity "
              "--select-metric detection_f1 --out runs/nuclei-unet\n"
              "  medconv detect tune runs/nuclei-det --tolerance 8\n"
              "  medconv detect predict runs/nuclei-det images/*.png --out detections.csv\n"
              "  medconv export runs/nuclei-unet   # then detect predict runs without torch (onnxruntime)\n"
              "  medconv detect evaluate runs/nuclei-det --split val --tolerance 6",
    "inspect": "examples:\n  medconv inspect --list\n  medconv inspect resnet50 --input 3x224x224 --depth 1\n"
               "  medconv inspect googlenet --depth 1 --compare-paper\n"
               "  medconv inspect --fc-vs-conv --image 200x200 --hidden 25000 --kernel 10\n"
               "  medconv inspect --run runs/breast --plot-rf rf.png --filters filters.png --image scan.png",
    "export": "examples:\n  medconv export runs/nuclei-unet\n"
              "  medconv detect predict runs/nuclei-unet slide.png --out detections.csv   # onnxruntime, no torch",
    "taxonomy": "examples:\n  medconv taxonomy partition tree.yaml --counts counts.csv --max-class-size 1000 --out classes.yaml\n"
                "  medconv taxonomy show tree.yaml --level coarse",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medconv", description="CNNs for medical image analysis.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name],
                                formatter_class=argparse.RawDescriptionHelpFormatter)

    p = verb("demo", "train a small CNN end to end and compare with published results")
    p.add_argument("--out", default=None, help="run directory (default: runs/demo-TIMESTAMP)")
    p.add_argument("--data-root", default=None, help="where breastmnist.npz is (default: $MEDCONV_DATA)")
    p.add_argument("--epochs", type=int, default=25, help="training epochs (default: 25)")
    p.add_argument("--no-download", action="store_true", help="do not try to download BreastMNIST")

    p = verb("train", "train a classifier; writes a run directory")
    p.add_argument("--out", required=True, help="run directory to create (or to continue with --resume)")
    p.add_argument("--config", default=None, help="YAML run configuration; options given here override it")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--hidden", default=None, metavar="N,N,...", help="mlp: hidden layer widths (= --model-option hidden=...)")
    p.add_argument("--activation", default=None, help="mlp: sigmoid, tanh or relu (= --model-option activation=...)")
    add_config_options(p)

    p = verb("evaluate", "metrics, predictions and plots of a trained run on one split")
    p.add_argument("run_dir", help="run directory made by medconv train")
    p.add_argument("--split", default="test", help="train, val or test (default: test)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"], help="(default: best)")
    p.add_argument("--tta", default=None, choices=["none", "flip", "d4"], help="(default: as trained)")
    p.add_argument("--data-root", default=None, help="override the run's data root")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--level", default=None, help="a level of the run's --taxonomy: leaf probabilities summed up to it")

    p = verb("predict", "class probabilities for image files or folders")
    p.add_argument("run_dir", help="run directory made by medconv train")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (PNG, JPEG, TIFF, DICOM) or folders")
    p.add_argument("--out", default=None, help="CSV to write (default: print)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"], help="(default: best)")
    p.add_argument("--tta", default=None, choices=["none", "flip", "d4"], help="(default: as trained)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--level", default=None, help="a level of the run's --taxonomy: leaf probabilities summed up to it")

    p = verb("pretrain", "layer-wise pretraining of an MLP's hidden layers (RBMs or autoencoders), saved with pictures")
    p.add_argument("--out", required=True, help="folder for the pretrained stack")
    p.add_argument("--dataset", default="breastmnist", help="MedMNIST 2D flag or 'synthetic' (default: breastmnist)")
    p.add_argument("--data-root", default=None, help="where MedMNIST files are (default: $MEDCONV_DATA)")
    p.add_argument("--hidden", default="500,500,500", help="hidden layer widths (default: 500,500,500)")
    p.add_argument("--method", default="rbm", choices=["rbm", "ae"], help="(default: rbm)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per layer (default: 10)")
    p.add_argument("--seed", type=int, default=0)

    p = verb("experiment", "experiments made of many runs: vanishing-gradient")
    p.add_argument("name", choices=["vanishing-gradient"])
    p.add_argument("--dataset", default="breastmnist", help="(default: breastmnist)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--depths", default="2,4,6,8,10", help="hidden layer counts (default: 2,4,6,8,10)")
    p.add_argument("--epochs", type=int, default=5, help="SGD epochs per network (default: 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/vanishing-gradient", help="(default: runs/vanishing-gradient)")

    p = verb("inspect", "layer table: output shapes, parameters, multiply-accumulates, receptive fields")
    p.add_argument("arch", nargs="?", default=None, help="architecture (see --list)")
    p.add_argument("--list", action="store_true", help="list the architectures")
    p.add_argument("--run", default=None, metavar="RUN_DIR", help="inspect a trained run's network instead")
    p.add_argument("--input", default=None, metavar="CxHxW", help="input shape (default: 3x224x224; 3x299x299 "
                   "for inception_v3; a run's own)")
    p.add_argument("--classes", type=int, default=1000, help="output classes (default: 1000, as ImageNet)")
    p.add_argument("--model-option", action="append", metavar="KEY=VALUE", dest="model_options",
                   help="architecture option, e.g. batch_norm=false (repeatable)")
    p.add_argument("--depth", type=int, default=None, help="fold modules below this nesting depth (1: one row per block)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--compare-paper", action="store_true", help="googlenet: compare with Table 1 of Szegedy et al. 2014")
    p.add_argument("--plot-rf", default=None, metavar="OUT.png", help="draw a layer's receptive field (analytic and empirical)")
    p.add_argument("--layer", default=None, help="layer for --plot-rf (default: the last spatial layer)")
    p.add_argument("--filters", default=None, metavar="OUT.png", help="first-layer kernels and feature maps of --image")
    p.add_argument("--image", default=None, help="an image file (for pictures), or HxW with --fc-vs-conv")
    p.add_argument("--fc-vs-conv", action="store_true", help="weights of fully connected vs locally connected vs convolution")
    p.add_argument("--hidden", type=int, default=25_000, help="--fc-vs-conv: hidden units (default: 25000)")
    p.add_argument("--kernel", type=int, default=10, help="--fc-vs-conv: kernel side (default: 10)")
    p.add_argument("--channels", type=int, default=1, help="--fc-vs-conv: image channels (default: 1)")
    p.add_argument("--maps", type=int, default=100, help="--fc-vs-conv: convolution feature maps (default: 100)")
    p = verb("transfer", "a pretrained network as a frozen feature extractor: cached features, a fitted head")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("extract", "compute (or find in the cache) pooled features of every split"),
                         ("fit", "fit a logistic-regression or MLP head on the features; writes a run directory")):
        q = actions.add_parser(action, help=text, description=text, epilog=EXAMPLES["transfer"],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("--backbone", default="resnet18", help="registry architecture (default: resnet18)")
        q.add_argument("--weights", default=None, help="run directory, .safetensors/.pth file, or a torchvision name "
                       "such as IMAGENET1K_V1 (default: none, random weights)")
        q.add_argument("--layer", default=None, help="feature node, e.g. layer3 (default: the head's input)")
        q.add_argument("--cache", default=None, help="feature cache folder (default: $MEDCONV_CACHE/features, "
                       "else ~/.medconv/cache/features)")
        q.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
        q.add_argument("--config", default=None, help="YAML with the data settings; options given here override it")
        add_config_options(q, TRANSFER_FIELDS)
        if action == "fit":
            q.add_argument("--out", required=True, help="run directory to create")
            q.add_argument("--head", default="logreg", choices=["logreg", "mlp"], help="(default: logreg)")

    p = verb("segment", "segmentation: patch classifiers (sliding window or exact dense scanning) and dense networks")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("train", help="train a patch classifier (--mode patch) or a U-Net (--mode dense)",
                           epilog=EXAMPLES["segment"], formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--out", required=True, help="run directory to create (or to continue with --resume)")
    q.add_argument("--config", default=None, help="YAML run configuration; options given here override it")
    q.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_config_options(q, config_class=SegmentConfig, help_texts=SEGMENT_HELP)
    for action, text in (("predict", "posterior maps, masks and overlays of image files"),
                         ("evaluate", "pixel error, Rand error, Dice/IoU of a run on a split")):
        q = actions.add_parser(action, help=text, description=text, epilog=EXAMPLES["segment"],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("run_dir", help="run directory made by medconv segment train")
        q.add_argument("--method", default="auto", choices=["auto", "dense", "sliding"],
                       help="patch classifiers: exact dense scanning, or one pass per pixel (default: auto = dense "
                            "when the network allows)")
        q.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
        if action == "predict":
            q.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
            q.add_argument("--out", required=True, help="folder for NAME_prob.png, NAME_mask.png, NAME_overlay.png")
            q.add_argument("--threshold", type=float, default=None, help="foreground probability cut (default: the "
                           "one chosen on the run's validation images, else 0.5)")
            q.add_argument("--closing", type=int, default=0, help="morphological closing radius (default: 0)")
            q.add_argument("--format", default="png", choices=["png", "tif"], help="probability maps: 16-bit PNG or "
                           "float32 TIFF (default: png)")
            q.add_argument("--sigma", type=float, default=0.0, help="Gaussian smoothing of the map first (default: 0)")
            q.add_argument("--opening", type=int, default=0, help="morphological opening radius (default: 0)")
            q.add_argument("--fill-holes", action="store_true", help="fill holes in the mask")
            q.add_argument("--min-size", type=int, default=0, help="drop objects smaller than this (pixels)")
            q.add_argument("--instances", action="store_true", help="separate touching objects (watershed)")
        q.add_argument("--thin", action="store_true", help="membranes (ISBI): grow the cells below a seed threshold "
                       "over the map until they meet, leaving one-pixel membranes (seeds chosen on the validation images "
                       "by Rand error; evaluate adds the thinned Rand error)")
        q.add_argument("--tta", default="none", choices=["none", "flip", "d4"],
                       help="mean of the maps of flipped (and, with d4, turned) images (default: none)")
        if action != "predict":
            q.add_argument("--split", default="test", help="train, val or test (default: test)")
            q.add_argument("--json", action="store_true", help="print the metrics as JSON")

    p = verb("detect", "detection from probability maps: centre maps, smoothed local maxima, matched F1")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("train", help="train a centre-map network on discs around points, then choose the peak "
                           "parameters on validation", epilog=EXAMPLES["detect"],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--out", required=True, help="run directory to create")
    q.add_argument("--config", default=None, help="YAML run configuration; options given here override it")
    q.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    q.add_argument("--tolerance", type=float, default=6.0, help="match distance in pixels (default: 6)")
    q.add_argument("--tolerance-um", type=float, default=None, help="match distance in micrometres (needs --mpp)")
    add_config_options(q, config_class=SegmentConfig, help_texts=SEGMENT_HELP)
    q = actions.add_parser("tune", help="choose a trained run's peak parameters and test-time augmentation again "
                           "on its validation images (e.g. for another --tolerance)", epilog=EXAMPLES["detect"],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("run_dir", help="run directory made by medconv detect train")
    q.add_argument("--tolerance", type=float, default=None, help="match distance in pixels (default: the run's)")
    q.add_argument("--tolerance-um", type=float, default=None, help="match distance in micrometres (needs --mpp)")
    q.add_argument("--mpp", type=float, default=None, help="micrometres per pixel (default: the run's --mpp)")
    q.add_argument("--tta", default="none,d4", help="test-time augmentations to choose from (default: none,d4)")
    q.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    q = actions.add_parser("predict", help="detections of image files as CSV image,x,y,score (1-based x, y)",
                           epilog=EXAMPLES["detect"], formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("run_dir", help="run directory made by medconv detect train")
    q.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    q.add_argument("--out", default=None, help="CSV to write (default: print)")
    q.add_argument("--classifier", default=None, metavar="RUN_DIR", help="add a class column: each detection typed "
                   "by this nucleus-type classifier run (medconv train --dataset crchistophenotypes)")
    q.add_argument("--nms-radius", type=float, default=None, metavar="PX",
                   help="drop detections within PX pixels of a higher-scoring one (default: off)")
    q.add_argument("--tta", default=None, choices=["none", "flip", "d4"], help="test-time augmentation (default: the "
                   "one chosen on validation in training; none is fastest)")
    q.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    q = actions.add_parser("evaluate", help="precision, recall, F1 (TP/FP/FN summed over images), PR curve, overlays",
                           epilog=EXAMPLES["detect"], formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("run_dir", help="run directory made by medconv detect train")
    q.add_argument("--split", default="val", help="(default: val)")
    q.add_argument("--tolerance", type=float, default=None, help="match distance in pixels (default: the run's)")
    q.add_argument("--tolerance-um", type=float, default=None, help="match distance in micrometres (needs --mpp)")
    q.add_argument("--mpp", type=float, default=None, help="micrometres per pixel (default: the run's --mpp)")
    q.add_argument("--classifier", default=None, metavar="RUN_DIR", help="type each detection with this nucleus-type "
                   "classifier run and score per class (needs classed points)")
    q.add_argument("--json", action="store_true", help="print the metrics as JSON")
    q.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")

    p = verb("export", "a dense network (segment/detect --mode dense) as ONNX, RUN/model.onnx: detect predict then "
                       "runs it with onnxruntime, without torch")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"], help="which checkpoint (default: best)")

    p = verb("taxonomy", "class taxonomies (Esteva et al. 2017): cut a deep tree into training classes; show levels")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("partition", help="split nodes holding more than --max-class-size images into their children",
                           epilog=EXAMPLES["taxonomy"], formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("tree", metavar="TREE.yaml", help="taxonomy tree (YAML)")
    q.add_argument("--counts", required=True, metavar="COUNTS.csv", help="images per node: CSV with header node,images")
    q.add_argument("--max-class-size", type=int, default=1000, metavar="N", help="most images per training class (default: 1000)")
    q.add_argument("--out", default=None, metavar="NEW_TREE.yaml", help="write the tree cut at the training classes")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q = actions.add_parser("show", help="print the tree, with the leaves under each class of --level",
                           epilog=EXAMPLES["taxonomy"], formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("tree", metavar="TREE.yaml", help="taxonomy tree (YAML)")
    q.add_argument("--level", default=None, help="depth, level name or 'leaves' (default: the whole tree)")
    return parser


def run_inspect(args: argparse.Namespace) -> None:
    from rich.console import Console

    from .analysis.inspect import inspect, list_architectures, parse_shape

    console = Console(width=None if sys.stdout.isatty() else 160)  # piped tables keep their columns
    if args.list:
        rows = list_architectures()
        if args.json:
            print(json.dumps(rows, indent=2))
        for row in [] if args.json else rows:
            console.print(f"[bold]{row['name']:<22}[/] {row['summary']}", highlight=False)
        return
    if args.fc_vs_conv:
        from .analysis import fc_vs_conv
        result = fc_vs_conv(parse_shape(args.image or "200x200", 2, "--image"), args.hidden, args.kernel,
                            args.channels, args.maps)
        print(json.dumps(result, indent=2) if args.json else result["explanation"])
        return
    result = inspect(args.arch, args.run, args.input, args.classes, parse_model_options(args.model_options),
                     args.depth, args.compare_paper, args.plot_rf, args.layer, args.filters, args.image)
    table = result["table"]
    if args.json:
        print(json.dumps({**table.to_dict(), "paper": result.get("paper"), "pictures": result["pictures"]}, indent=2))
        return
    console.print(table.to_rich(title=f"{args.arch or args.run}, input {'x'.join(map(str, table.input_shape))}"))
    for row in result.get("paper", []):
        ok = row["weights_match"] and row["ops_match"]
        console.print(f"{row['row']:<18} ours {row['weights_k']:>7.1f}K {row['ops_m']:>6.1f}M   paper "
                      f"{row['paper_weights_k']:>6}K {row['paper_ops_m']:>4}M   "
                      f"{'[green]within 3%[/]' if ok else '[red]differs[/]'}" + (f": {row['erratum']}" if row["erratum"] else ""),
                      highlight=False)
    for kind, path in result["pictures"].items():
        console.print(f"{kind.replace('_', ' ')} picture -> {path}" + (f" (layer {result['layer']})" if kind == "receptive_field" else ""))


def run_transfer(args: argparse.Namespace) -> None:
    cfg = config_from_args(args)
    cfg.arch, cfg.init_from = args.backbone, args.weights
    if args.action == "extract":
        from .transfer.features import extract_features
        feats = extract_features(cfg, args.layer, args.cache, args.device)
        shapes = ", ".join(f"{name} {f.shape[0]} x {f.shape[1]}" for name, (f, _) in feats.splits.items())
        print(f"{cfg.arch} '{feats.layer}' features ({shapes}) {'found in' if feats.from_cache else 'written to'} {feats.path}")
    else:
        from .transfer.heads import fit_head
        fit_head(cfg, args.out, args.head, args.layer, args.cache, args.device)


def run_segment(args: argparse.Namespace) -> None:
    if args.action == "train":
        from .segment.config import SegmentConfig
        from .segment.train import train_segmentation
        if args.resume:
            if args.config:
                raise UserError("--resume continues with the configuration saved in the run; drop --config")
            train_segmentation(SegmentConfig(), args.out, resume=True,
                               overrides=explicit_options(args, SegmentConfig))
        else:
            train_segmentation(config_from_args(args, SegmentConfig), args.out)
    elif args.action == "predict":
        from .segment.evaluate import predict_segmentation
        predict_segmentation(args.run_dir, args.inputs, args.out, args.method, args.threshold, args.sigma,
                             args.opening, args.fill_holes, args.min_size, args.instances, args.tta, args.device,
                             closing=args.closing, fmt=args.format, thin=args.thin)
    else:
        from .segment.evaluate import evaluate_segmentation, metrics_name
        m = evaluate_segmentation(args.run_dir, args.split, args.method, device=args.device, tta=args.tta,
                                  thin=args.thin)
        print(json.dumps(m, indent=2) if args.json else
              f"{args.split} ({m['n']} images, {m['method']}): pixel error {m['pixel_error']:.4f}  F1 {m['f1']:.4f}"
              + (f"  Rand error {m['rand_error']:.4f}  ISBI pixel error (1 - best cell F) {m['isbi_pixel_error']:.4f}"
                 if "rand_error" in m else "")
              + (f"  thinned Rand error {m['thinned']['rand_error']:.4f}" if "thinned" in m else "")
              + f"  -> {args.run_dir}/{metrics_name(args.split, args.tta)}")


def pixels(tolerance: float | None, tolerance_um: float | None, mpp: float | None) -> float | None:
    """A match distance in pixels: --tolerance, or --tolerance-um divided by --mpp."""
    if tolerance_um is None:
        return tolerance
    if not mpp:
        raise UserError("--tolerance-um needs the pixel size: give --mpp (micrometres per pixel)")
    return tolerance_um / mpp


def run_detect(args: argparse.Namespace) -> None:
    if args.action == "predict":  # before importing the pipeline, which needs torch: an ONNX export does not
        from .detect.predict import predict_detections
        rows = predict_detections(args.run_dir, args.inputs, args.out, args.device, args.classifier,
                                  args.nms_radius, args.tta)
        if args.out is None and rows:
            writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return
    from .detect import pipeline
    if args.action == "train":
        from .segment.config import SegmentConfig
        if args.resume and args.config:
            raise UserError("--resume continues with the configuration saved in the run; drop --config")
        cfg = SegmentConfig() if args.resume else config_from_args(args, SegmentConfig)
        pipeline.train_detector(cfg, args.out, pixels(args.tolerance, args.tolerance_um, cfg.mpp), resume=args.resume,
                                overrides=explicit_options(args, SegmentConfig) if args.resume else None)
    elif args.action == "tune":
        mpp = args.mpp or (pipeline.run_config(args.run_dir).mpp if args.tolerance_um else None)
        tolerance = pixels(args.tolerance, args.tolerance_um, mpp) or pipeline.read_params(args.run_dir)["tolerance"]
        tta = tuple(t.strip() for t in args.tta.split(","))
        if not tta or set(tta) - {"none", "flip", "d4"}:
            raise UserError(f"--tta {args.tta!r}: expected a comma-separated list of none, flip, d4")
        pipeline.tune_detector(args.run_dir, tolerance, tta=tta, device=args.device)
    else:
        mpp = args.mpp or (pipeline.run_config(args.run_dir).mpp if args.tolerance_um else None)
        m = pipeline.evaluate_detection(args.run_dir, args.split, pixels(args.tolerance, args.tolerance_um, mpp),
                                        args.device, classifier=args.classifier)
        print(json.dumps({k: v for k, v in m.items()}, indent=2, default=float) if args.json else
              f"{args.split} ({m['images']} images, within {m['tolerance']} px): precision {m['precision']:.4f}  "
              f"recall {m['recall']:.4f}  F1 {m['f1']:.4f}  (TP {m['tp']}, FP {m['fp']}, FN {m['fn']})"
              + (f"\ntyped: weighted F1 {m['typed']['weighted_f1']:.4f}, " + ", ".join(
                  f"{c} {v['f1']:.4f}" for c, v in m["typed"]["per_class"].items()) if "typed" in m else ""))


def run(args: argparse.Namespace) -> int:
    if args.verb == "demo":
        from .demo import demo
        demo(args.out, args.data_root, args.epochs, download=not args.no_download)
    elif args.verb == "train":
        from .training.loop import train
        if args.resume:
            if args.config:
                raise UserError("--resume continues with the configuration saved in the run; drop --config")
            train(TrainConfig(), args.out, resume=True, overrides=explicit_options(args))
        else:
            train(config_from_args(args), args.out)
    elif args.verb == "evaluate":
        from .evaluation import evaluate
        metrics = evaluate(args.run_dir, args.split, args.checkpoint, args.tta, args.data_root, args.device,
                           level=args.level)
        if args.json:
            print(json.dumps(metrics, indent=2))
        else:
            print(f"{metrics['dataset']} {args.split} (n={metrics['n']}): AUC {metrics['auc']:.4f}  ACC {metrics['acc']:.4f}  "
                  f"balanced ACC {metrics['balanced_accuracy']:.4f}  -> {args.run_dir}/metrics_{args.split}{'_' + args.level if args.level else ''}.json")
    elif args.verb == "pretrain":
        from .training.pretrain import pretrain_stack
        pretrain_stack(TrainConfig(dataset=args.dataset, data_root=args.data_root, arch="mlp", pretrain=args.method,
                                   pretrain_epochs=args.epochs, seed=args.seed,
                                   model_options={"hidden": args.hidden, "activation": "sigmoid"}), args.out)
    elif args.verb == "experiment":
        from .experiments.vanishing_gradient import vanishing_gradient
        try:
            depths = tuple(int(d) for d in args.depths.split(","))
        except ValueError:
            raise UserError(f"--depths {args.depths!r}: expected hidden layer counts such as 2,4,6") from None
        if args.epochs < 1 or min(depths) < 1:
            raise UserError("--epochs and --depths must be at least 1")
        vanishing_gradient(args.dataset, args.data_root, args.out, depths, args.epochs, args.seed)
    elif args.verb == "inspect":
        run_inspect(args)
    elif args.verb == "transfer":
        run_transfer(args)
    elif args.verb == "segment":
        run_segment(args)
    elif args.verb == "detect":
        run_detect(args)
    elif args.verb == "export":
        from .export import export_onnx
        done = export_onnx(args.run_dir, args.checkpoint)
        print(f"{done['onnx']} (largest posterior difference from torch {done['max_difference']:.1e})")
    elif args.verb == "taxonomy":
        from .transfer.taxonomy import partition_report, show_report
        print(partition_report(args.tree, args.counts, args.max_class_size, args.out, args.json)
              if args.action == "partition" else show_report(args.tree, args.level))
    elif args.verb == "predict":
        from .prediction import predict_files
        rows = predict_files(args.run_dir, args.inputs, args.out, args.checkpoint, args.tta, args.device,
                             level=args.level)
        if args.out is None:
            writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        else:
            print(f"{len(rows)} predictions -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"medconv {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"medconv {args.verb}: training diverged: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"medconv {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
