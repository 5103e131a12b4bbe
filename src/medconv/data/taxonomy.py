"""Fine-to-coarse class taxonomies (Esteva et al., Nature 2017): train on fine classes, sum up to coarse.

Tree file (YAML): a nested mapping whose top key is the root. A node's value is a mapping of
children, a list of children (each a string leaf or a one-key mapping ``{name: value}``), or
null / empty for a leaf. ``X: [X]`` (a node whose only child bears its own name) is the leaf X.
Node names are unique. An optional top-level ``levels`` names the depths (depth 0 = root)::

    levels: [all, coarse, fine]
    nucleus:
      epithelial: [epithelial]
      non-epithelial: [fibroblast, inflammatory, others]

Counts file (CSV): a header such as ``node,images`` or ``class,count``, then NAME,INTEGER rows.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import UserError


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (PyYAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                raise UserError(f"duplicate node name {key!r} (line {node.value[i][0].start_mark.line + 1})")
        return super().construct_mapping(node, deep)


def _empty(value) -> bool:
    return value is None or (isinstance(value, (dict, list)) and not value)


class Taxonomy:
    """A tree of class names: the leaves are the fine (training) classes, upper levels the coarse ones."""

    def __init__(self, root: str, children: dict[str, list[str]], level_names: list[str] | None, source: str):
        self.root, self.children, self.level_names, self.source = root, children, level_names, source
        self.depth, self.parent = {root: 0}, {root: None}
        for node, kids in children.items():  # pre-order: parents come before their children
            for kid in kids:
                self.depth[kid], self.parent[kid] = self.depth[node] + 1, node
        self.nodes = list(children)
        self.leaves = [n for n in self.nodes if not children[n]]
        self.max_depth = max(self.depth.values())

    def _error(self, problem: str) -> UserError:
        return UserError(f"taxonomy {self.source}: {problem}")

    @classmethod
    def from_yaml(cls, path) -> Taxonomy:
        path = Path(path)
        if path.is_dir():
            raise UserError(f"taxonomy {path} is a folder; expected a YAML file")
        if not path.is_file():
            raise UserError(f"taxonomy file {path} not found")
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
        except UserError as exc:
            raise UserError(f"taxonomy {path}: {exc}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise UserError(f"taxonomy {path}: not valid YAML: {' '.join(str(exc).split())}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> Taxonomy:
        def fail(problem: str) -> UserError:
            return UserError(f"taxonomy {source}: {problem}")

        if not isinstance(d, dict) or not d:
            raise fail(f"expected a mapping with one root node, got {'an empty tree' if not d else repr(d)}")
        d = dict(d)
        levels = d.pop("levels", None)
        if levels is not None and (not isinstance(levels, list) or len(set(map(str, levels))) != len(levels)
                                   or not all(isinstance(v, str) for v in levels)):
            raise fail(f"levels must be a list of distinct names, got {levels!r}")
        if len(d) != 1:
            raise fail(f"expected one root node, got {len(d)}: {', '.join(map(str, d)) or 'an empty tree'}")

        def name_of(key) -> str:
            if isinstance(key, bool) or not isinstance(key, (str, int, float)) or not str(key).strip():
                raise fail(f"node name {key!r} is not a name (quote it)")
            return str(key).strip()

        children: dict[str, list[str]] = {}

        def add(name: str, value) -> None:
            if name in children:
                raise fail(f"duplicate node name {name!r}")
            if not _empty(value) and not isinstance(value, (dict, list)):
                raise fail(f"node {name!r}: expected a mapping, a list or nothing, got {value!r}")
            items = list(value.items()) if isinstance(value, dict) else []
            for item in value if isinstance(value, list) else []:
                if isinstance(item, dict) and len(item) != 1:
                    raise fail(f"node {name!r}: a list item must be a name or a one-key mapping, got {item!r}")
                items.append(next(iter(item.items())) if isinstance(item, dict) else (item, None))
            if len(items) == 1 and name_of(items[0][0]) == name and _empty(items[0][1]):
                items = []  # `X: [X]` is the leaf X carried down a level
            children[name] = [name_of(key) for key, _ in items]
            for key, sub in items:
                add(name_of(key), sub)

        root, value = next(iter(d.items()))
        add(name_of(root), value)
        return cls(name_of(root), children, levels, source)

    def to_dict(self) -> dict:
        """The tree as YAML-ready data (children that are all leaves become a list)."""
        def value(node):
            kids = self.children[node]
            if not kids or all(not self.children[k] for k in kids):
                return list(kids) or None
            return {k: value(k) for k in kids}
        return {**({"levels": self.level_names} if self.level_names else {}), self.root: value(self.root)}

    def write_yaml(self, path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def classes_at(self, level) -> list[str]:
        """Nodes at the level's depth (int, digit string or level name; or "leaves"), with shallower leaves
        carried down as themselves, in file order."""
        names, count = self.level_names or [], max(self.max_depth + 1, len(self.level_names or []))
        if level == "leaves":
            return list(self.leaves)
        depth = names.index(level) if level in names else int(level) if str(level).isdigit() else -1
        if isinstance(level, bool) or not 0 <= depth < count:
            raise self._error(f"unknown level {level!r}; valid levels: {', '.join([*map(str, range(count)), *names, 'leaves'])}")
        return [n for n in self.nodes if self.depth[n] == depth or (self.depth[n] < depth and not self.children[n])]

    def descendant_leaves(self, node: str) -> list[str]:
        if node not in self.children:
            raise self._error(f"no node named {node!r}")
        return [leaf for kid in self.children[node] for leaf in self.descendant_leaves(kid)] or [node]

    def check_leaves(self, dataset_classes) -> None:
        """UserError naming the leaves missing from the dataset and the dataset classes missing from the tree."""
        classes = list(dataset_classes)
        problems = [f"{what}: {', '.join(names)}" for what, names in (
            ("not in the dataset", [n for n in self.leaves if n not in classes]),
            ("not in the tree", [c for c in classes if c not in self.leaves]),
            ("repeated in the dataset", sorted({c for c in classes if classes.count(c) > 1}))) if names]
        if problems:
            raise UserError(f"taxonomy {self.source} does not match the dataset's classes: {'; '.join(problems)}")

    def _matrix(self, nodes: list[str], leaf_order) -> np.ndarray:
        leaf_order = list(self.leaves if leaf_order is None else leaf_order)
        self.check_leaves(leaf_order)
        index = {leaf: i for i, leaf in enumerate(leaf_order)}
        matrix = np.zeros((len(leaf_order), len(nodes)))
        for k, node in enumerate(nodes):
            matrix[[index[leaf] for leaf in self.descendant_leaves(node)], k] = 1
        return matrix

    def _summed(self, probs, nodes: list[str], leaf_order) -> np.ndarray:
        matrix, probs = self._matrix(nodes, leaf_order), np.asarray(probs, dtype=float)
        if probs.ndim != 2 or probs.shape[1] != matrix.shape[0]:
            raise self._error(f"probabilities of shape {probs.shape}, expected (N, {matrix.shape[0]}): one column per leaf")
        return probs @ matrix

    def aggregation_matrix(self, level, leaf_order=None) -> np.ndarray:
        """(L, K) 0/1 matrix: leaf i (of leaf_order, default file order) lies under class k of classes_at(level)."""
        return self._matrix(self.classes_at(level), leaf_order)

    def aggregate(self, probs, level, leaf_order=None) -> np.ndarray:
        """probs (N, L) over leaf_order -> (N, K) over classes_at(level): sums over each class's leaves."""
        return self._summed(probs, self.classes_at(level), leaf_order)

    def node_probabilities(self, probs, leaf_order=None) -> dict[str, np.ndarray]:
        """probs (N, L) over leaf_order -> {node: (N,) summed probability} for every node of the tree."""
        summed = self._summed(probs, self.nodes, leaf_order)
        return {node: summed[:, k] for k, node in enumerate(self.nodes)}


@dataclass
class TrainingClass:
    """A training class of a partition: a tree node, its image count and the leaves it covers."""
    name: str
    images: int
    leaves: list[str]


def partition(taxonomy: Taxonomy, counts: dict[str, int], max_class_size: int) -> list[TrainingClass]:
    """Split any node holding more than max_class_size images into its children (recursively, from the root).

    counts: images per node; a node's total is its own count plus its descendants'. Nodes without images are
    dropped; images counted on a node that gets split (not on its children) belong to no training class.
    """
    if max_class_size < 1:
        raise UserError(f"the maximum class size must be at least 1, got {max_class_size}")
    unknown = [n for n in counts if n not in taxonomy.children]
    bad = [n for n, c in counts.items() if isinstance(c, bool) or not isinstance(c, int) or c < 0]
    if unknown or bad:
        raise taxonomy._error(f"counts for nodes not in the tree: {', '.join(unknown)}" if unknown
                              else f"counts must be whole numbers >= 0: {', '.join(bad)}")
    totals: dict[str, int] = {}
    for node in reversed(taxonomy.nodes):  # children before parents
        totals[node] = counts.get(node, 0) + sum(totals[c] for c in taxonomy.children[node])
    if totals[taxonomy.root] == 0:
        raise taxonomy._error("the counts give no images to any node")
    classes: list[TrainingClass] = []

    def visit(node: str) -> None:
        if totals[node] > max_class_size and taxonomy.children[node]:
            for child in (c for c in taxonomy.children[node] if totals[c] > 0):
                visit(child)
        else:
            classes.append(TrainingClass(node, totals[node], taxonomy.descendant_leaves(node)))

    visit(taxonomy.root)
    return classes


def partitioned_taxonomy(taxonomy: Taxonomy, classes) -> Taxonomy:
    """The tree cut so that the training classes (TrainingClass objects or node names) are its leaves."""
    names = [c.name if isinstance(c, TrainingClass) else c for c in classes]
    keep = set(names)
    for name in names:
        taxonomy.descendant_leaves(name)  # an unknown node -> UserError
        node = taxonomy.parent[name]
        while node is not None:
            if node in names:
                raise taxonomy._error(f"training class {name!r} lies under training class {node!r}")
            keep.add(node)
            node = taxonomy.parent[node]

    def value(node):
        return None if node in names else {c: value(c) for c in taxonomy.children[node] if c in keep}

    levels = {"levels": taxonomy.level_names} if taxonomy.level_names else {}
    return Taxonomy.from_dict({**levels, taxonomy.root: value(taxonomy.root)}, source=f"{taxonomy.source} (partitioned)")


def load_counts(path) -> dict[str, int]:
    """CSV with a header (node,images / class,count / ...) then rows NAME,INTEGER -> {name: count}."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"counts file {path} is a folder; expected a CSV file")
    if not path.is_file():
        raise UserError(f"counts file {path} not found")
    try:
        rows = [(line, [c.strip() for c in row]) for line, row in enumerate(csv.reader(path.read_text().splitlines()), 1)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"counts file {path}: not a readable CSV ({exc})") from None
    rows = [(line, row) for line, row in rows if any(row)]
    if rows and (len(rows[0][1]) < 2 or not rows[0][1][1].lstrip("+-").isdigit()):
        rows = rows[1:]  # the header
    counts: dict[str, int] = {}
    for line, row in rows:
        if len(row) < 2 or not row[0] or not row[1].isdigit() or row[0] in counts:
            problem = f"{row[0]!r} is listed twice" if row[0] in counts else f"expected NAME,IMAGES (a whole number >= 0), got {','.join(row)!r}"
            raise UserError(f"counts file {path} line {line}: {problem}")
        counts[row[0]] = int(row[1])
    if not counts:
        raise UserError(f"counts file {path}: no NAME,IMAGES rows")
    return counts


def partition_report(tree, counts, max_class_size: int, out=None, as_json: bool = False) -> str:
    """`medconv taxonomy partition`: the training classes as a table (or JSON); writes the cut tree to `out`."""
    taxonomy = Taxonomy.from_yaml(tree)
    classes = partition(taxonomy, load_counts(counts), max_class_size)
    if out:
        partitioned_taxonomy(taxonomy, classes).write_yaml(out)
    if as_json:
        return json.dumps({"max_class_size": max_class_size, "out": out and str(out), "classes": [asdict(c) for c in classes]}, indent=2)
    width = max(len("training class"), *(len(c.name) for c in classes))
    lines = [f"{'training class':<{width}}  {'images':>8}  leaves"] + [
        f"{c.name:<{width}}  {c.images:>8}  {', '.join(c.leaves[:8])}" + (f", ... (+{len(c.leaves) - 8})" if len(c.leaves) > 8 else "")
        + ("  (a leaf over the limit)" if c.images > max_class_size else "") for c in classes]
    return "\n".join([*lines, f"{len(classes)} training classes from {len(taxonomy.leaves)} leaves, {sum(c.images for c in classes)} "
                      f"images, at most {max_class_size} per class unless a leaf" + (f"; cut tree -> {out}" if out else "")])


def show_report(tree, level=None) -> str:
    """`medconv taxonomy show`: the tree indented, with the leaves listed under each class of `level`."""
    taxonomy = Taxonomy.from_yaml(tree)
    classes = set(taxonomy.classes_at("leaves" if level is None else level))
    names = f" (levels: {', '.join(taxonomy.level_names)})" if taxonomy.level_names else ""
    lines = [f"taxonomy {tree}: {len(taxonomy.leaves)} leaves, depth {taxonomy.max_depth}{names}"
             + ("" if level is None else f"; level {level}: {len(classes)} classes")]

    def visit(node: str) -> None:
        indent = "  " * taxonomy.depth[node]
        if node in classes and taxonomy.children[node]:
            leaves = taxonomy.descendant_leaves(node)
            lines.extend([f"{indent}{node}  ({len(leaves)} leaves)", *(f"{indent}    - {leaf}" for leaf in leaves)])
            return
        lines.append(indent + node)
        for child in taxonomy.children[node]:
            visit(child)

    visit(taxonomy.root)
    return "\n".join(lines)
