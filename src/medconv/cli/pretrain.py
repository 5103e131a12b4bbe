"""medconv pretrain: layer-wise pretraining of an MLP's hidden layers, saved with pictures."""
from __future__ import annotations

import argparse

from ..config import TrainConfig
from .options import MEDMNIST, number, out_folder, verb_parser

EXAMPLES = "example: medconv pretrain --dataset breastmnist --hidden 500,500 --method rbm --epochs 10 --out runs/stack"


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "pretrain", "layer-wise pretraining of an MLP's hidden layers (RBMs or autoencoders), "
                    "saved with pictures", EXAMPLES, [MEDMNIST])
    p.add_argument("--out", required=True, metavar="DIR", type=out_folder,
                   help="folder to create for the pretrained stack")
    p.add_argument("--hidden", default="500,500,500", metavar="N,N,...",
                   help="widths of the hidden layers in units, one layer each (default: 500,500,500)")
    p.add_argument("--method", default="rbm", choices=["rbm", "ae"],
                   help="rbm (restricted Boltzmann machines, contrastive divergence) or ae (autoencoders) "
                        "(default: rbm)")
    p.add_argument("--epochs", type=number(1, whole=True), default=10, metavar="EPOCHS",
                   help="pretraining epochs per layer (default: 10)")
    p.set_defaults(func=run_pretrain)


def run_pretrain(args: argparse.Namespace) -> None:
    from ..classify.pretrain import pretrain_stack  # torch: imported here to keep medconv --help fast
    pretrain_stack(TrainConfig(dataset=args.dataset, data_root=args.data_root, arch="mlp", pretrain=args.method,
                               pretrain_epochs=args.epochs, seed=args.seed,
                               model_options={"hidden": args.hidden, "activation": "sigmoid"}), args.out)
