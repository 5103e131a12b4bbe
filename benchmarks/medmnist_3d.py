"""AdrenalMNIST3D at 28^3: a plain 3D CNN, + deep supervision, + 3D convolutional-autoencoder pretraining and
deep supervision, and a 3D ResNet-18, 3 seeds each, beside the MedMNIST v2 table. Plan (recipes, the one choice,
what is scored on test): benchmarks/plans/medmnist_3d.md.

Every run chooses its checkpoint on validation AUC and is trained with the test split unscored; its test AUC/ACC
(as medmnist.Evaluator) are computed afterwards from that checkpoint. "Best" is the recipe with the highest mean
validation AUC over its seeds. Runs are cached under benchmarks/runs/medmnist_3d/ (a cached run is not retrained):

    ./run bench medmnist_3d                       # train what is missing, report everything
    ./run bench medmnist_3d --only plain,ds       # train these recipes only (no results written until all exist)
    ./run bench medmnist_3d --fresh --only plain  # delete that recipe's cache first
    ./run bench medmnist_3d --ensembles           # issue 26: ensembles of the runs (the plan's last section)
"""
from __future__ import annotations

import argparse
import json
import shutil
import time

from common import RUNS, cell, ensemble_table, mean, paused_minutes, stamped, write_results

from medconv.classify.evaluate import evaluate, evaluate_ensemble
from medconv.classify.train import train
from medconv.config import TrainConfig
from medconv.published import MEDMNIST_V2, best_published

DATASET = "adrenalmnist3d"
COMMON = dict(dataset=DATASET, size=28, optimizer="adamw", lr=1e-3, weight_decay=1e-4, schedule="cosine",
              batch_size=32, precision="bf16", augment="hflip=0.5,vflip=0.5,brightness=0.1,contrast=0.1",
              select_metric="auc", deterministic=True)
CNN = {"widths": [16, 32, 64], "convs_per_block": 2}
DS = {**CNN, "deep_supervision": [0.3, 0.3]}
RECIPES = {  # name: (label, settings)
    "plain": ("3D CNN", dict(arch="cnn3d", model_options=CNN, epochs=40)),
    "ds": ("3D CNN + deep supervision", dict(arch="cnn3d", model_options=DS, ds_decay=True, epochs=40)),
    "cae_ds": ("3D CNN + CAE pretraining + deep supervision",
               dict(arch="cnn3d", model_options=DS, ds_decay=True, pretrain="cae", pretrain_epochs=5, epochs=40)),
    "resnet18_3d": ("ResNet-18 3D (stem stride 2)",
                    dict(arch="resnet18_3d", model_options={"stem_stride": 2}, epochs=24)),
}
SEEDS = (0, 1, 2)
TIME_LIMIT_MIN = 20


def run_dir(recipe: str, seed: int):
    return RUNS / "medmnist_3d" / recipe / f"seed{seed}"


def run_once(recipe: str, seed: int) -> dict:
    """Train (or resume) one run with the test split unscored; its cached row (validation figures, time)."""
    out = run_dir(recipe, seed)
    cached = out / "bench.json"
    if cached.exists():
        return json.loads(cached.read_text())
    cfg = TrainConfig(seed=seed, **{**COMMON, **RECIPES[recipe][1]})
    resumed = (out / "checkpoints" / "last.safetensors").exists()
    start = time.perf_counter()
    result = train(cfg, out, resume=resumed, score_test=False)
    row = {"recipe": recipe, "seed": seed, "arch": cfg.arch, "epochs": cfg.epochs, "best_epoch": result["best_epoch"],
           "val_auc": result["val"]["auc"], "val_acc": result["val"]["acc"],
           "train_minutes": (time.perf_counter() - start) / 60, "resumed": resumed}
    cached.write_text(json.dumps(row, indent=2) + "\n")
    return row


def scored(recipe: str, seed: int) -> dict:
    """A cached run's row with its test AUC/ACC (the checkpoint chosen on validation), stamped."""
    row = json.loads((run_dir(recipe, seed) / "bench.json").read_text())
    test = evaluate(run_dir(recipe, seed), split="test")
    end = (run_dir(recipe, seed) / "bench.json").stat().st_mtime  # written as training ended
    row = {**row, "test_auc": test["auc"], "test_acc": test["acc"],
           "paused_minutes": paused_minutes(run_dir(recipe, seed), end - 60 * row["train_minutes"], end)}
    return stamped(row, run_dir(recipe, seed) / "bench_row.json")


def training_minutes(row: dict) -> float | None:
    """A run's wall-clock training minutes less the time its process was stopped within them (RUN/PAUSED.txt,
    the plan's timing amendment). Time shared with other work on the cores is not subtracted: the load average
    in the hardware line says when there was some."""
    if row.get("resumed"):  # its minutes count only the process that finished it: no time to check
        return None
    return row["train_minutes"] - row.get("paused_minutes", 0.0)


def longest(group: list[dict]) -> float | None:
    """The longest training minutes of these runs; None when one was resumed (it has none)."""
    times = [training_minutes(r) for r in group]
    return None if None in times else max(times)


def wall(row: dict) -> str:
    return f"{row['train_minutes']:.1f} ({row['paused_minutes']:.1f})" + (" resumed" if row.get("resumed") else "")


def markdown(rows: dict[str, list[dict]], best: str, summary: dict) -> str:
    target_auc, target_acc = best_published(DATASET)
    lines = ["## AdrenalMNIST3D (28³), 3 seeds", "",
             "Official splits; each run's checkpoint chosen on validation AUC; test AUC/ACC as medmnist.Evaluator, "
             "mean ± sd over seeds. Plan: benchmarks/plans/medmnist_3d.md.", "",
             "| recipe | val AUC | test AUC | test ACC | train min, max of seeds | wall min (stopped) |",
             "|---|---|---|---|---|---|"]
    for name, group in rows.items():
        mark = " (best on validation)" if name == best else ""
        minutes = longest(group)
        lines.append(f"| {RECIPES[name][0]}{mark} | {cell(group, 'val_auc')} | {cell(group, 'test_auc')} | "
                     f"{cell(group, 'test_acc')} | {'—' if minutes is None else f'{minutes:.1f}'} | "
                     + ", ".join(wall(r) for r in group) + " |")
    for method, (auc, acc) in MEDMNIST_V2[DATASET].items():
        lines.append(f"| {method} (MedMNIST v2, published) | — | {auc:.3f} | {acc:.3f} | — | — |")
    met = summary["adrenal_best_auc"] >= target_auc and summary["adrenal_best_acc"] >= target_acc
    lines += ["", f"Target for the best: test AUC ≥ {target_auc} and ACC ≥ {target_acc} (the best published figures): "
              + ("met." if met else "missed."),
              f"Each run under {TIME_LIMIT_MIN} minutes on this hardware: "
              + ("not known (a resumed run's time counts only the process that finished it)."
                 if summary["max_train_minutes"] is None else
                 "yes." if summary["max_train_minutes"] < TIME_LIMIT_MIN else "no.")]
    return "\n".join(lines) + "\n"


ENSEMBLES = {  # candidate: the recipes whose runs of one seed it averages (the plan's issue 26 section)
    "resnet18_3d": ("resnet18_3d",),
    "ens4": ("plain", "ds", "cae_ds", "resnet18_3d"),
    "ens3_cnn": ("plain", "ds", "cae_ds"),
}


def candidate_figures(name: str, seed: int, split: str) -> dict:
    """A candidate's AUC and ACC on `split` for one seed: a lone run's evaluation, or the ensemble of its runs
    (`medconv evaluate RUN --with RUN...`, written to RUNS/medmnist_3d/ensembles/NAME/seedS)."""
    members = [run_dir(recipe, seed) for recipe in ENSEMBLES[name]]
    if len(members) == 1:
        figures = evaluate(members[0], split=split, pictures=False)
    else:
        figures = evaluate_ensemble(members, RUNS / "medmnist_3d" / "ensembles" / name / f"seed{seed}", split=split)
    return {f"{split}_auc": figures["auc"], f"{split}_acc": figures["acc"]}


def ensembles() -> None:
    """The plan's issue 26 section: every candidate on validation, then the selected one's test figures only."""
    rows = {n: [{"candidate": n, "seed": s, **candidate_figures(n, s, "val")} for s in SEEDS] for n in ENSEMBLES}
    val = {n: mean(rows[n], "val_auc") for n in ENSEMBLES}
    selected = max(ENSEMBLES, key=lambda n: (val[n], -list(ENSEMBLES).index(n)))
    rows[selected] = [{**r, **candidate_figures(selected, r["seed"], "test")} for r in rows[selected]]
    target_auc, target_acc = best_published(DATASET)
    summary = {"adrenal_ensemble_selected": selected, "adrenal_ensemble_auc": mean(rows[selected], "test_auc"),
               "adrenal_ensemble_acc": mean(rows[selected], "test_acc")}
    met = summary["adrenal_ensemble_auc"] >= target_auc and summary["adrenal_ensemble_acc"] >= target_acc
    lines = ["## AdrenalMNIST3D (28³): ensembles of the recipes, 3 seeds", "",
             "Mean class probabilities of the runs of one seed (`medconv evaluate RUN --with RUN...`), each at its "
             "checkpoint chosen on validation; the candidate with the best mean validation AUC is selected and only "
             "its test figures are computed. Plan: benchmarks/plans/medmnist_3d.md (issue 26 section).", "",
             *ensemble_table(rows, ENSEMBLES, selected), "", f"Target: test AUC ≥ {target_auc} and ACC ≥ {target_acc} (the best published figures): "
              + ("met." if met else "missed.")]
    text = "\n".join(lines) + "\n"
    stamped_rows = [stamped(r) for g in rows.values() for r in g]
    write_results("medmnist_3d_ensembles", summary, stamped_rows, text, {"val_auc_means": val})
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(RECIPES), help="comma list of recipes to train")
    parser.add_argument("--fresh", action="store_true", help="delete the cached runs of --only's recipes first")
    parser.add_argument("--ensembles", action="store_true",
                        help="issue 26: score the ensembles of the finished runs (trains nothing)")
    args = parser.parse_args()
    if args.ensembles:
        return ensembles()
    only = args.only.split(",")
    unknown = set(only) - set(RECIPES)
    if unknown:
        raise SystemExit(f"--only: unknown recipes {', '.join(sorted(unknown))} (known: {', '.join(RECIPES)})")
    for name in only:
        for seed in SEEDS:
            if args.fresh:
                shutil.rmtree(run_dir(name, seed), ignore_errors=True)
            run_once(name, seed)
    missing = [f"{n} seed {s}" for n in RECIPES for s in SEEDS if not (run_dir(n, s) / "bench.json").exists()]
    if missing:
        raise SystemExit(f"results not written: not trained yet: {', '.join(missing)}")
    val = {n: mean([run_once(n, s) for s in SEEDS], "val_auc") for n in RECIPES}
    best = max(RECIPES, key=lambda n: (val[n], -list(RECIPES).index(n)))  # the plan's rule; ties: the first
    rows = {n: [scored(n, s) for s in SEEDS] for n in RECIPES}  # test figures: every fixed recipe (the plan)
    summary = {"adrenal_best_auc": mean(rows[best], "test_auc"), "adrenal_best_acc": mean(rows[best], "test_acc"),
               **{f"adrenal_{n}_auc": mean(rows[n], "test_auc") for n in RECIPES},
               "max_train_minutes": longest([r for g in rows.values() for r in g])}
    text = markdown(rows, best, summary)
    write_results("medmnist_3d", summary, [r for g in rows.values() for r in g], text,
                  {"best_recipe": best, "val_auc_means": val})
    print(text)


if __name__ == "__main__":
    main()
