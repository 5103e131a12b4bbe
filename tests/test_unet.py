"""medconv's U-Net against MONAI's BasicUNet, which it follows layer for layer."""
import pytest
import torch

from medconv.errors import UserError
from medconv.models.registry import build_model


@pytest.mark.parametrize("train_mode", [False, True])
def test_unet_loads_basicunet_weights_and_gives_its_outputs(train_mode):
    from monai.networks.nets import BasicUNet

    features = (4, 6, 8, 10, 12, 5)
    torch.manual_seed(0)
    theirs = BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, features=features, act="relu", norm="batch")
    for m in theirs.modules():  # non-trivial running statistics, so eval mode is checked too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    ours = build_model("unet", 3, 2, (32, 32), features=",".join(map(str, features)))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.train(train_mode), ours.train(train_mode)
    x = torch.randn(2, 3, 48, 64)
    torch.testing.assert_close(ours(x), theirs(x))


def test_unet_refuses_sizes_it_cannot_pool():
    net = build_model("unet", 1, 2, (32, 32), features="4,4,4,4,4,4").eval()
    with pytest.raises(UserError, match="multiples of 16"):
        net(torch.zeros(1, 1, 40, 40))


def test_dense_maps_in_one_pass_or_over_tiles(monkeypatch):
    from monai.inferers import sliding_window_inference

    from medconv.segment import maps
    torch.manual_seed(0)
    net = build_model("unet", 1, 2, (32, 32), features="4,4,8,8,16,4").eval()
    meta = {"mode": "dense", "tile": 32, "mean": [0.5], "std": [0.25]}
    image = torch.rand(1, 32, 32)
    with torch.no_grad():  # one tile's worth: one pass and MONAI's tiles are the same computation
        tiles = torch.softmax(sliding_window_inference((image[None] - 0.5) / 0.25, (32, 32), 4, net, overlap=0.25,
                                                       mode="gaussian")[0], 0)
    torch.testing.assert_close(maps.MapMaker(net, meta)(image), tiles)
    odd = torch.rand(1, 45, 70)  # mirrored out to 48 x 80, then cropped back
    whole = maps.MapMaker(net, meta)(odd)
    assert whole.shape == (2, 45, 70) and torch.allclose(whole.sum(0), torch.ones(45, 70))
    monkeypatch.setattr(maps, "WHOLE_IMAGE_PIXELS", 32 * 32)  # larger images: MONAI's blended tiles
    tiled = maps.MapMaker(net, meta)(odd)
    assert tiled.shape == (2, 45, 70) and not torch.allclose(tiled, whole)
    assert (tiled - whole).abs().mean() < 0.1  # the same network: maps differ only near tile borders


def test_inference_form_folds_batch_norm_and_gives_the_same_posteriors():
    from medconv.infer.fused import inference_form

    torch.manual_seed(0)
    net = build_model("unet", 3, 2, (32, 32), features="4,6,8,10,12,5")
    for m in net.modules():  # non-trivial statistics and affine weights, so the folding has something to do
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    fused = inference_form(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 18  # the model itself is untouched
    assert fused.conv_0.conv_0.conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-5)
