"""mlp: a multilayer perceptron on flattened pixels, the network of the backpropagation chapter.

Initialisation is torch's default for `nn.Linear` (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)));
layer-wise pretraining (RBMs, autoencoders) may overwrite `hidden_layers` afterwards. The numpy twin that
spells out the delta rule is `mlp_numpy.NumpyMLP` (`to_torch`/`from_torch` move weights between the two).
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from ..errors import UserError
from .registry import register

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


def check_activation(name: str) -> str:
    """`name` if it is a known hidden activation, else a one-line UserError."""
    if name not in ACTIVATIONS:
        raise UserError(f"mlp: activation '{name}' unknown: expected one of {', '.join(ACTIVATIONS)}")
    return name


class MLP(nn.Module):
    """Flatten -> [Linear -> activation -> Dropout] per hidden layer -> Linear (logits).

    Input (N, C, H, W) or (N, in_features) -> logits (N, num_classes). Dropout (after each hidden
    activation) is left out when `dropout` is 0.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (500, 500, 500),
                 activation: str = "sigmoid", dropout: float = 0.0):
        super().__init__()
        self.activation = check_activation(activation)
        sizes = [in_features, *hidden]
        self.hidden_layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.output_layer = nn.Linear(sizes[-1], num_classes)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden_layers:
            x = self.dropout(self.act(layer(x)))
        return self.output_layer(x)


def layer_gradient_norms(model: nn.Module) -> list[float]:
    """L2 (Frobenius) norm of each `nn.Linear` weight's `.grad`, input side first (0.0 where no gradient yet)."""
    return [float(m.weight.grad.norm()) if m.weight.grad is not None else 0.0
            for m in model.modules() if isinstance(m, nn.Linear)]


@register("mlp", "multilayer perceptron on flattened pixels (hidden, activation, dropout)")
def mlp(in_channels: int, num_classes: int, input_size: tuple[int, ...],
        hidden: str | Sequence[int] = (500, 500, 500), activation: str = "sigmoid", dropout: float = 0.0) -> MLP:
    """An MLP for (N, in_channels, *input_size) images; `hidden` as "500,500,500" or a list of widths."""
    if isinstance(hidden, str):
        hidden = hidden.split(",") if hidden.strip() else []
    try:
        widths = tuple(int(h) for h in hidden)
    except ValueError:
        raise UserError(f"mlp: hidden '{hidden}' is not a comma-separated list of layer widths") from None
    in_features = in_channels
    for side in input_size:
        in_features *= side
    return MLP(in_features, num_classes, widths, activation, float(dropout))
