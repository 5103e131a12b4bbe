"""medconv.analysis: receptive fields (hand-checked and against gradients), layer tables, fc vs conv, pictures."""
from __future__ import annotations

import io
import json
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from medconv.analysis import (
    analytic_extent,
    empirical_receptive_field,
    fc_vs_conv,
    human,
    last_spatial_layer,
    layer_table,
    plot_filters,
    plot_receptive_field,
    receptive_fields,
)
from medconv.errors import UserError
from medconv.models.registry import REGISTRY, available, build_model

warnings.filterwarnings("ignore", message="The default weight initialization", category=FutureWarning)


def rf_of(net: nn.Module, shape=(1, 32, 32), layer: str = ""):
    return receptive_fields(net, shape)[layer]


class TwoBranch(nn.Module):
    """1x1 and 5x5 branches, concatenated along channels (an Inception block in miniature)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 2, 1), nn.Conv2d(1, 2, 5, padding=2)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)


class PadThenConv(nn.Module):
    """Asymmetric F.pad (left 3, top 2), then a 3x3 convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        return self.conv(F.pad(x, (3, 0, 2, 0)))


def test_hand_checked_receptive_fields():
    three = nn.Sequential(*(nn.Conv2d(1, 1, 3) for _ in range(3)))
    assert rf_of(three).size == (7, 7) and rf_of(three).jump == (1, 1) and rf_of(three).start == (3, 3)
    pooled = rf_of(nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3)))
    assert pooled.size == (8, 8) and pooled.jump == (2, 2)
    assert rf_of(nn.Conv2d(1, 1, 3, dilation=2)).size == (5, 5)
    assert rf_of(TwoBranch()).size == (5, 5)
    asym = rf_of(nn.Sequential(nn.Conv2d(1, 1, (1, 7), padding=(0, 3)), nn.Conv2d(1, 1, (7, 1), padding=(3, 0))))
    assert asym.size == (7, 7) and asym.start == (0, 0)


def test_start_offsets_with_padding():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.Conv2d(1, 1, 3))
    fields = receptive_fields(net, (1, 32, 32))
    assert fields["0"].start == (0, 0) and fields["1"].start == (0, 0) and fields["1"].jump == (2, 2)
    assert fields["2"].start == (2, 2) and fields["2"].size == (9, 9)
    padded = rf_of(PadThenConv())
    assert padded.start == (-1, -2) and padded.size == (3, 3)  # rows shifted by the top pad 2, cols by 3
    net = PadThenConv()
    assert empirical_receptive_field(net, (1, 3, 3), "conv") == analytic_extent(net, (1, 3, 3), "conv") == (2, 1)


class DataDependent(nn.Module):
    """Control flow on tensor values: cannot run on the meta device, so the trace runs for real."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        return self.conv(x) if x.sum().item() >= 0 else x


def test_trace_falls_back_to_a_real_run():
    assert rf_of(DataDependent()).size == (3, 3) and layer_table(DataDependent(), (1, 8, 8)).total_macs == 9 * 36
    with pytest.raises(UserError, match="input shape"):
        layer_table(nn.Conv2d(3, 1, 3), (1, 8, 8))


def test_global_after_pooling_and_flatten():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    fields = receptive_fields(net, (1, 16, 16))
    assert not fields["0"].is_global and fields["1"].is_global and fields["3"].is_global
    assert fields["1"].exceeds((16, 16)) is False and fields["1"].size == (16, 16)


def _torchvision(name: str) -> nn.Module:
    torch.manual_seed(0)
    options = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return getattr(torchvision.models, name)(weights=None, **options)


CASES = [  # (builder, input shape, layers: None = the last spatial layer)
    (lambda: build_model("resnet18", 3, 10, (28, 28)), (3, 28, 28), [None, "layer2"]),
    (lambda: _torchvision("resnet18"), (3, 224, 224), [None, "layer2"]),
    (lambda: build_model("resnet50", 3, 2, (96, 96)), (3, 96, 96), [None, "layer1"]),
    (lambda: _torchvision("alexnet"), (3, 224, 224), [None, "features.5"]),
    (lambda: _torchvision("googlenet"), (3, 224, 224), [None, "inception3a"]),
    (lambda: _torchvision("inception_v3"), (3, 299, 299), [None]),
    (lambda: _torchvision("inception_v3"), (3, 139, 139), ["Mixed_5b"]),
    (lambda: build_model("simple-cnn", 1, 2, (28, 28)), (1, 28, 28), [None, "features.6"]),
    (lambda: build_model("lenet5", 1, 10, (28, 28)), (1, 28, 28), [None, "s2"]),
]


@pytest.mark.parametrize("build, shape, layers", CASES,
                         ids=["resnet18-28", "resnet18-224", "resnet50-96", "alexnet", "googlenet",
                              "inception_v3-299", "inception_v3-139", "simple-cnn", "lenet5"])
def test_analytic_equals_empirical(build, shape, layers):
    model = build()
    for layer in layers:
        layer = layer or last_spatial_layer(model, shape)
        assert empirical_receptive_field(model, shape, layer) == analytic_extent(model, shape, layer), layer


def test_known_receptive_fields():
    assert rf_of(_torchvision("resnet18"), (3, 224, 224), "layer4").size == (435, 435)
    assert rf_of(_torchvision("alexnet"), (3, 224, 224), "features").size == (195, 195)
    lenet = receptive_fields(build_model("lenet5", 1, 10, (28, 28)), (1, 28, 28))
    assert lenet["c5"].size == (32, 32) and lenet["c5"].start == (13.5, 13.5)  # padded 28 -> 32
    assert lenet["c5"].exceeds((28, 28))


@pytest.mark.parametrize("name", [a for a in available() if REGISTRY[a].dims == 2])  # 3D: test_volumes3d (inspect)
def test_every_registry_architecture_analytic_equals_empirical(name):
    """Every architecture medconv trains, as built for MedMNIST (28 px; inception_v3 at its 75 px minimum)."""
    size = 75 if name == "inception_v3" else 28
    model = build_model(name, 1, 2, (size, size))
    if name == "mlp":  # no spatial layer: every hidden unit sees the whole image
        assert rf_of(model, (1, size, size), "hidden_layers.0").is_global
        with pytest.raises(UserError, match="no layer with a spatial output"):
            last_spatial_layer(model, (1, size, size))
        return
    layer = last_spatial_layer(model, (1, size, size))
    assert empirical_receptive_field(model, (1, size, size), layer) == analytic_extent(model, (1, size, size), layer)


@pytest.mark.parametrize("name, size", [("alexnet", 227), ("googlenet", 224), ("inception_v3", 299)])
def test_registry_classics_at_native_size_analytic_equals_empirical(name, size):
    model = build_model(name, 3, 10, (size, size))
    layer = last_spatial_layer(model, (3, size, size))
    assert empirical_receptive_field(model, (3, size, size), layer) == analytic_extent(model, (3, size, size), layer)


def test_layer_table_counts_small_net():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))
    table = layer_table(net, (1, 8, 8))
    assert [r.name for r in table.rows] == ["0", "1", "2", "3", "4"]
    conv, pool, fc = table.rows[0], table.rows[2], table.rows[4]
    assert (conv.params, conv.weights, conv.macs) == (40, 36, 4 * 1 * 3 * 3 * 8 * 8)
    assert (fc.params, fc.weights, fc.macs) == (650, 640, 640)
    assert conv.kernel == (3, 3) and conv.padding == (1, 1) and pool.stride == (2, 2)
    assert conv.output_shape == (4, 8, 8) and pool.output_shape == (4, 4, 4) and fc.output_shape == (10,)
    assert (table.total_params, table.total_weights, table.total_macs) == (690, 676, 2304 + 640)
    assert pool.rf_size == (4, 4) and fc.rf_global
    data = json.loads(table.to_json())
    assert data["total_macs"] == 2944 and data["rows"][0]["kernel"] == [3, 3]


def test_layer_table_resnet18_totals():
    model = _torchvision("resnet18")
    table = layer_table(model, (3, 224, 224))
    assert table.total_params == sum(p.numel() for p in model.parameters())
    assert 1.80e9 < table.total_macs < 1.83e9  # ~1.82 GMACs
    assert sum(r.macs for r in table.rows) == table.total_macs
    assert sum(r.params for r in table.rows) == table.total_params
    stages = layer_table(model, (3, 224, 224), depth=1)
    assert [r.name for r in stages.rows][4:8] == ["layer1", "layer2", "layer3", "layer4"]
    assert [r.rf_exceeds_input for r in stages.rows][4:8] == [False, False, False, True]
    assert human(table.total_macs) == "1.81G" and human(table.total_params) == "11.7M"
    from rich.console import Console
    console = Console(width=200, file=io.StringIO())
    console.print(stages.to_rich())
    text = console.file.getvalue()
    assert "layer4" in text and "435*" in text and "1.81G" in text


def test_layer_table_googlenet_one_row_per_inception_block():
    table = layer_table(_torchvision("googlenet"), (3, 224, 224), depth=1)
    blocks = [r for r in table.rows if r.type == "Inception"]
    assert [r.name for r in blocks] == ["inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
                                        "inception4d", "inception4e", "inception5a", "inception5b"]
    assert not any("." in r.name for r in table.rows)
    assert blocks[0].output_shape == (256, 28, 28) and blocks[-1].output_shape == (1024, 7, 7)
    assert table.rows[-1].output_shape is None  # the auxiliary heads do not run in eval mode


def test_fc_vs_conv_lecture_numbers():
    out = fc_vs_conv((200, 200), hidden=25_000, kernel=10)
    assert out["fully_connected"] == 1_000_000_000 and out["locally_connected"] == 2_500_000
    assert out["convolution_per_map"] == 100 and out["convolution"] == 10_000
    assert out["lecture_2_5_million_is"] == "locally_connected" and "2,500,000" in out["explanation"]


def test_pictures(tmp_path):
    model = build_model("simple-cnn", 1, 2, (28, 28))
    image = torch.rand(1, 28, 28)
    rf_png = plot_receptive_field(model, (1, 28, 28), "features.13", image.numpy()[0], tmp_path / "rf.png")
    grey_png = plot_receptive_field(model, (1, 28, 28), "features.6", None, tmp_path / "grey.png")
    filters_png = plot_filters(model, image, tmp_path / "filters.png")
    for png in (rf_png, grey_png, filters_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filters.png", "grey.png", "rf.png"]


def test_unknown_layer_is_a_user_error():
    with pytest.raises(UserError, match="layer 'nope'"):
        empirical_receptive_field(build_model("lenet5", 1, 10, (28, 28)), (1, 28, 28), "nope")
