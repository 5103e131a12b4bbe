"""Consistent defaults (issue 22, item 7): --device auto on every verb that runs a network, checked as training
checks it; messages that stay one line in a log or a captured output; detect predict without the run's test-time
augmentation unless asked (and one line saying what it leaves out), its progress over several images, and a
picture of each image's detections beside its CSV. The detection run is written directly (an untrained tiny
network and its detect.json), not trained, so the file runs in seconds."""
from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_in_process
from medconv.cli import build_parser
from medconv.config import TrainConfig
from medconv.detect import predict as detect_predict
from medconv.detect.overlays import FOUND
from medconv.errors import UserError
from medconv.progress import make_console
from medconv.segment.config import SegmentConfig
from medconv.training.engine import resolve_device
from test_bad_input import save_run
from test_cli_help import options

AUTO = "auto (default): cuda if available, else cpu"
CHOSE_D4 = {"sigma": 1.0, "min_distance": 3, "threshold": 0.0, "tolerance": 6.0, "tta": "d4", "val_f1": 0.5,
            "tta_f1": {"none": 0.48, "d4": 0.5}}  # threshold 0: every local maximum of the map is a detection
NOTE = ("note: the run chose test-time augmentation d4 on validation (validation F1 0.5000 vs 0.4800 with none); "
        "this prediction uses none, the default: --tta d4 applies it at about 8x the time")


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    """(run directory, folder of two 40 x 48 RGB images a.png and b.png): an untrained patch network saved as a
    detection run whose detect.json chose test-time augmentation d4 on validation."""
    root = tmp_path_factory.mktemp("defaults")
    torch.manual_seed(0)
    patch = {"widths": [4], "kernels": [3], "hidden": [8]}
    cfg = SegmentConfig(dataset="crchistophenotypes", patch=15, model_options=patch, epochs=1).validate()
    save_run(root / "det", "patch-cnn", patch, 3, 15, ["background", "centre"],
             {"task": "segmentation", "mode": "patch", "patch": 15, "tile": 128, "dataset": "crchistophenotypes",
              "config": cfg.to_dict()})
    (root / "det" / "detect.json").write_text(json.dumps(CHOSE_D4))
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for name in "ab":
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
    return root / "det", root / "images"


@pytest.fixture
def piped(monkeypatch):
    """Standard error as a log sees it: not a terminal, whatever the environment forces."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------- --device auto

def test_every_device_option_defaults_to_auto_and_says_so():
    devices = [(path, action) for path, action in options() if "--device" in action.option_strings]
    assert len(devices) >= 12
    for path, action in devices:
        if action.default is None:  # train, segment train, detect train: the run configuration's field
            assert TrainConfig().device == "auto" and "(default: auto)" in action.help, path
        else:
            assert action.default == "auto" and AUTO in action.help, path


def test_auto_is_resolved_as_training_resolves_it():
    parser, expected = build_parser(), str(resolve_device("auto"))
    for argv in (["evaluate", "RUN"], ["segment", "evaluate", "RUN"],
                 ["segment", "predict", "RUN", "x.png", "--out", "maps"], ["detect", "tune", "RUN"],
                 ["detect", "evaluate", "RUN"], ["transfer", "extract", "--backbone", "simple-cnn"]):
        assert parser.parse_args(argv).device == expected, argv
    # predict and detect predict resolve it themselves: auto runs a run's ONNX export without importing torch
    assert parser.parse_args(["detect", "predict", "RUN", "x.png"]).device == "auto"
    assert parser.parse_args(["predict", "RUN", "x.png"]).device == "auto"


@pytest.mark.parametrize("argv", [["evaluate", "RUN"], ["segment", "evaluate", "RUN"], ["detect", "predict", "RUN",
                                                                                         "x.png"]])
def test_a_bad_device_is_refused_with_the_line_train_gives(argv):
    with pytest.raises(UserError) as refused:
        TrainConfig(dataset="synthetic", device="gpu").validate()
    done = run_in_process(*argv, "--device", "gpu")
    command = " ".join(["medconv", *argv[:2 if argv[0] in ("segment", "detect") else 1]])
    assert done.returncode == 2 and done.stderr.startswith(f"{command}: error: {refused.value}"), done.stderr


# ---------------------------------------------------------------------------------------------- no wrapping

def test_a_console_on_a_pipe_keeps_a_long_line_whole(piped):
    stream, line = io.StringIO(), " ".join(f"word{i}" for i in range(40))
    make_console(file=stream).print(line)
    assert len(line) > 200 and stream.getvalue().splitlines() == [line]


def test_a_verb_with_captured_output_keeps_its_long_lines_whole(tmp_path, piped):
    cache = tmp_path / "a-folder-whose-name-makes-the-line-longer-than-eighty-columns"
    done = run_in_process("transfer", "extract", "--backbone", "simple-cnn", "--dataset", "synthetic", "--cache",
                          cache)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stderr.splitlines() if line.startswith("features cached in "))
    assert len(line) > 120 and str(cache) in line and line.endswith(".npz"), done.stderr


# ---------------------------------------------------------------------------------------------- detect predict

def test_predict_circles_each_images_detections_beside_its_csv(tiny_detector, tmp_path, piped):
    run, images = tiny_detector
    done = run_in_process("detect", "predict", run, images, "--out", tmp_path / "d.csv")
    assert done.returncode == 0 and "(torch)" in done.stderr, done.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "d.csv").read_text())))
    for name in "ab":
        drawn = np.asarray(Image.open(tmp_path / "d_overlays" / f"{name}.png").convert("RGB"))
        original = np.asarray(Image.open(images / f"{name}.png").convert("RGB"))
        assert drawn.shape == original.shape == (40, 48, 3)
        changed = (drawn != original).any(-1)
        assert changed.any() and (drawn[changed] == FOUND).all()  # circles, the rest of the image as it was
        found = [(round(float(r["y"])) - 1, round(float(r["x"])) - 1) for r in rows if r["image"] == f"{name}.png"]
        assert found and all(changed[max(y - 5, 0):y + 6, max(x - 5, 0):x + 6].any() for y, x in found)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "d_overlays"]


def test_predict_writes_no_overlays_with_no_overlays_or_without_a_csv_file(tiny_detector, tmp_path, monkeypatch):
    run, images = tiny_detector
    monkeypatch.chdir(tmp_path)
    printed = run_in_process("detect", "predict", run, images / "a.png")
    assert printed.returncode == 0 and printed.stdout.startswith("image,x,y,score"), printed.stderr
    assert not any(tmp_path.iterdir())
    done = run_in_process("detect", "predict", run, images / "a.png", "--out", tmp_path / "d.csv", "--no-overlays")
    assert done.returncode == 0 and [p.name for p in tmp_path.iterdir()] == ["d.csv"], done.stderr


def test_predict_refuses_overlays_inside_the_folder_it_reads(tiny_detector, tmp_path):
    run, images = tiny_detector
    folder = shutil.copytree(images, tmp_path / "images")
    refused = run_in_process("detect", "predict", run, folder, "--out", folder / "d.csv")
    assert refused.returncode == 2 and "--no-overlays" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png"]
    allowed = run_in_process("detect", "predict", run, folder, "--out", folder / "d.csv", "--no-overlays")
    assert allowed.returncode == 0 and (folder / "d.csv").exists(), allowed.stderr


def test_predict_leaves_the_runs_tta_out_unless_asked_and_says_so(tiny_detector, monkeypatch, piped):
    run, images = tiny_detector
    used, original = [], detect_predict.map_function
    monkeypatch.setattr(detect_predict, "map_function",
                        lambda run_dir, tta, device="auto": used.append(tta) or original(run_dir, tta, device))
    image = images / "a.png"
    plain = run_in_process("detect", "predict", run, image)
    asked = run_in_process("detect", "predict", run, image, "--tta", "d4")
    explicit = run_in_process("detect", "predict", run, image, "--tta", "none")
    assert plain.returncode == asked.returncode == explicit.returncode == 0, plain.stderr + asked.stderr
    assert used == ["none", "d4", "none"]
    assert [line for line in plain.stderr.splitlines() if line.startswith("note:")] == [NOTE]
    assert "note:" not in asked.stderr + explicit.stderr and ", test-time augmentation d4" in asked.stderr
    assert detections(plain) == detections(explicit) != detections(asked)  # the mean of 8 views: other scores


def detections(done) -> list[tuple]:
    """The (x, y, score) rows of detect predict's printed CSV."""
    return [(r["x"], r["y"], r["score"]) for r in csv.DictReader(io.StringIO(done.stdout))]


def test_predict_types_its_detections_on_the_device_auto_resolves_to(tiny_detector, tmp_path):
    run, images = tiny_detector
    tiny, kinds = {"widths": [4], "hidden": [8]}, ["epithelial", "fibroblast", "inflammatory", "others"]
    cfg = TrainConfig(dataset="crchistophenotypes", arch="simple-cnn", model_options=tiny, epochs=1, patch=15)
    save_run(tmp_path / "clf", "simple-cnn", tiny, 3, 15, kinds,
             {"task": "multi-class", "dataset": "crchistophenotypes", "config": cfg.to_dict()})
    done = run_in_process("detect", "predict", run, images / "a.png", "--classifier", tmp_path / "clf")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert done.returncode == 0 and rows and {r["class"] for r in rows} <= set(kinds), done.stderr


def test_the_tta_note_without_the_score_of_none():
    assert detect_predict.tta_note({"tta": "none", "val_f1": 0.5}) is None
    note = detect_predict.tta_note({"tta": "flip", "val_f1": 0.5})
    assert "(validation F1 0.5000; the score with none was not recorded)" in note and "about 4x the time" in note


def test_predict_shows_its_progress_over_several_images_on_a_terminal(tiny_detector, monkeypatch):
    run, images = tiny_detector
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: a terminal
    several = run_in_process("detect", "predict", run, images)
    one = run_in_process("detect", "predict", run, images / "a.png")
    assert several.returncode == one.returncode == 0, several.stderr
    assert "detecting" in several.stderr and "2/2" in several.stderr
    assert "detecting" not in one.stderr
