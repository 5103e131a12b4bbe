"""medconv report: one self-contained HTML page of real runs (a BreastMNIST classifier beside a tiny one on synthetic
lesions), opened in headless Chromium: no console message, every picture decoded, a screenshot that is not blank.
(The page of a segmentation run: test_segment_cli.py, beside the fixture that trains it.)"""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medconv.errors import UserError
from medconv.report.page import MAX_PICTURE, png_uri, write_report
from medconv.report.run_view import read_run

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
# a checker the test adds to a copy of the page (the report itself has no script): the title says how many of the
# page's pictures the browser decoded
CHECKER = ("<script>window.addEventListener('load', () => { const all = [...document.images]; document.title = "
           "'images ' + all.length + ' decoded ' + all.filter(i => i.complete && i.naturalWidth > 0).length; });"
           "</script></body>")
PICTURE = re.compile(r'src="data:image/png;base64,([^"]+)"')


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run of one epoch of a CNN of 4 filters on synthetic lesions."""
    from medconv.classify.train import train
    from medconv.config import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(TrainConfig(dataset="synthetic", model_options={"widths": [4], "hidden": [8]}, epochs=1, seed=0), out)
    return out


@pytest.fixture(scope="module")
def page(tmp_path_factory, breast_run, tiny_run):
    """(path, text) of the report of both runs, side by side."""
    out = tmp_path_factory.mktemp("report") / "both.html"
    write_report([breast_run[0], tiny_run], out)
    return out, out.read_text()


def chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
                           "--v=0", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(BROWSER is None, reason="no chromium (./run test installs Debian's chromium package)")
def test_report_opens_in_chromium(page, tmp_path):
    path, text = page
    checked = tmp_path / "checked.html"
    checked.write_text(text.replace("</body>", CHECKER))
    dom = chromium(tmp_path, "--dump-dom", checked.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "CONSOLE" not in dom.stderr, [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    count = len(PICTURE.findall(text))
    assert count >= 12  # per run: curves, ROC and confusion of val and test, PR, errors and Grad-CAM of test
    assert f"<title>images {count} decoded {count}</title>" in dom.stdout
    shot = tmp_path / "shot.png"
    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,2000", path.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20 and len(np.unique(pixels)) > 50  # text, tables and plots, not a blank page


def test_report_says_what_the_run_files_say(page, breast_run, tiny_run):
    """The figures on the page are the metrics files', each picture is a PNG that decodes, the page is small."""
    path, text = page
    assert path.stat().st_size < 10_000_000
    for data in PICTURE.findall(text):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        assert image.width > 50 and image.height > 50
    test = json.loads((breast_run[0] / "metrics_test.json").read_text())
    assert f"<td>{test['auc']:.4g}</td>" in text and f"<td>{test['acc']:.4g}</td>" in text
    tiny = json.loads((tiny_run / "metrics_test.json").read_text())
    assert f"<td>{tiny['auc']:.4g}</td>" in text
    assert "Side by side" in text and "Google AutoML Vision" in text  # BreastMNIST's published rows
    assert "split sizes: train 546, val 78, test 156" in text and "most confident errors: test" in text
    view = read_run(tiny_run)
    assert (view.kind, view.dims, view.dataset) == ("classification", 2, "synthetic-lesions")


def test_big_pictures_are_scaled_to_fit():
    noise = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)  # ~6.8 MB as PNG
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    assert len(buffer.getvalue()) > MAX_PICTURE
    uri = png_uri(buffer.getvalue())
    data = base64.b64decode(uri.split(",", 1)[1])
    assert len(data) <= MAX_PICTURE and Image.open(io.BytesIO(data)).width < 1500


def test_report_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="no such run folder"):
        read_run(tmp_path / "missing")
    with pytest.raises(UserError, match="not a medconv run"):
        read_run(tmp_path)


def test_report_verb(breast_run, cli, tmp_path):
    """medconv report: the page where --out says, its path printed; a folder that is not a run is one line."""
    done = cli("report", breast_run[0], "--out", tmp_path / "page.html")
    assert done.returncode == 0 and f"report -> {tmp_path / 'page.html'}" in done.stdout, done.stderr
    assert "breastmnist" in (tmp_path / "page.html").read_text()
    refused = cli("report", tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "not a medconv run" in refused.stderr


def test_report_default_paths(tiny_run, tmp_path, monkeypatch):
    """Without --out: one run's page in its folder, several runs' page in the working folder."""
    assert write_report([tiny_run]) == tiny_run / "report.html" and (tiny_run / "report.html").is_file()
    monkeypatch.chdir(tmp_path)
    assert write_report([tiny_run, tiny_run]) == Path("report.html") and (tmp_path / "report.html").is_file()
