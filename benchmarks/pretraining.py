"""Does layer-wise pretraining help a deep sigmoid MLP? Random init vs RBM vs autoencoder pretraining.

A 4-hidden-layer sigmoid MLP (500-500-500-500) on BreastMNIST and on a 10% stratified subset of the
PneumoniaMNIST training labels; fine-tuned by SGD (lr 0.1, momentum 0.9, 40 epochs, batch 64), checkpoint
chosen on validation AUC; 3 seeds. Reports test AUC/ACC and the epoch of the best validation AUC,
and draws the vanishing-gradient plot (per-layer gradient norms at initialisation, by depth).

    ./run bench pretraining [--seeds 0,1,2] [--epochs 40]
"""
from __future__ import annotations

import argparse
import json
import statistics

from common import RUNS, hardware, stamped, write_results

from medconv.config import TrainConfig
from medconv.experiments.vanishing_gradient import vanishing_gradient
from medconv.classify.train import train

DATASETS = {"breastmnist": 1.0, "pneumoniamnist": 0.1}  # dataset -> fraction of training labels
INITS = ("random", "rbm", "ae")


def run_once(dataset: str, init: str, seed: int, epochs: int) -> dict:
    out = RUNS / "pretraining" / dataset / init / f"seed{seed}"
    if (out / "metrics.json").exists():
        result = json.loads((out / "metrics.json").read_text())
    else:
        cfg = TrainConfig(dataset=dataset, arch="mlp", model_options={"hidden": [500] * 4, "activation": "sigmoid"},
                          pretrain="none" if init == "random" else init, pretrain_epochs=10,
                          train_fraction=DATASETS[dataset], optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0,
                          schedule="constant", epochs=epochs, batch_size=64, seed=seed, deterministic=True)
        print(f"== {dataset} {init} seed {seed}", flush=True)
        result = train(cfg, out, resume=(out / "checkpoints" / "last.safetensors").exists())
    return stamped({"dataset": dataset, "init": init, "seed": seed, "test_auc": result["test"]["auc"],
                    "test_acc": result["test"]["acc"], "val_auc": result["val"]["auc"],
                    "best_epoch": result["best_epoch"], "train_seconds": result["train_seconds"]}, out / "bench_row.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [run_once(d, init, s, args.epochs) for d in DATASETS for init in INITS for s in seeds]
    summary = {}
    lines = [f"## Layer-wise pretraining of a 4 x 500 sigmoid MLP (SGD fine-tuning, {args.epochs} epochs)\n",
             f"hardware: {hardware()}\n", "| dataset | init | test AUC | test ACC | epoch of best val AUC | seeds |",
             "|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        for init in INITS:
            rs = [r for r in runs if r["dataset"] == dataset and r["init"] == init]
            auc = [r["test_auc"] for r in rs]
            sd = statistics.stdev(auc) if len(auc) > 1 else 0.0
            summary[f"{dataset}_{init}_auc"] = round(statistics.mean(auc), 4)
            summary[f"{dataset}_{init}_best_epoch"] = statistics.mean(r["best_epoch"] for r in rs)
            label = dataset + (f" ({DATASETS[dataset]:.0%} of train labels)" if DATASETS[dataset] < 1 else "")
            lines.append(f"| {label} | {init} | {statistics.mean(auc):.3f} ± {sd:.3f} | "
                         f"{statistics.mean(r['test_acc'] for r in rs):.3f} | "
                         f"{statistics.mean(r['best_epoch'] for r in rs):.1f} | {len(rs)} |")
    plot_dir = RUNS / "pretraining" / "vanishing"
    vg = vanishing_gradient("breastmnist", None, plot_dir, depths=(2, 4, 6, 8, 10), epochs=2)
    deepest = [r for r in vg["runs"] if r["depth"] == 10]
    lines += ["", "Gradient norm of the first hidden layer / the last, at initialisation, 10 hidden layers "
              "(`medconv experiment vanishing-gradient`): " + ", ".join(
                  f"{r['activation']} {r['init']} {r['init_norms'][0] / r['init_norms'][-2]:.1e}" for r in deepest) + "."]
    summary.update({f"vanishing_ratio_10_{r['activation']}_{r['init']}": r["init_norms"][0] / r["init_norms"][-2]
                    for r in deepest})
    text = "\n".join(lines) + "\n"
    write_results("pretraining", summary, runs, text, {"vanishing_gradient": vg})
    print(text)


if __name__ == "__main__":
    main()
