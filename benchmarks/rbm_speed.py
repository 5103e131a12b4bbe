"""Seconds per epoch of medconv's BernoulliRBM (torch, float32, all CPU threads; CUDA too when present)
against scikit-learn's BernoulliRBM, configured alike: 10,000 x 784 binary inputs (PneumoniaMNIST
train images, pixel >= 128 -> 1, tiled to 10,000 rows), 256 hidden units, batch 100, PCD-1,
learning rate 0.01, the same number of epochs, one run each. scikit-learn runs in float64 on binary
input (its default; the headline) and again on float32 input. Each implementation gets one warm-up epoch first. Both
are then scored on the binarised validation images (pseudo-likelihood with the same flipped units,
mean over 10 draws), so the speed is not bought with worse learning. The learning rate is 0.01, not
scikit-learn's default 0.1: at 0.1 PCD swings so much that one run's pseudo-likelihood moves by 15%
between seeds, in both libraries; at 0.01, after 3 epochs, both land at -348 +- 5 (21 seeds). Speed does not
depend on it. Target: >= 3x on the CPU.

    ./run bench rbm_speed [--epochs 3] [--rows 10000] [--data-root DIR]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from common import hardware, stamped, write_results
from sklearn.neural_network import BernoulliRBM as SklearnRBM

from medconv.models.rbm import BernoulliRBM, mean_pseudo_likelihood

ROOT = Path(__file__).resolve().parents[1]
DRAWS = 10  # sets of flipped units the pseudo-likelihood is averaged over


def binarise(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 784) bool, threshold 128."""
    return images.reshape(len(images), -1) >= 128


def timed_fit(make, X: np.ndarray, epochs: int, device: str | None) -> tuple[object, float]:
    tic = time.perf_counter()
    model = make(epochs).fit(X)
    if device == "cuda":
        torch.cuda.synchronize()
    return model, time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=os.environ.get("MEDCONV_DATA", ROOT.parent / "shared" / "datasets"))
    args = parser.parse_args()
    path = Path(args.data_root) / "medmnist" / "pneumoniamnist.npz"
    if not path.exists():
        raise SystemExit(f"rbm_speed: {path} not found: pass --data-root or set MEDCONV_DATA")
    torch.set_num_threads(os.cpu_count())
    data = np.load(path)
    train = binarise(data["train_images"])
    X = np.resize(train, (args.rows, train.shape[1]))  # the train images repeated to `rows` rows
    X_val = binarise(data["val_images"])
    common = {"n_components": 256, "learning_rate": 0.01, "batch_size": 100, "random_state": args.seed}

    runs = []
    # scikit-learn computes in float64 for binary (bool, integer, float64) input: its default, the
    # headline baseline; given float32 it computes in float32, reported beside it.
    for dtype in ("float64", "float32"):
        timed_fit(lambda n: SklearnRBM(**common, n_iter=n), X.astype(dtype), 1, None)  # warm-up epoch, as ours
        sk, seconds = timed_fit(lambda n: SklearnRBM(**common, n_iter=n), X.astype(dtype), args.epochs, None)
        runs.append({"implementation": "scikit-learn", "device": "cpu", "dtype": dtype, "epochs": args.epochs,
                     "seconds": round(seconds, 3), "seconds_per_epoch": round(seconds / args.epochs, 4),
                     "pseudo_likelihood": round(mean_pseudo_likelihood(sk, X_val, DRAWS), 3)})
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        def make(n: int, device: str = device) -> BernoulliRBM:
            return BernoulliRBM(**common, n_iter=n, device=device)
        timed_fit(make, X, 1, device)  # warm-up epoch
        ours, seconds = timed_fit(make, X, args.epochs, device)
        runs.append({"implementation": "medconv", "device": device, "dtype": "float32", "epochs": args.epochs,
                     "seconds": round(seconds, 3), "seconds_per_epoch": round(seconds / args.epochs, 4),
                     "pseudo_likelihood": round(mean_pseudo_likelihood(ours, X_val, DRAWS), 3)})

    base, base32, ours = runs[:3]
    summary = {"rbm_speedup_vs_sklearn": round(base["seconds_per_epoch"] / ours["seconds_per_epoch"], 2),
               "rbm_speedup_vs_sklearn_float32": round(base32["seconds_per_epoch"] / ours["seconds_per_epoch"], 2),
               "sklearn_seconds_per_epoch": base["seconds_per_epoch"],
               "sklearn_float32_seconds_per_epoch": base32["seconds_per_epoch"],
               "medconv_seconds_per_epoch": ours["seconds_per_epoch"],
               "sklearn_pseudo_likelihood": base["pseudo_likelihood"],
               "sklearn_float32_pseudo_likelihood": base32["pseudo_likelihood"],
               "medconv_pseudo_likelihood": ours["pseudo_likelihood"]}
    if len(runs) > 3:
        cuda = runs[3]
        summary.update(rbm_cuda_speedup_vs_sklearn=round(base["seconds_per_epoch"] / cuda["seconds_per_epoch"], 2),
                       medconv_cuda_seconds_per_epoch=cuda["seconds_per_epoch"],
                       medconv_cuda_pseudo_likelihood=cuda["pseudo_likelihood"])
    rows = "".join(f"| {r['implementation']} | {r['device']} | {r['dtype']} | {r['seconds_per_epoch']:.3f} | "
                   f"{base['seconds_per_epoch'] / r['seconds_per_epoch']:.2f}x | {r['pseudo_likelihood']:.2f} |\n"
                   for r in runs)
    md = (f"## BernoulliRBM speed: {args.rows:,} x 784 binary PneumoniaMNIST rows, 256 hidden, batch 100, PCD-1, "
          f"learning rate 0.01, {args.epochs} epochs\n\nhardware: {hardware()}\n\n"
          "| implementation | device | dtype | seconds per epoch | speed-up vs scikit-learn | "
          f"pseudo-likelihood (validation, mean of {DRAWS} draws) |\n|---|---|---|---|---|---|\n{rows}\n"
          f"Target: >= 3x on the CPU against scikit-learn as it runs on binary input (float64); measured "
          f"{summary['rbm_speedup_vs_sklearn']:.2f}x ({summary['rbm_speedup_vs_sklearn_float32']:.2f}x against "
          "scikit-learn given float32 input).\n")
    write_results("rbm_speed", summary, [stamped(r) for r in runs], md)
    print(md)


if __name__ == "__main__":
    main()
