"""A run killed with SIGKILL mid-epoch and resumed with --resume --deterministic ends with the same
weights as an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

ARGS = ["train", "--dataset", "synthetic", "--arch", "simple-cnn", "--model-option", "widths=[16,32]",
        "--model-option", "hidden=[32]", "--epochs", "4", "--batch-size", "16", "--augment", "strong",
        "--optimizer", "adamw", "--deterministic", "--seed", "5", "--threads", "1"]


def last_epoch(run) -> int:
    try:
        return json.loads((run / "checkpoints" / "last.json").read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path, medconv):
    full = tmp_path / "full"
    assert medconv(*ARGS, "--out", full).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "medconv.cli", *ARGS, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 240
    history = killed / "history.csv"  # written just after the checkpoint
    while (last_epoch(killed) < 1 or not history.exists()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    epoch_seconds = float(history.read_text().splitlines()[1].split(",")[-1])
    time.sleep(epoch_seconds / 2)  # into the middle of epoch 2
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert last_epoch(killed) in (1, 2)
    assert not (killed / "metrics.json").exists()

    resumed = medconv("train", "--out", killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for name in ("last", "best"):
        a = load_file(full / "checkpoints" / f"{name}.safetensors")
        b = load_file(killed / "checkpoints" / f"{name}.safetensors")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert json.loads((full / "metrics.json").read_text())["test"] == json.loads((killed / "metrics.json").read_text())["test"]
