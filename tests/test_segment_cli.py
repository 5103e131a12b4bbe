"""`medconv segment train|evaluate|predict` end to end on ISBI 2012, and its bad-input errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medconv.errors import UserError
from medconv.segment.config import SegmentConfig
from medconv.segment.train import train_segmentation


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("seg") / "patch"
    train_segmentation(SegmentConfig(dataset="isbi2012", data_root=str(data_root), patch=33, epochs=2,
                                     samples_per_epoch=1536, threads=1, deterministic=True), out)
    return out


def test_patch_classifier_learns_membranes(patch_run):
    metrics = json.loads((patch_run / "metrics.json").read_text())
    # 2 short epochs (3072 patches): far from converged, but clearly better than all-cell (pixel error 0.22)
    assert metrics["test"]["f1"] > 0.55 and metrics["test"]["pixel_error"] < 0.2
    assert metrics["test"]["method"] == "dense" and 0 <= metrics["test"]["rand_error"] <= 1
    assert 0 <= metrics["test"]["isbi_pixel_error"] <= 1  # the leaderboard's pixel error beside the fraction wrong
    chosen = json.loads((patch_run / "threshold.json").read_text())  # for predict, chosen on validation
    assert chosen["metric"] == "rand" and 0 < chosen["threshold"] < 1 and chosen == metrics["threshold"]


def test_evaluate_sliding_equals_dense_on_a_crop_and_predict_writes_maps(patch_run, tmp_path, data_root, medconv):
    result = medconv("segment", "evaluate", patch_run, "--split", "val", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pixel_error"] == json.loads((patch_run / "metrics.json").read_text())["val"]["pixel_error"]
    flipped = medconv("segment", "evaluate", patch_run, "--split", "val", "--tta", "flip", "--json")
    assert flipped.returncode == 0, flipped.stderr
    assert json.loads((patch_run / "metrics_val_tta-flip.json").read_text()) == json.loads(flipped.stdout)
    assert json.loads(flipped.stdout)["tta"] == "flip" and json.loads((patch_run / "metrics_val.json").read_text())["tta"] == "none"
    crop = tmp_path / "crop.png"
    Image.open(data_root / "isbi2012_em" / "test" / "image" / "03.png").crop((0, 0, 40, 36)).save(crop)
    for method in ("dense", "sliding"):
        proc = medconv("segment", "predict", patch_run, crop, "--method", method, "--out", tmp_path / method)
        assert proc.returncode == 0, proc.stderr
    dense, sliding = (np.array(Image.open(tmp_path / m / "crop_prob.png")).astype(int) for m in ("dense", "sliding"))
    assert dense.shape == (36, 40) and np.abs(dense - sliding).max() <= 1  # 16-bit maps: equal to 1/65535
    assert (tmp_path / "dense" / "crop_overlay.png").exists() and (tmp_path / "dense" / "crop_mask.png").exists()


def test_thinned_membranes_evaluate_and_predict(patch_run, tmp_path, data_root, medconv):
    image = data_root / "isbi2012_em" / "test" / "image" / "03.png"
    refused = medconv("segment", "predict", patch_run, image, "--thin", "--tta", "flip", "--out", tmp_path)
    assert refused.returncode == 2 and "--split val --thin --tta flip first" in refused.stderr  # no seeds chosen yet
    test = medconv("segment", "evaluate", patch_run, "--split", "test", "--thin", "--json")  # seeds chosen on val first
    assert test.returncode == 0, test.stderr
    seeds = json.loads((patch_run / "thinning.json").read_text())
    thinned = json.loads(test.stdout)["thinned"]
    assert thinned["seed_threshold"] == seeds["seed_threshold"] and thinned["min_seed"] == seeds["min_seed"]
    assert 0 <= thinned["rand_error"] <= 1 and json.loads(test.stdout)["rand_error"] == \
        json.loads((patch_run / "metrics.json").read_text())["test"]["rand_error"]  # the raw figure unchanged
    proc = medconv("segment", "predict", patch_run, image, "--thin", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    membrane = np.array(Image.open(tmp_path / "03_mask.png")) > 0
    raw = np.array(Image.open(tmp_path / "03_prob.png")) / 65535 > seeds["seed_threshold"]
    assert 0 < membrane.mean() < raw.mean()  # one-pixel lines, fewer than the thresholded map's membrane pixels


@pytest.mark.parametrize("ema, precision", [(0.0, "fp32"), (0.9, "fp32"), (0.0, "bf16")])
def test_resume_after_an_interruption_gives_the_same_weights(tmp_path, data_root, ema, precision):
    from safetensors.torch import load_file
    common = dict(dataset="isbi2012", data_root=str(data_root), patch=21, samples_per_epoch=256, batch_size=64,
                  model_options={"widths": [8, 8], "kernels": [3, 3], "hidden": [16]}, threads=1, deterministic=True,
                  ema=ema, precision=precision)
    train_segmentation(SegmentConfig(**common, epochs=2), tmp_path / "whole")
    train_segmentation(SegmentConfig(**common, epochs=1), tmp_path / "parts")  # stopped after epoch 1 ...
    (tmp_path / "parts" / "metrics.json").unlink()
    train_segmentation(SegmentConfig(), tmp_path / "parts", resume=True, overrides={"epochs": 2})  # ... resumed
    with pytest.raises(UserError, match="cannot change"):
        train_segmentation(SegmentConfig(), tmp_path / "parts", resume=True, overrides={"patch": 33})
    for name in ("best", "last"):  # with ema, best is the weight average and last holds it too
        whole = load_file(str(tmp_path / "whole" / "checkpoints" / f"{name}.safetensors"))
        parts = load_file(str(tmp_path / "parts" / "checkpoints" / f"{name}.safetensors"))
        assert whole.keys() == parts.keys() and all(np.array_equal(whole[k].numpy(), parts[k].numpy()) for k in whole)
    assert any(k.startswith("ema.") for k in whole) == (ema > 0)  # whole: the last checkpoint


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.mark.parametrize("case, words", [
    ("size", "same size"), ("value", "not in the value map"), ("even", "must be odd"),
    ("large", "larger than the smallest image"),
])
def test_bad_input_is_one_clear_line(tmp_path, medconv, case, words):
    rng = np.random.default_rng(0)
    for i in range(3):
        write(tmp_path / "images" / f"{i}.png", rng.integers(0, 255, (40, 40), dtype=np.uint8))
        write(tmp_path / "masks" / f"{i}.png", (rng.random((40, 40)) > 0.5).astype(np.uint8) * 255)
    args = ["--images", tmp_path / "images", "--masks", tmp_path / "masks", "--value-map", "255:1,0:0",
            "--patch", "9", "--epochs", "1", "--samples-per-epoch", "64", "--out", tmp_path / "run"]
    if case == "size":
        write(tmp_path / "masks" / "1.png", np.zeros((30, 40), np.uint8))
    elif case == "value":
        write(tmp_path / "masks" / "2.png", np.full((40, 40), 7, np.uint8))
    elif case == "even":
        args[args.index("--patch") + 1] = "10"
    else:
        args[args.index("--patch") + 1] = "101"
    result = medconv("segment", "train", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_cpm15_fixed_split_keeps_instances(data_root):
    from medconv.data.segmentation import load_segmentation
    info, splits = load_segmentation(dataset="cpm15", data_root=str(data_root))
    assert [len(splits[s]) for s in ("train", "val", "test")] == [10, 2, 3] and info.channels == 3
    tile = splits["test"][0]
    assert tile.name == "image07" and tile.instances.max() > 100
    assert np.array_equal(tile.mask, (tile.instances > 0).astype(np.int64))
    assert sum(len(np.unique(im.instances)) - 1 for s in splits.values() for im in s) == 2905


def test_dense_mode_defaults_to_the_unet_and_refuses_patch_networks():
    assert SegmentConfig(mode="dense").validate().arch == "unet"
    assert SegmentConfig().validate().arch == "patch-cnn"
    with pytest.raises(UserError, match="per-pixel outputs"):
        SegmentConfig(mode="dense", arch="patch-cnn").validate()


def test_bf16_training_forward_gives_float32_logits_near_fp32_ones():
    import torch

    from medconv.models.registry import build_model
    from medconv.training.engine import precision_context
    torch.manual_seed(0)
    unet = build_model("unet", 3, 2, (32, 32), features="8,8,16,16,32,8")
    x = torch.randn(2, 3, 32, 32)
    full = unet(x).float()
    with precision_context("bf16", x.device):
        half = unet.to(memory_format=torch.channels_last)(x).float()
    assert half.dtype == torch.float32 and half.shape == full.shape == (2, 2, 32, 32)
    assert not torch.equal(half, full)  # bfloat16 arithmetic did run ...
    torch.testing.assert_close(half, full, rtol=0.05, atol=0.05)  # ... with about 3 significant digits
    with pytest.raises(UserError, match="--precision 'fp8'"):
        SegmentConfig(precision="fp8").validate()


def test_d4_test_time_augmentation_is_rotation_equivariant():
    import torch

    from medconv.models.registry import build_model
    from medconv.segment.maps import MapMaker
    torch.manual_seed(0)
    unet = build_model("unet", 1, 2, (64, 64), features="4,4,8,8,16,4").eval()
    maker = MapMaker(unet, {"mode": "dense", "tile": 64, "mean": [0.5], "std": [0.2]}, tta="d4")
    x = torch.rand(1, 64, 64)
    turned = maker(torch.rot90(x, 1, (-2, -1)))
    torch.testing.assert_close(torch.rot90(turned, -1, (-2, -1)), maker(x), rtol=1e-4, atol=1e-5)
    plain = MapMaker(unet, {"mode": "dense", "tile": 64, "mean": [0.5], "std": [0.2]})
    assert not torch.allclose(torch.rot90(plain(torch.rot90(x, 1, (-2, -1))), -1, (-2, -1)), plain(x), atol=1e-5)
    patch_cnn = build_model("patch-cnn", 1, 2, (15, 15), widths=[4, 8], kernels=[3, 3], hidden=[8]).eval()
    maker = MapMaker(patch_cnn, {"mode": "patch", "patch": 15, "mean": [0.5], "std": [0.2]}, tta="d4")
    torch.testing.assert_close(torch.rot90(maker(torch.rot90(x, 1, (-2, -1))), -1, (-2, -1)), maker(x),
                               rtol=1e-4, atol=1e-5)
