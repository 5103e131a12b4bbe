"""Training on several processes (issue 24, item 3): 2 CPU processes under torchrun (gloo) take the same steps
as 1 process with the same global batch and seed, only rank 0 writes, and the checkpoint resumes on 1 process."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from medconv.classify.train import train
from medconv.config import TrainConfig
from medconv.fileio import write_text, writes_here
from medconv.training import distributed

# an MLP without dropout or batch norm: nothing draws per process, so both runs must agree
ARGS = ["train", "--dataset", "synthetic", "--arch", "mlp", "--model-option", "hidden=[32]", "--model-option",
        "dropout=0", "--epochs", "2", "--batch-size", "64", "--lr", "0.01", "--deterministic", "--threads", "1"]
CFG = TrainConfig(dataset="synthetic", arch="mlp", model_options={"hidden": [32], "dropout": 0}, epochs=2,
                  batch_size=64, lr=0.01, deterministic=True, threads=1)


def history(run) -> list[dict]:
    return list(csv.DictReader(open(run / "history.csv")))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "medconv.cli", *ARGS, "--nproc", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, done


def test_two_processes_take_the_steps_of_one_with_the_same_global_batch(two_processes, tmp_path):
    two, done = two_processes
    train(CFG, tmp_path / "one")
    for a, b in zip(history(two), history(tmp_path / "one"), strict=True):
        for key in ("train_loss", "val_loss", "val_auc", "val_acc"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-4), key
    w2 = load_file(two / "checkpoints" / "last.safetensors")
    w1 = load_file(tmp_path / "one" / "checkpoints" / "last.safetensors")
    assert all(torch.allclose(w2[k], w1[k], atol=1e-5) for k in w1)
    assert done.stderr.count("best epoch 2:") == 1  # rank 1 printed nothing


def test_a_checkpoint_of_two_processes_resumes_on_one(two_processes, tmp_path):
    two, _ = two_processes
    run = tmp_path / "resumed"
    subprocess.run(["cp", "-r", str(two), str(run)], check=True)
    (run / "metrics.json").unlink()
    train(TrainConfig(), run, resume=True, overrides={"epochs": 3})
    rows = history(run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and float(rows[2]["train_loss"]) < float(rows[0]["train_loss"])


def test_only_rank_0_writes(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert not writes_here()
    write_text(tmp_path / "a.txt", "rank 1")
    assert not (tmp_path / "a.txt").exists()
    monkeypatch.setenv("RANK", "0")
    write_text(tmp_path / "a.txt", "rank 0")
    assert (tmp_path / "a.txt").read_text() == "rank 0"


def test_each_rank_trains_on_its_part_of_the_global_batch(monkeypatch):
    x, y = torch.arange(10).view(5, 2), torch.arange(5)
    monkeypatch.setenv("WORLD_SIZE", "2")
    parts = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        parts.append(distributed.shard((x, y, None)))
    assert torch.equal(torch.cat([parts[0][0], parts[1][0]]), x) and parts[0][2] is None
    assert parts[0][1].tolist() == [0, 1, 2] and parts[1][1].tolist() == [3, 4]
