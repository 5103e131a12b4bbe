"""medconv taxonomy partition|show: class taxonomies (Esteva et al. 2017)."""
from __future__ import annotations

import argparse

from .options import JSON, number, out_file, parent, verb_actions, verb_parser

EXAMPLES = """examples:
  medconv taxonomy partition tree.yaml --counts counts.csv --max-class-size 1000 --out classes.yaml
  medconv taxonomy show tree.yaml --level coarse"""


def add_parser(subparsers) -> None:
    actions = verb_actions(subparsers, "taxonomy", "class taxonomies (Esteva et al. 2017): cut a deep tree into "
                           "training classes; show levels", EXAMPLES)
    tree = parent()
    tree.add_argument("tree", metavar="TREE.yaml", help="taxonomy tree (YAML): nested mappings, leaves the classes")
    q = verb_parser(actions, "partition", "split nodes holding more than --max-class-size images into their children",
                    EXAMPLES, [tree, JSON])
    q.add_argument("--counts", required=True, metavar="COUNTS.csv", help="images per node: CSV with header node,images")
    q.add_argument("--max-class-size", type=number(1, whole=True), default=1000, metavar="IMAGES",
                   help="most images per training class (default: 1000)")
    q.add_argument("--out", default=None, metavar="NEW_TREE.yaml", type=out_file("classes.yaml"),
                   help="write the tree cut at the training classes")
    q.set_defaults(func=run_partition)
    q = verb_parser(actions, "show", "print the tree, with the leaves under each class of --level", EXAMPLES, [tree])
    q.add_argument("--level", default=None, help="depth, level name or 'leaves' (default: the whole tree)")
    q.set_defaults(func=run_show)


def run_partition(args: argparse.Namespace) -> None:
    from ..data.taxonomy import partition_report  # numpy: imported here to keep medconv --help fast
    print(partition_report(args.tree, args.counts, args.max_class_size, args.out, args.json))


def run_show(args: argparse.Namespace) -> None:
    from ..data.taxonomy import show_report  # numpy: imported here to keep medconv --help fast
    print(show_report(args.tree, args.level))
