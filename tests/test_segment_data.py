"""Segmentation datasets (ISBI 2012, manifests, folders) and the pixel-centred patch sampler."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from medconv.data.patches import PatchSampler, augment_patches, class_weights
from medconv.data.segmentation import SegImage, load_segmentation, parse_value_map
from medconv.errors import UserError


@pytest.fixture(scope="module")
def isbi(data_root):
    return load_segmentation(dataset="isbi2012", data_root=data_root)


@pytest.fixture(scope="module")
def isbi_sampler(isbi):
    return PatchSampler(isbi[1]["train"], patch=65, balance="class", seed=0)


def _png(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _toy(tmp_path, n=5, size=(12, 10)):
    """n grey images with 0/255 masks in tmp_path/{images,masks}; returns the raw arrays by stem."""
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    raw = {}
    for i in range(n):
        img = rng.integers(0, 256, size)
        mask = np.where(rng.random(size) < 0.3, 255, 0)
        _png(tmp_path / "images" / f"s{i}.png", img)
        _png(tmp_path / "masks" / f"s{i}.png", mask)
        raw[f"s{i}"] = (img, mask)
    return raw


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    """Mirror an index into 0..n-1 without repeating the edge (one reflection)."""
    i = np.abs(i)
    return np.where(i > n - 1, 2 * (n - 1) - i, i)


# ----------------------------------------------------------------------------- datasets


def test_isbi_protocol_split_and_membrane_fraction(isbi, data_root):
    info, splits = isbi
    assert info.classes == ["cell", "membrane"] and info.channels == 1
    assert [s.name for s in splits["train"]] == [f"{i:02d}" for i in range(20)]
    assert [s.name for s in splits["val"]] == [f"{i:02d}" for i in range(20, 25)]
    assert [s.name for s in splits["test"]] == [f"{i:02d}" for i in range(25, 30)]
    first = splits["train"][0]
    assert first.image.shape == (1, 512, 512) and first.image.dtype == np.float32
    assert 0 <= first.image.min() and first.image.max() <= 1 and first.mask.dtype == np.int64
    raw = np.asarray(Image.open(data_root / "isbi2012_em" / "train" / "label" / "00.png"))
    np.testing.assert_array_equal(first.mask, (raw == 0).astype(np.int64))  # membrane (0) -> class 1
    masks = np.stack([s.mask for part in splits.values() for s in part])
    assert set(np.unique(masks)) == {0, 1}
    assert masks.mean() == pytest.approx(0.22, abs=0.01)


def test_manifest_and_folders_give_the_same_data(tmp_path):
    raw = _toy(tmp_path)
    lines = ["image,mask"] + [f"images/{s}.png,masks/{s}.png" for s in raw]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    info_m, by_manifest = load_segmentation(manifest=tmp_path / "data.csv", seed=3)
    info_f, by_folder = load_segmentation(images=tmp_path / "images", masks=tmp_path / "masks", seed=3)
    assert info_m.classes == info_f.classes == ["background", "foreground"]
    assert info_m.channels == info_f.channels == 1
    for split in ("train", "val", "test"):
        assert len(by_manifest[split]) >= 1  # 5 images: at least one in each split
        assert [s.name for s in by_manifest[split]] == [s.name for s in by_folder[split]]
        for a, b in zip(by_manifest[split], by_folder[split]):
            np.testing.assert_array_equal(a.image, b.image)
            np.testing.assert_array_equal(a.mask, b.mask)
            img, mask = raw[a.name]
            np.testing.assert_allclose(a.image[0], img / 255.0, atol=1e-6)
            np.testing.assert_array_equal(a.mask, mask // 255)


def test_manifest_split_column_roi_and_unlabelled_test_rows(tmp_path):
    raw = _toy(tmp_path, n=3)
    (tmp_path / "roi").mkdir()
    roi = np.zeros((12, 10), np.uint8)
    roi[:, :5] = 255
    _png(tmp_path / "roi" / "s0.png", roi)
    (tmp_path / "m.csv").write_text("image,mask,roi,split\nimages/s0.png,masks/s0.png,roi/s0.png,train\n"
                                    "images/s1.png,masks/s1.png,,validation\nimages/s2.png,,,test\n")
    _, splits = load_segmentation(manifest=tmp_path / "m.csv")
    (tr,), (va,), (te,) = splits["train"], splits["val"], splits["test"]
    assert (tr.name, va.name, te.name) == ("s0", "s1", "s2")
    np.testing.assert_array_equal(tr.roi, roi > 0)
    assert va.roi is None and te.mask is None and te.image.shape == (1, 12, 10)
    np.testing.assert_array_equal(va.mask, raw["s1"][1] // 255)


def test_value_map_and_class_indices(tmp_path):
    assert parse_value_map("255:0,0:1") == {255: 0, 0: 1}
    _toy(tmp_path, n=3)
    _, splits = load_segmentation(images=tmp_path / "images", masks=tmp_path / "masks", value_map="255:0,0:1",
                                  classes=["cell", "membrane"])
    s = splits["train"][0]
    raw = np.asarray(Image.open(tmp_path / "masks" / f"{s.name}.png"))
    np.testing.assert_array_equal(s.mask, (raw == 0).astype(np.int64))
    _png(tmp_path / "masks" / "s1.png", np.full((12, 10), 128))
    with pytest.raises(UserError, match=r"s1\.png has value 128.*value map 255:0,0:1"):
        load_segmentation(images=tmp_path / "images", masks=tmp_path / "masks", value_map="255:0,0:1")
    for stem in ("s0", "s2"):  # class indices 0/1 elsewhere, so s1 is the only bad mask
        _png(tmp_path / "masks" / f"{stem}.png", np.eye(12, 10))
    with pytest.raises(UserError, match=r"s1\.png has value 128.*class indices 0\.\.1"):
        load_segmentation(images=tmp_path / "images", masks=tmp_path / "masks", classes=["a", "b"])
    with pytest.raises(UserError, match="PIXEL:CLASS"):
        parse_value_map("255=1")


def test_colour_images_alpha_and_forced_channels(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rgba = np.random.default_rng(1).integers(0, 256, (8, 9, 4)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "images" / "a.png")
    _png(tmp_path / "masks" / "a.png", np.arange(72).reshape(8, 9) % 3)  # class indices 0..2
    info, splits = load_segmentation(images=tmp_path / "images", masks=tmp_path / "masks")
    (a,) = splits["train"]
    assert info.channels == 3 and a.image.shape == (3, 8, 9) and info.classes[0] == "background"
    assert len(info.classes) == 3 and set(np.unique(a.mask)) == {0, 1, 2}
    np.testing.assert_allclose(a.image, rgba[..., :3].transpose(2, 0, 1) / 255.0, atol=1e-6)
    _, grey = load_segmentation(images=tmp_path / "images", masks=tmp_path / "masks", channels=1)
    assert grey["train"][0].image.shape == (1, 8, 9)


def test_input_mistakes_raise_user_errors(tmp_path):
    _toy(tmp_path, n=3)
    _png(tmp_path / "masks" / "s2.png", np.zeros((12, 11)))
    with pytest.raises(UserError, match=r"s2\.png is 12x10 but mask .*s2\.png is 12x11"):
        load_segmentation(images=tmp_path / "images", masks=tmp_path / "masks")
    _png(tmp_path / "masks" / "s2.png", np.zeros((12, 10)))
    _png(tmp_path / "images" / "extra.png", np.zeros((12, 10)))
    with pytest.raises(UserError, match="image 'extra' has no mask"):
        load_segmentation(images=tmp_path / "images", masks=tmp_path / "masks")
    (tmp_path / "images" / "extra.png").unlink()
    _png(tmp_path / "masks" / "orphan.png", np.zeros((12, 10)))
    with pytest.raises(UserError, match="mask 'orphan' has no image"):
        load_segmentation(images=tmp_path / "images", masks=tmp_path / "masks")
    (tmp_path / "masks" / "orphan.png").unlink()
    (tmp_path / "masks" / "s0.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"cannot read mask .*s0\.png"):
        load_segmentation(images=tmp_path / "images", masks=tmp_path / "masks")
    with pytest.raises(UserError, match="ISBI 2012 not found"):
        load_segmentation(dataset="isbi2012", data_root=tmp_path)


# ----------------------------------------------------------------------------- patches


def test_patch_size_limits(isbi):
    train = isbi[1]["train"][:2]
    with pytest.raises(UserError, match="must be an odd integer"):
        PatchSampler(train, patch=64)
    with pytest.raises(UserError, match="odd integer >= 3"):
        PatchSampler(train, patch=1)
    with pytest.raises(UserError, match=r"larger than the smallest image \(512 px\).*at most 511"):
        PatchSampler(train, patch=513)
    PatchSampler(train, patch=511)  # the largest allowed on 512 px images


def test_sampled_patch_is_the_padded_crop_at_its_centre(isbi, isbi_sampler):
    train = isbi[1]["train"]
    img, y, x = isbi_sampler.centres(50, torch.Generator().manual_seed(5))
    patches, labels = isbi_sampler.extract(img, y, x)
    assert patches.shape == (50, 1, 65, 65) and patches.dtype == torch.float32 and labels.dtype == torch.int64
    for k in range(50):
        im = train[img[k]]
        padded = np.pad(im.image, ((0, 0), (32, 32), (32, 32)), mode="reflect")
        np.testing.assert_array_equal(patches[k].numpy(), padded[:, y[k]:y[k] + 65, x[k]:x[k] + 65])
        assert patches[k, 0, 32, 32].item() == im.image[0, y[k], x[k]]  # the centre pixel is (y, x)
        assert labels[k].item() == im.mask[y[k], x[k]]


def test_border_centres_are_mirrored(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.random((2, 17, 19)).astype(np.float32)
    mask = rng.integers(0, 2, (17, 19))
    sampler = PatchSampler([SegImage("t", image, mask)], patch=15)
    ys, xs = np.array([0, 0, 16, 16, 8, 0]), np.array([0, 18, 0, 18, 9, 6])
    patches, labels = sampler.extract(np.zeros(6, np.int64), ys, xs)
    r = np.arange(-7, 8)
    for k in range(6):
        ref = image[:, _reflect(ys[k] + r, 17)[:, None], _reflect(xs[k] + r, 19)[None, :]]
        np.testing.assert_array_equal(patches[k].numpy(), ref)
        padded = np.pad(image, ((0, 0), (7, 7), (7, 7)), mode="reflect")
        np.testing.assert_array_equal(ref, padded[:, ys[k]:ys[k] + 15, xs[k]:xs[k] + 15])
        assert labels[k].item() == mask[ys[k], xs[k]]


def test_class_balance_and_reproducibility(isbi, isbi_sampler):
    _, labels = isbi_sampler.sample(4000, torch.Generator().manual_seed(0))
    assert labels.float().mean().item() == pytest.approx(0.5, abs=0.03)
    plain = PatchSampler(isbi[1]["train"], patch=65, balance="none")
    _, labels = plain.sample(4000, torch.Generator().manual_seed(0))
    assert labels.float().mean().item() == pytest.approx(0.22, abs=0.03)  # the data's own membrane share
    a = isbi_sampler.sample(64, torch.Generator().manual_seed(7))
    b = isbi_sampler.sample(64, torch.Generator().manual_seed(7))
    c = isbi_sampler.sample(64, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    seeded = [PatchSampler(isbi[1]["train"][:2], patch=9, seed=4).sample(16)[0] for _ in range(2)]
    assert torch.equal(*seeded)


def test_roi_excludes_pixels():
    rng = np.random.default_rng(3)
    mask = rng.integers(0, 2, (20, 30))
    roi = np.zeros((20, 30), bool)
    roi[:, :10] = True
    sampler = PatchSampler([SegImage("r", rng.random((1, 20, 30)).astype(np.float32), mask, roi)], patch=5)
    _, y, x = sampler.centres(2000, torch.Generator().manual_seed(1))
    assert x.max() < 10 and len(set(zip(y.tolist(), x.tolist()))) > 150
    w = class_weights([SegImage("r", np.zeros((1, 20, 30), np.float32), mask, roi)], ["a", "b"])
    counts = np.bincount(mask[roi], minlength=2)
    np.testing.assert_allclose(w.numpy(), counts.sum() / (2 * counts), rtol=1e-6)


def test_class_weights_on_isbi(isbi):
    info, splits = isbi
    w = class_weights(splits["train"], info.classes)
    share = np.mean([s.mask.mean() for s in splits["train"]])
    assert w[1] / w[0] == pytest.approx((1 - share) / share, rel=1e-3) and w[1] > 3 * w[0]


def test_augmentation_keeps_the_centre_and_repeats_per_seed(isbi_sampler):
    x, _ = isbi_sampler.sample(32, torch.Generator().manual_seed(2))
    out = augment_patches(x, torch.Generator().manual_seed(3), flips=True, rot90=True, elastic=4.0)
    assert out.shape == x.shape and not torch.equal(out, x)
    torch.testing.assert_close(out[:, :, 32, 32], x[:, :, 32, 32], rtol=0, atol=1e-6)
    again = augment_patches(x, torch.Generator().manual_seed(3), flips=True, rot90=True, elastic=4.0)
    assert torch.equal(out, again)
    geo = augment_patches(x, torch.Generator().manual_seed(4), elastic=0.0)  # a dihedral view of each patch
    views = [torch.rot90(v, k, (-2, -1)) for v in (x, x.flip(-1)) for k in range(4)]
    assert all(any(torch.equal(geo[i], v[i]) for v in views) for i in range(32))
    lit = augment_patches(x, torch.Generator().manual_seed(5), flips=False, rot90=False, intensity=0.2)
    assert lit.min() >= 0 and lit.max() <= 1 and not torch.equal(lit, x)


def test_colour_augmentation_changes_each_channel_apart():
    x = torch.full((64, 3, 9, 9), 0.5) + torch.linspace(-0.2, 0.2, 9)  # 3 equal channels
    out = augment_patches(x, torch.Generator().manual_seed(1), flips=False, rot90=False, colour=0.1)
    assert out.min() >= 0 and out.max() <= 1
    contrast = out.std(dim=(2, 3)) / x.std(dim=(2, 3))  # (64, 3): each channel's own factor, within 1 +- 0.1
    assert contrast.min() >= 0.9 - 1e-5 and contrast.max() <= 1.1 + 1e-5
    assert (contrast[:, 0] - contrast[:, 1]).abs().max() > 0.02  # the channels were not changed alike
    from medconv.segment.config import parse_augment
    assert parse_augment("flips=1,colour=0.05").colour == 0.05
