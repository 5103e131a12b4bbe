"""Taxonomies: fine-to-coarse probability sums, levels, the Esteva et al. partition, the taxonomy CLI."""
import json

import numpy as np
import pytest
import yaml

from medconv.errors import UserError
from medconv.data.taxonomy import (
    Taxonomy,
    TrainingClass,
    load_counts,
    partition,
    partitioned_taxonomy,
)

TREE = """\
levels: [all, group, family, fine]
skin:
  benign:
    nevus: [blue-nevus, halo-nevus, junctional-nevus]
    seborrheic-keratosis:
  malignant:
    - melanoma: [acral, lentigo]
    - carcinoma
"""
LEAVES = ["blue-nevus", "halo-nevus", "junctional-nevus", "seborrheic-keratosis", "acral", "lentigo", "carcinoma"]
# hand-worked totals: nevus 120, benign 180, melanoma 10 + 50 = 60, malignant 210, skin 390
COUNTS = {"blue-nevus": 30, "halo-nevus": 0, "junctional-nevus": 90, "seborrheic-keratosis": 60,
          "acral": 20, "lentigo": 30, "melanoma": 10, "carcinoma": 150}
NUCLEUS = """\
levels: [all, coarse, fine]
nucleus:
  epithelial: [epithelial]
  non-epithelial: [fibroblast, inflammatory, others]
"""


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "tree.yaml").write_text(TREE)
    return Taxonomy.from_yaml(tmp_path / "tree.yaml")


def dirichlet(n, k, seed=0):
    return np.random.default_rng(seed).dirichlet(np.ones(k), size=n)


def test_structure_and_levels(tree):
    assert tree.leaves == LEAVES and tree.level_names == ["all", "group", "family", "fine"]
    assert tree.classes_at(0) == tree.classes_at("all") == ["skin"]
    assert tree.classes_at("group") == tree.classes_at("1") == ["benign", "malignant"]
    assert tree.classes_at(2) == ["nevus", "seborrheic-keratosis", "melanoma", "carcinoma"]
    assert tree.classes_at("fine") == tree.classes_at("leaves") == LEAVES  # shallow leaves carried down
    assert tree.descendant_leaves("malignant") == ["acral", "lentigo", "carcinoma"]
    assert tree.descendant_leaves("acral") == ["acral"]
    assert Taxonomy.from_dict(tree.to_dict()).to_dict() == tree.to_dict()


def test_internal_nodes_sum_their_leaves(tree):
    probs = dirichlet(64, len(LEAVES))
    nodes = tree.node_probabilities(probs)
    col = {leaf: probs[:, i] for i, leaf in enumerate(LEAVES)}
    np.testing.assert_allclose(nodes["nevus"], col["blue-nevus"] + col["halo-nevus"] + col["junctional-nevus"])
    np.testing.assert_allclose(nodes["malignant"], col["acral"] + col["lentigo"] + col["carcinoma"])
    for node, kids in tree.children.items():  # every internal node is the sum of its children
        if kids:
            np.testing.assert_allclose(nodes[node], sum(nodes[k] for k in kids))
    np.testing.assert_allclose(nodes["skin"], 1.0)
    for leaf in LEAVES:
        np.testing.assert_array_equal(nodes[leaf], col[leaf])


@pytest.mark.parametrize("level", [0, 1, 2, 3, "group", "family", "leaves", "2"])
def test_each_level_sums_to_one(tree, level):
    coarse = tree.aggregate(dirichlet(40, len(LEAVES), seed=1), level)
    assert coarse.shape == (40, len(tree.classes_at(level)))
    np.testing.assert_allclose(coarse.sum(axis=1), 1.0)
    matrix = tree.aggregation_matrix(level)
    assert set(np.unique(matrix)) <= {0.0, 1.0} and (matrix.sum(axis=1) == 1).all()


def test_leaf_order_differs_from_file_order(tree):
    order = ["carcinoma", "acral", "junctional-nevus", "blue-nevus", "lentigo", "seborrheic-keratosis", "halo-nevus"]
    probs = dirichlet(20, len(LEAVES), seed=2)  # columns in file order
    shuffled = probs[:, [LEAVES.index(leaf) for leaf in order]]  # the same, columns in dataset order
    np.testing.assert_allclose(tree.aggregate(shuffled, "group", order), tree.aggregate(probs, "group"))
    matrix = tree.aggregation_matrix("group", order)
    assert matrix[:, 1].tolist() == [1, 1, 0, 0, 1, 0, 0]  # malignant: carcinoma, acral, lentigo
    np.testing.assert_allclose(tree.aggregate(shuffled, "group", order)[:, 0],
                               probs[:, 0] + probs[:, 1] + probs[:, 2] + probs[:, 3])


def test_partition_hand_worked(tree):
    got = partition(tree, COUNTS, max_class_size=100)
    assert got == [TrainingClass("blue-nevus", 30, ["blue-nevus"]),  # halo-nevus (0 images) dropped
                   TrainingClass("junctional-nevus", 90, ["junctional-nevus"]),
                   TrainingClass("seborrheic-keratosis", 60, ["seborrheic-keratosis"]),
                   TrainingClass("melanoma", 60, ["acral", "lentigo"]),  # 10 own + 20 + 30
                   TrainingClass("carcinoma", 150, ["carcinoma"])]  # a leaf over the limit stays whole
    assert partition(tree, COUNTS, max_class_size=200) == [
        TrainingClass("benign", 180, ["blue-nevus", "halo-nevus", "junctional-nevus", "seborrheic-keratosis"]),
        TrainingClass("melanoma", 60, ["acral", "lentigo"]), TrainingClass("carcinoma", 150, ["carcinoma"])]
    assert partition(tree, COUNTS, max_class_size=390) == [TrainingClass("skin", 390, LEAVES)]
    with pytest.raises(UserError, match="not in the tree: psoriasis"):
        partition(tree, {**COUNTS, "psoriasis": 3}, 100)


def test_partitioned_taxonomy_leaves_are_the_training_classes(tree):
    classes = partition(tree, COUNTS, max_class_size=100)
    cut = partitioned_taxonomy(tree, classes)
    assert cut.leaves == [c.name for c in classes]
    assert cut.level_names == tree.level_names
    assert cut.classes_at("group") == ["benign", "malignant"]
    assert cut.classes_at("family") == ["nevus", "seborrheic-keratosis", "melanoma", "carcinoma"]
    # training-class probabilities sum up to the same coarse classes as the fine leaves they cover
    fine = dirichlet(30, len(LEAVES), seed=3)
    trained = np.stack([fine[:, [LEAVES.index(leaf) for leaf in c.leaves]].sum(1) for c in classes], 1)
    trained[:, 0] += fine[:, LEAVES.index("halo-nevus")]  # halo-nevus was dropped: give its mass to a sibling
    np.testing.assert_allclose(cut.aggregate(trained, "group"), tree.aggregate(fine, "group"))
    with pytest.raises(UserError, match="lies under"):
        partitioned_taxonomy(tree, ["benign", "nevus"])


def test_check_leaves_message(tmp_path, tree):
    tree.check_leaves(list(reversed(LEAVES)))
    with pytest.raises(UserError) as err:
        tree.check_leaves([leaf for leaf in LEAVES if leaf != "acral"] + ["psoriasis"])
    message = str(err.value)
    assert message == (f"taxonomy {tmp_path / 'tree.yaml'} does not match the dataset's classes: "
                       "not in the dataset: acral; not in the tree: psoriasis")
    with pytest.raises(UserError, match="not in the dataset: acral"):
        tree.aggregate(dirichlet(2, 6), "group", [leaf for leaf in LEAVES if leaf != "acral"])


def test_nucleus_tree_both_forms(tmp_path):
    (tmp_path / "a.yaml").write_text(NUCLEUS)
    (tmp_path / "b.yaml").write_text(NUCLEUS.replace("epithelial: [epithelial]", "epithelial:"))
    for name in ("a.yaml", "b.yaml"):
        tax = Taxonomy.from_yaml(tmp_path / name)
        assert tax.leaves == ["epithelial", "fibroblast", "inflammatory", "others"]
        assert tax.classes_at("coarse") == ["epithelial", "non-epithelial"]
        assert tax.classes_at("fine") == tax.leaves
    order = ["others", "epithelial", "inflammatory", "fibroblast"]
    probs = np.array([[0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(tax.aggregate(probs, "coarse", order), [[0.2, 0.8]])


@pytest.mark.parametrize("text, needle", [
    ("root:\n  a: [x, y]\n  a: [z]\n", "duplicate node name 'a'"),
    ("root:\n  a: [x, y]\n  b: [y, z]\n", "duplicate node name 'y'"),
    ("root:\n  a: [x, x]\n", "duplicate node name 'x'"),
    ("root:\n  a: {b: [root]}\n", "duplicate node name 'root'"),
    ("", "empty tree"),
    ("levels: [all, fine]\n", "expected one root node, got 0"),
    ("root:\n  a: 3\n", "node 'a': expected a mapping, a list or nothing, got 3"),
    ("root:\n  a: [{b: 1, c: 2}]\n", "one-key mapping"),
    ("r1: [a]\nr2: [b]\n", "expected one root node, got 2"),
    ("root: [a\n", "not valid YAML"),
    ("levels: all\nroot: [a]\n", "levels must be a list"),
])
def test_bad_tree_is_a_user_error(tmp_path, text, needle):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(UserError) as err:
        Taxonomy.from_yaml(tmp_path / "bad.yaml")
    assert needle in str(err.value) and "bad.yaml" in str(err.value) and "\n" not in str(err.value)


def test_unknown_level_lists_the_valid_ones(tree):
    for level in ("species", 4, -1, "9"):
        with pytest.raises(UserError, match="valid levels: 0, 1, 2, 3, all, group, family, fine, leaves"):
            tree.classes_at(level)


def test_load_counts(tmp_path):
    for header in ("node,images", "class,count", "name,count"):
        (tmp_path / "c.csv").write_text(f"{header}\nnevus,12\n\n melanoma , 3\n")
        assert load_counts(tmp_path / "c.csv") == {"nevus": 12, "melanoma": 3}
    for body, needle in (("nevus,many", "line 2"), ("nevus", "line 2"), ("nevus,-4", "line 2"),
                         ("nevus,1\nnevus,2", "listed twice"), ("", "no NAME,IMAGES rows")):
        (tmp_path / "c.csv").write_text(f"node,images\n{body}\n")
        with pytest.raises(UserError, match=needle):
            load_counts(tmp_path / "c.csv")


def write_inputs(tmp_path):
    (tmp_path / "tree.yaml").write_text(TREE)
    (tmp_path / "counts.csv").write_text("node,images\n" + "".join(f"{k},{v}\n" for k, v in COUNTS.items()))


def test_cli_partition(tmp_path, medconv, cli):
    write_inputs(tmp_path)
    proc = medconv("taxonomy", "partition", tmp_path / "tree.yaml", "--counts", tmp_path / "counts.csv",
                   "--max-class-size", 100, "--out", tmp_path / "cut.yaml")  # the taxonomy verb's one new process
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows[0] == ["training", "class", "images", "leaves"]
    assert rows[1:6] == [["blue-nevus", "30", "blue-nevus"], ["junctional-nevus", "90", "junctional-nevus"],
                         ["seborrheic-keratosis", "60", "seborrheic-keratosis"], ["melanoma", "60", "acral,", "lentigo"],
                         ["carcinoma", "150", "carcinoma", "(a", "leaf", "over", "the", "limit)"]]
    assert "5 training classes" in proc.stdout
    cut = yaml.safe_load((tmp_path / "cut.yaml").read_text())
    assert Taxonomy.from_dict(cut).leaves == ["blue-nevus", "junctional-nevus", "seborrheic-keratosis", "melanoma", "carcinoma"]
    proc = cli("taxonomy", "partition", tmp_path / "tree.yaml", "--counts", tmp_path / "counts.csv",
               "--max-class-size", 200, "--json")
    assert [c["name"] for c in json.loads(proc.stdout)["classes"]] == ["benign", "melanoma", "carcinoma"]


def test_cli_show(tmp_path, cli):
    write_inputs(tmp_path)
    proc = cli("taxonomy", "show", tmp_path / "tree.yaml", "--level", "group")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1:3] == ["skin", "  benign  (4 leaves)"] and "      - halo-nevus" in lines
    assert "  malignant  (3 leaves)" in lines and "nevus" not in proc.stdout.replace("-nevus", "")


@pytest.mark.parametrize("args, needle", [
    (["partition", "missing.yaml", "--counts", "counts.csv"], "missing.yaml not found"),
    (["partition", "tree.yaml", "--counts", "missing.csv"], "missing.csv not found"),
    (["show", "tree.yaml", "--level", "species"], "valid levels"),
])
def test_cli_errors_are_one_line(tmp_path, cli, args, needle):
    write_inputs(tmp_path)
    proc = cli("taxonomy", *[str(tmp_path / a) if a.endswith((".yaml", ".csv")) else a for a in args])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
