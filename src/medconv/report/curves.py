"""Training curves of any run from its history rows (history.csv): losses in one panel, every other per-epoch
number but the learning rate and time in the other, the chosen epoch marked. The engine writes them to
RUN/plots/training_curves.png when training ends; the report draws them for runs older than that."""
from __future__ import annotations

import io

from pathlib import Path

from .plots import plt, save_figure

NOT_CURVES = {"epoch", "lr", "seconds"}


def curves_figure(history: list[dict[str, float]], best_epoch: int | None = None):
    """A figure of the columns of `history` (one dict per epoch, "epoch" among its keys) against the epoch."""
    columns = [c for c in dict.fromkeys(k for row in history for k in row) if c not in NOT_CURVES]
    panels = [("loss", [c for c in columns if "loss" in c]), ("validation", [c for c in columns if "loss" not in c])]
    panels = [(title, names) for title, names in panels if names]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, names) in zip(axes[0], panels):
        for name in names:
            points = [(row["epoch"], row[name]) for row in history if name in row and "epoch" in row]
            ax.plot(*zip(*points), label=name, marker="." if len(points) < 30 else None)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"chosen epoch ({best_epoch})")
        ax.set(xlabel="epoch", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def write_curves(history: list[dict[str, float]], path: str | Path, best_epoch: int | None = None) -> None:
    save_figure(curves_figure(history, best_epoch), path)


def curves_png(history: list[dict[str, float]], best_epoch: int | None = None) -> bytes:
    """The PNG (bytes) of curves_figure."""
    fig = curves_figure(history, best_epoch)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    return buffer.getvalue()
