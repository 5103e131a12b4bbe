"""Data given in Python rather than by files: arrays, tensors or a torch Dataset per split, for
`medconv.train(cfg, out, data=...)`, `medconv.evaluate(run, data=...)` and `medconv.predict(run, images)`.

Each split is `(images, labels)` arrays or tensors, or a torch `Dataset` whose items are `(image, label)`:

- images: (N, C, H, W) or (N, H, W, C) with C = 1 or 3, or (N, H, W) grey; uint8 (0-255), other integers
  (mapped from their type's range, as image files are by their bit depth: int16 -32768..32767), or floats in
  [0, 1] (others are refused: nothing is rescaled without a word);
- labels: (N,) or (N, 1) class indices; the classes are 0..K-1 unless `classes` names them.

A Dataset is never held whole: its items are read when the trainer indexes them, by DataLoader workers
(as `--loading lazy` reads files); its labels come from its `targets` or `labels` attribute if it has one,
else from reading every item once.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from medconv.data.reading import Indexed
from medconv.data.summary import split_lines
from medconv.data.types import DatasetInfo, ImageSet
from medconv.errors import UserError

PYTHON = "python"  # TrainConfig.dataset of a run trained on data given in Python


def as_images(images, what: str = "images") -> torch.Tensor:
    """Images as a (N, C, H, W) tensor, uint8 or float32 in [0, 1] (see the module's rules)."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).detach().cpu()
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise UserError(f"{what}: expected (N, C, H, W), (N, H, W, C) or (N, H, W) images, got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] not in (1, 3):
        raise UserError(f"{what}: 1 or 3 channels expected, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if x.dtype == torch.bool or not x.is_floating_point():  # by the type's range, as files by their bit depth
        low, top = (0, 1) if x.dtype == torch.bool else (min(torch.iinfo(x.dtype).min, 0), torch.iinfo(x.dtype).max)
        return ((x.double() - low) / (top - low)).float().contiguous()
    x = x.float()
    if x.numel() and (not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise UserError(f"{what}: float values must lie in [0, 1] (found {float(x.min()):g}..{float(x.max()):g}); "
                        "scale them first, e.g. by their window or bit depth")
    return x.contiguous()


def as_labels(labels, n: int, what: str = "labels") -> torch.Tensor:
    """Class indices as (N, 1) int64."""
    array = np.asarray(labels)
    if array.dtype.kind not in "biuf":
        raise UserError(f"{what}: class indices 0..K-1 expected, got {array.dtype.kind == 'U' and 'text' or array.dtype}"
                        " (name the classes with data['classes'] and give their indices)")
    y = torch.as_tensor(array).reshape(-1)
    if len(y) != n:
        raise UserError(f"{what}: {len(y)} labels for {n} images")
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise UserError(f"{what}: class indices must be whole numbers")
    if len(y) and y.min() < 0:
        raise UserError(f"{what}: class indices must be 0 or more, found {int(y.min())}")
    return y.long()[:, None]


class DatasetImages(Indexed):
    """The images of a torch Dataset of (image, label) items, read when indexed (as_images on each)."""

    def __init__(self, dataset, index: Sequence[int] | None = None):
        self.dataset = dataset
        self.index = list(range(len(dataset))) if index is None else list(index)
        first = self.read(0) if self.index else torch.zeros(1, 1, 1)
        self.item_shape, self.dtype = tuple(first.shape), torch.float32

    def __len__(self) -> int:
        return len(self.index)

    def read(self, i: int) -> torch.Tensor:
        image = self.dataset[self.index[i]][0]
        x = as_images(torch.as_tensor(np.asarray(image))[None] if not isinstance(image, torch.Tensor) else image[None],
                      f"dataset item {self.index[i]}")[0]
        if hasattr(self, "item_shape") and tuple(x.shape) != self.item_shape:
            raise UserError(f"dataset item {self.index[i]}: image of shape {tuple(x.shape)}, the first is "
                            f"{self.item_shape}; a Dataset's images must share one shape")
        return x.float() / 255 if x.dtype == torch.uint8 else x

    def subset(self, index) -> "DatasetImages":
        return DatasetImages(self.dataset, [self.index[i] for i in self.positions(index)])


def dataset_labels(dataset) -> torch.Tensor:
    """(N, 1) labels of a Dataset: its `targets` or `labels` attribute, else every item's second element."""
    found = getattr(dataset, "targets", None)
    found = getattr(dataset, "labels", None) if found is None else found
    if found is None:
        found = [int(dataset[i][1]) for i in range(len(dataset))]
    return as_labels(found, len(dataset), "dataset labels")


def split_set(split, name: str) -> ImageSet:
    """One split given in Python -> ImageSet (images a tensor, or DatasetImages for a Dataset)."""
    if isinstance(split, torch.utils.data.Dataset) and not isinstance(split, torch.utils.data.TensorDataset):
        if len(split) == 0:
            raise UserError(f"data[{name!r}]: the dataset is empty")
        return ImageSet(DatasetImages(split), dataset_labels(split))
    if isinstance(split, torch.utils.data.TensorDataset):
        split = split.tensors
    if not (isinstance(split, (tuple, list)) and len(split) == 2):
        raise UserError(f"data[{name!r}]: expected (images, labels) or a torch Dataset of (image, label) items")
    images = as_images(split[0], f"data[{name!r}] images")
    return ImageSet(images, as_labels(split[1], len(images), f"data[{name!r}] labels"))


def given_data(data: dict, name: str = PYTHON) -> tuple[DatasetInfo, dict[str, ImageSet]]:
    """{"train": ..., "val": ...[, "test": ...][, "classes": names]} given in Python -> (DatasetInfo,
    {split: ImageSet}); for evaluation any one split is enough."""
    splits = {k: v for k, v in data.items() if k != "classes"} if isinstance(data, dict) else {}
    if not splits or set(splits) - {"train", "val", "test"}:
        raise UserError("data: expected a dict of train, val and test splits (and optionally classes: names)")
    classes = data.get("classes")
    sets = {split: split_set(value, split) for split, value in splits.items()}
    shapes = {tuple(s.images.shape[1:]) for s in sets.values()}
    if len(shapes) > 1:
        raise UserError(f"data: the splits' images differ in shape ({', '.join(map(str, sorted(shapes)))})")
    channels, h, w = shapes.pop()
    top = max(int(s.labels.max()) for s in sets.values() if len(s)) + 1
    names = list(classes) if classes else [str(i) for i in range(max(top, 2))]
    if top > len(names):
        raise UserError(f"data: labels go up to {top - 1} but {len(names)} classes are named")
    info = DatasetInfo(name=name, task="binary-class" if len(names) == 2 else "multi-class", classes=names,
                       channels=channels, size=(h, w), source="data given in Python", file_size=(h, w),
                       native_sizes=[(h, w)])
    info.summary = split_lines(names, {split: np.bincount(s.labels[:, 0].numpy(), minlength=len(names)).tolist()
                                       for split, s in sets.items()})
    return info, sets
