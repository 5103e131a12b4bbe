"""MedMNIST 2D and 3D datasets by flag and size, read from the data root (downloaded on request)."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .types import DatasetInfo, ImageSet

SPLITS = ("train", "val", "test")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root` if given, else $MEDCONV_DATA, else ~/.medconv/data."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get("MEDCONV_DATA")
    return Path(env).expanduser() if env else Path.home() / ".medconv" / "data"


def medmnist_info(flag: str) -> dict:
    """medmnist's INFO entry for a flag, 2D (breastmnist, ...) or 3D (adrenalmnist3d, ...); a clear error for
    unknown ones."""
    from medmnist import INFO

    if flag not in INFO:
        raise UserError(f"unknown dataset '{flag}': expected a MedMNIST flag ({', '.join(sorted(INFO))}), or "
                        "--images/--manifest")
    return INFO[flag]


def is_3d(flag: str) -> bool:
    return flag.endswith("3d")


def medmnist_file(flag: str, size: int = 28) -> str:
    """File name of a MedMNIST release file, e.g. breastmnist.npz, breastmnist_64.npz."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def download_medmnist(flag: str, size: int, root: Path) -> Path:
    """Fetch the release file into `root` through medmnist (checks its MD5)."""
    import medmnist

    info = medmnist_info(flag)
    root.mkdir(parents=True, exist_ok=True)
    cls = getattr(medmnist, info["python_class"])
    try:
        cls(split="test", root=str(root), download=True, size=size)
    except Exception as exc:  # medmnist raises bare RuntimeError on network failure
        url = info["url" if size == 28 else f"url_{size}"]
        raise UserError(f"download of {medmnist_file(flag, size)} failed ({type(exc).__name__}); "
                        f"fetch {url} and put it in {root}") from None
    return root / medmnist_file(flag, size)


def load_medmnist(flag: str, size: int = 28, root: str | os.PathLike | None = None,
                  download: bool = False) -> tuple[DatasetInfo, dict[str, ImageSet]]:
    """Official train/val/test splits of a MedMNIST dataset.

    Returns info and {split: ImageSet} with uint8 images (N, C, size, size), or for a 3D flag volumes
    (N, 1, size, size, size), and labels (N, L).
    """
    info = medmnist_info(flag)
    sizes = (28, 64) if is_3d(flag) else (28, 64, 128, 224)
    if size not in sizes:
        raise UserError(f"--size {size} is not a size of {flag}: expected {', '.join(map(str, sizes))}")
    folder = data_root(root)
    path = folder / medmnist_file(flag, size)
    if not path.exists():
        # also accept a datasets folder with one sub-folder per source: ROOT/medmnist/FILE
        nested = folder / "medmnist" / medmnist_file(flag, size)
        if nested.exists():
            path = nested
        elif download:
            path = download_medmnist(flag, size, folder)
        else:
            raise UserError(f"{path} not found: put {medmnist_file(flag, size)} there "
                            f"(set --data-root or MEDCONV_DATA), or add --download")
    try:
        with np.load(path) as npz:
            arrays = {s: (npz[f"{s}_images"], npz[f"{s}_labels"]) for s in SPLITS}
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as exc:
        raise UserError(f"{path} is not a readable MedMNIST file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'corrupt'}); delete it and download again") from None
    classes = [info["label"][k] for k in sorted(info["label"], key=int)]
    sets = {}
    for split, (images, labels) in arrays.items():
        if images.ndim == 3 or is_3d(flag):  # grey images (N, H, W) or volumes (N, D, H, W)
            images = images[:, None]
        else:
            images = images.transpose(0, 3, 1, 2)
        labels = labels.reshape(len(labels), -1).astype(np.int64)
        sets[split] = ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels))
    check_labels(sets, info["task"], len(classes), str(path))
    ds_info = DatasetInfo(name=flag, task=info["task"], classes=classes, channels=sets["train"].images.shape[1],
                          size=(size,) * (3 if is_3d(flag) else 2), source=str(path))
    return ds_info, sets


def check_labels(sets: dict[str, ImageSet], task: str, num_classes: int, source: str) -> None:
    """Every label must name a class (or be 0/1 per label for multi-label tasks)."""
    high = 1 if task.startswith("multi-label") else num_classes - 1
    for split, s in sets.items():
        bad = (s.labels < 0) | (s.labels > high)
        if bad.any():
            i = int(bad.any(dim=1).nonzero()[0])
            raise UserError(f"{source}: {split} label {s.labels[i].tolist()} of sample {i} is outside 0..{high}")
