"""medconv measure: structure volumes in mm³ from label maps, and their error against reference maps."""
from __future__ import annotations

import argparse

from .options import out_file, print_csv, verb_parser

EXAMPLES = """examples:
  medconv measure predicted/hippocampus_001.nii.gz --names 1:anterior,2:posterior
  medconv measure predicted/*.nii.gz --reference labelsTr/*.nii.gz --out volumes.csv"""


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "measure", "volumes in mm³ of the structures in label maps (NIfTI, a DICOM series "
                    "folder, ...), from their voxel spacing; with --reference, the relative volume error", EXAMPLES)
    p.add_argument("labels", nargs="+", metavar="LABELS", help="label maps (0 background, 1, 2, ... structures)")
    p.add_argument("--reference", nargs="+", default=[], metavar="REF",
                   help="reference label maps, one per label map, in the same order")
    p.add_argument("--names", default=None, metavar="L:NAME,...", help="structure names, e.g. 1:anterior,2:posterior")
    p.add_argument("--out", default=None, metavar="CSV", type=out_file("volumes.csv"),
                   help="CSV file to write, a row per map and structure (default: print)")
    p.set_defaults(func=run_measure)


def run_measure(args: argparse.Namespace) -> None:
    from ..fileio import write_csv
    from ..measure import measure, parse_names
    rows = measure(args.labels, args.reference, parse_names(args.names))
    if not rows:
        print("no structures (every map is background only)")
    elif args.out is None:
        print_csv(rows)
    else:
        write_csv(args.out, rows)
        print(f"{len(rows)} structure volumes -> {args.out}")
