"""Pictures of detections: an image with a circle drawn around each detection (numpy and Pillow only, so that
`detect predict` on an ONNX export draws them without torch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..fileio import atomic_write

FOUND = (255, 220, 0)  # detect predict's circles: yellow, seen on pink and purple stains alike


def draw_marks(image: np.ndarray, marks: list[tuple[np.ndarray, tuple[int, int, int]]], path: str | Path,
               radius: int = 4) -> None:
    """Save image (C, H, W) float in [0, 1], C = 1 or 3, as an RGB PNG at `path` (written atomically) with a
    circle of `radius` px around each mark: ((row, col), (r, g, b) colour)."""
    rgb = (np.clip(image if image.shape[0] == 3 else np.repeat(image, 3, 0), 0, 1) * 255).round().astype(np.uint8)
    picture = Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)))
    pen = ImageDraw.Draw(picture)
    for (y, x), colour in marks:
        pen.ellipse([x - radius, y - radius, x + radius, y + radius], outline=colour, width=2)
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))


def overlay_folder(csv_path: str | Path) -> Path:
    """Where detect predict draws the detections of its CSV file: detections.csv -> detections_overlays/."""
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}_overlays")
