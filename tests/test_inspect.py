"""`medconv inspect`: GoogLeNet's Table 1 row by row, fc-vs-conv, pictures; every architecture trains."""
import csv
import io
import json

import numpy as np
import pytest
from rich.console import Console

from medconv.analysis import layer_table
from medconv.analysis.paper import TABLE1_ERRATA, compare_table1
from medconv.classify.train import train
from medconv.config import TrainConfig
from medconv.models.registry import REGISTRY, available, build_model


def test_googlenet_reproduces_table1_of_szegedy_2014_row_by_row():
    table = layer_table(build_model("googlenet", 3, 1000, (224, 224), batch_norm=False), (3, 224, 224), depth=1)
    rows = compare_table1(table)
    assert len(rows) == 12
    for row in rows:
        assert row["output"] == row["paper_output"], row["row"]
        if row["row"] in TABLE1_ERRATA:
            # the published figure contradicts the paper's own filter counts: we must not match it
            assert not (row["weights_match"] and row["ops_match"]), row["row"]
        else:
            assert row["weights_match"] and row["ops_match"], row
    conv1 = rows[0]
    assert conv1["weights_k"] == pytest.approx(7 * 7 * 3 * 64 / 1024, abs=0.05)
    assert conv1["ops_m"] == pytest.approx(7 * 7 * 3 * 64 * 112 * 112 / 1e6, abs=0.05)
    assert set(TABLE1_ERRATA) == {"convolution 7x7/2", "inception (4c)", "inception (5a)"}


def test_inspect_cli_json_and_fc_vs_conv(medconv, cli):
    proc = medconv("inspect", "resnet18", "--input", "3x224x224", "--json")  # the inspect verb's one new process
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    assert table["total_params"] == 11_689_512
    assert table["total_macs"] == pytest.approx(1.814e9, rel=0.01)
    layer4 = [r for r in table["rows"] if r["name"].startswith("layer4")][-1]
    assert layer4["rf_exceeds_input"]  # ResNet-18's last stage sees 435 px > 224
    proc = cli("inspect", "--fc-vs-conv", "--image", "200x200", "--hidden", "25000", "--kernel", "10", "--json")
    result = json.loads(proc.stdout)
    assert result["fully_connected"] == 1_000_000_000 and result["locally_connected"] == 2_500_000
    assert cli("inspect", "resnet18", "--input", "3x224").returncode == 2


def test_inspect_of_a_trained_run_counts_what_a_hand_count_gives(breast_run, cli):
    """The session's BreastMNIST run: simple-cnn, widths 16, 32, 64 (two 3x3 convs without bias + batch norm each,
    then a 2x2 max-pool: 28 -> 14 -> 7 -> 3 px), hidden 64, 2 classes."""
    proc = cli("inspect", "--run", breast_run[0], "--json")
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    convs = [(1, 16, 28), (16, 16, 28), (16, 32, 14), (32, 32, 14), (32, 64, 7), (64, 64, 7)]  # (in, out, side)
    conv_weights = sum(3 * 3 * i * o for i, o, _ in convs)
    batch_norm = sum(2 * o for _, o, _ in convs)  # scale and shift per map
    fc_weights = 64 * 3 * 3 * 64 + 64 * 2
    assert table["total_params"] == conv_weights + batch_norm + fc_weights + 64 + 2 == 109_074
    assert table["total_weights"] == conv_weights + fc_weights
    assert table["total_macs"] == sum(3 * 3 * i * o * side * side for i, o, side in convs) + fc_weights
    assert table["input_shape"] == [1, 28, 28] and table["rows"][-1]["output_shape"] == [2]


def test_pictures_of_a_trained_run(tmp_path, cli, data_root, breast_run):
    import numpy as np
    from PIL import Image

    image = np.load(data_root / "medmnist" / "breastmnist.npz")["test_images"][0]
    Image.fromarray(image).save(tmp_path / "scan.png")
    proc = cli("inspect", "--run", breast_run[0], "--plot-rf", tmp_path / "rf.png", "--filters", tmp_path / "f.png",
               "--image", tmp_path / "scan.png")
    assert proc.returncode == 0, proc.stderr
    for name in ("rf.png", "f.png"):
        assert (tmp_path / name).stat().st_size > 5000
        assert Image.open(tmp_path / name).size[0] > 200


def first_images(root, data_root, train: int, others: int):
    """root, holding the first `train` / `others` / `others` train/val/test images of the real BreastMNIST file."""
    with np.load(data_root / "medmnist" / "breastmnist.npz") as npz:
        arrays = {k: npz[k][:train if k.startswith("train") else others] for k in npz.files}
    np.savez(root / "breastmnist.npz", **arrays)
    return root


@pytest.fixture(scope="module")
def small_breastmnist(tmp_path_factory, data_root):
    """A data root holding the first 32/16/16 train/val/test images of the real BreastMNIST file."""
    return first_images(tmp_path_factory.mktemp("small-breastmnist"), data_root, 32, 16)


@pytest.mark.parametrize("arch", [a for a in available() if REGISTRY[a].dims == 2])  # 3D: test_volumes3d
def test_every_architecture_trains_one_epoch_on_breastmnist(arch, tmp_path, small_breastmnist):
    # inception_v3 cannot run below 75 px: it gets --resize 75 (its native 299 works the same, slower)
    cfg = TrainConfig(dataset="breastmnist", data_root=str(small_breastmnist), arch=arch, epochs=1, batch_size=16,
                      resize=75 if arch == "inception_v3" else None)
    result = train(cfg, tmp_path / arch, console=Console(file=io.StringIO()))
    assert result["epochs"] == 1 and result["test"]["n"] == 16
    # the figures reported are those of the best checkpoint on the 16 real test images, recomputed here by hand:
    # AUC as the fraction of (benign, malignant) pairs ranked right (ties count half), accuracy of the argmax
    from medconv.classify.predict import predict_scores
    from medconv.data import load_dataset
    from medconv.training.checkpoint import load_model
    with np.load(small_breastmnist / "breastmnist.npz") as npz:
        labels = npz["test_labels"][:, 0]
    test = load_dataset(cfg)[1]["test"]  # the images as the run saw them (inception_v3: resized to 75 px)
    assert test.labels[:, 0].tolist() == labels.tolist()
    model, meta = load_model(tmp_path / arch)
    scores = np.asarray(predict_scores(model, test.images, meta["mean"], meta["std"], meta["task"]))
    benign = scores[:, 1] if scores.ndim == 2 else scores  # class 1 ("normal, benign"), the positive class
    assert 0 < labels.sum() < 16  # both classes among the 16
    pairs = [(p > n) + 0.5 * (p == n) for p in benign[labels == 1] for n in benign[labels == 0]]
    assert result["test"]["auc"] == pytest.approx(np.mean(pairs), abs=1e-9)
    assert result["test"]["acc"] == pytest.approx(np.mean((benign > 0.5) == (labels == 1)), abs=1e-9)
    rows = list(csv.DictReader(open(tmp_path / arch / "predictions_test.csv")))
    assert [int(r["label"]) for r in rows] == labels.tolist()
    assert np.allclose([float(r["prob_normal, benign"]) for r in rows], benign, atol=1e-6)
    meta = json.loads((tmp_path / arch / "checkpoints" / "best.json").read_text())
    assert meta["input_size"] == ([75, 75] if arch == "inception_v3" else [28, 28])


def test_resize_to_native_size_from_the_command_line(tmp_path, data_root, cli):
    run = tmp_path / "googlenet224"
    tiny = first_images(tmp_path, data_root, 8, 8)  # 224 px GoogLeNet: 8 images a split (both classes in each)
    proc = cli("train", "--dataset", "breastmnist", "--data-root", tiny, "--arch", "googlenet",
               "--resize", "224", "--epochs", "1", "--batch-size", "8", "--out", run)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((run / "checkpoints" / "best.json").read_text())
    assert meta["input_size"] == [224, 224] and meta["config"]["resize"] == 224
    # at 224 px GoogLeNet keeps its published 7x7/2 stem (the small-input stem is for < 96 px)
    table = json.loads(cli("inspect", "--run", run, "--json").stdout)
    assert table["input_shape"] == [1, 224, 224]
    assert table["rows"][0]["kernel"] == [7, 7] and table["rows"][0]["stride"] == [2, 2]
