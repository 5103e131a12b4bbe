"""Bad input and empty output: decoders refuse decompression bombs before allocating; empty results still
write their header."""
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from medconv.data.images import read_image
from medconv.errors import UserError


def tiff_bomb(path):
    """A 64-byte-pixel TIFF whose tags declare 100000 x 100000 pixels (10 GB once decoded)."""
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(100_000)
        tif.pages[0].tags["ImageLength"].overwrite(100_000)
    return path


def test_a_tiff_bomb_is_refused_under_a_2_gb_address_space(tmp_path):
    bomb = tiff_bomb(tmp_path / "bomb.tif")
    assert bomb.stat().st_size < 1000
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
            "from medconv.data.images import read_image; from medconv.errors import UserError\n"
            f"try:\n    read_image({str(bomb)!r})\nexcept UserError as exc:\n    print(exc); sys.exit(2)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "100000 x 100000" in out.stdout and "MEDCONV_MAX_PIXELS" in out.stdout


def test_the_limit_is_the_users_to_raise_or_lower(tmp_path, monkeypatch):
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.full((40, 50), 7, np.uint8))
    assert read_image(small).shape == (40, 50, 1)
    monkeypatch.setenv("MEDCONV_MAX_PIXELS", "1000")
    with pytest.raises(UserError, match="40 x 50 = 2,000 values, above the limit of 1,000"):
        read_image(small)
    monkeypatch.setenv("MEDCONV_MAX_PIXELS", "lots")
    with pytest.raises(UserError, match="whole number"):
        read_image(small)
