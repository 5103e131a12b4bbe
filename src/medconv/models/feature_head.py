"""A frozen backbone's pooled layer followed by a fitted head (`--arch feature-head`, made by `medconv
transfer fit`), and the layer-feature extractor it is built on (torchvision's feature extraction)."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from ..config import MODEL_OPTIONS
from ..errors import UserError
from .registry import build_model, register


def graph_nodes(model: nn.Module, arch: str) -> list[str]:
    """Node names torchvision's feature extraction offers for `model` (eval mode)."""
    try:
        return get_graph_node_names(model.eval())[1]
    except Exception as exc:  # noqa: BLE001  (symbolic tracing fails on data-dependent control flow)
        raise UserError(f"--arch {arch} cannot be traced for feature extraction ({type(exc).__name__}); "
                        "choose another backbone or fine-tune it with medconv train --init-from") from None


class LayerFeatures(nn.Module):
    """backbone up to `layer`, then global average pooling: (N, C, H, W) images -> (N, D) features."""

    def __init__(self, backbone: nn.Module, layer: str, arch: str):
        super().__init__()
        nodes = graph_nodes(backbone, arch)
        if layer not in nodes:
            near = [n for n in nodes if n.split(".")[0] == layer.split(".")[0]] or nodes[-12:]
            raise UserError(f"--layer {layer}: {arch} has no such node; e.g. {', '.join(near[:12])} "
                            f"({len(nodes)} nodes in all)")
        self.body = create_feature_extractor(backbone.eval(), return_nodes={layer: "features"})
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)["features"]
        return out.flatten(2).mean(2) if out.dim() > 2 else out


class FeatureHead(nn.Module):
    """backbone up to `layer` + pooling (N, C, H, W) -> (N, D), then `head` (N, D) -> logits (N, K)."""

    def __init__(self, features: LayerFeatures, head: nn.Module):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("feature-head", "a frozen backbone's pooled layer + a fitted head (made by `medconv transfer fit`)",
          listed=False, options={"backbone": None, "layer": None, "features": None, "backbone_options": None,
                                 "hidden": MODEL_OPTIONS["hidden"]})
def feature_head(in_channels: int, num_classes: int, input_size: tuple[int, int], backbone: str, layer: str,
                 features: int, backbone_options: dict | None = None, hidden: list[int] | None = None) -> FeatureHead:
    net = build_model(backbone, in_channels, num_classes, input_size, **(backbone_options or {}))
    return FeatureHead(LayerFeatures(net, layer, backbone), make_head([features, *(hidden or [])], num_classes))


def make_head(widths: list[int], num_classes: int) -> nn.Sequential:
    """Linear-ReLU layers through `widths`, then a linear layer to `num_classes` logits."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], num_classes))
