"""medconv demo: a small CNN trained end to end and compared with the published results."""
from __future__ import annotations

import argparse

from .options import data_root, number, out_folder, verb_parser

EXAMPLES = "example: medconv demo            (BreastMNIST if at hand, else synthetic lesions)"


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "demo", "train a small CNN end to end and compare with published results", EXAMPLES,
                    [data_root("folder where breastmnist.npz is or is downloaded to (unset: $MEDCONV_DATA, else "
                               "~/.medconv/data)")])
    p.add_argument("--out", default=None, metavar="RUN_DIR", type=out_folder,
                   help="run directory to create (default: runs/demo-TIMESTAMP)")
    p.add_argument("--epochs", type=number(1, whole=True), default=25, metavar="EPOCHS",
                   help="training epochs, each one pass over the training images (default: 25)")
    p.add_argument("--no-download", action="store_true",
                   help="do not try to download BreastMNIST (train on synthetic lesions when it is not at hand)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> None:
    from ..demo import demo  # torch: imported here to keep medconv --help fast
    demo(args.out, args.data_root, args.epochs, download=not args.no_download)
