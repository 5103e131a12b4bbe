"""--tensorboard (training.tracking): RUN_DIR/tensorboard/ holds each epoch's history row as scalars, equal to
history.csv's, and a grid of the epoch's first training inputs; without the flag nothing is written and training is
the same; a missing tensorboard package is one line before anything is trained; a resumed run logs each epoch once.
Tiny runs (a 4-filter CNN on 30% of the synthetic lesions for 2 epochs, the engine's toy task): seconds."""
from __future__ import annotations

import csv
import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_in_process
from medconv.cli import build_parser
from medconv.cli.options import config_from_args
from medconv.config import BaseConfig, TrainConfig
from medconv.errors import UserError
from medconv.segment.config import SegmentConfig
from medconv.training import tracking
from medconv.training.engine import fit, open_run
from test_engine import ToyTask, toy_fit

TINY = ["--dataset", "synthetic", "--arch", "simple-cnn", "--model-option", "widths=[4]", "--model-option",
        "hidden=[8]", "--epochs", "2", "--batch-size", "64", "--train-fraction", "0.3", "--augment", "light",
        "--threads", "1", "--deterministic", "--seed", "1", "--no-test"]


def history(run) -> list[dict]:
    with open(run / "history.csv") as fh:
        return list(csv.DictReader(fh))


def events(run) -> EventAccumulator:
    logs = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    logs.Reload()
    return logs


def assert_scalars_are_the_history(run, steps: list[int]):
    """Each numeric column of history.csv but epoch is a scalar with one value per epoch in `steps`, the same."""
    rows, logs = history(run), events(run)
    columns = [k for k in rows[0] if k != "epoch" and rows[0][k] != ""]
    assert sorted(logs.Tags()["scalars"]) == sorted(columns)
    by_epoch = {int(r["epoch"]): r for r in rows}
    for column in columns:
        logged = logs.Scalars(column)
        assert [e.step for e in logged] == steps, column
        for e in logged:
            assert e.value == pytest.approx(float(by_epoch[e.step][column]), rel=1e-5, abs=1e-9), (column, e.step)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny classifier trained by medconv train with --tensorboard (a) and without (b)."""
    root = tmp_path_factory.mktemp("tensorboard")
    for name, flag in (("a", ["--tensorboard"]), ("b", [])):
        done = run_in_process("train", *TINY, *flag, "--out", root / name)
        assert done.returncode == 0, done.stderr
    return root / "a", root / "b"


def test_the_scalars_are_history_csv_and_each_epoch_has_a_grid_of_its_inputs(runs):
    run, _ = runs
    assert_scalars_are_the_history(run, [1, 2])
    assert {"lr", "train_loss", "val_loss", "val_auc", "val_acc", "seconds"} <= set(events(run).Tags()["scalars"])
    grids = events(run).Images("inputs")
    assert [e.step for e in grids] == [1, 2]
    for e in grids:
        image = Image.open(io.BytesIO(e.encoded_image_string))
        # 8 inputs of 28 px, 3 a row, 2 px apart: (3 x 30 + 2) px square
        assert image.size == (e.width, e.height) == (92, 92)
        assert len(np.unique(np.asarray(image.convert("L")))) > 50  # speckled lesions, not a blank
    assert grids[0].encoded_image_string != grids[1].encoded_image_string  # each epoch's own first batch


def test_without_the_flag_nothing_is_logged_and_training_is_the_same(runs):
    a, b = runs
    assert not (b / "tensorboard").exists() and (a / "tensorboard").is_dir()
    same = [{k: v for k, v in row.items() if k != "seconds"} for row in history(a)]
    assert same == [{k: v for k, v in row.items() if k != "seconds"} for row in history(b)]
    assert "tensorboard: true" in (a / "config.yaml").read_text()


@pytest.mark.parametrize("argv,config", [(["train"], TrainConfig), (["segment", "train"], SegmentConfig),
                                         (["detect", "train"], SegmentConfig)])
def test_every_training_verb_takes_the_flag_into_its_configuration(argv, config, tmp_path):
    parse = build_parser().parse_args
    assert config_from_args(parse([*argv, "--out", str(tmp_path / "r"), "--tensorboard"]), config).tensorboard
    assert not config_from_args(parse([*argv, "--out", str(tmp_path / "r")]), config).tensorboard


def test_a_missing_package_is_one_line_before_anything_is_trained(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard: ImportError
    done = run_in_process("train", *TINY, "--tensorboard", "--out", tmp_path / "r")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "medconv train: error: " + tracking.INSTALL], done.stderr
    assert "pip install tensorboard" in tracking.INSTALL and not (tmp_path / "r").exists()
    with pytest.raises(UserError, match="pip install tensorboard"):
        open_run(BaseConfig(epochs=2, tensorboard=True), tmp_path / "toy", False, None)
    open_run(BaseConfig(epochs=2), tmp_path / "plain", False, None)[1].release()  # not needed without the flag


@pytest.mark.parametrize("first", [True, False])
def test_a_resumed_run_logs_each_epoch_once(tmp_path, first):
    toy_fit(tmp_path, ToyTask(), epochs=2, tensorboard=first, threads=1)
    cfg, run = open_run(BaseConfig(), tmp_path, True, {"epochs": 4, "tensorboard": True})
    with run:
        fit(ToyTask(), cfg, run, {"arch": "toy", "config": cfg.to_dict()}, Console(quiet=True))
    assert_scalars_are_the_history(tmp_path, [1, 2, 3, 4] if first else [3, 4])
    assert "inputs" not in events(tmp_path).Tags()["images"]  # the toy's inputs are vectors, not images


def test_the_grid_shows_volumes_by_their_middle_slice_and_scales_large_inputs_down():
    volumes = torch.zeros(3, 2, 5, 16, 16)
    volumes[:, 0, 2] = torch.linspace(0, 1, 16)  # the middle slice of the first channel: a ramp
    grid = tracking.grid(volumes)
    assert grid.shape == (3, 38, 38) and grid.min() == 0 and grid.max() == 1
    assert tracking.grid(torch.rand(4, 1, 512, 256)).shape == (3, 2 * 258 + 2, 2 * 130 + 2)  # 256 x 128 each


def test_only_the_writing_rank_logs(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "writes_here", lambda: False)
    model = torch.nn.Conv2d(1, 1, 3)
    with tracking.track(BaseConfig(tensorboard=True), tmp_path, model) as tracker:
        tracker.watch()
        model(torch.zeros(2, 1, 8, 8))
        tracker.log({"epoch": 1, "train_loss": 0.5})
    assert not (tmp_path / "tensorboard").exists() and not model._forward_pre_hooks
