"""`medconv demo`: train a small CNN end to end, on BreastMNIST when it is at hand, else on synthetic lesions."""
from __future__ import annotations

import socket
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .config import TrainConfig
from .data.medmnist import data_root, load_medmnist
from .errors import UserError
from .progress import make_console
from .published import MEDMNIST_V2
from .classify.train import train


def choose_dataset(root: str | None, download: bool, console: Console) -> str:
    """'breastmnist' if its file is in the data root or can be downloaded now, else 'synthetic'."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        load_medmnist("breastmnist", root=root, download=download)
        return "breastmnist"
    except UserError as exc:
        console.print(f"[yellow]BreastMNIST is not available[/] ({exc}).\n"
                      f"Training on medconv's built-in SYNTHETIC lesion images instead: the numbers below "
                      f"show the pipeline works, they say nothing about medical images.", highlight=False)
        return "synthetic"
    finally:
        socket.setdefaulttimeout(old)


def demo(out: str | Path | None = None, data_root_dir: str | None = None, epochs: int = 25,
         download: bool = True, console: Console | None = None) -> dict:
    """Train simple-cnn (about 100K weights) and print test AUC/ACC beside the published MedMNIST rows."""
    console = console or make_console(stderr=False)
    dataset = choose_dataset(data_root_dir, download, console)
    if dataset == "breastmnist":
        console.print(f"Training on BreastMNIST (real breast ultrasound, 546 training images) from {data_root(data_root_dir)}")
    out = Path(out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    cfg = TrainConfig(dataset=dataset, data_root=data_root_dir, arch="simple-cnn",
                      model_options={"widths": [16, 32, 64], "hidden": [64]}, epochs=epochs, batch_size=64,
                      lr=2e-3, augment="light", seed=0)
    result = train(cfg, out, console=console)
    table = Table(title=f"test set, {'BreastMNIST' if dataset == 'breastmnist' else 'synthetic lesions'}")
    table.add_column("method")
    table.add_column("AUC", justify="right")
    table.add_column("ACC", justify="right")
    table.add_row(f"[bold]medconv demo: simple-cnn, {epochs} epochs[/]", f"{result['test']['auc']:.3f}",
                  f"{result['test']['acc']:.3f}")
    table.add_section()
    for method, (auc, acc) in MEDMNIST_V2["breastmnist"].items():
        table.add_row(f"published on BreastMNIST: {method}", f"{auc:.3f}", f"{acc:.3f}")
    console.print(table)
    if dataset == "synthetic":
        console.print("(published rows are BreastMNIST results, shown for scale; the demo ran on synthetic data)")
    console.print(f"run directory: {out}  (metrics.json, history.csv, checkpoints/, plots/)\n"
                  f"next: medconv evaluate {out} --split test    medconv predict {out} IMAGE.png")
    return result
