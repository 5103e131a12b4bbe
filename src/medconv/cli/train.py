"""medconv train: a classifier, written to a run directory."""
from __future__ import annotations

import argparse

from ..config import TrainConfig, load_members
from .options import NO_TEST, RESUMABLE, config_options, explicit_options, training_run, verb_parser, with_options

EXAMPLES = """examples:
  medconv train --dataset breastmnist --arch resnet18 --epochs 30 --augment light --out runs/breast
  medconv train --config examples/adrenalmnist3d_ensemble.yaml --out runs/adrenal3d-ensemble
      # an ensemble's file: each member trained into runs/adrenal3d-ensemble/NAME, then their ensemble scored there"""


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "train", "train a classifier; writes a run directory", EXAMPLES,
                    [RESUMABLE, NO_TEST, config_options(TrainConfig)])
    p.add_argument("--hidden", default=None, metavar="N,N,...",
                   help="mlp: widths of the hidden layers in units (= --model-option hidden=...)")
    p.add_argument("--activation", default=None, choices=["sigmoid", "tanh", "relu"],
                   help="mlp: activation of the hidden layers (= --model-option activation=...)")
    p.add_argument("--deep-supervision", default=None, metavar="W,W,...",
                   help="cnn3d: a loss weight per pooling block but the last; a block with a weight above 0 gets an "
                        "auxiliary classifier, trained beside the main one and dropped at inference, e.g. 0.3,0.3 "
                        "(= --model-option deep_supervision=...; fade them with --ds-decay)")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> None:
    # torch: imported here to keep medconv --help fast
    from ..classify.ensemble import train_ensemble
    from ..classify.train import train
    members = load_members(args.config) if args.config else None
    if members is not None:  # an ensemble's file: every member with the options given over its settings
        options = explicit_options(args, TrainConfig)
        train_ensemble({name: with_options(cfg, options) for name, cfg in members.items()}, args.out,
                       resume=args.resume, overrides=options, score_test=args.score_test)
        return
    cfg, resume = training_run(args, TrainConfig)
    train(cfg, args.out, score_test=args.score_test, **resume)
