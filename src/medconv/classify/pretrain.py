"""`medconv pretrain`: an MLP's hidden layers pretrained alone (RBMs or autoencoders), saved with pictures."""
from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

from ..data import load_dataset
from ..data.transforms import channel_stats
from ..errors import UserError
from ..fileio import write_text
from ..models.registry import build_model
from ..progress import make_console
from ..report.stack_plots import plot_filter_grid, plot_rows
from ..training.checkpoint import save_checkpoint
from ..training.pretrain import pixel_matrix, pretrain_mlp, write_pretrain_json
from .train import run_meta


def pretrain_stack(cfg, out: str | Path, console: Console | None = None) -> dict:
    """`medconv pretrain`: pretrain an mlp's hidden layers alone and save them with pictures.

    Writes OUT/checkpoints/pretrained.safetensors (+ .json; the MLP with pretrained hidden layers and an
    untrained output layer), OUT/pretrain.json and OUT/plots/{filters,reconstructions[,gibbs]}.png.
    """
    console = console or make_console()
    cfg.arch = "mlp"
    cfg.validate()
    if cfg.pretrain == "none":
        raise UserError("medconv pretrain: choose --method rbm or ae")
    out = Path(out)
    if (out / "checkpoints" / "pretrained.safetensors").exists():
        raise UserError(f"{out} already holds a pretrained stack: choose another --out")
    info, sets = load_dataset(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model("mlp", info.channels, info.num_outputs, info.size, **cfg.model_options)
    images = sets["train"].images
    mean, std = channel_stats(images)
    fitted, summary = pretrain_mlp(model, images, mean, std, cfg.pretrain, cfg.pretrain_epochs, cfg.seed,
                                   "cpu", console)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", cfg.dump())
    save_checkpoint(out / "checkpoints" / "pretrained.safetensors", model, {**run_meta(cfg, info, mean, std), "epoch": 0})
    write_pretrain_json(out, cfg, summary, history=[getattr(layer, "history_", []) for layer in fitted])
    shape = (info.channels, *info.size)
    x = pixel_matrix(sets["val"].images[:12])
    first = fitted[0]
    plot_filter_grid(first.components_, shape, out / "plots" / "filters.png",
                     title=f"layer 1 {'RBM' if cfg.pretrain == 'rbm' else 'autoencoder'} filters, {info.name}")
    plot_rows({"input (validation)": x, "reconstruction": first.reconstruct(x)}, shape,
              out / "plots" / "reconstructions.png", title="first layer: inputs and their reconstructions")
    if cfg.pretrain == "rbm":
        chain, rows = x, {"start (validation)": x}
        for step in range(1, 101):
            chain = first.gibbs(chain)
            if step in (1, 10, 100):
                rows[f"Gibbs step {step}"] = chain
        plot_rows(rows, shape, out / "plots" / "gibbs.png", title="samples from the first RBM's Gibbs chain")
    console.print(f"pretrained stack -> {out}/checkpoints/pretrained.safetensors, pictures in {out}/plots/")
    return {"layers": summary, "out": str(out)}
