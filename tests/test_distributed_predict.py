"""Prediction on several processes (`--nproc N`, infer.shards): 2 CPU processes under torchrun (gloo) give the rows of
1 process in input order (predict, detect predict), each writes the per-image files of its share (segment predict,
detect predict's overlays), and the share and gather functions are no-ops in one process."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medconv.config import TrainConfig
from medconv.fileio import own_files, write_text, writes_here
from medconv.infer import shards
from medconv.segment.config import SegmentConfig

TINY_CNN = {"widths": [4], "hidden": [8]}
TINY_PATCH = {"widths": [4], "kernels": [3], "hidden": [8]}


def save_run(path: Path, arch: str, options: dict, channels: int, side: int, classes: list[str], meta: dict) -> Path:
    """A run directory with an untrained tiny network (seeded) as its best checkpoint; training not finished
    (hence --allow-unfinished)."""
    import torch

    from medconv.models.registry import build_model
    from medconv.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(arch, channels, len(classes), (side, side), **options)
    meta = {"arch": arch, "model_options": options, "in_channels": channels, "num_classes": len(classes),
            "input_size": [side, side], "classes": classes, "mean": [0.5] * channels, "std": [0.25] * channels,
            "epoch": 1, **meta}
    save_checkpoint(path / "checkpoints" / "best.safetensors", model, meta)
    (path / "config.yaml").write_text(json.dumps(meta["config"]))
    return path


def write_images(folder: Path, count: int, side: int, channels: int, seed: int) -> Path:
    """`count` PNGs of smooth random blobs (so that maps and detections have structure), named so that their
    sorted order is their numbering."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:side, :side]
    for i in range(count):
        picture = np.full((side, side, channels), 40.0)
        for _ in range(6):
            cy, cx, r = rng.uniform(0, side, 2).tolist() + [rng.uniform(3, 6)]
            picture[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(120, 250, channels)
        picture += rng.normal(0, 8, picture.shape)
        array = np.clip(picture, 0, 255).astype(np.uint8)
        Image.fromarray(array[..., 0] if channels == 1 else array).save(folder / f"img{i:02d}.png")
    return folder


def two_processes(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "medconv.cli", *map(str, args), "--nproc", "2"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@contextlib.contextmanager
def one_thread():
    """torch on one thread, as each rank of two_processes (OMP_NUM_THREADS=1): the same sums in the same order,
    so the same floats (16-bit probability maps differ by a step otherwise)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sharded")
    cfg = TrainConfig(dataset="synthetic", arch="simple-cnn", model_options=TINY_CNN, epochs=1)
    save_run(root / "clf", "simple-cnn", TINY_CNN, 1, 28, ["malignant", "benign"],
             {"task": "binary-class", "dataset": "synthetic-lesions", "config": cfg.to_dict()})
    seg = SegmentConfig(dataset="isbi2012", patch=15, model_options=TINY_PATCH, epochs=1).validate()
    save_run(root / "seg", "patch-cnn", TINY_PATCH, 1, 15, ["cell", "membrane"],
             {"task": "segmentation", "mode": "patch", "patch": 15, "tile": 128, "dataset": "isbi2012",
              "config": seg.to_dict()})
    det = SegmentConfig(dataset="crchistophenotypes", patch=15, model_options=TINY_PATCH, epochs=1).validate()
    save_run(root / "det", "patch-cnn", TINY_PATCH, 3, 15, ["background", "centre"],
             {"task": "segmentation", "mode": "patch", "patch": 15, "tile": 128, "dataset": "crchistophenotypes",
              "config": det.to_dict()})
    params = {"sigma": 1.0, "min_distance": 3, "threshold": 0.0, "tta": "none", "tolerance": 6.0}
    (root / "det" / "detect.json").write_text(json.dumps(params))
    write_images(root / "scans", 11, 28, 1, seed=0)  # 11: the ranks' shares differ in size (6 and 5)
    write_images(root / "crops", 5, 64, 1, seed=1)
    write_images(root / "tiles", 3, 48, 3, seed=2)
    return root


# ---------------------------------------------------------------- two processes against one

def test_predict_on_two_processes_gives_the_rows_of_one_in_input_order(made, tmp_path):
    from medconv.classify.predict import predict_files

    done = two_processes("predict", made / "clf", made / "scans", "--allow-unfinished", "--out", tmp_path / "two.csv")
    with one_thread():
        one = predict_files(made / "clf", [str(made / "scans")], tmp_path / "one.csv", allow_unfinished=True)
    two = read_csv(tmp_path / "two.csv")
    assert [r["path"] for r in two] == [r["path"] for r in one] == [str(p) for p in sorted((made / "scans").iterdir())]
    for a, b in zip(two, one, strict=True):
        assert a["predicted"] == b["predicted"]
        for key in ("prob_malignant", "prob_benign"):
            assert float(a[key]) == pytest.approx(b[key], abs=1e-6)
    assert len({r["prob_benign"] for r in two}) > 1  # the images are told apart: the order is tested
    assert done.stdout.count("11 predictions ->") == 1  # rank 0 speaks for both


def test_segment_predict_on_two_processes_writes_every_map_as_one_process(made, tmp_path):
    from rich.console import Console

    from medconv.segment.evaluate import predict_segmentation

    two_processes("segment", "predict", made / "seg", made / "crops", "--allow-unfinished", "--out", tmp_path / "two")
    with one_thread():
        predict_segmentation(made / "seg", [str(made / "crops")], tmp_path / "one", allow_unfinished=True,
                             console=Console(quiet=True))
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(names) == 15  # 5 images: NAME_prob.png, NAME_mask.png, NAME_overlay.png
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == names  # rank 1's files too, no temporary left
    for name in names:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


def test_detect_predict_on_two_processes_gives_the_rows_and_overlays_of_one(made, tmp_path):
    from medconv.detect.predict import predict_detections

    two_processes("detect", "predict", made / "det", made / "tiles", "--allow-unfinished", "--out",
                  tmp_path / "two" / "found.csv")
    with one_thread():
        predict_detections(made / "det", [str(made / "tiles")], tmp_path / "one" / "found.csv",
                           allow_unfinished=True, log=lambda line: None)

    def rows(folder):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(folder / "found.csv")]
    one = rows(tmp_path / "one")
    assert one and rows(tmp_path / "two") == one
    assert [r["image"] for r in one] == sorted(r["image"] for r in one)  # input order, image by image
    overlays = sorted(p.name for p in (tmp_path / "one" / "found_overlays").iterdir())
    assert overlays == ["img00.png", "img01.png", "img02.png"]
    for name in overlays:
        assert (tmp_path / "two" / "found_overlays" / name).read_bytes() == \
            (tmp_path / "one" / "found_overlays" / name).read_bytes()


def test_a_bad_input_on_two_processes_is_one_line_and_exit_code_2(made, tmp_path):
    """As in one process: the error in one line, exit code 2, nothing written; not torchrun's exit code 1, its
    traceback and report of the failed ranks (both ranks fail alike here: the failure is gathered by all)."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "img01.png").write_bytes(b"not a png")  # the second input: rank 1's share
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "medconv.cli", "segment", "predict", str(made / "seg"),
                           str(made / "crops" / "img00.png"), str(tmp_path / "in" / "img01.png"), "--allow-unfinished",
                           "--out", str(tmp_path / "out"), "--nproc", "2"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    assert not any(word in done.stderr for word in ("Traceback", "ChildFailedError", "terminate", "exitcode"))
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert errors == [f"medconv segment predict: error: cannot read image {tmp_path / 'in' / 'img01.png'}: cannot "
                      f"identify image file '{tmp_path / 'in' / 'img01.png'}'"], done.stderr[-3000:]
    assert not (tmp_path / "out").exists()


def test_the_launcher_prints_each_ranks_own_error_once_and_returns_its_code(tmp_path, capsys):
    from medconv.cli.launch import failures, report_failures

    for rank, (code, line) in enumerate([(2, "a: error: x"), (2, "a: error: x"), (2, "a: error: y"), (1, "a: z")]):
        (tmp_path / f"rank{rank}").write_text(f"{code}\n{line}")
    left = failures(tmp_path)
    assert left == {0: (2, "a: error: x"), 1: (2, "a: error: x"), 2: (2, "a: error: y"), 3: (1, "a: z")}
    assert report_failures(left, [-15, 2]) == 2  # bad input on a rank: 2, as in one process
    assert capsys.readouterr().err.splitlines() == ["(rank 2) a: error: y", "(rank 3) a: z"]  # rank 0 printed x
    assert report_failures({1: (1, "a: diverged")}, [1]) == 1 and "(rank 1) a: diverged" in capsys.readouterr().err
    assert report_failures({}, [-9, 1]) == 1  # killed ranks that left no line: 1, and a line saying so
    assert "2 of the processes failed without a message (exit codes -9, 1" in capsys.readouterr().err


# ---------------------------------------------------------------- the options

@pytest.mark.parametrize("verb", [["predict"], ["segment", "predict"], ["detect", "predict"]])
def test_the_predict_verbs_take_nproc_and_refuse_more_processes_than_cores(verb, made, cli):
    run = {"predict": "clf", "segment": "seg", "detect": "det"}[verb[0]]
    done = cli(*verb, made / run, made / "scans" / "img00.png", "--nproc", "100000", "--out", made / "unused")
    assert done.returncode == 2 and "--nproc 100000: this machine has" in done.stderr
    assert not (made / "unused").exists()


# ---------------------------------------------------------------- shares and gathering, in one process

def test_one_process_takes_every_input_and_gathers_its_own_rows():
    assert not shards.distributed()
    assert shards.my_share(range(5)) == [0, 1, 2, 3, 4]
    assert shards.gather_in_order([{"a": 1}, {"a": 2}]) == [{"a": 1}, {"a": 2}]
    assert shards.everyone("x") == ["x"] and shards.local_device("cuda") == "cuda"
    assert shards.flattened([[1, 2], [], [3]]) == [1, 2, 3]
    failure = shards.UserError("img03.png: not an image")
    with pytest.raises(shards.UserError) as raised:
        shards.gather_in_order([1, 2, 3], failure)
    assert raised.value is failure


def ranks(monkeypatch, size: int, me: int, parts: list) -> None:
    """Pose as rank `me` of `size`, whose all_gather brings `parts` (one per rank)."""
    monkeypatch.setenv("WORLD_SIZE", str(size))
    monkeypatch.setenv("RANK", str(me))
    monkeypatch.setattr(shards, "everyone", lambda value: parts)


def test_every_rank_takes_every_nth_input_and_the_gather_restores_input_order(monkeypatch):
    items = [f"img{i}" for i in range(7)]
    monkeypatch.setenv("WORLD_SIZE", "3")
    shares = []
    for me in range(3):
        monkeypatch.setenv("RANK", str(me))
        shares.append(shards.my_share(items))
    assert shares == [["img0", "img3", "img6"], ["img1", "img4"], ["img2", "img5"]]
    ranks(monkeypatch, 3, 1, [(share, None) for share in shares])
    assert shards.gather_in_order(shares[1]) == items
    ranks(monkeypatch, 3, 0, [(["img0"], None), ([], None), ([], None)])  # more ranks than inputs
    assert shards.gather_in_order(["img0"]) == ["img0"]
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert shards.local_device("cuda") == "cuda:1" and shards.local_device("cpu") == "cpu"


def test_a_failed_share_fails_every_rank_with_the_error_one_process_stops_at(monkeypatch):
    # rank 1 stopped at its 2nd input (input 4), rank 2 at its 1st (input 2): one process would stop at input 2
    parts = [(["r0"], None), (["r1"], (1, "img4: broken")), ([], (0, "img2: broken"))]
    for me in range(3):
        ranks(monkeypatch, 3, me, parts)
        with pytest.raises(shards.UserError, match="img2: broken"):
            shards.gather_in_order([], None)


def test_a_rank_writes_the_files_of_its_share_and_rank_0_the_shared_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    write_text(tmp_path / "rows.csv", "rank 1")
    with own_files():
        assert writes_here()
        write_text(tmp_path / "img1_mask.png", "rank 1's own")
    assert not writes_here()
    write_text(tmp_path / "rows.csv", "rank 1")
    assert not (tmp_path / "rows.csv").exists() and (tmp_path / "img1_mask.png").read_text() == "rank 1's own"
