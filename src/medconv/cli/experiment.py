"""medconv experiment: experiments made of many runs."""
from __future__ import annotations

import argparse

from ..errors import UserError
from .options import MEDMNIST, number, out_folder, verb_parser

EXAMPLES = "example: medconv experiment vanishing-gradient --dataset breastmnist --out runs/vanishing"


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "experiment", "experiments made of many runs: vanishing-gradient", EXAMPLES,
                    [MEDMNIST])
    p.add_argument("name", choices=["vanishing-gradient"], help="the experiment: vanishing-gradient (per-layer "
                   "gradient norms of MLPs of growing depth: sigmoid, ReLU, pretrained)")
    p.add_argument("--depths", default="2,4,6,8,10", metavar="N,N,...",
                   help="hidden layer counts, one network each (default: 2,4,6,8,10)")
    p.add_argument("--epochs", type=number(1, whole=True), default=5, metavar="EPOCHS",
                   help="SGD epochs per network (default: 5)")
    p.add_argument("--out", default="runs/vanishing-gradient", metavar="DIR", type=out_folder,
                   help="folder for the results and the plot (default: runs/vanishing-gradient)")
    p.set_defaults(func=run_experiment)


def run_experiment(args: argparse.Namespace) -> None:
    from ..experiments.vanishing_gradient import vanishing_gradient  # torch: imported here to keep --help fast
    try:
        depths = tuple(int(d) for d in args.depths.split(","))
    except ValueError:
        raise UserError(f"--depths {args.depths!r}: expected hidden layer counts such as 2,4,6") from None
    if args.epochs < 1 or min(depths) < 1:
        raise UserError("--epochs and --depths must be at least 1")
    vanishing_gradient(args.dataset, args.data_root, args.out, depths, args.epochs, args.seed)
