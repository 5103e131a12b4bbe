"""GoogLeNet as published (Szegedy et al. 2014, "Going deeper with convolutions", Table 1), and torchvision's.

torchvision's GoogLeNet puts a 3x3 convolution in the "5x5" branch of every Inception module (a known
deviation kept for its pretrained weights); `googlenet` here uses the paper's 5x5 kernels. Module names
follow torchvision's (`conv1`, `maxpool1`, `conv2`, `conv3`, `maxpool2`, `inception3a` ... `inception5b`,
`avgpool`, `dropout`, `fc`; `branch1`..`branch4` inside each module; `aux1`, `aux2`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .registry import register

SMALL_INPUT = 96  # below this (smallest side), the small-input stem: 3x3 stride-1 conv1, no maxpool1/maxpool2

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
TABLE1: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


class BasicConv2d(nn.Module):
    """Conv (bias only without BN) -> [BatchNorm, eps 1e-3 as torchvision] -> ReLU. (N, C, H, W) -> (N, out, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 batch_norm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                              bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """One Inception module; the four branches keep H, W and are concatenated along channels.

    "reduced" (the paper's Figure 2b): branch1 1x1 -> c1; branch2 1x1 -> r3, 3x3 -> c3; branch3 1x1 -> r5,
    5x5 -> c5; branch4 3x3/1 max-pool, 1x1 -> pool_proj. Output channels c1 + c3 + c5 + pool_proj.
    "naive" (Figure 2a): branch1 1x1 -> c1, branch2 3x3 -> c3, branch3 5x5 -> c5 on the input, branch4 the
    3x3/1 max-pool of the input itself. Output channels c1 + c3 + c5 + in_channels: they grow module after module.
    """

    def __init__(self, in_channels: int, c1: int, r3: int, c3: int, r5: int, c5: int, pool_proj: int,
                 naive: bool = False, batch_norm: bool = False):
        super().__init__()
        conv = lambda i, o, k: BasicConv2d(i, o, k, batch_norm=batch_norm)
        pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.branch1 = conv(in_channels, c1, 1)
        if naive:
            self.branch2, self.branch3, self.branch4 = conv(in_channels, c3, 3), conv(in_channels, c5, 5), pool
            self.out_channels = c1 + c3 + c5 + in_channels
        else:
            self.branch2 = nn.Sequential(conv(in_channels, r3, 1), conv(r3, c3, 3))
            self.branch3 = nn.Sequential(conv(in_channels, r5, 1), conv(r5, c5, 5))
            self.branch4 = nn.Sequential(pool, conv(in_channels, pool_proj, 1))
            self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """The paper's auxiliary classifier: 5x5/3 average pool (14x14 -> 4x4), 1x1 conv 128 + ReLU, FC 1024 + ReLU,
    dropout 0.7, FC num_classes. Maps of another size are then average-pooled to 4x4 (maps under 5 px skip the
    5x5 pool), so the head works at any input size and is the paper's at 224 px (and at 28 px small-input)."""

    def __init__(self, in_channels: int, num_classes: int, batch_norm: bool = False, dropout: float = 0.7):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv = BasicConv2d(in_channels, 128, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) >= 5:
            x = self.pool(x)
        x = F.adaptive_avg_pool2d(self.conv(x), 4).flatten(1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class GoogLeNet(nn.Module):
    """GoogLeNet, Table 1 of Szegedy et al. 2014. Input (N, C, H, W) -> logits (N, num_classes).

    At 224 px: conv1 7x7/2 (64) -> 112, maxpool1 3x3/2 -> 56, conv2 1x1 (64, the reduce), conv3 3x3 (192),
    maxpool2 -> 28, inception3a/3b, maxpool3 -> 14, inception4a-4e, maxpool4 -> 7, inception5a/5b (1024 maps),
    global average pool (the paper's 7x7/1), dropout 0.4, fc. ReLU after every convolution. Max-pools are
    3x3/2 with ceil_mode, as torchvision's.

    Options:
    - `inception`: "reduced" (the paper's modules, default) or "naive" (Figure 2a, same 1x1/3x3/5x5 filter
      counts, no reductions; channels grow: 3a 416, 3b 832, 4a 1280, 4b 1728, 4c 2176, 4d 2640, 4e 3344,
      5a 4048, 5b 4944).
    - `batch_norm` (default True): BatchNorm after every convolution (conv biases dropped), which lets the
      22-layer network train from scratch with `medconv train`. The paper has none: `batch_norm=False`
      gives the published network (conv biases, no BN); Table-1 comparisons count conv weights only.
    - `lrn` (default False): the paper's local response normalisation after maxpool1 and after conv3
      (size 5, alpha 1e-4, beta 0.75, k 2, AlexNet's values), modules `lrn1`, `lrn2`.
    - `aux_logits` (default False): the two auxiliary classifiers after 4a and 4d (`aux1`, `aux2`). `forward`
      always returns the main logits (N, num_classes), so `medconv train` works unchanged; in training mode the
      auxiliary logits (aux1, aux2), each (N, num_classes), are stored in `self.aux_outputs` (an empty tuple
      otherwise) for a trainer to add 0.3 x their losses, as the paper does.
    - Small inputs (smallest side < 96 px, e.g. MedMNIST 28-64 px): conv1 becomes 3x3 stride 1 and maxpool1,
      maxpool2 are dropped, so a 28 px image enters inception3a at 28x28 just as a 224 px image does.

    Parameters at 3 channels, 1000 classes, 224 px, no aux, batch_norm=False: 6,998,552 = conv weights
    5,966,272 + conv biases 7,280 + fc 1,025,000 (batch_norm=True: 7,005,832; aux_logits adds 6,379,728).
    The naive variant is 97,526,008 (same setting), which is the paper's argument for the 1x1 reductions.
    Initialisation: convolutions Kaiming-normal (fan_in, ReLU) with zero biases, so activations stay O(1)
    without BN; linear layers N(0, 0.01). (With aux_logits on, a DDP trainer that ignores `aux_outputs`
    needs find_unused_parameters=True.)
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: tuple[int, int] = (224, 224),
                 inception: str = "reduced", aux_logits: bool = False, batch_norm: bool = True,
                 lrn: bool = False, dropout: float = 0.4, dropout_aux: float = 0.7):
        super().__init__()
        if inception not in ("reduced", "naive"):
            raise UserError(f"googlenet option inception={inception!r}: expected 'reduced' or 'naive'")
        self.small_input = min(input_size) < SMALL_INPUT
        self.aux_logits = bool(aux_logits)
        bn = bool(batch_norm)
        pool = lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True)
        norm = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0) if lrn else nn.Identity()
        if self.small_input:
            self.conv1 = BasicConv2d(in_channels, 64, 3, batch_norm=bn)
            self.maxpool1 = nn.Identity()
        else:
            self.conv1 = BasicConv2d(in_channels, 64, 7, stride=2, batch_norm=bn)
            self.maxpool1 = pool()
        self.lrn1 = norm()
        self.conv2 = BasicConv2d(64, 64, 1, batch_norm=bn)
        self.conv3 = BasicConv2d(64, 192, 3, batch_norm=bn)
        self.lrn2 = norm()
        self.maxpool2 = nn.Identity() if self.small_input else pool()
        channels = 192
        for name, filters in TABLE1.items():
            module = Inception(channels, *filters, naive=inception == "naive", batch_norm=bn)
            setattr(self, name, module)
            channels = module.out_channels
            if name == "inception3b":
                self.maxpool3 = pool()
            elif name == "inception4e":
                self.maxpool4 = pool()
        self.aux1 = InceptionAux(self.inception4a.out_channels, num_classes, bn, dropout_aux) if aux_logits else None
        self.aux2 = InceptionAux(self.inception4d.out_channels, num_classes, bn, dropout_aux) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self.aux_outputs: tuple[torch.Tensor, ...] = ()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")  # O(1) activations without BN
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lrn1(self.maxpool1(self.conv1(x)))
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        aux = []
        x = self.inception4a(x)
        if self.aux1 is not None and self.training:
            aux.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        if self.aux2 is not None and self.training:
            aux.append(self.aux2(x))
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        self.aux_outputs = tuple(aux)
        return self.fc(self.dropout(self.avgpool(x).flatten(1)))


@register("googlenet", "GoogLeNet as published (Szegedy 2014, 5x5 branches); options inception=reduced|naive, "
                       "aux_logits, batch_norm (default true), lrn; small-input stem below 96 px",
          options=("inception", "aux_logits", "batch_norm", "lrn", "dropout", "dropout_aux"))
def googlenet(in_channels: int, num_classes: int, input_size: tuple[int, int], **options) -> GoogLeNet:
    return GoogLeNet(in_channels, num_classes, input_size, **options)


@register("googlenet-torchvision", "torchvision's GoogLeNet (3x3 in the '5x5' branch, BN), no aux heads; "
                                   "small-input stem below 96 px")
def googlenet_torchvision(in_channels: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    """torchvision's GoogLeNet (aux_logits=False, init_weights=True, transform_input=False). conv1 is rebuilt
    for `in_channels` when that is not 3; below 96 px it becomes a 3x3 stride-1 conv and maxpool1, maxpool2
    are dropped, as in `GoogLeNet`."""
    import torchvision  # here, not at import: `medconv` starts faster without it
    from torchvision.models.googlenet import BasicConv2d as TorchvisionConv

    model = torchvision.models.googlenet(weights=None, num_classes=num_classes, aux_logits=False,
                                         init_weights=True, transform_input=False)
    if min(input_size) < SMALL_INPUT:
        model.conv1 = TorchvisionConv(in_channels, 64, kernel_size=3, stride=1, padding=1)
        model.maxpool1 = nn.Identity()
        model.maxpool2 = nn.Identity()
    elif in_channels != 3:
        model.conv1 = TorchvisionConv(in_channels, 64, kernel_size=7, stride=2, padding=3)
    else:
        return model
    nn.init.trunc_normal_(model.conv1.conv.weight, mean=0.0, std=0.01, a=-2, b=2)  # torchvision's init
    return model
