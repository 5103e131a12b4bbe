"""The longer-training explorations that benchmarks/gpu.sh runs on a lent GPU, as one table
(results/gpu_explore.md and .json): single seeds, each run's own settings (config.yaml), scored with
its validation choices. They are explorations, not benchmark rows: they say whether a CPU recipe is worth
changing. Runs that did not finish in the script's time show their last epoch from history.csv.

    python benchmarks/gpu_explore.py          # after unpacking gpu.sh's gpu.tar.gz in the repository root
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from common import RESULTS, RUNS

EXPLORE = RUNS / "gpu_explore"
NOTES = {"isbi_unet_half_e75": "U-Net at half the widths (features 16,16,32,64,128,16), trained alone in a later call "
                               "of 175 s, by hand with gpu.sh's ISBI settings (its config.yaml)"}
GPU_INFO = RUNS.parent / "logs" / "gpu" / "nvidia-smi.txt"  # written on the GPU machine by gpu.sh
PROVENANCE = RUNS.parent / "logs" / "gpu" / "provenance.json"  # ... with the command, commit, date and versions


def read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def row(run: Path) -> dict:
    """One exploration's figures, validation only: segmentation (none and d4) or detection (tuned)."""
    history = list(csv.DictReader((run / "history.csv").open()))
    out = {"run": run.name, "epochs_done": len(history), "finished": (run / "metrics.json").exists()}
    if (detect := read(run / "detect_val.json")) is not None:
        out.update({k: detect[k] for k in ("precision", "recall", "f1", "tta")})
    else:  # an unfinished run may still have been scored (its best checkpoint so far)
        for tta, name in (("none", "metrics_val.json"), ("d4", "metrics_val_tta-d4.json")):  # never test
            if (m := read(run / name)) is not None:
                out.update({f"val_{tta}_{k}": m[k] for k in ("rand_error", "pixel_error", "f1")})
    if not out["finished"]:  # stopped by the time limit: its last validation figures
        last = history[-1]
        keys = ("val_detection_f1",) if last.get("val_detection_f1") else ("val_f1", "val_pixel_error")
        out["last_epoch_val"] = {k: float(last[k]) for k in keys}
    if out["finished"]:
        out["train_seconds"] = read(run / "metrics.json")["train_seconds"]
    return out


def cell(row: dict, key: str) -> str:
    return f"{row[key]:.4f}" if key in row else "—"


def main() -> None:
    if not PROVENANCE.exists():
        raise SystemExit(f"{PROVENANCE} not found: unpack the gpu.tar.gz of a gpu.sh that writes it")
    source = json.loads(PROVENANCE.read_text())
    rows = [{**row(run), **source} for run in sorted(EXPLORE.iterdir()) if (run / "history.csv").exists()]
    device = GPU_INFO.read_text().splitlines()[-1] if GPU_INFO.exists() else "unknown GPU"
    lines = [f"## Explorations on a lent GPU (benchmarks/gpu.sh; seed 0 each)\n\ndevice: {device}\n",
             "| run | epochs done | val Rand (none / d4) | val pixels wrong at 0.5 (d4) | detection F1 (val) "
             "| train time |", "|---|---|---|---|---|---|"]
    for r in rows:
        rand = f"{cell(r, 'val_none_rand_error')} / {cell(r, 'val_d4_rand_error')}"
        seconds = f"{r['train_seconds'] / 60:.1f} min" if "train_seconds" in r else (
            "stopped by the time limit; last epoch: "
            + ", ".join(f"{k} {v:.4f}" for k, v in r["last_epoch_val"].items()))
        lines.append(f"| {r['run']} | {r['epochs_done']} | {rand} | {cell(r, 'val_d4_pixel_error')} | "
                     f"{cell(r, 'f1')} | {seconds} |")
    lines += ["", *(f"{name}: {note}." for name, note in NOTES.items() if any(r["run"] == name for r in rows)),
              "", "The others were trained at once on one GPU, beside the PneumoniaMNIST reference runs: times are "
              "shared. A stopped run's figures, where given, are its best checkpoint so far. "
              "Explorations choose nothing on test figures; they show whether longer training pays.", ""]
    doc = {"benchmark": "gpu_explore", "command": "benchmarks/gpu.sh, then python benchmarks/gpu_explore.py",
           "device": device, "runs": rows}
    (RESULTS / "gpu_explore.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "gpu_explore.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
