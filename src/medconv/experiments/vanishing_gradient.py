"""Why deep sigmoid networks were hard to train: per-layer gradient norms of MLPs of growing depth.

For each depth, activation and initialisation (random, or RBM/autoencoder pretraining for sigmoid
nets) an MLP is trained with SGD on a dataset's training images; the L2 norm of every layer's weight
gradient is recorded on the first minibatches (initialisation) and averaged over each epoch. The
sigmoid's derivative is at most 1/4, so the backpropagated deltas shrink layer by layer: the first
layer's gradient is orders of magnitude smaller than the last's, and grows with pretraining or ReLU.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from ..config import TrainConfig
from ..data import load_dataset
from ..data.transforms import channel_stats, normalise
from ..fileio import write_json
from ..models.mlp import layer_gradient_norms
from ..models.registry import build_model
from ..progress import make_console
from ..training.pretrain import pretrain_mlp


def gradient_norm_run(train_images: torch.Tensor, labels: torch.Tensor, depth: int, activation: str, init: str,
                      width: int = 128, epochs: int = 5, lr: float = 0.1, batch_size: int = 64, seed: int = 0,
                      console: Console | None = None) -> dict:
    """Train one MLP; returns per-layer gradient norms at initialisation and per epoch (input side first)."""
    torch.manual_seed(seed)
    size = tuple(train_images.shape[-2:])
    model = build_model("mlp", train_images.shape[1], int(labels.max()) + 1, size, hidden=[width] * depth,
                        activation=activation)
    mean, std = channel_stats(train_images)
    if init != "random":
        pretrain_mlp(model, train_images, mean, std, init, epochs=5, seed=seed, console=console)
    x = normalise(train_images.float() / 255.0, mean, std)
    y = labels[:, 0]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    per_epoch, at_init = [], None
    for epoch in range(epochs):
        norms = []
        for idx in torch.randperm(len(x)).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            norms.append(layer_gradient_norms(model))
            optimizer.step()
        if at_init is None:
            at_init = norms[0]
        per_epoch.append(np.mean(norms, axis=0).tolist())
    return {"depth": depth, "activation": activation, "init": init, "width": width, "init_norms": at_init,
            "epoch_norms": per_epoch, "final_loss": loss.item()}


def vanishing_gradient(dataset: str = "breastmnist", data_root: str | None = None, out: str | Path = "runs/vanishing",
                       depths: tuple[int, ...] = (2, 4, 6, 8, 10), epochs: int = 5, seed: int = 0,
                       console: Console | None = None) -> dict:
    """All runs, written to OUT/vanishing_gradient.json and OUT/vanishing_gradient.png."""
    console = console or make_console()
    info, sets = load_dataset(TrainConfig(dataset=dataset, data_root=data_root))
    images, labels = sets["train"].images, sets["train"].labels
    settings = [(a, "random") for a in ("sigmoid", "tanh", "relu")] + [("sigmoid", "rbm"), ("sigmoid", "ae")]
    runs = []
    for depth in depths:
        for activation, init in settings:
            tic = time.time()
            run = gradient_norm_run(images, labels, depth, activation, init, epochs=epochs, seed=seed,
                                    console=Console(quiet=True))
            first, last = run["init_norms"][0], run["init_norms"][-2]
            console.print(f"depth {depth:2d} {activation:7s} {init:6s}: gradient norm first/last hidden layer "
                          f"at init {first / last:.2e} [{time.time() - tic:.1f}s]", highlight=False)
            runs.append(run)
    out = Path(out)
    result = {"dataset": info.name, "depths": list(depths), "epochs": epochs, "seed": seed, "runs": runs}
    write_json(out / "vanishing_gradient.json", result)
    plot_vanishing_gradient(result, out / "vanishing_gradient.png")
    console.print(f"-> {out / 'vanishing_gradient.json'}, {out / 'vanishing_gradient.png'}")
    return result


def plot_vanishing_gradient(result: dict, path: Path) -> None:
    """Left: per-layer gradient norm at initialisation for the deepest nets; right: first/last ratio vs depth."""
    from ..report.plots import plt, save_figure

    fig, (ax_layers, ax_depth) = plt.subplots(1, 2, figsize=(11, 4))
    deepest = max(result["depths"])
    keys = sorted({(r["activation"], r["init"]) for r in result["runs"]})
    for activation, init in keys:
        label = f"{activation}, {init}"
        run = next(r for r in result["runs"] if r["depth"] == deepest and (r["activation"], r["init"]) == (activation, init))
        hidden = run["init_norms"][:-1]
        ax_layers.semilogy(range(1, len(hidden) + 1), hidden, marker="o", label=label)
        ratios = [r["init_norms"][0] / r["init_norms"][-2] for r in result["runs"]
                  if (r["activation"], r["init"]) == (activation, init)]
        ax_depth.semilogy(result["depths"], ratios, marker="o", label=label)
    ax_layers.set(xlabel="hidden layer (1 = next to the input)", ylabel="gradient norm at initialisation",
                  title=f"{deepest} hidden layers, {result['dataset']}")
    ax_depth.set(xlabel="hidden layers", ylabel="first / last hidden layer gradient norm",
                 title="decay of the gradient towards the input")
    for ax in (ax_layers, ax_depth):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    save_figure(fig, path)
