"""`medconv inspect`: GoogLeNet's Table 1 row by row, fc-vs-conv, pictures; every architecture trains."""
import json

import pytest

from medconv.analysis import layer_table
from medconv.analysis.paper import TABLE1_ERRATA, compare_table1
from medconv.config import TrainConfig
from medconv.models.registry import available, build_model
from medconv.classify.train import train


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


def test_inspect_cli_json_and_fc_vs_conv(medconv):
    proc = medconv("inspect", "resnet18", "--input", "3x224x224", "--json")
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    assert table["total_params"] == 11_689_512
    assert table["total_macs"] == pytest.approx(1.814e9, rel=0.01)
    layer4 = [r for r in table["rows"] if r["name"].startswith("layer4")][-1]
    assert layer4["rf_exceeds_input"]  # ResNet-18's last stage sees 435 px > 224
    proc = medconv("inspect", "--fc-vs-conv", "--image", "200x200", "--hidden", "25000", "--kernel", "10", "--json")
    result = json.loads(proc.stdout)
    assert result["fully_connected"] == 1_000_000_000 and result["locally_connected"] == 2_500_000
    assert medconv("inspect", "resnet18", "--input", "3x224").returncode == 2


def test_pictures_of_a_trained_run(tmp_path, medconv, data_root):
    import numpy as np
    from PIL import Image

    run = tmp_path / "run"
    cfg = TrainConfig(dataset="breastmnist", data_root=str(data_root), arch="simple-cnn",
                      model_options={"widths": [8, 16], "hidden": [16]}, epochs=1)
    train(cfg, run)
    image = np.load(data_root / "medmnist" / "breastmnist.npz")["test_images"][0]
    Image.fromarray(image).save(tmp_path / "scan.png")
    proc = medconv("inspect", "--run", run, "--plot-rf", tmp_path / "rf.png", "--filters", tmp_path / "f.png",
                   "--image", tmp_path / "scan.png")
    assert proc.returncode == 0, proc.stderr
    for name in ("rf.png", "f.png"):
        assert (tmp_path / name).stat().st_size > 5000
        assert Image.open(tmp_path / name).size[0] > 200


@pytest.fixture(scope="module")
def small_breastmnist(tmp_path_factory, data_root):
    """A data root holding the first 32/16/16 train/val/test images of the real BreastMNIST file."""
    import numpy as np

    root = tmp_path_factory.mktemp("small-breastmnist")
    with np.load(data_root / "medmnist" / "breastmnist.npz") as npz:
        arrays = {k: npz[k][:32 if k.startswith("train") else 16] for k in npz.files}
    np.savez(root / "breastmnist.npz", **arrays)
    return root


@pytest.mark.parametrize("arch", available())
def test_every_architecture_trains_one_epoch_on_breastmnist(arch, tmp_path, small_breastmnist):
    # inception_v3 cannot run below 75 px: it gets --resize 75 (its native 299 works the same, slower)
    cfg = TrainConfig(dataset="breastmnist", data_root=str(small_breastmnist), arch=arch, epochs=1, batch_size=16,
                      resize=75 if arch == "inception_v3" else None)
    result = train(cfg, tmp_path / arch)
    assert result["epochs"] == 1 and 0 <= result["test"]["auc"] <= 1 and result["test"]["n"] == 16
    meta = json.loads((tmp_path / arch / "checkpoints" / "best.json").read_text())
    assert meta["input_size"] == ([75, 75] if arch == "inception_v3" else [28, 28])


def test_resize_to_native_size_from_the_command_line(tmp_path, small_breastmnist, medconv):
    run = tmp_path / "googlenet224"
    proc = medconv("train", "--dataset", "breastmnist", "--data-root", small_breastmnist, "--arch", "googlenet",
                   "--resize", "224", "--epochs", "1", "--batch-size", "16", "--out", run)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((run / "checkpoints" / "best.json").read_text())
    assert meta["input_size"] == [224, 224] and meta["config"]["resize"] == 224
    # at 224 px GoogLeNet keeps its published 7x7/2 stem (the small-input stem is for < 96 px)
    table = json.loads(medconv("inspect", "--run", run, "--json").stdout)
    assert table["input_shape"] == [1, 224, 224]
    assert table["rows"][0]["kernel"] == [7, 7] and table["rows"][0]["stride"] == [2, 2]
