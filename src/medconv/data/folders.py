"""The user's own images as classification datasets: class folders, split folders, CSV manifests.

Layouts read here:

- ``root/CLASS/*.png``                     splits made here, stratified by class
- ``root/{train,val,test}/CLASS/*.png``    splits given (``validation`` also accepted; with only
                                           train and test, val is split off train)
- a CSV manifest ``path,label[,split][,group]`` (paths relative to the CSV's folder; rows of one
  group, e.g. one patient, always land in the same split; ``subject`` is read as group, and a group whose
  rows the manifest puts in two splits is refused)

Every image is read to float (H, W, C) in [0, 1] by :func:`load_image` (by its bit depth, or a window), brought
to the dataset's channel count and size by :func:`prepare_image` (the size the images share unless one is
chosen), and stored (N, C, H, W) as uint8 when every file holds 8 bits or fewer, else as float32.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medconv.data.images import SUPPORTED_EXTENSIONS, one_line
from medconv.data.readers import suffix
from medconv.data.reading import LazyImages, Reading, headers, read_images, shared_size
from medconv.data.splits import SPLIT_ALIASES, Row, assign_splits, class_counts
from medconv.data.summary import split_lines
from medconv.data.volume_sets import is_volume, load_volume_set
from medconv.data.types import DatasetInfo, ImageSet
from medconv.errors import UserError

SUMMARY_SAMPLE = 64  # lazy loading: files read at the start for the data summary


# ----------------------------------------------------------------------------- rows -> splits


def loading_mode(loading: str, n: int, size: tuple[int, int], channels: int) -> tuple[str, str]:
    """("memory" or "lazy", why): auto holds the images in memory when their decoded float32 size is within a
    quarter of this machine's memory ($MEDCONV_MEMORY_MB to set another budget), else reads them when needed."""
    need = n * channels * size[0] * size[1] * 4 / 2**20
    if loading != "auto":
        return loading, f"--loading {loading}, {n} images, {need:,.0f} MB decoded"
    budget = float(os.environ.get("MEDCONV_MEMORY_MB") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4 / 2**20)
    how = "memory" if need <= budget else "lazy"
    return how, f"--loading auto: {n} images, {need:,.0f} MB decoded, {'within' if how == 'memory' else 'above'} " \
                f"the {budget:,.0f} MB budget"


def _build_dataset(rows: Sequence[Row], classes: list[str], name: str, source: str, reading: Reading,
                   val_fraction: float, test_fraction: float, seed: int, loading: str = "auto"
                   ) -> tuple[DatasetInfo, dict[str, ImageSet]]:
    """Shared by both loaders: split rows, read images (or make them LazyImages), return (DatasetInfo,
    {split: ImageSet})."""
    if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
        raise UserError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be "
                        "above 0 and sum to less than 1")
    if reading.channels not in (None, 1, 3):
        raise UserError(f"channels must be 1 or 3 (or left unset), got {reading.channels}")
    size = reading.size
    if size is not None and (len(size) != 2 or min(int(s) for s in size) < 1):
        raise UserError(f"image size must be two positive integers (height, width), got {size}")
    if len(classes) < 2:
        raise UserError(f"{source}: need at least 2 classes, found {len(classes)} ({', '.join(classes)})")
    splits = assign_splits(rows, val_fraction, test_fraction, seed, source)
    paths, wheres = [r.path for r in rows], [r.where for r in rows]
    shapes = headers(paths, wheres) if size is None or loading != "memory" else None
    size = (int(size[0]), int(size[1])) if size is not None else shared_size(paths, shapes, source)
    how, why = loading_mode(loading, len(rows), size, reading.channels or max(c for *_, c in shapes or [(0, 0, 3)]))
    if how == "memory":
        tensors, channels, log = read_images(paths, reading, size, wheres)
        stacked = {split: torch.stack([tensors[i] for i in idx]) for split, idx in splits.items()}
    else:  # read when indexed; the summary from a sample of the files
        channels = reading.channels or (3 if any(c == 3 for *_, c in shapes) else 1)
        lazy = LazyImages(paths, reading, size, channels, wheres)
        sample = sorted(set(np.linspace(0, len(rows) - 1, min(len(rows), SUMMARY_SAMPLE)).round().astype(int)))
        log = read_images([paths[i] for i in sample], Reading(size, reading.fit_mode, reading.window, channels),
                          size, [wheres[i] for i in sample])[2]
        stacked = {split: lazy.subset(idx) for split, idx in splits.items()}
        why += f"; the summary below from {len(sample)} of them, read now"
    sets = {split: ImageSet(images=stacked[split], labels=torch.tensor([[rows[i].label] for i in idx], dtype=torch.int64),
                            paths=[str(rows[i].path) for i in idx]) for split, idx in splits.items()}
    task = "binary-class" if len(classes) == 2 else "multi-class"
    counts = class_counts(rows, splits, len(classes))
    info = DatasetInfo(name=name, task=task, classes=list(classes), channels=channels, size=size, source=source,
                       summary=[f"loading: {how} ({why})"] + log.lines(size, reading.fit_mode, channels)
                       + split_lines(list(classes), counts),
                       native_sizes=sorted(log.native_sizes()), file_size=size)
    return info, sets


# ----------------------------------------------------------------------------- image folders


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith((".", "__")))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and suffix(p) in SUPPORTED_EXTENSIONS and not p.name.startswith("."))


def load_image_folder(root: str | Path, reading: Reading | None = None, val_fraction: float = 0.1,
                      test_fraction: float = 0.2, seed: int = 0, loading: str = "auto"
                      ) -> tuple[DatasetInfo, dict[str, ImageSet]]:
    """Read ``root/CLASS/*`` or ``root/{train,val,test}/CLASS/*`` -> (info, {"train","val","test"}).

    Images: (N, channels, H, W), uint8 for 8-bit files, else float32 in [0, 1] (see _read_all); labels: int64
    (N, 1) indexes into the sorted class names. `reading`: size, fit, window and channels (Reading); `loading`:
    memory, lazy (data.reading.LazyImages: files read when indexed) or auto (loading_mode).
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {root} not found")
    subdirs = _subdirs(root)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    if split_dirs and len(split_dirs) == len(subdirs):  # root/{train,val,test}/CLASS
        by_split: dict[str, Path] = {}
        for d in split_dirs:
            split = SPLIT_ALIASES[d.name.lower()]
            if split in by_split:
                raise UserError(f"{root}: both {by_split[split].name}/ and {d.name}/ found; keep one")
            by_split[split] = d
        for needed in ("train", "test"):
            if needed not in by_split:
                raise UserError(f"{root}: split folders found but no {needed}/ folder; add it, or put "
                                f"the class folders directly in {root}")
        layout = [(split, d) for split, d in by_split.items()]
    elif any(d.name.lower() in ("train", "test") for d in split_dirs):
        raise UserError(f"{root}: mixes split folders (train/, test/) with other folders; use "
                        f"{root}/CLASS/* or {root}/{{train,val,test}}/CLASS/*")
    else:
        layout = [(None, root)]

    found: list[tuple[str | None, str, Path]] = []  # (split, class, file)
    for split, folder in layout:
        class_dirs = _subdirs(folder)
        if not class_dirs:
            raise UserError(f"{folder}: no class folders; expected {folder}/CLASS_NAME/image files")
        for cdir in class_dirs:
            files = _image_files(cdir)
            if not files:
                raise UserError(f"class folder {cdir} has no images "
                                f"({', '.join(SUPPORTED_EXTENSIONS)})")
            found += [(split, cdir.name, f) for f in files]
    classes = sorted({c for _, c, _ in found})
    index = {c: i for i, c in enumerate(classes)}
    rows = [Row(path=f, label=index[c], split=s) for s, c, f in found]
    return _build_dataset(rows, classes, root.resolve().name, str(root), reading or Reading(),
                          val_fraction, test_fraction, seed, loading)


# ----------------------------------------------------------------------------- CSV manifests

_INT = re.compile(r"^[+-]?\d+$")


def load_manifest(csv_path: str | Path, reading: Reading | None = None, val_fraction: float = 0.1,
                  test_fraction: float = 0.2, seed: int = 0, classes: Sequence[str] | None = None,
                  loading: str = "auto") -> tuple[DatasetInfo, dict[str, ImageSet]]:
    """Read a CSV ``path,label[,split][,group]`` -> (info, {"train","val","test"}), like load_image_folder; a
    manifest of volumes (NIfTI files, DICOM series folders) gives volumes (data.volume_sets.load_volume_set).

    Paths are relative to the CSV's folder. Labels are class names or integers; integer labels index
    `classes` when given. Without a split column, splits are made here: group-wise when a group
    column (e.g. patient id) exists, so one group never lands in two splits; else stratified.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UserError(f"manifest {csv_path} not found")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            records = [(reader.line_num, rec) for rec in reader if any(c.strip() for c in rec)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read manifest {csv_path}: {one_line(exc)}") from None
    if not header or not any(h.strip() for h in header):
        raise UserError(f"manifest {csv_path} is empty; expected a header line 'path,label[,split][,group]'")
    cols = {h.strip().lower(): i for i, h in enumerate(header)}
    missing = [c for c in ("path", "label") if c not in cols]
    if missing:
        raise UserError(f"manifest {csv_path}: missing column(s) {', '.join(missing)}; header is "
                        f"'{','.join(header)}', expected 'path,label[,split][,group]'")
    if not records:
        raise UserError(f"manifest {csv_path} has a header but no rows")

    def cell(rec: list[str], col: str) -> str | None:
        i = cols.get(col)
        return None if i is None else (rec[i].strip() if i < len(rec) else "")

    raw: list[tuple[str, Path, str, str | None, str | None]] = []  # (where, path, label, split, group)
    for line, rec in records:
        where = f"{csv_path} line {line}"
        p, label, split, group = (cell(rec, c) for c in ("path", "label", "split", "group"))
        group = group if group is not None else cell(rec, "subject")  # subject: the same as group
        if not p or not label:
            raise UserError(f"{where}: empty path or label")
        if split is not None:
            if split.lower() not in SPLIT_ALIASES:
                raise UserError(f"{where}: split '{split}' is not one of train, val, test")
            split = SPLIT_ALIASES[split.lower()]
        path = Path(p) if Path(p).is_absolute() else csv_path.parent / p
        if not path.exists():
            raise UserError(f"{where}: image file {path} not found")
        raw.append((where, path, label, split, group or None))

    numeric = all(_INT.match(r[2]) for r in raw)
    if classes is not None:
        names = [str(c) for c in classes]
        lookup = {n: i for i, n in enumerate(names)}
        labels = []
        for where, _, label, _, _ in raw:
            idx = int(label) if numeric else lookup.get(label, -1)
            if not 0 <= idx < len(names):
                expected = f"0..{len(names) - 1}" if numeric else ", ".join(names)
                raise UserError(f"{where}: label {label} is not a known class (expected {expected})")
            labels.append(idx)
    else:
        values = sorted({int(r[2]) for r in raw}) if numeric else sorted({r[2] for r in raw})
        names = [str(v) for v in values]
        lookup = {n: i for i, n in enumerate(names)}
        labels = [lookup[str(int(r[2]))] if numeric else lookup[r[2]] for r in raw]
    rows = [Row(path=p, label=y, split=s, group=g, where=w)
            for (w, p, _, s, g), y in zip(raw, labels)]
    reading = reading or Reading()
    if is_volume(rows[0].path):  # NIfTI volumes or DICOM series: (N, 1, D, H, W)
        return load_volume_set(rows, names, csv_path.resolve().parent.name, str(csv_path),
                               reading.size[0] if reading.size else None, reading.fit_mode, reading.window,
                               val_fraction, test_fraction, seed, reading.spacing)
    if reading.spacing is not None:
        raise UserError(f"--spacing resamples volumes (NIfTI files, DICOM series); {csv_path} lists 2D images")
    return _build_dataset(rows, names, csv_path.resolve().parent.name, str(csv_path), reading,
                          val_fraction, test_fraction, seed, loading)
