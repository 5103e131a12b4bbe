"""Evaluate a run's checkpoint, or an ensemble of runs, on a split: metrics JSON, predictions CSV, ROC and confusion
plots."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from ..config import TrainConfig
from ..data import load_dataset
from ..data.fingerprint import fingerprint
from ..data.types import DatasetInfo, ImageSet
from ..errors import UserError
from ..fileio import write_csv, write_json
from ..metrics import MULTI_LABEL, classification_metrics
from ..report.plots import plot_confusion, plot_roc
from ..training.checkpoint import checkpoint_path, load_model, read_checkpoint
from ..training.runstate import check_finished, warn_if_data_changed, write_fingerprints
from ..training.engine import resolve_device
from ..data.levels import at_level
from .neighbours import check_neighbours, neighbourhood_scores
from .pictures import write_pictures
from .predict import predict_scores


def evaluate(run_dir: str | Path, split: str = "test", which: str = "best", tta: str | None = None,
             data_root: str | None = None, device: str = "auto",
             data: tuple[DatasetInfo, dict[str, ImageSet]] | dict | None = None, level: str | None = None,
             allow_unfinished: bool = False, pictures: bool = True, neighbours: int = 0) -> dict:
    """Metrics of checkpoint `which` on `split`; writes RUN_DIR/metrics_{split}.json, predictions, plots (and with
    `pictures` the precision-recall curves, most confident errors and Grad-CAM maps: classify.pictures).
    `level`: a level of the run's --taxonomy; leaf probabilities are summed up to it (files get _{level}).
    A run that has not finished training is refused unless `allow_unfinished`; data loaded here that differs
    from the split the run was trained and scored on gets a warning on standard error. `data`: (info, sets) as
    loaded, or splits given in Python (a dict, as medconv.train's data=), checked against the run's data.
    `neighbours` R > 0 (nucleus runs): each nucleus scored by the mean over the patches centred within R px of
    its centroid (classify.neighbours), instead of its own patch and any test-time augmentation."""
    device = str(resolve_device(device))  # auto: CUDA when there is one
    run_dir = Path(run_dir)
    scored = run_scores(run_dir, split, which, tta, data_root, device, data, allow_unfinished, neighbours)
    labels, scores, classes, task = scored.labels, scored.scores, scored.meta["classes"], scored.meta["task"]
    if level:
        scores, labels, classes, task = at_level(scored.meta, level, scores, labels)
    metrics = classification_metrics(labels, scores, task, classes)
    metrics.update({"split": split, "checkpoint": which, "tta": scored.tta, "neighbours": neighbours,
                    "dataset": scored.info.name, "level": level or "trained"})
    name = f"{split}_{level}" if level else split
    write_evaluation(run_dir, name, metrics, labels, scores, task, classes, scored.info.name, scored.split.paths)
    if pictures:
        write_pictures(scored.model, scored.meta, scored.split.images, labels, scores, task, classes,
                       run_dir / "plots", name, device, title=f"{scored.info.name} {name}:")
    return metrics


@dataclass
class Scored:
    """A run's class probabilities on one split: scores (N, K) as the labels (N, ...) of `split` are ordered."""
    model: torch.nn.Module
    meta: dict
    info: DatasetInfo
    split: ImageSet
    tta: str
    labels: np.ndarray
    scores: np.ndarray


def run_scores(run_dir: Path, split: str, which: str = "best", tta: str | None = None, data_root: str | None = None,
               device: str = "cpu", data: tuple[DatasetInfo, dict[str, ImageSet]] | dict | None = None,
               allow_unfinished: bool = False, neighbours: int = 0) -> Scored:
    """The probabilities of checkpoint `which` of a run on `split` of its own data (read as it was trained, or
    `data`), with its test-time augmentation unless `tta`; the checks of `evaluate`."""
    check_finished(run_dir, allow_unfinished, which)
    model, meta = load_model(run_dir, which, device)
    cfg = TrainConfig.from_dict(meta["config"])
    if data_root:
        cfg.data_root = data_root
    given = isinstance(data, dict)
    info, sets = load_dataset(cfg, data) if data is None or given else data
    data = None if given else data
    if split not in sets:
        raise UserError(f"--split {split}: expected one of {', '.join(sets)}")
    if info.num_outputs != meta["num_classes"]:
        raise UserError(f"dataset {info.name} has {info.num_outputs} classes but checkpoint "
                        f"{checkpoint_path(run_dir, which)} has {meta['num_classes']}")
    tta = tta or cfg.tta
    check_neighbours(cfg, neighbours)
    if neighbours and tta != "none":
        raise UserError(f"--neighbours {neighbours} with --tta {tta}: the neighbouring patches are the ensemble; "
                        "use one or the other")
    data_split = sets[split]
    if tuple(data_split.images.shape[1:]) != (meta["in_channels"], *meta["input_size"]):
        raise UserError(f"the {split} images are {' x '.join(map(str, data_split.images.shape[1:]))} (C x H x W) but "
                        f"the network takes {meta['in_channels']} x {' x '.join(map(str, meta['input_size']))}")
    if data is None:  # loaded here: perhaps not the data the run saw
        warn_if_data_changed(run_dir, split, data_split)
    if neighbours:
        scores = neighbourhood_scores(model, meta, cfg, data_split, neighbours, device)
    else:
        scores = predict_scores(model, data_split.images, meta["mean"], meta["std"], meta["task"], device, tta=tta)
    return Scored(model, meta, info, data_split, tta, data_split.labels.numpy(), np.asarray(scores))


def evaluate_ensemble(run_dirs: list[str | Path], out: str | Path, split: str = "test", which: str = "best",
                      data_root: str | None = None, device: str = "auto", allow_unfinished: bool = False) -> dict:
    """Metrics of the mean class probabilities of several runs of one task (seeds or recipes: each member reads
    the split as it was trained, with its own test-time augmentation) on `split`; writes OUT/metrics_{split}.json
    (naming the members), OUT/predictions_{split}.csv and the ROC and confusion plots. Members that disagree on
    the task, the classes, or the split's labels and their order are refused."""
    if len(run_dirs) < 2:
        raise UserError("an ensemble needs at least 2 runs")
    resolved = [Path(r).resolve() for r in run_dirs]
    if len(set(resolved)) < len(resolved):
        raise UserError(f"a run is named twice among {', '.join(map(str, run_dirs))}: it would count twice")
    if Path(out).resolve() in resolved:
        raise UserError(f"--out {out} is one of the members: the ensemble's files would replace that run's")
    metas = [read_checkpoint(checkpoint_path(r, which), tensors=False)[1] for r in run_dirs]  # headers: checked first
    for run, meta in zip(run_dirs[1:], metas[1:]):
        if (meta["task"], meta["classes"]) != (metas[0]["task"], metas[0]["classes"]):
            raise UserError(f"{run}: its task and classes ({meta['task']}: {', '.join(meta['classes'])}) are not "
                            f"those of {run_dirs[0]} ({metas[0]['task']}: {', '.join(metas[0]['classes'])})")
    device = str(resolve_device(device))
    members = [run_scores(Path(r), split, which, None, data_root, device, None, allow_unfinished) for r in run_dirs]
    first = members[0]
    for run, m in zip(run_dirs[1:], members[1:]):
        if not np.array_equal(m.labels, first.labels):
            raise UserError(f"{run}: its {split} split holds other labels, or another order, than that of "
                            f"{run_dirs[0]}: the runs were trained on different data")
    scores = np.mean([m.scores for m in members], axis=0)
    task, classes = first.meta["task"], first.meta["classes"]
    metrics = classification_metrics(first.labels, scores, task, classes)
    metrics.update({"split": split, "checkpoint": which, "dataset": first.info.name,
                    "members": [{"run": str(r), "tta": m.tta} for r, m in zip(run_dirs, members)]})
    write_evaluation(Path(out), split, metrics, first.labels, scores, task, classes,
                     f"{first.info.name} ensemble of {len(members)}", first.split.paths)
    return metrics


def write_evaluation(out: Path, name: str, metrics: dict, labels: np.ndarray, scores: np.ndarray, task: str,
                     classes: list[str], title: str, paths: list[str] | None) -> None:
    """OUT/metrics_NAME.json, OUT/predictions_NAME.csv, and the ROC (and but for multi-label, confusion) plots."""
    write_json(out / f"metrics_{name}.json", metrics)
    write_predictions(out / f"predictions_{name}.csv", labels, scores, classes, paths)
    plot_roc(labels, scores, task, classes, out / "plots" / f"roc_{name}.png",
             title=f"{title} {name}: AUC {metrics['auc']:.3f}")
    if task != MULTI_LABEL:
        plot_confusion(metrics["confusion_matrix"], classes, out / "plots" / f"confusion_{name}.png",
                       title=f"{title} {name}: ACC {metrics['acc']:.3f}")


def write_predictions(path: Path, labels: np.ndarray, scores: np.ndarray, classes: list[str],
                      paths: list[str] | None) -> None:
    rows = []
    for i, (y, s) in enumerate(zip(labels, scores)):
        row = {"index": i, "path": paths[i] if paths else "", "label": ";".join(str(int(v)) for v in np.ravel(y))}
        row.update({f"prob_{c}": f"{float(v):.6f}" for c, v in zip(classes, s)})
        rows.append(row)
    write_csv(path, rows)


def finish_run(run_dir: Path, info: DatasetInfo, sets: dict[str, ImageSet], console: Console,
               device: str = "cpu") -> dict:
    """After training: evaluate the best checkpoint on val and test, write data.json (the
    fingerprints of `sets`) and metrics.json (last: it marks the run finished)."""
    _, last = read_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    result = {"dataset": info.name, "arch": last["arch"], "epochs": last["epoch"], "best_epoch": last["best_epoch"],
              "train_seconds": round(sum(r["seconds"] for r in last["history"]), 1)}
    scored = [s for s in ("val", "test") if s in sets]
    for split in scored:  # pictures of the last split scored (test when there is one): the report's
        result[split] = evaluate(run_dir, split, data=(info, sets), device=device, allow_unfinished=True,
                                 pictures=split == scored[-1])
    write_fingerprints(run_dir, fingerprint(sets))
    write_json(run_dir / "metrics.json", result)
    summary = ", ".join(f"{s} AUC {result[s]['auc']:.4f} ACC {result[s]['acc']:.4f}" for s in ("val", "test") if s in result)
    console.print(f"best epoch {result['best_epoch']}: {summary}  ->  {run_dir}", highlight=False, soft_wrap=True)
    return result
