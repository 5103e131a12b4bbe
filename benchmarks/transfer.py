"""What does transfer buy on small medical datasets? And what does a fine-to-coarse taxonomy buy?

(a) Source -> target. A simple-cnn (32-64-128 conv blocks, 256 hidden) is trained on PneumoniaMNIST
(one source run per seed). On BreastMNIST with 10, 25, 50 and 100% of its training labels
(stratified), three ways: from scratch; frozen source features (the head's input, 256-d) + logistic
regression (C chosen on validation); fine-tuning all weights from the source (new head). Test
AUC/ACC, 3 seeds, checkpoint/C chosen on validation only; a learning-curve plot.

(b) Taxonomy. CRCHistoPhenotypes nucleus patches (27x27, test = the 10 validation images of
split.csv, val = 10 held-out training images): a network trained on the 4 fine classes and read
out at the coarse level (epithelial vs non-epithelial, probabilities summed), against the same
network trained on the 2 coarse classes directly; coarse accuracy and macro F1 on the test images;
also the 4-class weighted F1 and multi-class AUC beside Sirinukunwattana et al. 2016, centred patches and the
neighbouring ensemble (`evaluate --neighbours R`, R chosen on the selection images: benchmarks/plans/
transfer_nuclei.md).

    ./run bench transfer [--seeds 0,1,2] [--only a|b]
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import RUNS, hardware, mean_sd, recorded_runs, stamped, write_results

from medconv.config import TrainConfig
from medconv.data import load_dataset
from medconv.classify.evaluate import evaluate
from medconv.classify.train import train
from medconv.published import SC_CNN_NUCLEI
from medconv.transfer.heads import fit_head

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
METHODS = ("scratch", "frozen", "finetune")
CNN = {"widths": [32, 64, 128], "hidden": [256]}
COMMON = dict(arch="simple-cnn", model_options=CNN, optimizer="adamw", lr=1e-3, weight_decay=1e-4, schedule="cosine",
              batch_size=64, deterministic=True, threads=1)
SOURCE = dict(dataset="pneumoniamnist", augment="light", epochs=15)
TARGET = dict(dataset="breastmnist", augment="light", epochs=40)
FINETUNE_LR = 3e-4  # a smaller rate than from scratch, so fine-tuning starts near the source weights
NUCLEI = dict(dataset="crchistophenotypes", augment="histology", epochs=12, batch_size=128,
              taxonomy=str(ROOT / "examples" / "nuclei_taxonomy.yaml"))
PUBLISHED_NUCLEI = SC_CNN_NUCLEI  # Sirinukunwattana et al. 2016, softmax CNN + NEP
NEP_RADII = (0, 1, 2, 3, 4)  # the candidates of benchmarks/plans/transfer_nuclei.md, chosen on the selection images


def trained(out: Path, cfg: TrainConfig) -> dict:
    """metrics.json of the run in `out`, training (or resuming) it first when it is not finished."""
    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    print(f"== {out.relative_to(RUNS)}", flush=True)
    return train(cfg, out, resume=(out / "checkpoints" / "last.safetensors").exists())


def source_run(seed: int) -> Path:
    out = RUNS / "transfer" / "source" / f"seed{seed}"
    trained(out, TrainConfig(**{**COMMON, **SOURCE}, seed=seed))
    return out


def target_run(method: str, fraction: float, seed: int) -> dict:
    out = RUNS / "transfer" / "breastmnist" / f"{method}-{int(fraction * 100)}" / f"seed{seed}"
    cfg = TrainConfig(**{**COMMON, **TARGET}, train_fraction=fraction, seed=seed)
    if method == "frozen":
        cfg.init_from = str(source_run(seed))
        if (out / "metrics.json").exists():
            result = json.loads((out / "metrics.json").read_text())
        else:
            print(f"== {out.relative_to(RUNS)}", flush=True)
            result = fit_head(cfg, out, cache_dir=RUNS / "transfer" / "features")
    else:
        if method == "finetune":
            cfg.init_from, cfg.lr = str(source_run(seed)), FINETUNE_LR
        result = trained(out, cfg)
    return stamped({"part": "a", "method": method, "fraction": fraction, "seed": seed,
                    "test_auc": result["test"]["auc"], "test_acc": result["test"]["acc"], "val_auc": result["val"]["auc"],
                    "seconds": result.get("train_seconds", result.get("fit_seconds"))}, out / "bench_row.json")


def nuclei_run(level: str, seed: int) -> dict:
    out = RUNS / "transfer" / "nuclei" / level / f"seed{seed}"
    cfg = TrainConfig(**{**COMMON, **NUCLEI}, seed=seed, train_level="coarse" if level == "coarse" else None)
    result = trained(out, cfg)
    coarse = result["test"] if level == "coarse" else evaluate(out, "test", level="coarse")
    row = {"part": "b", "trained_on": level, "seed": seed, "coarse_acc": coarse["acc"], "coarse_f1": coarse["macro_f1"],
           "coarse_auc": coarse["auc"], "seconds": result["train_seconds"]}
    if level == "fine":
        row.update(weighted_f1_centred=result["test"]["weighted_f1"], auc_centred=result["test"]["auc"],
                   acc_centred=result["test"]["acc"])
        row.update(neighbourhood(out, load_dataset(cfg)))
    return stamped(row, out / "bench_row.json")


def neighbourhood(out: Path, data) -> dict:
    """The radius of the neighbouring ensemble chosen on the selection images (the highest selection weighted
    F1, ties to the smaller radius) and the test figures at it: the plan's rule. `data`: the run's (info, sets),
    read once for the six evaluations."""
    selection = {r: evaluate(out, "val", neighbours=r, pictures=False, data=data)["weighted_f1"] for r in NEP_RADII}
    radius = max(NEP_RADII, key=lambda r: (selection[r], -r))
    test = evaluate(out, "test", neighbours=radius, pictures=False, data=data)
    return {"nep_radius": radius, "selection_weighted_f1": {str(r): round(f, 4) for r, f in selection.items()},
            "weighted_f1": test["weighted_f1"], "auc": test["auc"], "acc": test["acc"]}


def origin(rows: list[dict]) -> str:
    """Where a part's rows come from, as a sentence for the report."""
    if not any(r.get("recorded") for r in rows):
        return "Trained by this command.\n"
    places = sorted({f"{r['commit'][:7]} ({r['date'][:10]}; {r['hardware'].split(';')[0]})" for r in rows})
    return f"Recorded: these rows are the committed ones, computed at {', '.join(places)}.\n"


def plot_learning_curve(runs: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for method in METHODS:
        points = [mean_sd([r["test_auc"] for r in runs if r["method"] == method and r["fraction"] == f]) for f in FRACTIONS]
        ax.errorbar([f * 100 for f in FRACTIONS], [m for m, _ in points], yerr=[s for _, s in points], marker="o",
                    capsize=3, label=method)
    ax.set(xscale="log", xlabel="BreastMNIST training labels used (%)", ylabel="test AUC (mean ± sd)",
           title="PneumoniaMNIST -> BreastMNIST")
    ax.set_xticks([f * 100 for f in FRACTIONS], [f"{f:.0%}" for f in FRACTIONS])
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", choices=["a", "b"], default=None, help="run only this part; the other part's "
                        "rows are the committed ones, each with its own provenance")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs_a = ([target_run(m, f, s) for s in seeds for f in FRACTIONS for m in METHODS] if args.only != "b"
              else [r for r in recorded_runs("transfer") if r.get("part") == "a"])
    runs_b = ([nuclei_run(level, s) for s in seeds for level in ("fine", "coarse")] if args.only != "a"
              else [r for r in recorded_runs("transfer") if r.get("part") == "b"])
    summary, lines = {}, [f"## Transfer learning\n\nhardware: {hardware()}\n"]
    if runs_a:
        plot = RUNS / "transfer" / "learning_curve.png"
        plot_learning_curve(runs_a, plot)
        lines += ["### (a) PneumoniaMNIST -> BreastMNIST, simple-cnn, test set\n", origin(runs_a),
                  "| training labels | " + " | ".join(f"{m} AUC | {m} ACC" for m in METHODS) + " |",
                  "|---|" + "---|" * (2 * len(METHODS))]
        for f in FRACTIONS:
            cells = []
            for m in METHODS:
                rs = [r for r in runs_a if r["method"] == m and r["fraction"] == f]
                auc, sd = mean_sd([r["test_auc"] for r in rs])
                summary[f"{m}_auc_{int(f * 100)}"] = round(auc, 4)
                summary[f"{m}_acc_{int(f * 100)}"] = round(statistics.mean(r["test_acc"] for r in rs), 4)
                cells.append(f"{auc:.3f} ± {sd:.3f} | {summary[f'{m}_acc_{int(f * 100)}']:.3f}")
            lines.append(f"| {f:.0%} | " + " | ".join(cells) + " |")
        lines += ["", f"{len(seeds)} seeds; one PneumoniaMNIST source run per seed ({SOURCE['epochs']} epochs); targets "
                  f"{TARGET['epochs']} epochs, fine-tuning at lr {FINETUNE_LR} vs {COMMON['lr']} from scratch; frozen = "
                  "logistic regression on the source network's 256-d penultimate features. Learning-curve plot: "
                  f"`{plot.relative_to(ROOT)}` (not committed).", ""]
    if runs_b:
        fine = [r for r in runs_b if r["trained_on"] == "fine"]
        coarse = [r for r in runs_b if r["trained_on"] == "coarse"]
        for key, rs in (("fine_trained", fine), ("coarse_trained", coarse)):
            summary[f"coarse_f1_{key}"] = round(statistics.mean(r["coarse_f1"] for r in rs), 4)
            summary[f"coarse_acc_{key}"] = round(statistics.mean(r["coarse_acc"] for r in rs), 4)
        summary["nuclei_weighted_f1"] = round(statistics.mean(r["weighted_f1"] for r in fine), 4)
        summary["nuclei_auc"] = round(statistics.mean(r["auc"] for r in fine), 4)
        if all("weighted_f1_centred" in r for r in fine):
            summary["nuclei_weighted_f1_centred"] = round(statistics.mean(r["weighted_f1_centred"] for r in fine), 4)
            summary["nuclei_auc_centred"] = round(statistics.mean(r["auc_centred"] for r in fine), 4)
        lines += ["### (b) CRCHistoPhenotypes nuclei: epithelial vs non-epithelial (test = the 10 validation images)\n",
                  origin(runs_b),
                  "| trained on | coarse ACC | coarse macro F1 | coarse AUC | seeds |", "|---|---|---|---|---|"]
        for name, rs in (("4 fine classes, summed to coarse", fine), ("2 coarse classes", coarse)):
            cells = [mean_sd([r[k] for r in rs]) for k in ("coarse_acc", "coarse_f1", "coarse_auc")]
            lines.append(f"| {name} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in cells) + f" | {len(rs)} |")
        wf1, auc = mean_sd([r["weighted_f1"] for r in fine]), mean_sd([r["auc"] for r in fine])
        if all("nep_radius" in r for r in fine):
            cf1, cauc = mean_sd([r["weighted_f1_centred"] for r in fine]), mean_sd([r["auc_centred"] for r in fine])
            lines += ["", "| 4-class test | weighted F1 | multi-class AUC | radius (chosen on the selection images) |",
                      "|---|---|---|---|",
                      f"| centred patch (reference) | {cf1[0]:.3f} ± {cf1[1]:.3f} | {cauc[0]:.3f} ± {cauc[1]:.3f} | 0 |",
                      f"| neighbouring ensemble | {wf1[0]:.3f} ± {wf1[1]:.3f} | {auc[0]:.3f} ± {auc[1]:.3f} | "
                      f"{', '.join(str(r['nep_radius']) for r in fine)} (seeds {', '.join(str(r['seed']) for r in fine)}) |",
                      "", "Selection weighted F1 by radius: " + "; ".join(
                          f"seed {r['seed']}: " + ", ".join(f"R {k} {v:.3f}" for k, v in r["selection_weighted_f1"].items())
                          for r in fine) + "."]
        lines += ["", f"4-class (fine) test: weighted F1 {wf1[0]:.3f} ± {wf1[1]:.3f}, multi-class AUC {auc[0]:.3f} ± "
                  f"{auc[1]:.3f}; published (Sirinukunwattana et al. 2016, softmax CNN + neighbouring ensemble "
                  f"predictor) {PUBLISHED_NUCLEI['weighted_f1']} / {PUBLISHED_NUCLEI['auc']}. Their protocol differs: "
                  "2-fold cross-validation over all 100 images, 27x27 patches (then 34x34 crops resized), ensemble of "
                  "neighbouring patches; ours: one split (70 train images of which 10 select the checkpoint, 10 test), "
                  f"one {NUCLEI['epochs']}-epoch simple-cnn per seed, 80 of the 100 images distributed.", ""]
    text = "\n".join(lines) + "\n"
    write_results("transfer", summary, runs_a + runs_b, text)
    print(text)


if __name__ == "__main__":
    main()
