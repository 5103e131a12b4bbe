"""Seconds per 512x512 ISBI 2012 slice for the three ways of segmenting with CNNs, measured in one run:
the naive sliding window (one forward pass of a 65 px patch-cnn per pixel, stride 1, batches of 1024
patches), exact dense scanning of the same network (tiles of 256 px with a 64 px halo), and a U-Net
(medconv's, BasicUNet's layout, 32-256 features, one pass over the whole slice). Each method
runs in a fresh process, so its peak resident memory (ru_maxrss) is its own; the memory after loading
(before the method runs) is reported beside it. The patch network has random weights (speed and the
equality of the two posteriors do not depend on training); max_abs_diff is the largest difference
between the sliding-window and dense posteriors over all 262,144 pixels. Target: dense >= 100x faster.

    ./run bench dense_vs_sliding [--patch 65] [--slice 20] [--threads N]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch
from common import RUNS, hardware, stamped, write_results

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = [0.5], [0.2]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(method: str, image_path: str, patch: int, threads: int, out: str, queue, device: str = "cpu") -> None:
    """In a child process: build the network, run `method` on the image once, report time and memory."""
    from PIL import Image

    from medconv.models.registry import build_model
    from medconv.segment.maps import MapMaker
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    image = torch.from_numpy(np.array(Image.open(image_path))).float().div(255)[None]
    if method == "unet":
        model = build_model("unet", 1, 2, (128, 128)).eval()
        meta = {"mode": "dense", "tile": 128, "mean": MEAN, "std": STD}
    else:
        model = build_model("patch-cnn", 1, 2, (patch, patch)).eval()
        meta = {"mode": "patch", "patch": patch, "mean": MEAN, "std": STD}
    maker = MapMaker(model.to(device), meta, method if method != "unet" else "auto", device=device)
    if device.startswith("cuda"):  # kernels and cuDNN plans are made on first use of a shape: not timed
        maker(image)
    before = rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    tic = time.perf_counter()
    probs = maker(image)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - tic
    np.save(out, probs[1].numpy())
    gpu = {"gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)} if device.startswith("cuda") else {}
    queue.put({"method": method, "seconds": round(seconds, 5), "rss_before_mb": round(before, 1),
               "peak_rss_mb": round(rss_mb(), 1), **gpu})


def run(method: str, image: Path, patch: int, threads: int, out: Path, device: str) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=measure, args=(method, str(image), patch, threads, str(out), queue, device))
    child.start()
    result = queue.get(timeout=3 * 3600)  # a child that died would otherwise leave us waiting for ever
    child.join()
    print(f"{method}: {result['seconds']:.3g} s, peak {result['peak_rss_mb']:.0f} MB", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patch", type=int, default=65)
    parser.add_argument("--slice", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu", help="cpu or cuda (peak memory is the host's either way)")
    parser.add_argument("--data-root", default=os.environ.get("MEDCONV_DATA", ROOT.parent / "shared" / "datasets"))
    args = parser.parse_args()
    image = Path(args.data_root) / "isbi2012_em" / "train" / "image" / f"{args.slice:02d}.png"
    if not image.exists():
        raise SystemExit(f"dense_vs_sliding: {image} not found: pass --data-root or set MEDCONV_DATA")
    work = RUNS / "dense_vs_sliding"
    work.mkdir(parents=True, exist_ok=True)
    runs = [run(m, image, args.patch, args.threads, work / f"{m}.npy", args.device) for m in ("dense", "unet", "sliding")]
    by = {r["method"]: r for r in runs}
    diff = float(np.abs(np.load(work / "sliding.npy") - np.load(work / "dense.npy")).max())
    summary = {"speedup_dense_vs_sliding": round(by["sliding"]["seconds"] / by["dense"]["seconds"], 1),
               "speedup_unet_vs_sliding": round(by["sliding"]["seconds"] / by["unet"]["seconds"], 1),
               "max_abs_diff": diff, "sliding_seconds": by["sliding"]["seconds"], "dense_seconds": by["dense"]["seconds"],
               "unet_seconds": by["unet"]["seconds"]}
    names = {"sliding": f"naive sliding window ({args.patch} px patch-cnn, stride 1)",
             "dense": "exact dense scanning (same network)", "unet": "U-Net (32-256 features, one whole-image pass)"}
    rows = "".join(f"| {names[r['method']]} | {r['seconds']:.3g} | {by['sliding']['seconds'] / r['seconds']:.1f}x | "
                   f"{r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f} before)"
                   + (f"; GPU {r['gpu_peak_mb']:.0f}" if "gpu_peak_mb" in r else "") + " |\n" for r in runs)
    md = (f"## Segmenting a 512x512 ISBI 2012 slice: sliding window vs dense scanning vs U-Net\n\n"
          f"hardware: {hardware()}; {args.threads} torch threads per method; device {args.device}\n\n"
          "| method | seconds per image | speed-up vs sliding window | peak memory MB |\n|---|---|---|---|\n"
          f"{rows}\nLargest |sliding - dense| posterior difference over all pixels: {diff:.1e}. "
          "Target: dense >= 100x faster than the naive sliding window.\n")
    write_results("dense_vs_sliding", summary, [stamped(r) for r in runs], md)
    print(md)


if __name__ == "__main__":
    main()
