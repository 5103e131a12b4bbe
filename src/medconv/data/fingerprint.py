"""Fingerprints of a run's data: per split, how many items and hashes of their images and labels.

A fingerprint is computed from the data as loaded (arrays in memory), never from file paths, so the same
data read through a relative or an absolute path, or from another data root, has the same fingerprint,
while swapped labels or an edited image change it. Torch-free: tensors are read through `.numpy()`.

The fingerprint of a split is a small dict::

    {"scheme": "blake2b-2", "n": 120,  # blake2b-1 for segmentation "images": "9f...", "labels": "0c...",  # every kind of data
     "names": "...", "annotations": "..."}                                   # segmentation images only

- classification (an ImageSet, or a pair (images, labels) such as a TensorDataset's tensors): the images as
  float32 in [0, 1], chunk by chunk (held in memory or read when indexed alike), and the labels as float64 (class indices (N, 1) and the targets (N,) they train with hash alike);
- segmentation and detection (a list of SegImage): the images; `labels` the masks; `names` the image names;
  `annotations` the regions of interest, object ids, points and soft targets. Items without these attributes
  (e.g. a patch sampler's images and masks) leave the field out, and only fields both sides have are compared.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

# How each kind is hashed; a stored fingerprint of another scheme is not compared. Classification went to
# float32 chunks (blake2b-2) so that images held as uint8 and read lazily as float hash alike.
SCHEME = "blake2b-1"
CLASSIFICATION_SCHEME = "blake2b-2"
FIELDS = {"images": "images", "labels": "labels", "names": "image names", "annotations": "annotations"}
ANNOTATIONS = ("roi", "instances", "points", "target")


def as_array(x) -> np.ndarray:
    """x as a contiguous numpy array: an ndarray, a torch tensor on any device, or anything np.asarray takes."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x)


def digest(values: Iterable) -> str:
    """blake2b (128 bits, hex) of a sequence of arrays, strings and Nones; an array's dtype and shape count."""
    h = hashlib.blake2b(digest_size=16)
    for value in values:
        if value is None:
            h.update(b"\x00none;")
        elif isinstance(value, str):
            h.update(b"\x00str" + value.encode() + b";")
        else:
            array = as_array(value)
            h.update(f"\x00{array.dtype.str}{array.shape};".encode())
            h.update(array.reshape(-1).view(np.uint8) if array.size else b"")
    return h.hexdigest()


def unit_chunks(images, n: int = 256) -> Iterable[np.ndarray]:
    """(N, C, H, W) images as float32 chunks of n in [0, 1]: the same bytes whether held as uint8 (/ 255) or
    float32, or read from their files when indexed (data.reading.LazyImages)."""
    for start in range(0, len(images), n):
        a = as_array(images[start:start + n])
        yield a.astype(np.float32) / np.float32(255) if a.dtype == np.uint8 else a.astype(np.float32, copy=False)


def _classification(images, labels) -> dict:
    labels = as_array(labels).astype(np.float64).reshape(-1)  # (N, 1) indices and (N,) targets alike
    return {"scheme": CLASSIFICATION_SCHEME, "n": int(len(images)), "images": digest(unit_chunks(images)),
            "labels": digest([labels])}


def _segmentation(items: Sequence) -> dict:
    out = {"scheme": SCHEME, "n": len(items), "images": digest(im.image for im in items),
           "labels": digest(getattr(im, "mask", None) for im in items)}
    if all(hasattr(im, "name") for im in items):
        out["names"] = digest(str(im.name) for im in items)
    if all(all(hasattr(im, a) for a in ANNOTATIONS) for im in items):
        out["annotations"] = digest(getattr(im, a) for im in items for a in ANNOTATIONS)
    return out


def split_fingerprint(split) -> dict:
    """The fingerprint of one split: an ImageSet (or anything with .images and .labels), a pair (images,
    labels), or a list of SegImage (or anything with .image)."""
    if hasattr(split, "images") and hasattr(split, "labels"):
        return _classification(split.images, split.labels)
    if isinstance(split, tuple) and len(split) == 2:
        return _classification(*split)
    return _segmentation(list(split))


def fingerprint(splits: dict) -> dict:
    """{split name: split_fingerprint} of the splits given (None values left out)."""
    return {name: split_fingerprint(items) for name, items in splits.items() if items is not None}


def differences(stored: dict | None, current: dict | None) -> list[str]:
    """What differs between two fingerprints, split by split, as phrases ("train labels differ", "val holds 30
    items, not 32"); only splits and fields both hold are compared ([] when nothing can be compared)."""
    found = []
    for name, now in (current or {}).items():
        was = (stored or {}).get(name)
        if not isinstance(was, dict) or was.get("scheme") != now.get("scheme"):
            continue
        if was.get("n") != now.get("n"):
            found.append(f"{name} holds {now.get('n')} items, not {was.get('n')}")
            continue
        changed = [words for key, words in FIELDS.items() if key in was and key in now and was[key] != now[key]]
        if changed:
            found.append(f"{name} {' and '.join(changed)} differ")
    return found
