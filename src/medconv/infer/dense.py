"""Exact dense scanning: a trained patch classifier rewritten as a fully convolutional network that
gives every pixel's posterior in one pass (Giusti et al. 2013, "Fast image scanning with deep
max-pooling convolutional neural networks"; the "filter rarefaction" of Long et al. 2015).

Each layer runs at stride 1; a layer that had stride s multiplies the dilation of every later
layer by s, so each later kernel still reads the same pixels as in the patch network. The first
fully connected layer becomes a convolution whose kernel covers the whole last feature map (dilated
the same way), later fully connected layers become 1x1 convolutions. On an image mirror-padded by
patch // 2, output pixel (y, x) is then exactly the patch network's output for the patch centred on
(y, x). Large images are processed in tiles whose inputs overlap by patch - 1 pixels (the halo), so
memory stays bounded and the result does not depend on the tile size.

    dense = dense_network(model, patch)                 # once per trained model
    probs = dense_posteriors(dense, image, patch, mean, std)   # (K, H, W)
    probs = dense_batch_posteriors(dense, images, patch, mean, std)   # (N, K, H, W), images of one size
    scan = DenseScan(dense, patch)                      # the same as one network (what medconv export writes)
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Identity, nn.BatchNorm2d)


def leaf_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of nested nn.Sequential containers in forward order (the network must be a plain stack)."""
    children = list(model.children())
    if not children:
        return [model]
    names = [n for n, _ in model.named_children()]
    if not isinstance(model, nn.Sequential) and names != ["features", "classifier"]:
        raise UserError(f"dense scanning needs a plain stack of layers (features, then classifier); "
                        f"{type(model).__name__} has {', '.join(names)}")
    return [leaf for child in children for leaf in leaf_layers(child)]


def pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class DilatedAvgPool(nn.Module):
    """Average pooling at stride 1 with dilation (torch's AvgPool2d has none): a depthwise convolution."""

    def __init__(self, channels: int, kernel: tuple[int, int], dilation: int):
        super().__init__()
        self.channels, self.kernel, self.dilation = channels, kernel, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.new_full((self.channels, 1, *self.kernel), 1.0 / (self.kernel[0] * self.kernel[1]))
        return F.conv2d(x, w, dilation=self.dilation, groups=self.channels)


def dense_network(model: nn.Module, patch: int) -> nn.Sequential:
    """The fully convolutional equivalent of patch classifier `model` (eval mode, weights shared by copy)."""
    model = model.eval()
    dilation, size, channels, flat = 1, (patch, patch), None, False
    out: list[nn.Module] = []
    for layer in leaf_layers(model):
        if isinstance(layer, nn.Conv2d):
            if layer.padding not in ("valid", 0, (0, 0)):
                raise UserError("exact dense scanning needs unpadded (valid) convolutions; this network pads "
                                f"({layer}): use --arch patch-cnn, or --method sliding")
            conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=1,
                             dilation=tuple(d * dilation for d in pair(layer.dilation)), groups=layer.groups,
                             bias=layer.bias is not None)
            conv.load_state_dict(layer.state_dict())
            out.append(conv)
            k, s, d = pair(layer.kernel_size), pair(layer.stride), pair(layer.dilation)
            size = tuple((n - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i, n in enumerate(size))
            if s[0] != s[1]:
                raise UserError(f"dense scanning needs equal strides in both directions ({layer})")
            dilation *= s[0]
            channels = layer.out_channels
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            k, s = pair(layer.kernel_size), pair(layer.stride or layer.kernel_size)
            if pair(layer.padding) != (0, 0) or getattr(layer, "ceil_mode", False) or s[0] != s[1]:
                raise UserError(f"dense scanning needs unpadded pooling with equal strides, floor mode ({layer})")
            if isinstance(layer, nn.MaxPool2d):
                out.append(nn.MaxPool2d(k, stride=1, dilation=dilation * pair(layer.dilation)[0]))
            else:
                out.append(DilatedAvgPool(channels, k, dilation))
            size = tuple((n - k[i]) // s[i] + 1 for i, n in enumerate(size))
            dilation *= s[0]
        elif isinstance(layer, nn.Flatten):
            flat = True
        elif isinstance(layer, nn.Linear):
            if flat:  # the first fully connected layer: a kernel over the whole last map
                conv = nn.Conv2d(channels, layer.out_features, size, dilation=dilation)
                conv.weight.data.copy_(layer.weight.data.view(layer.out_features, channels, *size))
                flat = False
            else:
                conv = nn.Conv2d(layer.in_features, layer.out_features, 1)
                conv.weight.data.copy_(layer.weight.data[:, :, None, None])
            conv.bias.data.copy_(layer.bias.data)
            out.append(conv)
            channels, size = layer.out_features, (1, 1)
        elif isinstance(layer, nn.BatchNorm1d):
            bn = nn.BatchNorm2d(layer.num_features, layer.eps)
            bn.load_state_dict(layer.state_dict())
            out.append(bn)
        elif isinstance(layer, POINTWISE):
            out.append(copy.deepcopy(layer))
        else:
            raise UserError(f"dense scanning does not know how to rewrite {type(layer).__name__}; "
                            "use --method sliding for this network")
    return nn.Sequential(*out).eval()


class DenseScan(nn.Module):
    """Dense scanning as one network: normalised images (N, C, H, W) -> logits (N, K, H, W) of the patch centred
    on every pixel; the images are mirror-padded ("reflect") by patch // 2 inside, and the result cropped to
    H x W, so no tiles: memory grows with the image."""

    def __init__(self, dense: nn.Module, patch: int):
        super().__init__()
        self.dense, self.half = dense, patch // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.half
        logits = self.dense(F.pad(x, (half, half, half, half), mode="reflect"))
        return logits[:, :, :x.shape[2], :x.shape[3]]


def dense_posteriors(dense: nn.Module, image: torch.Tensor, patch: int, mean: list[float], std: list[float],
                     tile: int = 256, device: str | torch.device = "cpu") -> torch.Tensor:
    """Softmax posteriors (K, H, W) of every pixel of image (C, H, W) in [0, 1], tile x tile at a time."""
    return dense_batch_posteriors(dense, image[None], patch, mean, std, tile, device)[0]


@torch.no_grad()
def dense_batch_posteriors(dense: nn.Module, images: torch.Tensor, patch: int, mean: list[float], std: list[float],
                           tile: int = 256, device: str | torch.device = "cpu") -> torch.Tensor:
    """dense_posteriors of images (N, C, H, W) of one size, together: posteriors (N, K, H, W), each tile x tile
    window of all N images in one pass."""
    from .sliding_window import padded_input
    padded = torch.stack([padded_input(image, patch, mean, std) for image in images])  # (N, C, H + P - 1, W + P - 1)
    height, width = images.shape[-2:]
    rows = []
    for y in range(0, height, tile):
        cols = []
        for x in range(0, width, tile):
            h, w = min(tile, height - y), min(tile, width - x)
            window = padded[:, :, y:y + h + patch - 1, x:x + w + patch - 1].to(device)
            logits = dense(window)[:, :, :h, :w]  # pooling floors may leave a few extra rows: crop
            cols.append(torch.softmax(logits.float(), 1).cpu())
        rows.append(torch.cat(cols, 3))
    return torch.cat(rows, 2)
