"""Layer-wise pretraining of an MLP's hidden layers (Hinton 2006; Bengio 2007), then fine-tuning.

Each hidden layer is trained, greedily, as an RBM (contrastive divergence) or an autoencoder on the
previous layer's codes (the first on pixel values in [0, 1]); its encoder weights and hidden biases
then initialise that `nn.Linear`. The MLP sees normalised pixels z = (x - mean) / std, so the first
layer's weights are rescaled to give the same pre-activation: W x + b = (W s) z + (W m + b).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from ..data.types import unit_float
from ..errors import UserError
from ..fileio import write_json
from ..models.autoencoder import Autoencoder, fit_stack
from ..models.rbm import BernoulliRBM
from ..progress import make_console


def make_layer(method: str, width: int, epochs: int, seed: int, device: str):
    """An unfitted pretraining layer of `width` hidden units."""
    if method == "rbm":  # CD-1 with momentum and weight decay, as Hinton's practical guide suggests
        return BernoulliRBM(n_components=width, learning_rate=0.05, batch_size=100, n_iter=epochs, k=1,
                            persistent=False, momentum=0.5, weight_decay=2e-4, random_state=seed, device=device)
    if method == "ae":
        return Autoencoder(n_components=width, tied=True, learning_rate=0.1, batch_size=100, n_iter=epochs,
                           momentum=0.9, random_state=seed, device=device)
    raise UserError(f"--pretrain {method!r}: expected rbm or ae")


def encoder_parameters(layer) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (n_components, n_features), hidden bias (n_components,)) of a fitted RBM or autoencoder."""
    if isinstance(layer, Autoencoder):
        return layer.module_.weight.detach().cpu(), layer.module_.hidden_bias.detach().cpu()
    return torch.as_tensor(layer.components_), torch.as_tensor(layer.intercept_hidden_)


def pixel_matrix(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) uint8 or [0, 1] float -> (N, C*H*W) float32 in [0, 1]."""
    return unit_float(images).flatten(1).cpu().numpy()


def pretrain_mlp(model, images: torch.Tensor, mean: list[float], std: list[float], method: str, epochs: int,
                 seed: int = 0, device: str = "cpu", console: Console | None = None) -> tuple[list, list[dict]]:
    """Pretrain `model.hidden_layers` in place; returns (fitted layers, per-layer summary)."""
    if getattr(model, "activation", None) != "sigmoid":
        raise UserError(f"--pretrain {method} initialises sigmoid hidden units: add --activation sigmoid")
    console = console or make_console()
    x = pixel_matrix(images)
    widths = [layer.out_features for layer in model.hidden_layers]
    tic = time.time()
    console.print(f"pretraining {len(widths)} hidden layers ({'x'.join(map(str, widths))}) as "
                  f"{'RBMs (CD-1)' if method == 'rbm' else 'autoencoders'}, {epochs} epochs each", highlight=False)
    fitted = fit_stack(lambda width: make_layer(method, width, epochs, seed, device), x, widths)
    channels = images.shape[1]
    per_pixel = x.shape[1] // channels
    m = torch.tensor(mean).repeat_interleave(per_pixel)
    s = torch.tensor(std).repeat_interleave(per_pixel)
    summary, codes = [], x
    with torch.no_grad():
        for i, (linear, layer) in enumerate(zip(model.hidden_layers, fitted)):
            w, b = encoder_parameters(layer)
            if i == 0:  # the network sees (x - m) / s
                w, b = w * s, b + w @ m
            linear.weight.copy_(w)
            linear.bias.copy_(b)
            summary.append({"layer": i + 1, "width": linear.out_features,
                            "reconstruction_error": layer.reconstruction_error(codes)})
            codes = layer.transform(codes)
    console.print("pretrained: " + ", ".join(f"layer {r['layer']} reconstruction error {r['reconstruction_error']:.4f}"
                                             for r in summary) + f" [{time.time() - tic:.0f}s]", highlight=False)
    return fitted, summary


def write_pretrain_json(out: Path, cfg, summary: list[dict], **extra) -> None:
    """OUT/pretrain.json: method, epochs per layer, per-layer summary (and e.g. training history)."""
    write_json(out / "pretrain.json", {"method": cfg.pretrain, "epochs_per_layer": cfg.pretrain_epochs,
                                       "layers": summary, **extra})
