"""Segmentation datasets: images with per-pixel class masks (and optional regions of interest).

Sources: a CSV manifest ``image,mask[,roi][,split]``, folders ``images/`` + ``masks/`` [+ ``roi/``]
matched by file stem, or ``dataset="isbi2012"`` (ISBI 2012 EM membranes, fixed protocol split).
Images are read by :func:`load_image` (float in [0, 1], by bit depth); masks keep their exact integer values and
are read as one of three mask types (:func:`read_classes`): labels (class indices, mapped by a value map
``"255:0,0:1"`` or the defaults in :func:`to_classes`), binary (non-zero = foreground) or instances (object
ids: foreground for training, the ids kept for the object metrics). Unset, masks that look like object ids
are refused (:func:`refuse_object_ids`) rather than trained as hundreds of classes.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from .images import SUPPORTED_EXTENSIONS, load_image, one_line, prepare_image
from .summary import ReadLog
from .readers import read_nifti, suffix
from .medmnist import data_root as resolve_root

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
ISBI_CLASSES = ["cell", "membrane"]
ISBI_VALUE_MAP = "255:0,0:1"  # label 255 = cell interior -> 0, 0 = membrane -> 1 (foreground)
MASK_NOTES = {"binary": "binary masks: any non-zero value is foreground",
              "instances": "instance masks: each non-zero value is an object id, trained as foreground (the ids are "
                           "kept for the object metrics)"}
MAX_LABEL_VALUES = 10  # unset mask type, no class names: more distinct mask values than this look like object ids


@dataclass
class SegImage:
    """One image: image (C, H, W) float32 in [0, 1]; mask (H, W) int64 class indices or None
    (unlabelled); roi (H, W) bool or None (pixels outside are neither trained nor scored). A volume: image
    (C, D, H, W), mask (D, H, W)."""

    name: str
    image: np.ndarray
    mask: np.ndarray | None = None
    roi: np.ndarray | None = None
    instances: np.ndarray | None = None  # (H, W) int object ids (0 = background), where the data has them
    points: np.ndarray | None = None     # (N, 2) 0-based (row, col) object centres, for point-annotated data
    source: str | None = None            # volumes: the file read (label maps are written back on its grid)
    spacing: tuple[float, float, float] | None = None  # volumes: voxel spacing in mm (D, H, W) as read (after
                                                        # --spacing), where the file gives one
    target: np.ndarray | None = None     # (H, W) float32 in [0, 1]: a soft foreground probability (proximity
                                         # to the nearest centre) trained instead of the mask, when given


@dataclass
class SegInfo:
    """Dataset name, class names (index = mask class), image channels, notes for the report."""

    name: str
    classes: list[str]
    channels: int
    notes: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # what reading the image files found (data.summary)


def parse_value_map(spec: str | dict | None) -> dict[int, int] | None:
    """"255:0,0:1" -> {255: 0, 0: 1} (mask pixel value -> class index); None stays None."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        spec = ",".join(f"{k}:{v}" for k, v in spec.items())
    out: dict[int, int] = {}
    for item in [p.strip() for p in str(spec).split(",")]:
        value, _, cls = item.partition(":")
        if not (value.strip().lstrip("-").isdigit() and cls.strip().isdigit()) or int(value) in out:
            raise UserError(f"value map {spec!r}: expected PIXEL:CLASS integer pairs, each pixel value "
                            f"once, e.g. 255:0,0:1 (bad item {item!r})")
        out[int(value)] = int(cls)
    return out


def read_mask(path: str | Path) -> np.ndarray:
    """A label image as (H, W) int64 with its exact stored values (no rescaling)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"cannot read mask {path}: file not found")
    try:
        if suffix(path) in (".nii", ".nii.gz"):
            stored, _ = read_nifti(path)
            if stored.shape[0] > 1:
                raise UserError(f"mask {path} holds {stored.shape[0]} slices: a 2D mask is one")
            a = stored[0, ..., 0]
        elif path.suffix.lower() in (".tif", ".tiff"):
            import tifffile
            with tifffile.TiffFile(path) as tif:
                a = tif.pages[0].asarray()
        elif path.suffix.lower() == ".dcm":
            import pydicom
            a = pydicom.dcmread(path).pixel_array
        else:
            from PIL import Image, ImageOps
            with Image.open(path) as img:  # palette ("P") masks give their palette indices
                a = np.asarray(ImageOps.exif_transpose(img))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (any decoder failure: not a readable mask)
        raise UserError(f"cannot read mask {path}: {one_line(exc)}") from None
    a = a[..., : a.shape[-1] - 1] if a.ndim == 3 and a.shape[-1] in (2, 4) else a  # drop alpha
    a = a[..., 0] if a.ndim == 3 and (a == a[..., :1]).all() else a  # grey stored as RGB
    if a.ndim != 2:
        raise UserError(f"mask {path} has shape {a.shape}: expected one grey channel of class values")
    if a.dtype.kind == "f" and not np.array_equal(a, np.round(a)):
        raise UserError(f"mask {path} holds non-integer values: expected integer pixel values")
    return a.astype(np.int64)


def to_classes(raw: dict[str, np.ndarray], value_map: dict[int, int] | None,
               classes: list[str] | None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Raw masks {file: values} -> class-index masks and class names.

    With a value map every pixel value must be listed. Without one, masks that hold exactly
    {0, 255} map 0 -> 0, 255 -> 1; other masks must hold class indices 0..K-1.
    """
    values = {f: np.unique(m) for f, m in raw.items()}
    seen = set().union(*map(set, values.values())) if values else set()
    if value_map is None and seen and seen <= {0, 255} and 255 in seen:
        value_map = {0: 0, 255: 1}
        classes = classes or ["background", "foreground"]
    if value_map is None:
        k = len(classes) if classes else max(seen, default=1) + 1
        if not classes and seen and seen != set(range(k)):
            raise UserError(f"mask values {sorted(seen)} are not class indices 0..{k - 1}; give a value "
                            "map (PIXEL:CLASS pairs), the class names, or --mask-type binary (non-zero = "
                            "foreground) or instances (object ids)")
        value_map = {v: v for v in range(k)}
        expected = f"expected class indices 0..{k - 1}, or give a value map (e.g. 255:1,0:0)"
    else:
        expected = "not in the value map " + ",".join(f"{a}:{b}" for a, b in value_map.items())
    for f, v in values.items():
        bad = [int(x) for x in v if int(x) not in value_map]
        if bad:
            raise UserError(f"mask {f} has value {bad[0]}: {expected}")
    keys = np.array(sorted(value_map))
    lut = np.array([value_map[x] for x in keys], dtype=np.int64)
    out = {f: lut[np.searchsorted(keys, m)] for f, m in raw.items()}
    k = max(value_map.values()) + 1
    classes = list(classes) if classes else ["background"] + [f"class{i}" for i in range(1, max(k, 2))]
    if k > len(classes) or len(classes) < 2:
        raise UserError(f"class names {classes} do not cover class indices 0..{k - 1} (need at least 2)")
    return out, classes


def refuse_object_ids(raw: dict[str, np.ndarray], classes: list[str] | None) -> None:
    """UserError when masks {file: (H, W) values} of unset type look like object ids, not class indices: more
    distinct values over all masks than 2 + the class names given, or than MAX_LABEL_VALUES without names."""
    values = {f: np.unique(m) for f, m in raw.items()}
    seen = np.unique(np.concatenate(list(values.values()))) if values else np.array([])
    if seen.size <= (len(classes) + 2 if classes else MAX_LABEL_VALUES):
        return
    worst = max(values, key=lambda f: values[f].size)
    raise UserError(f"mask {worst} has {values[worst].size} distinct values ({seen.size} in all masks): too many "
                    "for class indices; pass --mask-type instances (object ids) or --mask-type binary (non-zero = "
                    "foreground) or a --value-map (or --mask-type labels if they are classes)")


def two_classes(classes: list[str] | None, mask_type: str) -> list[str]:
    """The class names of binary and instance masks: background, foreground (or the two names given)."""
    if classes is not None and len(classes) != 2:
        raise UserError(f"--mask-type {mask_type} gives two classes (background, foreground), but --classes "
                        f"names {len(classes)}: {','.join(classes)}")
    return list(classes) if classes else ["background", "foreground"]


def read_classes(raw: dict[str, np.ndarray], value_map: dict[int, int] | None, classes: list[str] | None,
                 mask_type: str | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """Raw masks {file: (H, W) int64 values} -> (class masks {file: (H, W) int64}, object ids {file: (H, W)
    int64} of instance masks (else empty), class names), as `mask_type` reads them: labels (to_classes),
    binary (non-zero = class 1), instances (each non-zero value an object id: class 1, ids kept), or None
    (labels, unless the masks look like object ids: refuse_object_ids)."""
    if mask_type in ("binary", "instances"):
        if value_map is not None:
            raise UserError(f"--value-map maps class labels: use it with --mask-type labels, not {mask_type}")
        negative = next((f for f, m in raw.items() if m.size and m.min() < 0), None)
        if mask_type == "instances" and negative is not None:
            raise UserError(f"mask {negative} has negative values: object ids must be 0 (background) or positive")
        mapped = {f: (m != 0).astype(np.int64) for f, m in raw.items()}
        return mapped, (raw if mask_type == "instances" else {}), two_classes(classes, mask_type)
    if mask_type not in (None, "labels"):
        raise UserError(f"--mask-type {mask_type!r}: expected one of labels, binary, instances")
    if mask_type is None and value_map is None:
        refuse_object_ids(raw, classes)
    mapped, classes = to_classes(raw, value_map, classes)
    return mapped, {}, classes


def manifest_rows(manifest: Path) -> list[dict]:
    """CSV rows -> [{name, image, mask, roi, split, subject, where}] with paths resolved against the CSV's folder
    (subject: the subject or group column, for volumes split by subject)."""
    if not manifest.is_file():
        raise UserError(f"manifest {manifest} not found")
    with open(manifest, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "image" not in cols or "mask" not in cols:
            raise UserError(f"manifest {manifest}: expected a header with columns image,mask[,roi][,split]")
        rows = []
        for line, r in enumerate(reader, start=2):
            get = {k: (r.get(c) or "").strip() for k, c in cols.items()}
            where = f"{manifest.name} line {line}"
            split = _SPLIT_ALIASES.get(get["split"].lower(), "?") if "split" in cols else None
            if split == "?":
                raise UserError(f"{where}: split {get['split']!r} is not one of train, val, test")
            if not get["image"] or (not get["mask"] and split != "test"):
                raise UserError(f"{where}: needs an image and a mask (only test rows may leave mask empty)")
            p = {k: manifest.parent / get[k] if get.get(k) else None for k in ("image", "mask", "roi")}
            subject = get.get("subject") or get.get("group") or None
            rows.append({"name": Path(get["image"]).stem, "split": split, "subject": subject, "where": where, **p})
    if not rows:
        raise UserError(f"manifest {manifest} lists no images")
    return rows


def _by_stem(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise UserError(f"{what} folder {folder} not found")
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and suffix(p) in SUPPORTED_EXTENSIONS
             and not p.name.startswith(".")]
    out = {p.name[:-len(suffix(p))]: p for p in files}  # "case1.nii.gz" and "case1.png" are both "case1"
    if len(out) < len(files):
        raise UserError(f"{what} folder {folder}: two files share a name (stem); keep one of each")
    if not out:
        raise UserError(f"{what} folder {folder} has no images ({', '.join(SUPPORTED_EXTENSIONS)})")
    return out


def _folder_rows(images: Path, masks: Path, roi: Path | None) -> list[dict]:
    """images/NAME.* matched to masks/NAME.* (and roi/NAME.*) by file stem."""
    imgs, msks = _by_stem(Path(images), "images"), _by_stem(Path(masks), "masks")
    rois = _by_stem(Path(roi), "roi") if roi else {}
    for stem in sorted(set(imgs) ^ set(msks)):
        have, lack = ("image", "mask") if stem in imgs else ("mask", "image")
        raise UserError(f"{(imgs | msks)[stem]}: {have} '{stem}' has no {lack} with the same name")
    if roi and set(rois) != set(imgs):
        stem = min(set(rois) ^ set(imgs))
        raise UserError(f"roi folder {roi}: '{stem}' is not matched by both an image and a roi file")
    return [{"name": s, "image": imgs[s], "mask": msks[s], "roi": rois.get(s), "split": None}
            for s in sorted(imgs)]


def _isbi_rows(root: str | os.PathLike | None) -> list[dict]:
    """ISBI 2012 training stack: slices 00-19 train, 20-24 val, 25-29 test (docs/protocols.md)."""
    base = resolve_root(root)
    folder = base if (base / "train" / "image").is_dir() else base / "isbi2012_em"
    files = sorted((folder / "train" / "image").glob("*.png"))
    if len(files) != 30:
        raise UserError(f"ISBI 2012 not found: expected 30 slices in {folder}/train/image/NN.png with labels in "
                        f"{folder}/train/label/NN.png, found {len(files)} (set --data-root or MEDCONV_DATA)")
    return [{"name": f.stem, "image": f, "mask": folder / "train" / "label" / f.name, "roi": None,
             "split": "train" if i < 20 else "val" if i < 25 else "test"} for i, f in enumerate(files)]


# CPM-15: 15 tiles, 01-07 at 20x, 08-15 at 40x; a fixed split with both magnifications in every part
CPM15_SPLIT = {"train": (1, 2, 3, 4, 5, 8, 9, 10, 11, 12), "val": (6, 13), "test": (7, 14, 15)}


def _cpm15_rows(root: str | os.PathLike | None) -> list[dict]:
    """CPM-15 nuclei: images/imageXX.png (RGBA, alpha dropped), labels/imageXX_label.png instance maps."""
    base = resolve_root(root)
    folder = base if (base / "labels").is_dir() else base / "cpm15_nuclei"
    split = {i: name for name, ids in CPM15_SPLIT.items() for i in ids}
    rows = [{"name": f"image{i:02d}", "image": folder / "images" / f"image{i:02d}.png", "mask": None, "roi": None,
             "instances": folder / "labels" / f"image{i:02d}_label.png", "split": split[i]} for i in range(1, 16)]
    missing = [str(r[k]) for r in rows for k in ("image", "instances") if not Path(r[k]).exists()]
    if missing:
        raise UserError(f"CPM-15 not found: {missing[0]} is missing (expected DATA_ROOT/cpm15_nuclei/images and "
                        "labels; set --data-root or MEDCONV_DATA)")
    return rows


def random_splits(n: int, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """A seeded split by image; at least one val and one test image when n >= 3."""
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise UserError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be "
                        ">= 0 and sum to less than 1")
    n_test, n_val = round(test_fraction * n), round(val_fraction * n)
    if n >= 3:
        n_test = min(max(1, n_test), n - 2)
        n_val = min(max(1, n_val), n - 1 - n_test)
    out = np.array(["train"] * n, dtype=object)
    order = np.random.default_rng(seed).permutation(n)
    out[order[:n_test]], out[order[n_test:n_test + n_val]] = "test", "val"
    return out.tolist()


def load_segmentation(manifest=None, images=None, masks=None, roi=None, dataset=None, data_root=None,
                      value_map=None, classes=None, channels=None, val_fraction=0.2, test_fraction=0.2,
                      seed=0, mask_type=None, window=None) -> tuple[SegInfo, dict[str, list[SegImage]]]:
    """Read a segmentation dataset -> (SegInfo, {"train", "val", "test": [SegImage, ...]}). `mask_type`: how
    the masks of a manifest or folders are read (read_classes); the built-in datasets know their own.
    `window`: (center, width) for grey values (data.images.to_unit), e.g. a CT window in HU."""
    if channels not in (None, 1, 3):
        raise UserError(f"channels must be 1 or 3 (or left unset), got {channels}")
    notes: list[str] = []
    if dataset is not None and mask_type is not None:
        raise UserError(f"--mask-type describes the masks of --images/--masks or --manifest; --dataset {dataset} "
                        "reads its own")
    if dataset is not None:
        if str(dataset).lower() in ("cpm15", "cpm15_nuclei"):
            rows, name, classes = _cpm15_rows(data_root), "cpm15", classes or ["background", "nucleus"]
            notes = [f"CPM-15 fixed split: {'; '.join(f'{k} {list(v)}' for k, v in CPM15_SPLIT.items())}; masks = "
                     "nuclei of the instance maps (kept for instance metrics)"]
        elif str(dataset).lower() in ("isbi2012", "isbi2012_em"):
            rows, name = _isbi_rows(data_root), "isbi2012"
            value_map, classes = value_map or ISBI_VALUE_MAP, classes or ISBI_CLASSES
            notes = ["ISBI 2012 protocol split: train 00-19, val 20-24, test 25-29 of the training stack"]
        else:
            raise UserError(f"unknown segmentation dataset '{dataset}': expected isbi2012 or cpm15, or "
                            "images/masks/manifest")
    elif manifest is not None:
        rows, name = manifest_rows(Path(manifest)), Path(manifest).stem
    elif images is not None and masks is not None:
        rows, name = _folder_rows(Path(images), Path(masks), roi), Path(images).name
    else:
        raise UserError("segmentation data needs a manifest, images and masks folders, or dataset=isbi2012")
    if any(r["split"] is None for r in rows):
        for r, split in zip(rows, random_splits(len(rows), val_fraction, test_fraction, seed)):
            r["split"] = split
        notes.append(f"random split by image (seed {seed}, val {val_fraction}, test {test_fraction})")
    log, pics = ReadLog(), []
    for r in rows:
        a, meta, how = load_image(r["image"], window)  # (H, W, C) float32 in [0, 1]
        log.add(meta, how)
        pics.append(a)
    channels = channels or (3 if any(a.shape[2] == 3 for a in pics) else 1)
    raw = {str(r["mask"]): read_mask(r["mask"]) for r in rows if r["mask"] is not None}
    instances = {str(r["instances"]): read_mask(r["instances"]) for r in rows if r.get("instances")}
    mapped, object_ids, classes = (read_classes(raw, parse_value_map(value_map), classes, mask_type) if raw
                                   else ({}, {}, classes))
    mapped.update({key: (ids > 0).astype(np.int64) for key, ids in instances.items()})
    instances.update(object_ids)
    for r in rows:
        if r.get("instances"):
            r["mask"] = r["instances"]
        elif str(r["mask"]) in object_ids:
            r["instances"] = r["mask"]
    notes += [MASK_NOTES[mask_type]] if mask_type in MASK_NOTES else []
    out: dict[str, list[SegImage]] = {s: [] for s in SPLITS}
    for r, a in zip(rows, pics):
        size = a.shape[:2]
        mask = mapped[str(r["mask"])] if r["mask"] is not None else None
        roi_arr = read_mask(r["roi"]) > 0 if r["roi"] is not None else None
        for kind, m, p in (("mask", mask, r["mask"]), ("roi", roi_arr, r["roi"])):
            if m is not None and m.shape != size:
                raise UserError(f"image {r['image']} is {size[0]}x{size[1]} but {kind} {p} is "
                                f"{m.shape[0]}x{m.shape[1]}: they must be the same size")
        image = prepare_image(a, channels, size).numpy()  # grey <-> RGB only; no resizing
        ids = instances.get(str(r.get("instances")))
        out[r["split"]].append(SegImage(r["name"], image, mask, roi_arr, ids))
    notes += [f"the {k} split is empty ({len(rows)} images)" for k, v in out.items() if not v]
    summary = log.lines(None, "", channels) + [f"{k} {len(v)} images" for k, v in out.items()]
    return SegInfo(name=name, classes=list(classes), channels=channels, notes=notes, summary=summary), out
