"""Same results after the one training engine? Three benchmarks retrained from scratch on the engine,
beside the figures recorded before it (the committed results at revision BEFORE, read from git).

First train (each writes its runs under benchmarks/runs/, not committed), then compare:

    ./run bench medmnist_2d --only breastmnist:best --retrain   # cnn-strong, 3 seeds
    ./run bench cpm15 --only patch33                            # 3 seeds
    ./run bench pretraining                                     # 6 settings x 3 seeds
    ./run bench engine_rerun

A rerun counts as the same when its mean lies within one recorded standard deviation of the recorded
mean (the spread between seeds: runs differ by their random streams and thread counts).
"""
from __future__ import annotations

import datetime
import json
import statistics
import subprocess

from common import RUNS, hardware, stamped, write_results

BEFORE = "48950da"  # main before the engine (issue 19)


def recorded(name: str) -> dict:
    return json.loads(subprocess.check_output(["git", "show", f"{BEFORE}:benchmarks/results/{name}.json"], text=True))


def fresh_medmnist() -> dict[str, list[float]]:
    runs = RUNS / "medmnist_2d" / "breastmnist" / "cnn-strong"  # the table rows medmnist_2d scored (TTA flip)
    rows = [json.loads((runs / f"seed{s}" / "bench_row.json").read_text()) for s in (0, 1, 2)]
    return {m: [r[f"test_{m}"] for r in rows] for m in ("auc", "acc")}


def fresh_cpm15() -> dict[str, list[float]]:
    rows = [json.loads((RUNS / "cpm15" / "patch33" / f"seed{s}" / "metrics.json").read_text()) for s in (0, 1, 2)]
    return {m: [r["test"]["at_threshold"][k] for r in rows] for m, k in (("dice", "f1"), ("aji", "aji"))}


def fresh_pretraining() -> dict[str, list[float]]:
    out = {}
    for dataset in ("breastmnist", "pneumoniamnist"):
        for init in ("random", "rbm", "ae"):
            out[f"{dataset} {init} auc"] = [
                json.loads((RUNS / "pretraining" / dataset / init / f"seed{s}" / "metrics.json").read_text())["test"]["auc"]
                for s in (0, 1, 2)]
    return out


def compare(benchmark: str, label: str, metric: str, before: list[float], after: list[float]) -> dict:
    b, a = statistics.mean(before), statistics.mean(after)
    sd = statistics.stdev(before)
    return {"benchmark": benchmark, "setting": label, "metric": metric, "recorded_mean": b, "recorded_std": sd,
            "rerun_mean": a, "rerun_std": statistics.stdev(after), "rerun_seeds": after,
            "within_recorded_std": abs(a - b) <= sd}


def main() -> None:
    rows = []
    med = [r for r in recorded("medmnist_2d")["runs"] if r["dataset"] == "breastmnist" and r["kind"] == "best"]
    for metric, values in fresh_medmnist().items():
        rows.append(compare("medmnist_2d", "breastmnist best (cnn-strong, TTA flip)", f"test {metric}",
                            [r[f"test_{metric}"] for r in med], values))
    cpm = [r for r in recorded("cpm15")["runs"] if r["method"] == "patch33"]
    for metric, values in fresh_cpm15().items():
        rows.append(compare("cpm15", "patch33", f"test {metric}", [r[f"test_{metric}"] for r in cpm], values))
    pre = recorded("pretraining")["runs"]
    for key, values in fresh_pretraining().items():
        dataset, init, _ = key.split()
        rows.append(compare("pretraining", f"{dataset} {init}", "test auc",
                            [r["test_auc"] for r in pre if (r["dataset"], r["init"]) == (dataset, init)], values))
    commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    lines = ["## The same results on the one training engine (issue 19)\n",
             f"hardware: {hardware()}; commit {commit}; {datetime.date.today()}; recorded = results at {BEFORE}\n",
             "| benchmark | setting | metric | recorded (3 seeds) | rerun on the engine (3 seeds) | within 1 recorded sd |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['setting']} | {r['metric']} | {r['recorded_mean']:.3f} ± {r['recorded_std']:.3f} | "
              f"{r['rerun_mean']:.3f} ± {r['rerun_std']:.3f} | {'yes' if r['within_recorded_std'] else 'no'} |"
              for r in rows]
    text = "\n".join(lines) + "\n"
    write_results("engine_rerun", {"all_within_recorded_std": all(r["within_recorded_std"] for r in rows)},
                  [stamped(r) for r in rows], text,
                  {"recorded_at": BEFORE, "commit": commit, "date": str(datetime.date.today())})
    print(text)


if __name__ == "__main__":
    main()
