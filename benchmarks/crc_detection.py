"""Nucleus detection on CRCHistoPhenotypes, the Ciresan 2013 recipe: a network maps every pixel of an image
to a centre map, the map is smoothed, and its local maxima are the detections. The protocol, candidates and
selection rule are in benchmarks/plans/crc_detection.md, committed before any test figure of them:

- train on 60 of split.csv's 70 training images; choose everything (checkpoint, the peak finder's sigma,
  minimum distance and threshold, test-time augmentation, and the method) on the other 10 (the selection
  images); score the 10 images split.csv calls validation (the test images) once per finished run of the
  selected method and of the fixed reference (patch-cnn); detections match centres one-to-one within 6 px,
  TP/FP/FN summed over the images; 3 seeds;
- patch-cnn: a 27 px patch-cnn learns the probability of lying within 4 px of a nucleus centre (discs),
  its map computed by exact dense scanning; checkpoint chosen on the disc masks' F1;
- unet-proximity-r6-e60-bf16: a U-Net (128 px tiles, 60 epochs of 800 tiles, bfloat16) learns SC-CNN's
  proximity map 1/(1+d^2/2) within 6 px of a centre; checkpoint chosen on the detection F1.

Then detect-then-classify: each detection of the headline is typed by a 27 px nucleus-type classifier
(simple-cnn on the classified nuclei of the same 60 training images, chosen on the same 10) and scored per
class against the classified centres of the test images. Beside the published SC-CNN (Sirinukunwattana et
al. 2016; their protocol differs: 2-fold cross-validation over all 100 images).

    ./run bench crc_detection [--seeds 0,1,2] [--only METHOD] [--fresh]

--only trains one method (the results are written once every method's runs are cached); --fresh deletes
the cached runs first, so everything reported is trained by this command.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import RUNS, cell, hardware, mean, stamped, write_results

from medconv.config import TrainConfig
from medconv.data.points import load_crchistophenotypes
from medconv.detect.pipeline import evaluate_detection, train_detector
from medconv.detect.predict import predict_detections
from medconv.published import SC_CNN_DETECTION
from medconv.export.run import export_run
from medconv.infer.onnx_maps import ONNX_NAME, SIDECAR_NAME
from medconv.segment.config import SegmentConfig
from medconv.classify.train import train

METHODS = {  # name: (cache folder, label, settings); the candidates of benchmarks/plans/crc_detection.md
    "patch-cnn": ("detector", "27 px patch-cnn on discs, dense map", dict(
        dataset="crchistophenotypes", mode="patch", arch="patch-cnn", patch=27, radius=4.0, epochs=10,
        samples_per_epoch=10000, augment="flips=1,rot90=1,intensity=0.05", deterministic=True)),
    "unet-proximity-r6-e60-bf16": ("unet_proximity_r6_e60_bf16",
                                   "U-Net on proximity maps of radius 6 px, 60 epochs of 800 tiles, bf16", dict(
        dataset="crchistophenotypes", mode="dense", arch="unet", tile=128, target="proximity", radius=6.0,
        select_metric="detection_f1", epochs=60, samples_per_epoch=800, batch_size=8, precision="bf16",
        augment="flips=1,rot90=1,intensity=0.05", deterministic=True, threads=2)),
}
REFERENCE = "patch-cnn"  # the fixed reference row: scored on the test images whichever method is selected
CLASSIFIER = dict(dataset="crchistophenotypes", arch="simple-cnn", augment="histology", epochs=8, batch_size=128,
                  deterministic=True)
TOLERANCE = 6.0
PUBLISHED = SC_CNN_DETECTION


def run_folder(method: str, seed: int) -> Path:
    return RUNS / "crc_detection" / METHODS[method][0] / f"seed{seed}"


def detector_run(method: str, seed: int, train: bool = True) -> Path | None:
    """The run directory, tuned on the selection images: cached, else trained now (None when not cached and not
    `train`). The test images are not scored here."""
    out = run_folder(method, seed)
    if not (out / "detect_val.json").exists():
        if not train:
            return None
        print(f"== crc_detection {method} seed {seed}", flush=True)
        train_detector(SegmentConfig(seed=seed, **METHODS[method][2]), out, TOLERANCE,
                       resume=(out / "checkpoints" / "last.safetensors").exists(), score_test=False)
    return out


def classifier_run(seed: int) -> Path:
    out = RUNS / "crc_detection" / "classifier" / f"seed{seed}"
    if not (out / "metrics.json").exists():
        print(f"== crc_detection classifier seed {seed}", flush=True)
        train(TrainConfig(seed=seed, **CLASSIFIER), out, resume=(out / "checkpoints" / "last.safetensors").exists())
    return out


def time_predict(run: Path, image: Path, engine: str, tta: str | None = None) -> dict:
    """Seconds of `detect predict` on one image: the map and peaks in this process (after a warm-up), and the
    whole command in a new process (imports and model loading included); `engine` is checked in its log."""
    predict_detections(run, [str(image)], tta=tta, log=lambda line: None)  # warm-up
    tic = time.perf_counter()
    predict_detections(run, [str(image)], tta=tta, log=lambda line: None)
    seconds = time.perf_counter() - tic
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "medconv.cli", "detect", "predict", str(run), str(image), "--out",
                           str(RUNS / "crc_detection" / "predict.csv")] + (["--tta", tta] if tta else []),
                          check=True, capture_output=True, text=True)
    command = time.perf_counter() - tic
    if f"({engine})" not in done.stderr:
        raise RuntimeError(f"detect predict did not run on {engine}: {done.stderr}")
    return {"command": command, "map_and_peaks": seconds}


def selection_row(method: str, seed: int, out: Path) -> dict:
    """A run's choices and figures on the selection images (RUN/detect_val.json)."""
    val = json.loads((out / "detect_val.json").read_text())
    return {"method": method, "seed": seed, **{f"selection_{k}": val[k] for k in ("precision", "recall", "f1")},
            **{k: val[k] for k in ("sigma", "min_distance", "threshold")}, "tta": val.get("tta", "none"),
            "train_seconds": json.loads((out / "metrics.json").read_text())["train_seconds"]}


def test_scores(out: Path, seed: int, typed: bool) -> dict:
    """The finished run scored once on the test images (with `typed`, its detections typed by the seed's
    nucleus-type classifier and scored per class too)."""
    scored = evaluate_detection(out, "test", TOLERANCE, classifier=classifier_run(seed) if typed else None,
                                overlays=False)
    row = {k: scored[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")}
    if typed:
        t = scored["typed"]
        row.update({"typed_macro_f1": t["macro_f1"], "typed_weighted_f1": t["weighted_f1"],
                    "typed_per_class_f1": {c: v["f1"] for c, v in t["per_class"].items()}})
    return row


def predict_timing(first: Path, seed: int) -> tuple[dict, str]:
    """`detect predict` timed on one validation image with a run, through torch and then its ONNX export: the
    summary's timing figures and the report's sentence."""
    image = Path(load_crchistophenotypes()["test"][0].path)  # its pixels only: no labels are read
    for name in (ONNX_NAME, SIDECAR_NAME):  # first the checkpoint through torch, then the ONNX export
        (first / name).unlink(missing_ok=True)
    timed = {"torch": time_predict(first, image, "torch")}
    export_run(first)
    timed["onnxruntime"] = time_predict(first, image, "onnxruntime")
    chosen_tta = json.loads((first / "detect.json").read_text())["tta"]
    if chosen_tta != "none":  # the run's own choice costs 8 maps; --tta none is the fast way
        timed["onnxruntime, --tta none"] = time_predict(first, image, "onnxruntime", "none")
    figures = {"predict_seconds_500px": round(timed["onnxruntime"]["command"], 3),
               "map_and_peaks_seconds_500px": round(timed["onnxruntime"]["map_and_peaks"], 3),
               "predict_seconds_500px_torch": round(timed["torch"]["command"], 3),
               **({"predict_seconds_500px_tta_none": round(timed["onnxruntime, --tta none"]["command"], 3)}
                  if "onnxruntime, --tta none" in timed else {})}
    sentence = (f"`medconv detect predict` on one 500x500 image with seed {seed}'s run (its test-time augmentation: "
                f"{chosen_tta}), the whole command (a new process: imports and model loading included) and the map "
                "and peaks alone: " + "; ".join(f"{t['command']:.2f} s and {t['map_and_peaks']:.2f} s by {engine}"
                                                for engine, t in timed.items())
                + " (onnxruntime: the network exported by `medconv export`, torch not imported).")
    return figures, sentence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", choices=list(METHODS), default=None, help="train this method only")
    parser.add_argument("--fresh", action="store_true", help="delete the cached runs first: retrain everything")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.fresh:
        for method in METHODS if args.only is None else [args.only]:
            for seed in seeds:
                shutil.rmtree(run_folder(method, seed), ignore_errors=True)
        for seed in seeds:
            shutil.rmtree(RUNS / "crc_detection" / "classifier" / f"seed{seed}", ignore_errors=True)
    runs = {m: [detector_run(m, seed, train=args.only in (None, m)) for seed in seeds] for m in METHODS}
    missing = [f"{m} seed {seed}" for m, outs in runs.items() for out, seed in zip(outs, seeds) if out is None]
    if missing:
        raise SystemExit(f"results not written: not cached here: {', '.join(missing)} (train them: --only METHOD)")
    rows = {m: [selection_row(m, seed, out) for out, seed in zip(outs, seeds)] for m, outs in runs.items()}
    # the plan's rule: the higher mean selection F1 (ties: the first listed); test figures only after it
    headline = max(METHODS, key=lambda m: mean(rows[m], "selection_f1"))
    for method in dict.fromkeys([headline, REFERENCE]):
        for row, out, seed in zip(rows[method], runs[method], seeds):
            row.update(test_scores(out, seed, typed=method == headline))
    stamped_rows = {m: [stamped(row, out / "bench_row.json") for row, out in zip(rows[m], runs[m])] for m in METHODS}
    timing, sentence = predict_timing(runs[headline][0], seeds[0])
    best = stamped_rows[headline]
    summary = {"f1": round(mean(best, "f1"), 4), "precision": round(mean(best, "precision"), 4),
               "recall": round(mean(best, "recall"), 4), "selection_f1": round(mean(best, "selection_f1"), 4),
               **timing, "typed_weighted_f1": round(mean(best, "typed_weighted_f1"), 4)}
    table = [f"| medconv: {METHODS[m][1]}{' (selected)' if m == headline else ''}"
             f"{' (reference)' if m == REFERENCE else ''} | {cell(rs, 'selection_f1')} | {cell(rs, 'precision')} | "
             f"{cell(rs, 'recall')} | {cell(rs, 'f1')} | {len(rs)} | {mean(rs, 'train_seconds') / 60:.1f} min |"
             for m, rs in stamped_rows.items()]
    classes = sorted(best[0]["typed_per_class_f1"])
    md = "\n".join([
        "## CRCHistoPhenotypes nucleus detection (6 px tolerance)\n",
        "Trained on 60 training images; every choice made on the other 10 (selection F1); precision, recall and "
        "F1 on the 10 images split.csv calls validation, which no choice saw (test). Protocol and candidates: "
        "benchmarks/plans/crc_detection.md.\n", f"hardware: {hardware()}\n",
        "| method | selection F1 | test precision | test recall | test F1 | seeds | train time / run |",
        "|---|---|---|---|---|---|---|", *table,
        f"| published: SC-CNN (Sirinukunwattana et al. 2016; 2-fold CV over 100 images) | | {PUBLISHED['precision']} | "
        f"{PUBLISHED['recall']} | {PUBLISHED['f1']} | | |", "",
        f"Selected by the higher mean selection F1: {headline}. Its peak parameters, per seed: "
        + "; ".join(f"sigma {r['sigma']}, min distance {r['min_distance']}, threshold {r['threshold']}, test-time "
                    f"augmentation {r['tta']}" for r in best) + f". {sentence}", "",
        "Detect then classify, test images (a detection counts for class c when typed c and matched to a centre of "
        "class c; nuclei the dataset leaves unclassified count as false positives): weighted F1 "
        f"{mean(best, 'typed_weighted_f1'):.3f}, per class " + ", ".join(
            f"{c} {statistics.mean(r['typed_per_class_f1'][c] for r in best):.3f}" for c in classes) + ".", ""])
    write_results("crc_detection", summary, [r for rs in stamped_rows.values() for r in rs], md + "\n",
                  {"headline_method": headline, "plan": "benchmarks/plans/crc_detection.md"})
    print(md)


if __name__ == "__main__":
    main()
