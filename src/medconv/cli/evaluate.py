"""medconv evaluate: metrics, predictions and plots of a trained classifier, or of an ensemble of them, on one
split."""
from __future__ import annotations

import argparse
import json

from ..errors import UserError
from .options import (ALLOW_UNFINISHED, CHECKPOINT, DEVICE, JSON, LEVEL, data_root, number, run_dir, split, tta,
                      verb_parser)

EXAMPLES = """examples:
  medconv evaluate runs/breast --split test --json
  medconv evaluate runs/nuclei --split val --neighbours 4   # nucleus types: mean over patches within 4 px
  medconv evaluate runs/a --with runs/b runs/c --out runs/abc  # an ensemble: the runs' mean probabilities"""


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "evaluate", "metrics, predictions and plots of a trained run on one split", EXAMPLES,
                    [run_dir("medconv train"), split("test"), CHECKPOINT, tta(None, "default: as trained"),
                     data_root("folder holding the datasets, in place of the run's data root (default: the run's)"),
                     JSON, DEVICE, LEVEL, ALLOW_UNFINISHED])
    p.add_argument("--neighbours", type=number(0, whole=True), default=0, metavar="R",
                   help="CRCHistoPhenotypes nucleus runs: each nucleus's probabilities are the mean over the patches "
                        "centred within R px of its centroid (the neighbouring ensemble predictor of Sirinukunwattana "
                        "et al. 2016); default 0: the centred patch alone")
    p.add_argument("--with", dest="members", nargs="+", default=[], metavar="RUN_DIR",
                   help="evaluate an ensemble: the mean class probabilities of RUN_DIR and these runs of the same task "
                        "(seeds or recipes), each reading the split as it was trained; needs --out")
    p.add_argument("--out", metavar="DIR", help="with --with: the folder for the ensemble's metrics, predictions and "
                                                "plots")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> None:
    # torch: imported here to keep medconv --help fast
    from ..classify.evaluate import evaluate, evaluate_ensemble
    if args.members or args.out:
        if not (args.members and args.out):
            raise UserError("an ensemble needs both --with RUN_DIR... and --out DIR")
        if args.tta or args.level or args.neighbours:
            raise UserError("--with: each member uses the test-time augmentation it was trained with; --tta, --level "
                            "and --neighbours evaluate one run")
        metrics = evaluate_ensemble([args.run_dir, *args.members], args.out, args.split, args.checkpoint,
                                    args.data_root, args.device, args.allow_unfinished)
        written, what = f"{args.out}/metrics_{args.split}.json", f", ensemble of {len(metrics['members'])} runs"
    else:
        metrics = evaluate(args.run_dir, args.split, args.checkpoint, args.tta, args.data_root, args.device,
                           level=args.level, allow_unfinished=args.allow_unfinished, neighbours=args.neighbours)
        written = f"{args.run_dir}/metrics_{args.split}{'_' + args.level if args.level else ''}.json"
        what = f", neighbouring ensemble within {args.neighbours} px" if args.neighbours else ""
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{metrics['dataset']} {args.split} (n={metrics['n']}{what}): AUC {metrics['auc']:.4f}  "
              f"ACC {metrics['acc']:.4f}  balanced ACC {metrics['balanced_accuracy']:.4f}  -> {written}")
