"""medconv evaluate: metrics, predictions and plots of a trained classifier on one split."""
from __future__ import annotations

import argparse
import json

from .options import (ALLOW_UNFINISHED, CHECKPOINT, DEVICE, JSON, LEVEL, data_root, number, run_dir, split, tta,
                      verb_parser)

EXAMPLES = """examples:
  medconv evaluate runs/breast --split test --json
  medconv evaluate runs/nuclei --split val --neighbours 4   # nucleus types: mean over patches within 4 px"""


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "evaluate", "metrics, predictions and plots of a trained run on one split", EXAMPLES,
                    [run_dir("medconv train"), split("test"), CHECKPOINT, tta(None, "default: as trained"),
                     data_root("folder holding the datasets, in place of the run's data root (default: the run's)"),
                     JSON, DEVICE, LEVEL, ALLOW_UNFINISHED])
    p.add_argument("--neighbours", type=number(0, whole=True), default=0, metavar="R",
                   help="CRCHistoPhenotypes nucleus runs: each nucleus's probabilities are the mean over the patches "
                        "centred within R px of its centroid (the neighbouring ensemble predictor of Sirinukunwattana "
                        "et al. 2016); default 0: the centred patch alone")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> None:
    from ..classify.evaluate import evaluate  # torch: imported here to keep medconv --help fast
    metrics = evaluate(args.run_dir, args.split, args.checkpoint, args.tta, args.data_root, args.device,
                       level=args.level, allow_unfinished=args.allow_unfinished, neighbours=args.neighbours)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        ensemble = f", neighbouring ensemble within {args.neighbours} px" if args.neighbours else ""
        print(f"{metrics['dataset']} {args.split} (n={metrics['n']}{ensemble}): AUC {metrics['auc']:.4f}  "
              f"ACC {metrics['acc']:.4f}  balanced ACC {metrics['balanced_accuracy']:.4f}  "
              f"-> {args.run_dir}/metrics_{args.split}{'_' + args.level if args.level else ''}.json")
