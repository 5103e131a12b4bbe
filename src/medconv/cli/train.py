"""medconv train: a classifier, written to a run directory."""
from __future__ import annotations

import argparse

from ..config import TrainConfig
from .options import NO_TEST, RESUMABLE, config_options, training_run, verb_parser

EXAMPLES = "example: medconv train --dataset breastmnist --arch resnet18 --epochs 30 --augment light --out runs/breast"


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
    from ..classify.train import train  # torch: imported here to keep medconv --help fast
    cfg, resume = training_run(args, TrainConfig)
    train(cfg, args.out, score_test=args.score_test, **resume)
