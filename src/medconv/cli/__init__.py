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
import os
import re
import sys

from ..errors import TrainingDiverged, UserError
from ..progress import distributed
from . import (demo, detect, evaluate, experiment, explain, export, inspect, measure, predict, pretrain, report, segment,
               taxonomy, train, transfer)
from .launch import launch, note_failure
from .options import config_from_args

__all__ = ["build_parser", "config_from_args", "main"]  # config_from_args: tests build configurations with it
VERBS = (demo, train, evaluate, predict, pretrain, experiment, inspect, transfer, segment, detect, export, taxonomy,
         measure, explain, report)


class Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line, as a UserError's (the usage is in --help), and which
    reads -1e-4, -.5 and -inf as the values they are, not as options (argparse knows -1 and -0.5 only); the verbs'
    parsers are of this class too (add_subparsers makes its parsers of the parent's class)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$",
                                                   re.IGNORECASE)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="medconv", description="CNNs for medical image analysis.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.add_parser(verbs)
    return parser


def failed(code: int, line: str) -> int:
    """Print an error `line` (in a rank of a --nproc launch: rank 0 only, the launcher prints the others'); `code`."""
    if note_failure(code, line):
        print(line, file=sys.stderr)
    if distributed():  # a torchrun rank: leave the process group, not waiting
        from ..training.distributed import abandon  # torch: only here, --help stays fast
        abandon()
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    command = " ".join(["medconv", args.verb] + ([args.action] if getattr(args, "action", None) else []))
    try:
        if getattr(args, "nproc", 1) > 1 and "WORLD_SIZE" not in os.environ:  # not yet under torchrun
            return launch(args.nproc, getattr(args, "device", None), argv)
        args.func(args)
        report.report_after(command, args)
        if distributed():  # a torchrun rank: leave the process group cleanly
            from ..training.distributed import leave  # torch: only here, --help stays fast
            leave()
        return 0
    except UserError as exc:
        return failed(2, f"{command}: error: {' '.join(str(exc).split())}")  # one line, whatever it holds
    except TrainingDiverged as exc:
        return failed(1, f"{command}: training diverged: {exc}")
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
