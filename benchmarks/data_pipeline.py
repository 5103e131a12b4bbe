"""Training throughput of lazy loading (`--loading lazy`: PNG files decoded per batch by DataLoader worker
processes) against the same model fed from memory (`--loading memory`: every image decoded once, held as one
tensor: model-only), through the classification trainer's own batches and loss plus an AdamW step.

Two cases: simple-cnn on 28 px grey BreastMNIST images (batch 128), ResNet-18 on 224 px RGB tiles cut from the
CRCHistoPhenotypes H&E images (batch 32). The benchmark writes the PNG files itself under benchmarks/runs/,
then times each mode in turn (memory, lazy, memory, lazy, ...: `--rounds`), `--steps` steps after 2 warm-up
steps each time; images per second is the median over rounds. Workers: medconv's default (none on 2 cores or
fewer, else one per 4 cores, at most 4) unless `--workers`.

    ./run bench data_pipeline [--steps 20] [--rounds 5] [--workers N] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import RUNS, hardware, stamped, write_results
from PIL import Image

from medconv.classify.train import ClassificationTask
from medconv.config import TrainConfig
from medconv.data.folders import load_image_folder
from medconv.data.medmnist import load_medmnist
from medconv.data.nuclei import nuclei_folder
from medconv.data.reading import reading_workers
from medconv.data.transforms import channel_stats
from medconv.models.registry import build_model

OUT = RUNS / "data_pipeline"
CASES = {  # name: (arch, batch, files maker)
    "28": ("simple-cnn", 128),
    "224": ("resnet18", 32),
}
WARMUP = 2


def breast_pngs(root: Path) -> Path:
    """BreastMNIST's training images (28 px grey) as PNG files in class folders."""
    if not (root / ".done").exists():
        _, sets = load_medmnist("breastmnist", 28)
        for i, (img, label) in enumerate(zip(sets["train"].images, sets["train"].labels[:, 0].tolist())):
            (root / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0].numpy()).save(root / str(label) / f"{i:04d}.png")
        (root / ".done").touch()
    return root


def histology_pngs(root: Path, count: int = 600) -> Path:
    """224 px RGB tiles cut from the CRCHistoPhenotypes H&E images, as PNG files in two class folders (the class
    alternates: the labels only need to exist)."""
    if not (root / ".done").exists():
        rng = np.random.default_rng(0)
        sources = sorted((nuclei_folder() / "images").glob("*.png"))
        for i in range(count):
            with Image.open(sources[i % len(sources)]) as img:
                rgb = np.asarray(img.convert("RGB"))
            y, x = rng.integers(0, rgb.shape[0] - 224), rng.integers(0, rgb.shape[1] - 224)
            (root / str(i % 2)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb[y:y + 224, x:x + 224]).save(root / str(i % 2) / f"{i:04d}.png")
        (root / ".done").touch()
    return root


def images_per_second(case: str, root: Path, loading: str, steps: int, workers: int | None) -> float:
    """Training images per second over `steps` steps (after WARMUP) of the trainer's batches for `loading`."""
    arch, batch = CASES[case]
    cfg = TrainConfig(images=str(root), arch=arch, batch_size=batch, loading=loading, workers=workers, seed=0)
    info, sets = load_image_folder(root, loading=loading, val_fraction=0.05, test_fraction=0.05)
    torch.manual_seed(0)
    model = build_model(arch, info.channels, info.num_outputs, info.size)
    mean, std = channel_stats(sets["train"].images)
    task = ClassificationTask(cfg, model, info, sets, mean, std, torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    model.train()
    done, tic, epoch = 0, None, 0
    while done < WARMUP + steps:
        for x in task.batches(epoch, torch.Generator().manual_seed(epoch)):
            if done == WARMUP:
                tic = time.perf_counter()
            loss = task.loss(model, x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == WARMUP + steps:
                break
        epoch += 1
    return steps * batch / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    roots = {"28": breast_pngs(OUT / "png28"), "224": histology_pngs(OUT / "png224")}
    workers = reading_workers(args.workers)
    runs, summary = [], {}
    for case, root in roots.items():
        rates = {"memory": [], "lazy": []}
        for r in range(args.rounds):
            for loading in rates:
                rate = images_per_second(case, root, loading, args.steps, args.workers)
                rates[loading].append(rate)
                runs.append(stamped({"case": case, "arch": CASES[case][0], "batch": CASES[case][1], "loading": loading,
                                     "round": r, "workers": workers if loading == "lazy" else 0,
                                     "images_per_second": round(rate, 1)}))
                print(f"{case} px {loading}: {rate:.1f} images/s", flush=True)
        median = {k: statistics.median(v) for k, v in rates.items()}
        summary[f"model_only_images_per_second_{case}"] = round(median["memory"], 1)
        summary[f"lazy_images_per_second_{case}"] = round(median["lazy"], 1)
        summary[f"pipeline_vs_model_only_{case}"] = round(median["lazy"] / median["memory"], 3)
    summary["workers"] = workers
    rows = "".join(f"| {c} px, {CASES[c][0]}, batch {CASES[c][1]} | {summary[f'model_only_images_per_second_{c}']} | "
                   f"{summary[f'lazy_images_per_second_{c}']} | {summary[f'pipeline_vs_model_only_{c}']:.1%} | "
                   f"{'met' if summary[f'pipeline_vs_model_only_{c}'] >= 0.9 else 'missed'} |\n" for c in roots)
    md = (f"## Lazy loading from PNG files against images held in memory\n\nhardware: {hardware()}\n\n"
          f"Training steps (the trainer's batches and loss, AdamW), {args.steps} timed steps after {WARMUP} warm-up "
          f"steps, median of {args.rounds} rounds alternating the modes; lazy with {workers} reading worker "
          "process(es).\n\n| case | memory (model-only), images/s | lazy from PNG, images/s | lazy / memory | "
          "target >= 90% |\n|---|---|---|---|---|\n" + rows)
    write_results("data_pipeline", summary, runs, md)
    print(md)


if __name__ == "__main__":
    main()
