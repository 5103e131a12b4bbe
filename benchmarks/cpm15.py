"""CPM-15 nuclei (MICCAI 2015; 15 H&E tiles, 2,905 nuclei): nucleus Dice and Aggregated Jaccard Index.

Fixed split by tile (both magnifications in every part; also in the JSON): train 01-05 + 08-12,
val 06 + 13, test 07 + 14 + 15. A 33 px patch-cnn (exact dense scanning) and a U-Net (128 px tiles),
3 seeds each; checkpoints chosen on the validation tiles' nucleus F1. Objects: the foreground
probability above the threshold chosen on the validation tiles (best nucleus F1), separated by a
watershed on the distance transform; AJI and object Dice per tile, averaged (figures at 0.5 kept
beside). The headline (cpm15_dice, cpm15_aji) is the method with the better validation Dice.

    ./run bench cpm15 [--seeds 0,1,2] [--only patch33|unet] [--rescore unet]
"""
from __future__ import annotations

import argparse
import json
import statistics

from common import RUNS, hardware, rescore, stamped, write_results

from medconv.data.segmentation import CPM15_SPLIT
from medconv.segment.config import SegmentConfig
from medconv.segment.train import train_segmentation

METHODS = {
    "patch33": dict(mode="patch", arch="patch-cnn", patch=33, epochs=8, samples_per_epoch=8000,
                    augment="flips=1,rot90=1,intensity=0.05"),
    "unet": dict(mode="dense", arch="unet", tile=128, epochs=12, samples_per_epoch=400, batch_size=8,
                 augment="flips=1,rot90=1,elastic=4,intensity=0.05"),
}


RESCORE: set[str] = set()  # methods (--rescore) whose cached checkpoints are scored again with today's code


def run(method: str, seed: int) -> dict:
    """Train (or read the cached) run; its metrics at 0.5 and at the foreground threshold chosen on validation."""
    out = RUNS / "cpm15" / method / f"seed{seed}"
    if (out / "metrics.json").exists():
        result = json.loads((out / "metrics.json").read_text())
    else:
        print(f"== cpm15 {method} seed {seed}", flush=True)
        cfg = SegmentConfig(dataset="cpm15", seed=seed, deterministic=True, **METHODS[method])
        result = train_segmentation(cfg, out, resume=(out / "checkpoints" / "last.safetensors").exists())
    if "at_threshold" not in result["test"] or method in RESCORE:  # cached before the val threshold was used
        result = rescore(out)                                         # for test, or --rescore METHOD
    val, test = result["val"]["at_threshold"], result["test"]["at_threshold"]
    return stamped({"method": method, "seed": seed, "threshold": test["threshold"], "val_dice": val["f1"],
                    "test_dice": test["f1"], "test_aji": test["aji"], "test_object_dice": test["object_dice"],
                    "test_pixel_error": test["pixel_error"], "test_dice_at_half": result["test"]["f1"],
                    "test_aji_at_half": result["test"]["aji"], "train_seconds": result["train_seconds"]},
                   out / "bench_row.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", choices=list(METHODS), default=None)
    parser.add_argument("--rescore", default="", help="comma list of methods (e.g. unet) to score again")
    args = parser.parse_args()
    RESCORE.update(filter(None, args.rescore.split(",")))
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [run(m, s) for m in METHODS if args.only in (None, m) for s in seeds]
    lines = ["## CPM-15 nuclei: test tiles 07, 14, 15\n", f"hardware: {hardware()}\n",
             "Foreground = probability above the threshold chosen on the validation tiles (nucleus F1); "
             "the last column is the same maps cut at 0.5.\n",
             "| method | threshold (val) | nucleus Dice | AJI | object Dice | pixel error | Dice / AJI at 0.5 | seeds "
             "| train time / run |",
             "|---|---|---|---|---|---|---|---|---|"]
    means = {}
    for method in METHODS:
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        means[method] = {k: statistics.mean(r[k] for r in rs) for k in ("val_dice", "test_dice", "test_aji")}
        sd = lambda k: f" ± {statistics.stdev(r[k] for r in rs):.3f}" if len(rs) > 1 else ""  # noqa: E731
        thresholds = ", ".join(f"{r['threshold']:.2f}" for r in rs)
        lines.append(f"| {method} | {thresholds} | "
                     f"{means[method]['test_dice']:.3f}{sd('test_dice')} | "
                     f"{means[method]['test_aji']:.3f}{sd('test_aji')} | "
                     f"{statistics.mean(r['test_object_dice'] for r in rs):.3f} | "
                     f"{statistics.mean(r['test_pixel_error'] for r in rs):.3f} | "
                     f"{statistics.mean(r['test_dice_at_half'] for r in rs):.3f} / "
                     f"{statistics.mean(r['test_aji_at_half'] for r in rs):.3f} | {len(rs)} | "
                     f"{statistics.mean(r['train_seconds'] for r in rs) / 60:.1f} min |")
    best = max(means, key=lambda m: means[m]["val_dice"])
    summary = {"cpm15_dice": round(means[best]["test_dice"], 4), "cpm15_aji": round(means[best]["test_aji"], 4)}
    lines += ["", f"Headline: {best} (better validation Dice). Split by tile: "
              + "; ".join(f"{k} {list(v)}" for k, v in CPM15_SPLIT.items()) + ".", ""]
    text = "\n".join(lines) + "\n"
    write_results("cpm15", summary, runs, text, {"split": {k: list(v) for k, v in CPM15_SPLIT.items()}, "headline_method": best})
    print(text)


if __name__ == "__main__":
    main()
