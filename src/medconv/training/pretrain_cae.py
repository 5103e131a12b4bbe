"""Layer-wise convolutional-autoencoder pretraining of a CNN's convolutions (`--pretrain cae`).

Convolution layers are taken in the order the forward pass runs them. Each one, in turn, is trained
as the encoder of a small autoencoder on the inputs it receives from the already pretrained layers
before it (collected with a forward hook, network in eval mode): code = ReLU(conv(x)), reconstruction
= a transposed convolution of the same geometry back to x, squared error loss. Only the encoder's
weights are kept; batch norm and the classifier are left as they are for fine-tuning.
"""
from __future__ import annotations

import time

import torch
from rich.console import Console
from torch import nn

from ..data.transforms import normalise
from ..data.types import unit_float
from ..errors import UserError
from ..progress import make_console


CONVS = (nn.Conv2d, nn.Conv3d)  # pretrained: 2D convolutions, and 3D ones of networks for volumes
DECODERS = {nn.Conv2d: nn.ConvTranspose2d, nn.Conv3d: nn.ConvTranspose3d}


def conv_inputs(model: nn.Module, conv: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """What `conv` receives when the model runs on x (N, C, H, W) or volumes (N, C, D, H, W): (N, conv.in_channels,
    ...)."""
    seen: list[torch.Tensor] = []
    handle = conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                model(x[start:start + batch_size])
    finally:
        handle.remove()
    return torch.cat(seen)


def pretrain_conv(conv: nn.Module, inputs: torch.Tensor, epochs: int, lr: float = 1e-3, batch_size: int = 64,
                  generator: torch.Generator | None = None) -> float:
    """Train `conv` (2D or 3D) in place as an autoencoder's encoder on inputs (N, C_in, ...); returns the final
    loss."""
    decoder = DECODERS[type(conv)](conv.out_channels, conv.in_channels, conv.kernel_size, conv.stride, conv.padding,
                                   dilation=conv.dilation).to(inputs.device)
    params = [*conv.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr)
    loss = torch.zeros(())
    for _ in range(epochs):
        for idx in torch.randperm(len(inputs), generator=generator).split(batch_size):
            x = inputs[idx]
            recon = decoder(torch.relu(conv(x)), output_size=x.shape[2:])
            loss = ((recon - x) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return loss.item()


def pretrain_convolutions(model: nn.Module, images: torch.Tensor, mean: list[float], std: list[float], epochs: int,
                          seed: int = 0, max_images: int = 2000, console: Console | None = None) -> list[dict]:
    """Pretrain every convolution (CONVS) of `model` in forward order on (up to max_images of) images (N, C, H, W)
    or volumes (N, C, D, H, W)."""
    console = console or make_console()
    generator = torch.Generator().manual_seed(seed)
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, _a: order.append(m) if m not in order else None)
             for m in model.modules() if type(m) in CONVS]
    x = normalise(unit_float(images[:max_images]), mean, std)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(x[:2])
    for h in hooks:
        h.remove()
    if not order:
        raise UserError("--pretrain cae pretrains convolution layers, and this network has none")
    summary = []
    for i, conv in enumerate(order):
        tic = time.perf_counter()
        inputs = conv_inputs(model, conv, x)
        loss = pretrain_conv(conv, inputs, epochs, generator=generator)
        summary.append({"layer": i + 1, "out_channels": conv.out_channels, "reconstruction_error": loss})
        console.print(f"autoencoder {i + 1}/{len(order)} ({conv.out_channels} filters): reconstruction error "
                      f"{loss:.4f} [{time.perf_counter() - tic:.1f}s]", highlight=False)  # minutes on volumes
    model.train(was_training)
    console.print(f"pretrained {len(order)} convolution layers as autoencoders, {epochs} epochs each; "
                  f"reconstruction error of the last {summary[-1]['reconstruction_error']:.4f}", highlight=False)
    return summary
