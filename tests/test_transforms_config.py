"""Augmentation, normalisation statistics and the YAML configuration."""
import pytest
import torch

from medconv.cli import build_parser, config_from_args
from medconv.config import TrainConfig, dump_config, load_config
from medconv.data.augment import PRESETS, AugmentConfig, parse_augment
from medconv.data.transforms import augment, channel_stats, tta_views
from medconv.errors import UserError


def test_augment_is_identity_when_off_and_flips_exactly():
    x = torch.rand(6, 1, 28, 28)
    assert torch.equal(augment(x, AugmentConfig()), x)
    assert torch.allclose(augment(x, AugmentConfig(hflip=1.0)), x.flip(-1), atol=1e-5)
    assert torch.allclose(augment(x, AugmentConfig(vflip=1.0)), x.flip(-2), atol=1e-5)


def test_augment_varies_per_sample_and_repeats_with_seed():
    x = torch.rand(1, 1, 28, 28).repeat(8, 1, 1, 1)
    torch.manual_seed(3)
    a = augment(x, PRESETS["strong"])
    torch.manual_seed(3)
    b = augment(x, PRESETS["strong"])
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])
    assert a.min() >= 0 and a.max() <= 1


def test_augment_spec_presets_and_fields():
    assert parse_augment("light") == PRESETS["light"]
    assert parse_augment("hflip=0.5,rotate=15,rotate90=true") == AugmentConfig(hflip=0.5, rotate=15, rotate90=True)
    with pytest.raises(UserError, match="keys hflip"):
        parse_augment("hflop=0.5")
    with pytest.raises(UserError, match="needs a number"):
        TrainConfig(augment="rotate=a lot").validate()


def test_tta_views_and_channel_stats():
    x = torch.rand(2, 3, 8, 8)
    views = tta_views(x, "d4")
    assert len(views) == 8
    assert all(not torch.equal(views[i], views[j]) for i in range(8) for j in range(i))  # 8 distinct views
    assert any(torch.equal(v, torch.rot90(x, 1, (-2, -1)).flip(-1)) for v in views)
    assert tta_views(x, "flip")[1].equal(x.flip(-1))
    mean, std = channel_stats((torch.ones(4, 2, 3, 3) * torch.tensor([0.0, 255.0]).view(1, 2, 1, 1)).to(torch.uint8))
    assert mean == pytest.approx([0.0, 1.0]) and std[0] == pytest.approx(1e-3)


def test_yaml_round_trip_and_cli_overrides(tmp_path):
    cfg = TrainConfig(dataset="pneumoniamnist", epochs=7, model_options={"widths": [8, 16]}, milestones=[0.3])
    path = tmp_path / "run.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg
    args = build_parser().parse_args(["train", "--out", "x", "--config", str(path), "--epochs", "3",
                                      "--model-option", "hidden=[32]", "--deterministic"])
    merged = config_from_args(args)
    assert (merged.epochs, merged.dataset, merged.deterministic) == (3, "pneumoniamnist", True)
    assert merged.model_options == {"widths": [8, 16], "hidden": [32]}  # merged with the file's


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(UserError, match="unknown setting.*learning_rate"):
        load_config(bad)
    with pytest.raises(UserError, match="--optimizer 'rmsprop'"):
        TrainConfig(optimizer="rmsprop").validate()


def test_resize_nearest_doubles_pixels_and_bilinear_keeps_range():
    from medconv.data import resized
    from medconv.data.types import ImageSet

    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    s = ImageSet(images, torch.zeros(3, 1, dtype=torch.long))
    up = resized(s, 56, "nearest").images
    assert up.dtype == torch.uint8 and up.shape == (3, 1, 56, 56)
    assert torch.equal(up, images.repeat_interleave(2, -1).repeat_interleave(2, -2))
    smooth = resized(s, 299, "bilinear").images
    assert smooth.shape == (3, 1, 299, 299) and smooth.dtype == torch.uint8
