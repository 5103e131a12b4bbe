"""medconv report: one self-contained HTML page of one or several runs (pictures embedded, no network needed)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .options import verb_parser

# commands after which the run's report is written again: the argument naming their run folder
REPORTED = {"medconv train": "out", "medconv evaluate": "run_dir", "medconv segment train": "out",
            "medconv segment evaluate": "run_dir", "medconv detect train": "out", "medconv detect evaluate": "run_dir",
            "medconv detect tune": "run_dir"}
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


def report_after(command: str, args: argparse.Namespace) -> None:
    """After a training or evaluation command: rewrite its pages (report_pages; their paths on standard error). A
    report that cannot be written is a warning, not a failed command: the run itself is complete."""
    from ..fileio import writes_here
    from ..report.page import write_report
    if command not in REPORTED or not writes_here():
        return
    try:
        for runs, ensemble in report_pages(command, args):
            print(f"report -> {write_report(runs, ensemble=ensemble)}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - the run is complete whatever the page does
        print(f"{command}: warning: report not written: {exc}", file=sys.stderr)


def report_pages(command: str, args: argparse.Namespace) -> list[tuple[list[Path], Path | None]]:
    """The pages a command leaves, as (runs, ensemble folder or None): its run's own; for an ensemble (train with an
    ensemble's file, evaluate --with), each member trained by it and the members side by side in the ensemble's
    folder, the ensemble's figures first."""
    if getattr(args, "members", None):  # evaluate RUN --with RUN... --out DIR
        return [([Path(args.run_dir), *map(Path, args.members)], Path(args.out))]
    folder = Path(getattr(args, REPORTED[command]))
    if (folder / "ensemble.json").exists():  # train --config ENSEMBLE.yaml
        members = [Path(m) for m in json.loads((folder / "ensemble.json").read_text())["members"].values()]
        return [([m], None) for m in members] + [(members, folder)]
    return [([folder], None)]
