"""The model registry: every architecture builds for 1 or 3 channels and small inputs; clear errors."""
import pytest
import torch

from medconv.errors import UserError
from medconv.models.registry import available, build_model


@pytest.mark.parametrize("arch", ["simple-cnn", "lenet5", "resnet18", "resnet50"])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shape(arch, channels):
    model = build_model(arch, channels, 7, (28, 28)).eval()
    assert model(torch.zeros(2, channels, 28, 28)).shape == (2, 7)


def test_lenet5_parameter_count_on_32px_digits():
    # C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850 (10 classes), full C3 connections
    model = build_model("lenet5", 1, 10, (32, 32))
    assert sum(p.numel() for p in model.parameters()) == 61_706


def test_small_input_resnet_keeps_resolution_and_large_uses_torchvision_stem():
    small = build_model("resnet18", 1, 2, (28, 28))
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, torch.nn.Identity)
    large = build_model("resnet50", 3, 2, (224, 224))
    assert large.conv1.kernel_size == (7, 7) and large.conv1.stride == (2, 2)
    # torchvision's ResNet-50 with a 2-class head: 25,557,032 - 2048*998 - 998
    assert sum(p.numel() for p in large.parameters()) == 25_557_032 - 2048 * 998 - 998


def test_simple_cnn_options_and_unknown_arch():
    model = build_model("simple-cnn", 1, 2, (28, 28), widths="8,16", hidden=[32])
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16]
    with pytest.raises(UserError, match="unknown --arch 'resnet7'"):
        build_model("resnet7", 1, 2, (28, 28))
    assert {"simple-cnn", "lenet5", "resnet18", "resnet50"} <= set(available())
