"""How much faster a run's ONNX export (`medconv export`) predicts on the CPU than torch, for three kinds of
network: a classifier (simple-cnn at 28 px, a batch of 64), a patch classifier in its exact dense-scanning form
(the default patch-cnn, 65 px patches, on an ISBI-like 512x512 grey image) and a 3D network (cnn3d at 28^3, a
batch of 8); with the largest difference between the two engines' probabilities. Each network is written as an
untrained run (speed does not depend on the weights) and exported by export_run, which checks the export on its
own probe first. Both engines run in this process with the same thread count, from the same images in [0, 1] to
probabilities, as prediction runs them (classify.predict.predict_scores and segment.maps.MapMaker for torch,
classify.onnx_predict.exported_scores and infer.onnx_maps.OnnxMaps for onnxruntime): the median of the timed
repeats after a warm-up.

    ./run bench export_speed [--repeats 5] [--threads 2] [--quick]

--quick: small inputs and one repeat; prints the table and writes nothing (a check that the script runs).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import hardware, stamped, write_results

from medconv.classify.onnx_predict import exported_scores
from medconv.classify.predict import predict_scores
from medconv.config import TrainConfig
from medconv.export.run import export_run
from medconv.infer.onnx_maps import OnnxMaps, onnx_session
from medconv.models.registry import build_model
from medconv.segment.config import SegmentConfig
from medconv.segment.maps import MapMaker
from medconv.training.checkpoint import load_model, save_checkpoint


def write_run(folder: Path, arch: str, channels: int, size: tuple[int, ...], classes: list[str], meta: dict) -> Path:
    """A run directory holding an untrained `arch` as checkpoints/best, with the metadata training would save."""
    torch.manual_seed(0)
    model = build_model(arch, channels, len(classes), size)
    save_checkpoint(folder / "checkpoints" / "best.safetensors", model,
                    {"arch": arch, "model_options": {}, "in_channels": channels, "num_classes": len(classes),
                     "input_size": list(size), "classes": classes, "mean": [0.5] * channels, "std": [0.25] * channels,
                     "epoch": 1, **meta})
    return folder


def timed(fn, repeats: int) -> tuple[list[float], np.ndarray]:
    """Seconds of each of `repeats` calls of fn after one warm-up call, and its last result."""
    fn()
    seconds = []
    for _ in range(repeats):
        tic = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - tic)
    return seconds, out


def compare(network: str, what: str, by_torch, by_onnx, repeats: int) -> dict:
    """A result row: by_torch() and by_onnx() give the same input's probabilities (numpy)."""
    torch_seconds, expected = timed(by_torch, repeats)
    onnx_seconds, got = timed(by_onnx, repeats)
    torch_median, onnx_median = statistics.median(torch_seconds), statistics.median(onnx_seconds)
    return {"network": network, "input": what, "torch_seconds": round(torch_median, 5),
            "onnx_seconds": round(onnx_median, 5), "onnx_speedup": round(torch_median / onnx_median, 2),
            "max_difference": float(np.abs(got - expected).max()), "repeats": repeats}


def classifier_row(root: Path, batch: int, repeats: int, threads: int, volumes: bool) -> dict:
    """simple-cnn at 28 px (or cnn3d at 28^3 with `volumes`) on a batch of random images."""
    size = (28, 28, 28) if volumes else (28, 28)
    run = write_run(root / ("cnn3d" if volumes else "simple-cnn"), "cnn3d" if volumes else "simple-cnn", 1, size,
                    ["benign", "malignant"], {"task": "binary-class", "config": TrainConfig(dataset="synthetic").to_dict()})
    export = export_run(run)
    model, meta = load_model(run)
    x = torch.rand((batch, 1, *size), generator=torch.Generator().manual_seed(1))
    session = onnx_session(run / "model.onnx", threads)
    return compare("3d" if volumes else "classifier", f"{batch} x 1 x {' x '.join(map(str, size))}",
                   lambda: predict_scores(model, x, meta["mean"], meta["std"], meta["task"]),
                   lambda: exported_scores(session, x.numpy(), export, "none"), repeats)


def patch_dense_row(root: Path, side: int, repeats: int, threads: int) -> dict:
    """The default patch-cnn (65 px patches) in its dense-scanning form on a random grey side x side image."""
    cfg = SegmentConfig(dataset="isbi2012").validate()
    run = write_run(root / "patch-cnn", "patch-cnn", 1, (cfg.patch, cfg.patch), ["cell", "membrane"],
                    {"task": "segmentation", "mode": "patch", "patch": cfg.patch, "tile": cfg.tile,
                     "config": cfg.to_dict()})
    export_run(run)
    model, meta = load_model(run)
    image = torch.rand((1, side, side), generator=torch.Generator().manual_seed(1))
    maker, maps = MapMaker(model, meta), OnnxMaps(run / "model.onnx", threads=threads)
    return compare("patch_dense", f"1 x {side} x {side}", lambda: maker(image).numpy(),
                   lambda: maps(image.numpy()), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small inputs, one repeat, print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        rows = [classifier_row(root, 8 if args.quick else 64, repeats, args.threads, volumes=False),
                patch_dense_row(root, 96 if args.quick else 512, repeats, args.threads),
                classifier_row(root, 2 if args.quick else 8, repeats, args.threads, volumes=True)]
    by_name = {r["network"]: r for r in rows}
    summary = {**{f"onnx_speedup_{n}": r["onnx_speedup"] for n, r in by_name.items()},
               **{f"max_difference_{n}": r["max_difference"] for n, r in by_name.items()},
               **{f"{engine}_seconds_{n}": r[f"{engine}_seconds"] for n, r in by_name.items()
                  for engine in ("torch", "onnx")}}
    names = {"classifier": "simple-cnn, 28 px", "patch_dense": "patch-cnn (65 px patches), dense form",
             "3d": "cnn3d, 28^3"}
    md = (f"## ONNX export against torch on the CPU (`medconv export`)\n\nhardware: {hardware()}; {args.threads} threads "
          "for both engines\n\n| network | input | torch s | onnxruntime s | speed-up | largest probability difference |\n"
          "|---|---|---|---|---|---|\n"
          + "".join(f"| {names[r['network']]} | {r['input']} | {r['torch_seconds']:.4f} | {r['onnx_seconds']:.4f} | "
                    f"{r['onnx_speedup']:.2f}x | {r['max_difference']:.1e} |\n" for r in rows)
          + f"\nMedian of {repeats} timed repeats after a warm-up, images in [0, 1] to probabilities; untrained "
            "networks (speed does not depend on the weights).\n")
    if args.quick:
        print(md)
        return
    write_results("export_speed", summary, [stamped(r) for r in rows], md)
    print(md)


if __name__ == "__main__":
    main()
