"""Shared fixtures: the real datasets folder ($MEDCONV_DATA, default ../shared/datasets)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture
def medconv():
    """The medconv command as a function: medconv("train", "--out", dir, ...) -> CompletedProcess."""
    return run_medconv
