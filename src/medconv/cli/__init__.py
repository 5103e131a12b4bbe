"""The `medconv` command: argument parsing and dispatch only; each verb calls library functions.

One module per verb (demo, train, ..., taxonomy): its `add_parser(subparsers)` registers its parser(s), each with
`set_defaults(func=run_...)`, and its run functions. Options shared by several verbs are parent parsers in
`options`, and the options of a run configuration are generated from its dataclass fields (help texts in `fields`).

Imports: the verb modules import their library functions inside their run functions, and only there, so that
`medconv --help` stays fast (no torch) and `medconv detect predict` on an ONNX export does not import torch at all;
everything else is imported at module top.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import TrainingDiverged, UserError
from . import demo, detect, evaluate, experiment, export, inspect, predict, pretrain, segment, taxonomy, train, transfer
from .options import config_from_args

__all__ = ["build_parser", "config_from_args", "main"]  # config_from_args: tests build configurations with it
VERBS = (demo, train, evaluate, predict, pretrain, experiment, inspect, transfer, segment, detect, export, taxonomy)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medconv", description="CNNs for medical image analysis.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.add_parser(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
        return 0
    except UserError as exc:
        print(f"medconv {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"medconv {args.verb}: training diverged: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"medconv {args.verb}: interrupted", file=sys.stderr)
        return 130
