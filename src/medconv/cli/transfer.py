"""medconv transfer extract|fit: a pretrained network as a frozen feature extractor, cached features, a fitted head."""
from __future__ import annotations

import argparse

from ..config import TrainConfig
from .options import DEVICE, config_from_args, config_options, out_folder, parent, verb_actions, verb_parser

EXAMPLES = """examples:
  medconv transfer extract --backbone resnet18 --weights IMAGENET1K_V1 --dataset breastmnist
  medconv transfer fit --backbone simple-cnn --weights runs/pneumonia --dataset breastmnist --out runs/breast-frozen
  medconv evaluate runs/breast-frozen --split test"""
FIELDS = ("dataset", "images", "manifest", "data_root", "download", "size", "resize", "resize_mode", "window", "patch",
          "channels", "val_fraction", "test_fraction", "train_fraction", "model_options", "seed", "select_metric")


def add_parser(subparsers) -> None:
    actions = verb_actions(subparsers, "transfer", "a pretrained network as a frozen feature extractor: cached "
                           "features, a fitted head", EXAMPLES)
    shared = parent()
    shared.add_argument("--backbone", default="resnet18", metavar="ARCH",
                        help="registry architecture whose features are used (default: resnet18)")
    shared.add_argument("--weights", default=None, metavar="WEIGHTS", help="run directory, .safetensors/.pth file, "
                        "or a torchvision name such as IMAGENET1K_V1 (default: none, random weights)")
    shared.add_argument("--layer", default=None, metavar="NODE",
                        help="feature node, e.g. layer3 (default: the head's input)")
    shared.add_argument("--cache", default=None, metavar="DIR", help="feature cache folder (default: "
                        "$MEDCONV_CACHE/features, else ~/.medconv/cache/features)")
    parents = [shared, DEVICE, config_options(TrainConfig, FIELDS)]
    q = verb_parser(actions, "extract", "compute (or find in the cache) pooled features of every split", EXAMPLES,
                    parents)
    q.set_defaults(func=run_extract)
    q = verb_parser(actions, "fit", "fit a logistic-regression or MLP head on the features; writes a run directory",
                    EXAMPLES, parents)
    q.add_argument("--out", required=True, metavar="RUN_DIR", type=out_folder, help="run directory to create")
    q.add_argument("--head", default="logreg", choices=["logreg", "mlp"],
                   help="the classifier fitted on the features: logistic regression or an MLP (default: logreg)")
    q.set_defaults(func=run_fit)


def transfer_config(args: argparse.Namespace) -> TrainConfig:
    cfg = config_from_args(args)
    cfg.arch, cfg.init_from = args.backbone, args.weights
    return cfg


def run_extract(args: argparse.Namespace) -> None:
    from ..transfer.features import extract_features  # torch: imported here to keep medconv --help fast
    cfg = transfer_config(args)
    feats = extract_features(cfg, args.layer, args.cache, args.device)
    shapes = ", ".join(f"{name} {f.shape[0]} x {f.shape[1]}" for name, (f, _) in feats.splits.items())
    print(f"{cfg.arch} '{feats.layer}' features ({shapes}) "
          f"{'found in' if feats.from_cache else 'written to'} {feats.path}")


def run_fit(args: argparse.Namespace) -> None:
    from ..transfer.heads import fit_head  # torch: imported here to keep medconv --help fast
    fit_head(transfer_config(args), args.out, args.head, args.layer, args.cache, args.device)
