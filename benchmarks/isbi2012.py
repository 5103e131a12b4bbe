"""ISBI 2012 EM membranes under the protocol of docs/protocols.md, with the candidates and selection rule of
benchmarks/plans/isbi2012.md (written before any test figure of them under this protocol): train on slices 00-19,
make every choice on 20-24, report on 25-29.

1. The context/localisation trade-off: patch-cnn at 33, 65 and 95 px, seed 0 each; the patch size with the lowest
   validation Rand error becomes a candidate (a plot of the validation figures).
2. Candidates, seeds 0, 1, 2 each: that patch size, and U-Nets in dense mode (full width; half width, 60 epochs;
   the same with separation-border weights). For every run: test-time augmentation none or d4 (lower mean
   validation Rand error), and both membrane thinnings' parameters chosen on the validation maps.
3. The selected method (lowest mean validation Rand error) is the only one scored on the test slices: the 2012
   Rand error and pixel error, and the current leaderboard's V_rand and V_info of the raw maps, after our seeded
   watershed thinning and after the challenge's own thinning; each also at the validation's threshold.
Published rows (Ronneberger et al. 2015; Ciresan et al. 2012 "IDSIA") were scored on the challenge's hidden test
stack under the 2012 definitions, not on our slices 25-29: context, not a comparison on the same images.

    ./run bench isbi2012 [--only sizes|best|unet|unet-half|unet-half-border] [--seeds 0,1,2] [--fresh]

Every run is cached under benchmarks/runs/isbi2012/ (trained with the test slices withheld) and an interrupted run
resumes from its last epoch, so the benchmark can be finished over several sittings. --only trains that part alone;
the results are written once every candidate is cached here or, for the parts not trained, recorded (committed
results/isbi2012.json rows with their provenance and today's figures, for a whole method, never mixed with runs
cached here). --fresh deletes the cached runs of the parts it trains, uses no committed row, and retrains.
--rescore NAMES scores those cached runs again (after a change in how maps are made or scored).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from common import PROVENANCE, RUNS, cell, hardware, mean, recorded_runs, stamped, write_results

from medconv.published import ISBI2012
from medconv.segment.config import SegmentConfig
from medconv.segment.evaluate import evaluate_segmentation, metrics_name, thinning_path
from medconv.segment.train import train_segmentation

ROOT = Path(__file__).resolve().parents[1]
PLAN = "benchmarks/plans/isbi2012.md"
SIZES = (33, 65, 95)
# settings sized from single-core step times measured alone (0.13 / 0.77 / 1.96 s per step of 128 patches at
# 33 / 65 / 95 px; 0.85 s per step of 8 U-Net tiles), about 27 min for the slowest (95 px) run; every size sees
# the same 96,000 patches. Under load the runs take longer: results/isbi2012.md records each run's time.
PATCH = dict(mode="patch", arch="patch-cnn", epochs=12, samples_per_epoch=8000, batch_size=128,
             augment="flips=1,rot90=1,intensity=0.05", deterministic=True)
UNET = dict(mode="dense", arch="unet", tile=128, epochs=25, samples_per_epoch=400, batch_size=8,
            augment="flips=1,rot90=1,elastic=4,intensity=0.05", deterministic=True)
# half the widths (16-128 features) cost a third of the step time on the CPU, so 60 epochs fit in 30 minutes; added
# in a later sitting, after GPU explorations (results/gpu_explore.md) showed the U-Net still gaining at 100
# epochs and the half-width one close behind, and after the first U-Net's test figures had been seen
UNET_HALF = {**UNET, "epochs": 60, "model_options": {"features": "16,16,32,64,128,16"}}
# the same with U-Net's separation-border weights (w0 10, sigma 5 px: the paper's values, not tuned here), added in
# a later sitting after the half-width U-Net's validation and test Rand errors had been seen
UNET_HALF_BORDER = {**UNET_HALF, "border_weight": 10.0, "border_sigma": 5.0}
UNETS = {  # part (--only): (run name, label, settings), the U-Net candidates of the plan
    "unet": ("unet", "U-Net", UNET),
    "unet-half": ("unet_half", "U-Net, half width, 60 epochs", UNET_HALF),
    "unet-half-border": ("unet_half_border", "U-Net, half width, 60 epochs, border weights", UNET_HALF_BORDER),
}
# figure -> where segment evaluate --thin puts it. 2012 definitions: rand_error (1 - best Rand F-score over
# thresholds, the slices pooled), isbi_pixel_error (1 - best cell F-score), pixel_error (wrong at 0.5), f1. The
# current leaderboard's: v_rand, v_info (the slices' mean, best over thresholds); thinned_*: after thin_membranes
# with the seeds chosen on validation; challenge_*: after the challenge's own thinning, best over thresholds
FIGURES = {"rand_error": ("rand_error",), "v_rand": ("v_rand",), "v_info": ("v_info",),
           "isbi_pixel_error": ("isbi_pixel_error",), "pixel_error": ("pixel_error",), "f1": ("f1",),
           "thinned_rand_error": ("thinned", "rand_error"), "thinned_v_rand": ("thinned", "v_rand"),
           "thinned_v_info": ("thinned", "v_info"), "challenge_v_rand": ("challenge_thinned", "v_rand"),
           "challenge_v_info": ("challenge_thinned", "v_info")}
# test only: the same at the thresholds chosen on validation (RUN/threshold.json for the raw maps, thinning.json's
# challenge_threshold for the challenge's thinning) instead of their best on the test maps
AT_VAL = {"at_val_rand_error": ("at_threshold", "rand_error"), "at_val_v_rand": ("at_threshold", "v_rand"),
          "at_val_v_info": ("at_threshold", "v_info"),
          "challenge_at_val_v_rand": ("challenge_thinned", "at_threshold", "v_rand"),
          "challenge_at_val_v_info": ("challenge_thinned", "at_threshold", "v_info")}
PUBLISHED = ISBI2012  # warping, Rand and pixel error, as Ronneberger et al. 2015 (Table 1) list them
PUBLISHED_PROTOCOL = ("the challenge's test stack (the 30 slices of isbi2012_em/test, whose labels are not public), "
                      "scored by the organisers under the 2012 definitions on raw maps (no thinning); their V_rand "
                      "and V_info are not cited here")

RESCORE: set[str] = set()  # run names (--rescore) whose cached figure files are recomputed
RECORDED: list[dict] = []  # committed rows usable here (filled in main: none with --fresh)


def run_dir(name: str, seed: int) -> Path:
    return RUNS / "isbi2012" / name / f"seed{seed}"


def trained(name: str, seed: int, settings: dict, train: bool) -> Path | None:
    """The run's folder: cached, else trained now with the test slices withheld (None when neither)."""
    out = run_dir(name, seed)
    if not (out / "metrics.json").exists():
        if not train:
            return None
        print(f"== isbi2012 {name} seed {seed}", flush=True)
        train_segmentation(SegmentConfig(dataset="isbi2012", seed=seed, **settings), out,
                           resume=(out / "checkpoints" / "last.safetensors").exists(), score_test=False)
    return out


def pick(m: dict, path: tuple[str, ...]):
    for key in path:
        m = m[key]
    return m


def scored(out: Path, split: str, tta: str) -> dict:
    """`segment evaluate --thin` of a run on one split (val first: it chooses the thinning parameters test uses),
    cached as RUN/metrics_{split}[_tta-T].json; its figures flattened as {split}_{figure}."""
    path = out / metrics_name(split, tta)
    m = json.loads(path.read_text()) if path.exists() and out.parent.name not in RESCORE else {}
    wanted = {**FIGURES, **(AT_VAL if split == "test" else {})}
    try:
        figures = {f"{split}_{k}": pick(m, p) for k, p in wanted.items()}
    except KeyError:  # cached before these figures existed (or --rescore)
        m = evaluate_segmentation(out, split, tta=tta, thin=True)
        figures = {f"{split}_{k}": pick(m, p) for k, p in wanted.items()}
    return figures


def figures_row(name: str, seed: int, out: Path, tta: str, role: str) -> dict:
    """A run's validation figures and its choices made on validation (not yet stamped)."""
    row = {"name": name, "seed": seed, "role": role, "tta": tta, **scored(out, "val", tta),
           "train_seconds": json.loads((out / "metrics.json").read_text())["train_seconds"]}
    thinning = json.loads(thinning_path(out, tta).read_text())
    threshold = out / "threshold.json"
    return {**row, "thinning": thinning,
            "val_threshold": json.loads(threshold.read_text())["threshold"] if threshold.exists() else None}


def row_path(out: Path, row: dict) -> Path:
    return out / ("bench_row_sweep.json" if row["role"] == "sweep" else
                  "bench_row.json" if row["tta"] == "none" else f"bench_row_tta-{row['tta']}.json")


def usable(row: dict | None, test: bool = False) -> bool:
    """A committed row can stand in for a run not cached here: it carries its provenance and today's figures."""
    keys = [*PROVENANCE, *(f"val_{k}" for k in FIGURES)]
    keys += [f"test_{k}" for k in {**FIGURES, **AT_VAL}] if test else []
    return row is not None and all(k in row for k in keys)


def recorded(name: str, seed: int, role: str) -> dict | None:
    return next((r for r in RECORDED if (r["name"], r["seed"], r.get("role")) == (name, seed, role)), None)


def method(name: str, seeds: list[int], settings: dict, train: bool, role: str = "candidate") -> dict | None:
    """A method's runs: {"rows", "outs"} all cached here (what is missing trained now where `train`), or, where this
    part is not trained, all recorded in the committed results (outs None), never a mix; None when neither.
    Candidates: the test-time augmentation with the lower mean validation Rand error (ties: none); the sweep: none."""
    if not train and not all((run_dir(name, s) / "metrics.json").exists() for s in seeds):
        rows = [recorded(name, s, role) for s in seeds]
        if all(usable(r) for r in rows):
            return {"rows": rows, "outs": None}
    outs = [trained(name, s, settings, train) for s in seeds]
    if not all(outs):
        return None
    ttas = ("none",) if role == "sweep" else ("none", "d4")
    by_tta = {t: [figures_row(name, s, o, t, role) for s, o in zip(seeds, outs)] for t in ttas}
    tta = min(ttas, key=lambda t: mean(by_tta[t], "val_rand_error"))
    return {"rows": by_tta[tta], "outs": outs,
            "tta_selection": {t: mean(rs, "val_rand_error") for t, rs in by_tta.items()}}


def add_test(group: dict) -> None:
    """The selected method's test figures (each run scored once on slices 25-29, with its validation choices)."""
    if group["outs"] is None:
        if not all(usable(r, test=True) for r in group["rows"]):
            raise SystemExit("the selected method's runs are recorded without test figures and not cached here: "
                             f"train them (--only, or --fresh): {group['rows'][0]['name']}")
        return
    for row, out in zip(group["rows"], group["outs"]):
        row.update(scored(out, "test", row["tta"]))


def plot_sizes(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label in (("val_rand_error", "Rand error"), ("val_pixel_error", "pixels wrong at 0.5"),
                       ("val_f1", "membrane F1")):
        ax.plot(SIZES, [r[key] for r in rows], marker="o", label=label)
    ax.set(xlabel="patch side (px): more context ->", ylabel="validation slices 20-24",
           title="ISBI 2012: context vs localisation")
    ax.set_xticks(SIZES)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def delete_cached(parts: list[str], seeds: list[int]) -> None:
    """--fresh: remove the cached runs of the parts about to be trained (the sweep's seed 0 belongs to sizes)."""
    for part in parts:
        if part == "sizes":
            folders = [run_dir(f"patch{p}", 0) for p in SIZES]
        elif part == "best":
            folders = [run_dir(f"patch{p}", s) for p in SIZES for s in seeds if s != 0]
        else:
            folders = [run_dir(UNETS[part][0], s) for s in seeds]
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def markdown(sweep: list[dict], groups: dict[str, dict], labels: dict[str, str], winner: str) -> str:
    mark = lambda rows: " †" if rows[0].get("recorded") else ""  # noqa: E731
    val_cols = ("val_rand_error", "val_v_rand", "val_v_info", "val_thinned_v_rand", "val_thinned_v_info",
                "val_challenge_v_rand", "val_challenge_v_info")
    lines = ["## ISBI 2012 EM membranes: train 00-19, choose on 20-24, test 25-29\n",
             f"Candidates and selection rule: `{PLAN}`. hardware: {hardware()}\n",
             "### Selection: validation slices 20-24\n",
             "| method | Rand error (2012) | V_rand raw | V_info raw | V_rand thinned | V_info thinned | V_rand, "
             "challenge's thinning | V_info, challenge's thinning | test-time aug. | seeds | train time / run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sweep:
        figures = " | ".join(cell([r], k, 4) for k in val_cols)
        lines.append(f"| patch-cnn {r['name'][5:]} px (sweep){mark([r])} | {figures} | none | 1 | "
                     f"{r['train_seconds'] / 60:.1f} min |")
    for name, group in groups.items():
        rows = group["rows"]
        lines.append(f"| {'**' + labels[name] + '** (selected)' if name == winner else labels[name]}{mark(rows)} | "
                     + " | ".join(cell(rows, k, 4) for k in val_cols) + f" | {rows[0]['tta']} | {len(rows)} | "
                     f"{mean(rows, 'train_seconds') / 60:.1f} min |")
    best = groups[winner]["rows"]
    lines += ["", f"### Test slices 25-29: the selected method, {labels[winner]} (test-time augmentation "
              f"{best[0]['tta']})\n",
              "| maps scored | Rand error (2012) | V_rand | V_info | pixel error (ISBI) | pixels wrong at 0.5 | "
              "membrane F1 |", "|---|---|---|---|---|---|---|",
              f"| raw, each score at its best threshold on these maps | {cell(best, 'test_rand_error', 4)} | "
              f"{cell(best, 'test_v_rand', 4)} | {cell(best, 'test_v_info', 4)} | "
              f"{cell(best, 'test_isbi_pixel_error', 4)} | "
              f"{cell(best, 'test_pixel_error', 4)} | {cell(best, 'test_f1', 4)} |",
              f"| raw, at the threshold chosen on validation | {cell(best, 'test_at_val_rand_error', 4)} | "
              f"{cell(best, 'test_at_val_v_rand', 4)} | {cell(best, 'test_at_val_v_info', 4)} | | | |",
              f"| thinned by our seeded watershed (parameters chosen on validation) | "
              f"{cell(best, 'test_thinned_rand_error', 4)} | {cell(best, 'test_thinned_v_rand', 4)} | "
              f"{cell(best, 'test_thinned_v_info', 4)} | | | |",
              f"| the challenge's thinning, best threshold on these maps (the leaderboard's figure) | | "
              f"{cell(best, 'test_challenge_v_rand', 4)} | {cell(best, 'test_challenge_v_info', 4)} | | | |",
              f"| the challenge's thinning, at the threshold chosen on validation | | "
              f"{cell(best, 'test_challenge_at_val_v_rand', 4)} | "
              f"{cell(best, 'test_challenge_at_val_v_info', 4)} | | | |",
              "", "### Published (context: other images, other protocol)\n",
              "| method | warping error | Rand error (2012) | pixel error | V_rand / V_info |", "|---|---|---|---|---|",
              *[f"| {name} | {warp:.6f} | {rand:.4f} | {pixel:.4f} | not cited |"
                for name, warp, rand, pixel in PUBLISHED],
              "", f"Published rows: {PUBLISHED_PROTOCOL}. Ours: slices 25-29 of the training stack.", "",
              "Definitions (docs/protocols.md, isbi2012). Rand error (2012): 1 - the best foreground-restricted Rand "
              "F-score over thresholds 0-1 in steps of 0.1, the five slices pooled (Fiji's "
              "getForegroundRestrictedRandIndexMaximalFScore), the figure the published rows give. V_rand and V_info: "
              "the current leaderboard's foreground-restricted Rand and information-theoretic scores, the mean of the "
              "slices' scores, each at its own best threshold (higher is better). Both count only pixels inside true "
              "cells and make each predicted membrane pixel there a segment of its own, so thick membranes cost "
              "score; thinning hands those pixels to the cells. Our thinning (`segment evaluate --thin`): cells "
              "below a seed threshold, seeds under a minimum size dropped, grown over the probability map by a "
              "watershed until they meet, leaving one-pixel lines; both parameters chosen on the validation maps. "
              "The challenge's thinning (as its scorer, Fiji's getMaximalV{Rand,Info}AfterThinning): at each "
              "threshold every cell is a seed of a watershed of the binarised map; no parameter but the threshold, "
              "over which the leaderboard takes the best on the test maps; beside it, the threshold chosen on "
              "validation. Pixel error (ISBI): 1 - the best F-score of cell pixels over thresholds. Train time: the "
              "sum of a run's epoch times, with whatever else shared the CPUs then.",
              "", "Disclosure: the thinning and the two half-width U-Nets were added in earlier sittings, after test "
              "figures of the raw maps (and of the first U-Net) had been seen; the plan, written before any test "
              "figure under this protocol, fixes the candidates and the rule from here on."]
    if any(g["rows"][0].get("recorded") for g in groups.values()) or any(r.get("recorded") for r in sweep):
        lines += ["", "†: recorded in an earlier sitting (results/isbi2012.json in git, each row with its own "
                  "command, commit, date and hardware), the runs not cached on this machine."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = ["sizes", "best", *UNETS]
    parser.add_argument("--only", choices=parts, default=None, help="train this part only")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the cached runs of the parts trained first, use no committed row, retrain")
    parser.add_argument("--rescore", default="", help="comma list of cached run names (e.g. unet) to score again")
    args = parser.parse_args()
    RESCORE.update(filter(None, args.rescore.split(",")))
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = lambda part: args.only in (None, part)  # noqa: E731
    if args.fresh:
        delete_cached([p for p in parts if wanted(p)], seeds)
    else:
        RECORDED.extend(recorded_runs("isbi2012"))
    sweep_groups = [method(f"patch{p}", [0], {**PATCH, "patch": p}, wanted("sizes") or wanted("best"), "sweep")
                    for p in SIZES]
    groups: dict[str, dict] = {}
    labels: dict[str, str] = {}
    missing = [f"patch{p} (sweep)" for p, g in zip(SIZES, sweep_groups) if g is None]
    if not missing:
        size = min(sweep_groups, key=lambda g: g["rows"][0]["val_rand_error"])["rows"][0]["name"]
        labels[size] = f"patch-cnn {size[5:]} px (best patch size on validation)"
        if (g := method(size, seeds, {**PATCH, "patch": int(size[5:])}, wanted("best"))) is not None:
            groups[size] = g
        else:
            missing.append(size)
    for part, (name, label, settings) in UNETS.items():
        labels[name] = label
        if (g := method(name, seeds, settings, wanted(part))) is not None:
            groups[name] = g
        else:
            missing.append(name)
    if missing:
        raise SystemExit(f"results not written: neither cached here nor recorded: {', '.join(missing)} (train them: "
                         "--only PART)")
    # the plan's rule: the lowest mean validation Rand error (2012 definition, raw maps); test figures only after it
    winner = min(groups, key=lambda n: mean(groups[n]["rows"], "val_rand_error"))
    add_test(groups[winner])
    sweep = [g["rows"][0] for g in sweep_groups]
    for group in [*sweep_groups, *groups.values()]:  # stamped once their figures are final
        if group["outs"] is not None:
            group["rows"] = [stamped(r, row_path(o, r)) for r, o in zip(group["rows"], group["outs"])]
    sweep = [g["rows"][0] for g in sweep_groups]
    if all(g["outs"] is not None for g in sweep_groups):
        plot_sizes(sweep, RUNS / "isbi2012" / "patch_sizes.png")
    best = groups[winner]["rows"]
    summary = {"best_rand_error": mean(best, "test_rand_error"),
               "best_pixel_error": mean(best, "test_isbi_pixel_error"),
               "best_vrand_raw": mean(best, "test_v_rand"), "best_vinfo_raw": mean(best, "test_v_info"),
               "best_vrand_thinned": mean(best, "test_thinned_v_rand"),
               "best_vinfo_thinned": mean(best, "test_thinned_v_info"),
               "best_rand_error_thinned": mean(best, "test_thinned_rand_error"),
               "best_vrand_challenge_thinning": mean(best, "test_challenge_v_rand"),
               "best_vinfo_challenge_thinning": mean(best, "test_challenge_v_info"),
               "best_rand_error_at_val_threshold": mean(best, "test_at_val_rand_error"),
               "best_vrand_raw_at_val_threshold": mean(best, "test_at_val_v_rand"),
               "best_vinfo_raw_at_val_threshold": mean(best, "test_at_val_v_info"),
               "best_pixels_wrong_at_half": mean(best, "test_pixel_error"),
               "best_val_rand_error": mean(best, "val_rand_error")}
    selection = {"rule": "lowest mean validation Rand error (2012 definition, raw maps) over the seeds",
                 "patch_sizes": {r["name"]: r["val_rand_error"] for r in sweep},
                 "methods": {n: {"val_rand_error": mean(g["rows"], "val_rand_error"), "tta": g["rows"][0]["tta"],
                                 **({"val_rand_error_by_tta": g["tta_selection"]} if "tta_selection" in g else {})}
                             for n, g in groups.items()}}
    text = markdown(sweep, groups, labels, winner)
    write_results("isbi2012", summary, sweep + [r for g in groups.values() for r in g["rows"]], text,
                  {"headline_method": winner, "plan": PLAN, "selection": selection,
                   "published": [{"method": n, "warping_error": w, "rand_error": r, "pixel_error": p,
                                  "protocol": PUBLISHED_PROTOCOL} for n, w, r, p in PUBLISHED]})
    print(text)


if __name__ == "__main__":
    main()
