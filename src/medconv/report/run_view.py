"""What a run folder holds, read for its report (no torch: the checkpoint's JSON sidecar, the metrics, history and
score tables, the pictures under plots/)."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..fileio import read_json

# pictures by file-name prefix, in the order a report shows them (and their captions)
PICTURES = [("training_curves", "per-epoch history (history.csv)"), ("roc_", "ROC curves"),
            ("pr_", "precision-recall curves"), ("confusion_", "confusion matrix"),
            ("errors_", "most confident errors"), ("cam_", "what the network looks at (Grad-CAM of the predicted class)"),
            ("overlays_", "overlays, worst first"), ("f1_threshold_", "precision, recall and F1 against the threshold")]
SLICES_PER_FOLDER = 4  # orthogonal-slice pictures of volumes: the first few of each split
HEADLINE = ["auc", "acc", "balanced_accuracy", "macro_f1", "weighted_f1", "precision", "recall", "f1", "aji",
            "object_dice", "dice_mean", "abs_volume_error", "at_threshold.rand_error", "at_threshold.f1",
            "at_threshold.pixel_error", "rand_error", "isbi_pixel_error", "pixel_error"]
ScoreTable = tuple[list[str], list[dict[str, str]]]  # (columns, rows)


@dataclass
class RunView:
    """One run as its report shows it; `metrics`: {name of the metrics file (e.g. "test"): its numbers flattened}."""
    path: Path
    name: str
    kind: str  # classification, segmentation or detection
    dims: int  # 2 or 3
    checkpoint: dict
    config_text: str
    metrics: dict[str, dict[str, float]]
    summary: dict
    history: list[dict[str, float]]
    data_lines: list[str]
    pictures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, PNG)
    scores: dict[str, ScoreTable] = field(default_factory=dict)  # {split: per-image scores, worst first}

    @property
    def dataset(self) -> str:
        return str(self.checkpoint.get("dataset") or self.summary.get("dataset") or "")

    @property
    def arch(self) -> str:
        return str(self.checkpoint.get("arch", ""))


def flatten(numbers: dict, prefix: str = "", depth: int = 3) -> dict[str, float]:
    """{"a.b.c": number} of the numbers nested in `numbers` up to `depth` levels (lists and strings left out)."""
    flat = {}
    for key, value in numbers.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            flat[name] = float(value)
        elif isinstance(value, dict) and depth > 1:
            flat.update(flatten(value, f"{name}.", depth - 1))
    return flat


def read_rows(path: Path) -> ScoreTable:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def numeric_rows(rows: list[dict[str, str]]) -> list[dict[str, float]]:
    """The numeric cells of CSV rows as floats (empty and non-numeric cells left out)."""
    out = []
    for row in rows:
        numbers = {}
        for key, value in row.items():
            try:
                numbers[key] = float(value)
            except (TypeError, ValueError):
                pass
        out.append(numbers)
    return out


def run_kind(run: Path, checkpoint: dict) -> str:
    if (run / "detect.json").is_file():
        return "detection"
    return "segmentation" if checkpoint.get("task") == "segmentation" else "classification"


def metrics_files(run: Path) -> dict[str, dict[str, float]]:
    """{split name: flattened numbers} of metrics_*.json and detect_*.json (detections, named "detect SPLIT")."""
    found = {}
    for path in sorted(run.glob("metrics_*.json")):
        found[path.stem.removeprefix("metrics_")] = flatten(read_json(path) or {})
    for path in sorted(run.glob("detect_*.json")):
        found[f"detect {path.stem.removeprefix('detect_')}"] = flatten(read_json(path) or {})
    return found


def pictures_of(run: Path) -> list[tuple[str, Path]]:
    """(caption, PNG) of the run's plots/ in PICTURES order; volumes' slices (plots/SPLIT/) next, the rest last."""
    plots = run / "plots"
    if not plots.is_dir():
        return []
    top = sorted(plots.glob("*.png"))
    shown, chosen = [], set()
    for prefix, caption in PICTURES:
        for png in top:
            if png.name.startswith(prefix):
                shown.append((f"{caption}: {png.stem.removeprefix(prefix)}".removesuffix(": "), png))
                chosen.add(png)
    for folder in sorted(p for p in plots.iterdir() if p.is_dir()):
        shown += [(f"{folder.name}: {png.stem}", png) for png in sorted(folder.glob("*.png"))[:SLICES_PER_FOLDER]]
    return shown + [(png.stem, png) for png in top if png not in chosen]


def read_run(run: str | Path) -> RunView:
    """The report's view of a finished (or evaluated) run folder; a folder without a checkpoint is refused."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"{run}: no such run folder")
    checkpoint = read_json(run / "checkpoints" / "best.json") or read_json(run / "checkpoints" / "last.json") or {}
    if not checkpoint:
        raise UserError(f"{run}: not a medconv run (no checkpoints/best.json)")
    checkpoint.pop("optimizer", None)
    history = numeric_rows(read_rows(run / "history.csv")[1]) if (run / "history.csv").is_file() else []
    data_lines = (run / "data_summary.txt").read_text().splitlines() if (run / "data_summary.txt").is_file() else []
    sizes = {split: f.get("n") for split, f in (read_json(run / "data.json") or {}).items() if isinstance(f, dict)}
    if sizes:  # the splits the run was trained and scored on (data.json: their fingerprints)
        data_lines = [line for line in data_lines if line] + [
            "split sizes: " + ", ".join(f"{split} {n}" for split, n in sizes.items() if n is not None)]
    config_text = (run / "config.yaml").read_text() if (run / "config.yaml").is_file() else ""
    scores = {p.stem.removeprefix("scores_"): read_rows(p) for p in sorted(run.glob("scores_*.csv"))}
    size = checkpoint.get("input_size") or []
    return RunView(run, run.resolve().name, run_kind(run, checkpoint), 3 if len(size) == 3 else 2, checkpoint,
                   config_text, metrics_files(run), read_json(run / "metrics.json") or {}, history, data_lines,
                   pictures_of(run), scores)


def headline(view: RunView) -> list[str]:
    """The metric names a report puts first: those of HEADLINE present in any of the run's metrics, then each
    structure's Dice of volumes."""
    present = set().union(*view.metrics.values()) if view.metrics else set()
    names = [k for k in HEADLINE if k in present]
    return names + sorted(k for k in present if k.startswith("dice_") and not k.endswith("_std") and k != "dice_mean")
