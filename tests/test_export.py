"""medconv export (issue 24): every kind of run as ONNX or TorchScript, each file checked against torch before
it is kept; a stale export is noticed; `medconv predict` runs a classifier's ONNX export without torch and gives
torch's probabilities. The runs are written directly (tiny untrained networks with random batch-norm statistics,
saved as checkpoints with their metadata), not trained, so each test takes a few seconds."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from medconv.classify.onnx_predict import predict_exported
from medconv.classify.predict import predict_files
from medconv.config import TrainConfig
from medconv.errors import UserError
from medconv.export import run as export_module
from medconv.export.run import export_run
from medconv.infer.dense import dense_network, dense_posteriors
from medconv.infer.onnx_maps import OnnxMaps, current_export
from medconv.models.registry import build_model
from medconv.segment.config import SegmentConfig
from medconv.segment.maps import MapMaker
from medconv.training.checkpoint import load_model, save_checkpoint

LIMIT = 1e-4
PATCH = {"widths": [4, 4], "kernels": [3, 3], "hidden": [8]}


def save_run(path: Path, arch: str, options: dict, channels: int, size: tuple, classes: list[str], meta: dict) -> Path:
    """A run directory with a tiny untrained network as checkpoints/best (batch norm with random statistics, so
    the eval-mode normalisation is exported too)."""
    torch.manual_seed(0)
    model = build_model(arch, channels, len(classes), size, **options)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    meta = {"arch": arch, "model_options": options, "in_channels": channels, "num_classes": len(classes),
            "input_size": list(size), "classes": classes, "mean": [0.4] * channels, "std": [0.3] * channels,
            "epoch": 1, **meta}
    save_checkpoint(path / "checkpoints" / "best.safetensors", model, meta)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A 2D classifier, a 3D classifier, a patch classifier and a 3D U-Net, not yet exported."""
    root = tmp_path_factory.mktemp("export")
    tiny = {"widths": [4], "hidden": [8]}
    clf = TrainConfig(dataset="synthetic", arch="simple-cnn", model_options=tiny, epochs=1)
    seg = SegmentConfig(dataset="isbi2012", patch=15, model_options=PATCH, epochs=1).validate()
    return {
        "clf": save_run(root / "clf", "simple-cnn", tiny, 1, (28, 28), ["benign", "malignant"],
                        {"task": "binary-class", "config": clf.to_dict()}),
        "clf3d": save_run(root / "clf3d", "cnn3d", {"widths": [4, 4]}, 1, (16, 16, 16), ["a", "b", "c"],
                          {"task": "multi-class", "config": clf.to_dict()}),
        "patch": save_run(root / "patch", "patch-cnn", PATCH, 1, (15, 15), ["cell", "membrane"],
                          {"task": "segmentation", "mode": "patch", "patch": 15, "tile": 48, "config": seg.to_dict()}),
        "unet3d": save_run(root / "unet3d", "unet3d", {"widths": [4, 8]}, 1, (16, 16, 16), ["background", "organ"],
                           {"task": "segmentation", "mode": "dense", "dims": 3, "config": seg.to_dict()}),
    }


@pytest.fixture(scope="module")
def exported_classifier(runs) -> dict:
    """The 2D classifier exported as ONNX: the sidecar's content."""
    return export_run(runs["clf"])


def test_a_classifier_exports_as_onnx_with_a_batch_axis_and_its_sidecar(runs, exported_classifier):
    run, done = runs["clf"], exported_classifier
    assert done["format"] == "onnx" and done["kind"] == "classifier" and done["forms"]["classifier"]["max_difference"] < LIMIT
    sidecar = json.loads((run / "model.json").read_text())
    assert sidecar["stamp"]["bytes"] == (run / "checkpoints" / "best.safetensors").stat().st_size
    assert sidecar["reading"] == {"size": [28, 28], "resize": None, "fit_mode": "resize", "window": None, "tta": "none"}
    model, _ = load_model(run)
    x = torch.rand(5, 1, 28, 28)  # another batch size than the probe's
    logits = ort.InferenceSession(str(run / "model.onnx")).run(None, {"image": x.numpy()})[0]
    assert logits.shape == (5, 2)
    with torch.no_grad():
        assert np.abs(logits - model(x).numpy()).max() < LIMIT


def test_a_patch_classifier_exports_itself_and_its_dense_scanning_form(runs, cli):
    run = runs["patch"]
    done = cli("export", run)
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[1].split()[0] for line in done.stdout.splitlines()] == ["dense", "patch"]
    model, meta = load_model(run)
    image = torch.rand(1, 37, 52)  # not the probe's size
    expected = dense_posteriors(dense_network(model, 15), image, 15, meta["mean"], meta["std"]).numpy()
    assert np.abs(OnnxMaps(run / "model.onnx")(image.numpy()) - expected).max() < LIMIT
    assert np.abs(OnnxMaps(run / "model.onnx", "d4")(image.numpy()) - MapMaker(model, meta, tta="d4")(image).numpy()
                  ).max() < LIMIT  # the maps detect predict makes, as torch makes them
    patches = (torch.rand(3, 1, 15, 15) - 0.4) / 0.3
    logits = ort.InferenceSession(str(run / "model_patch.onnx")).run(None, {"image": patches.numpy()})[0]
    with torch.no_grad():
        assert np.abs(logits - model(patches).numpy()).max() < LIMIT
    sidecar = json.loads((run / "model.json").read_text())
    assert sidecar["kind"] == "patch" and {f: sidecar["forms"][f]["file"] for f in sidecar["forms"]} == {
        "dense": "model.onnx", "patch": "model_patch.onnx"}
    assert current_export(run) == run / "model.onnx"  # detect predict would run it
    assert current_export(run, ("classifier",)) is None  # predict would not


def test_a_patch_classifier_without_a_dense_form_exports_itself_and_says_why(runs, tmp_path, cli):
    seg = SegmentConfig(dataset="isbi2012", patch=15, arch="simple-cnn", epochs=1).validate()
    run = save_run(tmp_path / "padded", "simple-cnn", {"widths": [4], "hidden": [8]}, 1, (15, 15), ["cell", "membrane"],
                   {"task": "segmentation", "mode": "patch", "patch": 15, "tile": 48, "config": seg.to_dict()})
    done = cli("export", run)
    assert done.returncode == 0 and "note: no dense-scanning form" in done.stderr, done.stderr
    assert (run / "model_patch.onnx").exists() and not (run / "model.onnx").exists()
    assert current_export(run) is None  # detect predict maps it with torch


@pytest.mark.parametrize("name", ["clf3d", "unet3d"])
def test_a_3d_network_exports_as_onnx(runs, name):
    run = runs[name]
    done = export_run(run)
    form = done["forms"]["classifier" if name == "clf3d" else "dense"]
    assert done["kind"] == ("classifier" if name == "clf3d" else "dense3d") and form["max_difference"] < LIMIT
    model, _ = load_model(run)
    x = torch.randn(2, 1, 16, 16, 16) if name == "clf3d" else torch.randn(1, 1, 16, 32, 24)  # a batch / another volume
    logits = ort.InferenceSession(str(run / "model.onnx")).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(logits - model(x).numpy()).max() < LIMIT


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_of_a_patch_classifier(runs):
    run = runs["patch"]
    done = export_run(run, fmt="torchscript")
    assert done["format"] == "torchscript" and all(f["max_difference"] < LIMIT for f in done["forms"].values())
    assert json.loads((run / "model.pt.json").read_text())["forms"]["patch"]["file"] == "model_patch.pt"
    model, meta = load_model(run)
    image = torch.rand(1, 40, 33)
    expected = dense_posteriors(dense_network(model, 15), image, 15, meta["mean"], meta["std"])
    with torch.no_grad():
        scan = torch.jit.load(str(run / "model.pt"))
        got = torch.softmax(scan((image[None] - 0.4) / 0.3), 1)[0]
    assert (got - expected).abs().max() < LIMIT


def test_an_export_that_fails_its_check_is_not_kept(runs, tmp_path, monkeypatch):
    run = Path(shutil.copytree(runs["clf"], tmp_path / "clf"))
    export_run(run)  # a good export first: a failed one must not leave it described as current
    monkeypatch.setattr(export_module, "MAX_DIFFERENCE", -1.0)  # no export can pass
    with pytest.raises(UserError, match="differs from the network by .*not kept"):
        export_run(run)
    assert not (run / "model.onnx").exists() and not (run / "model.json").exists()


def test_a_stale_export_is_noticed_and_torch_predicts(runs, exported_classifier, tmp_path):
    run = Path(shutil.copytree(runs["clf"], tmp_path / "clf"))
    image = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(image)
    assert current_export(run, ("classifier",)) == run / "model.onnx"
    model, meta = load_model(run)
    save_checkpoint(run / "checkpoints" / "best.safetensors", model, {**meta, "epoch": 2})  # trained on
    assert current_export(run, ("classifier",)) is None
    assert predict_exported(run, [str(image)]) is None  # the verb then predicts with torch
    assert predict_files(run, [str(image)])[0]["path"] == str(image)


def test_exporting_what_is_not_a_run_is_one_line(runs, tmp_path, cli):
    for target, words in ((tmp_path, "checkpoint"), (tmp_path / "nothing", "not found"),
                          (runs["clf"] / "checkpoints" / "best.safetensors", "run directory")):
        done = cli("export", target)
        assert done.returncode == 2 and words in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert cli("export", runs["clf"], "--format", "keras").returncode == 2


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    """28x28 image files read in different ways: 8-bit grey, RGB (to grey by luminance), 16-bit grey."""
    folder, rng = tmp_path_factory.mktemp("scans"), np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(folder / "colour.png")
    Image.fromarray(rng.integers(0, 65536, (28, 28), dtype=np.uint16)).save(folder / "deep.png")
    return folder


@pytest.mark.parametrize("tta", ["none", "d4"])
def test_predict_through_the_export_gives_torchs_probabilities(runs, exported_classifier, scans, tta):
    by_onnx = predict_exported(runs["clf"], [str(scans)], tta=tta)
    by_torch = predict_files(runs["clf"], [str(scans)], tta=tta)
    assert by_onnx is not None and len(by_onnx) == 3
    for a, b in zip(by_onnx, by_torch):
        assert a["path"] == b["path"] and a["predicted"] == b["predicted"]
        assert all(abs(a[k] - b[k]) < 1e-5 for k in a if k.startswith("prob_"))


def test_predict_leaves_files_of_another_size_to_torch(runs, exported_classifier, scans, tmp_path, capsys):
    other = tmp_path / "large.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(other)
    assert predict_exported(runs["clf"], [str(scans), str(other)]) is None
    assert "1 of 4 images are not 28x28" in capsys.readouterr().err


def test_predict_runs_the_export_without_importing_torch(runs, exported_classifier, scans):
    check = ("import sys; from medconv.cli import main; code = main(sys.argv[1:]); "
             "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", check, "predict", str(runs["clf"]), str(scans)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 0 and "(onnxruntime)" in done.stderr, done.stderr
    assert done.stdout.splitlines()[0] == "path,prob_benign,prob_malignant,predicted" and len(done.stdout.splitlines()) == 4
