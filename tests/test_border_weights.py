"""U-Net separation-border weights: the formula on hand-made objects, their path through tiles and
augmentation, the weighted loss, and a short ISBI training that uses them."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medconv.errors import UserError
from medconv.segment.config import SegmentConfig, parse_augment
from medconv.segment.train import TileSampler, augment_tiles, segmentation_loss
from medconv.segment.weights import border_weights, object_labels


def test_border_weights_by_hand():
    objects = np.zeros((12, 40), int)
    objects[2:10, 2:10] = 1
    objects[2:10, 12:20] = 2  # a 2 px gap (columns 10, 11) from object 1
    w = border_weights(objects, w0=10, sigma=5)
    # column 10: 1 px from object 1 (column 9), 2 px from object 2 (column 12)
    assert w[5, 10] == pytest.approx(1 + 10 * math.exp(-(1 + 2) ** 2 / 50))
    # inside object 1 (d1 = 0), 3 px from object 2
    assert w[5, 9] == pytest.approx(1 + 10 * math.exp(-(0 + 3) ** 2 / 50))
    assert w[5, 39] == 1.0  # 20 px from object 2 and 30 from object 1: beyond 4 sigma of the second
    alone = border_weights((objects == 1).astype(int), w0=10, sigma=5)
    assert (alone == 1).all()  # one object: no border to separate


def test_object_labels_follow_the_boundary_convention():
    mask = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]])  # a membrane (class 1) between two cells
    assert object_labels(mask, boundary=True).max() == 2
    assert object_labels(mask, boundary=False).max() == 1  # foreground objects: the one stripe


def test_weights_travel_with_the_mask_and_weigh_the_loss():
    from medconv.data.segmentation import SegImage

    rng = np.random.default_rng(0)
    mask = (rng.random((32, 32)) > 0.7).astype(np.int64)
    im = SegImage("a", rng.random((1, 32, 32), dtype=np.float32), mask)
    x, y, w = TileSampler([im], 16, [mask.astype(np.float32) + 1]).sample(4, torch.Generator().manual_seed(1))
    assert torch.equal(w, y.float() + 1)  # the weights are cropped where the mask is
    aug = parse_augment("flips=1,rot90=1,elastic=0,intensity=0.1")
    x2, y2, w2 = augment_tiles(x, y, torch.Generator().manual_seed(2), aug, 2, w)
    assert torch.equal(w2, y2.float() + 1)  # and flipped and turned with it
    logits = torch.randn(4, 2, 16, 16)
    y2[0, 0, 0] = -1  # an unlabelled pixel counts for nothing
    per_pixel = torch.nn.functional.cross_entropy(logits, y2.clamp_min(0), reduction="none")
    keep = (y2 >= 0).float() * w2
    assert torch.allclose(segmentation_loss(logits, y2, None, w2), (per_pixel * keep).sum() / keep.sum())
    assert torch.allclose(segmentation_loss(logits, y2, None, torch.ones_like(w2)), segmentation_loss(logits, y2, None))


def test_border_weight_settings_are_checked():
    with pytest.raises(UserError, match="--mode dense"):
        SegmentConfig(mode="patch", border_weight=10).validate()
    with pytest.raises(UserError, match="border-sigma"):
        SegmentConfig(mode="dense", border_weight=10, border_sigma=0).validate()


def test_isbi_training_with_border_weights(tmp_path, data_root, cli):
    run = tmp_path / "bw"
    done = cli("segment", "train", "--dataset", "isbi2012", "--data-root", data_root, "--mode", "dense",
               "--tile", "32", "--model-option", "features=4,4,8,8,16,4", "--border-weight", "10",
               "--epochs", "1", "--samples-per-epoch", "8", "--batch-size", "4", "--threads", "1", "--out", run)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stderr.split())
    assert "border weights: w0 10.0" in text and "regions the membrane separates" in text
