"""medconv report: one self-contained HTML page of one or several runs (pictures embedded, no network needed)."""
from __future__ import annotations

import argparse

from .options import verb_parser

EXAMPLES = """examples:
  medconv report runs/breast                     # -> runs/breast/report.html
  medconv report runs/unet runs/patch65 --out compare.html"""


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "report", "one HTML page of a run (or several side by side): data, configuration, "
                    "metrics beside the published rows, curves and pictures", EXAMPLES)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (medconv train, segment train, ...)")
    p.add_argument("--out", default=None, metavar="HTML",
                   help="the HTML file written, one page with every picture inside it "
                        "(default: RUN_DIR/report.html for one run, report.html for several)")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> None:
    from ..report.page import write_report  # matplotlib: imported here to keep medconv --help fast
    print(f"report -> {write_report(args.runs, args.out)}")
