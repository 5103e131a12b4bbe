"""Shared fixtures: the real datasets folder ($MEDCONV_DATA, default ../shared/datasets), the medconv command
(in a subprocess, kept for one test per verb, or in-process for the rest), and trained runs that several test
files only read (session scope: each is trained once per test session and worker).

The suite runs on two pytest-xdist workers (pyproject's addopts: -n 2 --dist loadfile, a test file's tests on one
worker); each worker's torch gets its share of the cores (OMP_NUM_THREADS, unless set), and so do the commands it
starts. `-n 0` runs in one process.

A test that reads a shared run must not change what other tests read in it (evaluate adds its own files to a run;
a test that re-tunes or re-trains one works on a copy). The shared runs train with torch's default thread count
(a worker's share of the cores); their figures, asserted with margins, do not depend on it. A run gives the
process back the thread count and deterministic mode it found (training.engine), so one test's --threads or
--deterministic does not carry into the next.

A classifier evaluation run inside a test draws no report pictures (precision-recall curves, confident errors,
Grad-CAM: 2-3 s a run) unless the test is marked `pictures`; runs built by shared fixtures keep theirs."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # before torch is imported: its thread pool is sized once
    workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))

import medconv.classify.evaluate as classify_evaluate  # noqa: E402  (after the thread count is set)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDCONV_DATA", ROOT.parent / "shared" / "datasets")).resolve()
os.environ["MEDCONV_DATA"] = str(DATA)


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "medmnist" / "breastmnist.npz").exists():
        pytest.fail(f"real test data not found under {DATA}: set MEDCONV_DATA")
    return DATA


def run_medconv(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the medconv command in a subprocess; returns the completed process (text output)."""
    return subprocess.run([sys.executable, "-m", "medconv.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="session")
def medconv():
    """The medconv command in a new process: medconv("train", "--out", dir, ...) -> CompletedProcess. Costs a torch
    import (seconds): kept for one test per verb, where the command line itself is under test."""
    return run_medconv


@dataclass
class Done:
    """What a finished command left: as subprocess.CompletedProcess (returncode, stdout, stderr)."""
    returncode: int
    stdout: str
    stderr: str


def run_in_process(*args) -> Done:
    """medconv.cli.main(args) in this process, its stdout and stderr captured; argparse's exit becomes the return
    code, as in a subprocess. Any other exception propagates (a subprocess would print a traceback and exit 1)."""
    from medconv.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Done(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def cli():
    """The medconv command run in-process: cli("segment", "evaluate", run, "--json") -> Done(returncode, stdout,
    stderr). For tests of what a verb does rather than of starting a process."""
    return run_in_process


def pytest_configure(config):
    config.addinivalue_line("markers", "pictures: the test's classifier evaluations draw their report pictures")


@pytest.fixture(autouse=True)
def no_evaluation_pictures(request, monkeypatch):
    if "pictures" not in request.keywords:
        monkeypatch.setattr(classify_evaluate, "write_pictures", lambda *args, **kwargs: None)


# ---------------------------------------------------------------- trained runs shared across test files

@pytest.fixture(scope="session")
def breast_run(tmp_path_factory, data_root):
    """(run directory, train()'s result): 15 epochs of a ~100K-weight CNN on the full real BreastMNIST."""
    from medconv.classify.train import train
    from medconv.config import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "breast"
    cfg = TrainConfig(dataset="breastmnist", data_root=str(data_root), arch="simple-cnn",
                      model_options={"widths": [16, 32, 64], "hidden": [64]}, epochs=15, batch_size=64,
                      lr=2e-3, augment="light", seed=0)
    return out, train(cfg, out)


@pytest.fixture(scope="session")
def crc_classifier(tmp_path_factory, data_root):
    """(run directory, train()'s result): one epoch of a small CNN on 5% of CRCHistoPhenotypes' nucleus patches
    (4 classes), the classifier detect predict --classifier uses."""
    from medconv.classify.train import train
    from medconv.config import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "crc-classifier"
    cfg = TrainConfig(dataset="crchistophenotypes", data_root=str(data_root), arch="simple-cnn", epochs=1,
                      train_fraction=0.05, batch_size=64, seed=0, deterministic=True,
                      model_options={"widths": [8, 16], "hidden": [32]})
    return out, train(cfg, out)


@pytest.fixture(scope="session")
def crc_detector(tmp_path_factory, data_root):
    """(run directory, train_detector()'s result): a patch-CNN centre-map detector trained one short epoch (1,024
    patches) on CRCHistoPhenotypes' 60 training images; peak parameters chosen on its 10 validation images, without
    test-time augmentation (test_detect_pipeline tries d4 on a smaller set)."""
    from rich.console import Console

    from medconv.detect.pipeline import train_detector
    from medconv.segment.config import SegmentConfig

    out = tmp_path_factory.mktemp("runs") / "crc-detector"
    cfg = SegmentConfig(dataset="crchistophenotypes", data_root=str(data_root), patch=15, epochs=1,
                        samples_per_epoch=1024, deterministic=True,
                        model_options={"widths": [8, 16], "kernels": [3, 3], "hidden": [32]})
    return out, train_detector(cfg, out, console=Console(file=io.StringIO()), tta=("none",))


@pytest.fixture(scope="session")
def isbi_small_root(tmp_path_factory, data_root):
    """A data root in ISBI 2012's layout (isbi2012_em/train/image|label/NN.png, 30 slices) whose slices are cut to
    their central 256 x 256 pixels: the dataset's fixed split on a quarter of the pixels, so that the shared run's
    dense maps, threshold sweeps and thinning cost a quarter of the full slices'."""
    from PIL import Image

    root = tmp_path_factory.mktemp("isbi-small")
    for kind in ("image", "label"):
        folder = root / "isbi2012_em" / "train" / kind
        folder.mkdir(parents=True)
        for source in sorted((data_root / "isbi2012_em" / "train" / kind).glob("*.png")):
            Image.open(source).crop((128, 128, 384, 384)).save(folder / source.name)
    return root


@pytest.fixture(scope="session")
def isbi_patch_run(tmp_path_factory, isbi_small_root):
    """A patch CNN (the default 33 px network) trained 2 short epochs (3,072 patches) on ISBI 2012 slices 0-19 (their
    central 256 x 256 pixels, isbi_small_root); its Rand threshold chosen on slices 20-24; scored on 25-29."""
    from rich.console import Console

    from medconv.segment.config import SegmentConfig
    from medconv.segment.train import train_segmentation

    out = tmp_path_factory.mktemp("runs") / "isbi-patch"
    train_segmentation(SegmentConfig(dataset="isbi2012", data_root=str(isbi_small_root), patch=33, epochs=2,
                                     samples_per_epoch=1536, deterministic=True), out,
                       console=Console(file=io.StringIO()))
    return out
