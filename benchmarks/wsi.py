"""Whole slides in bounded memory (issue 24): a pyramidal tiled TIFF of SIDE x SIDE RGB pixels (default 40,960)
made here from real tissue, a mosaic of the CRCHistoPhenotypes H&E images (512 px cells, some left as glass, the
images flipped and turned), is run through `detect predict --slide-level 0` and `segment predict --slide-level 0`
with a dense detector (a U-Net trained briefly here on CRCHistoPhenotypes: speed and memory do not depend on how
well it detects). Measured: each command's peak resident memory (its own ru_maxrss), wall time and tissue
tiles/s; and the seams: on a 4,096 x 4,096 region the slide map is compared with whole-image inference of
1,024 px windows (one pass each, with 128 px of context) placed across the slide tiles' seams, and the
detections there with the peaks of those windows' maps.

    ./run bench wsi                 # 40,960 px a side (1.7 gigapixels; 2 h on 2 CPU cores, nothing else running)
    ./run bench wsi --side 8192     # a quick check of the same path
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from common import RUNS, stamped, write_results
from PIL import Image

from medconv.data.medmnist import data_root

CELL = 512  # mosaic cells: an H&E image (500 px) mirrored out to 512
TILE = 512  # slide tiles of the commands
GLASS = 0.3  # fraction of cells left as glass
REGION = 4096  # side of the seam check's region
WINDOW = 768  # whole-image inference windows of the seam check: with their context 1,024 px, one pass each
MEMORY_TARGET_MB = 2048


def cells() -> list[np.ndarray]:
    """The 80 CRCHistoPhenotypes images, each mirrored out to CELL x CELL (H, W, 3) uint8."""
    folder = data_root(None) / "crchistophenotypes" / "images"
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("img*.png"))]
    if not images:
        raise SystemExit(f"no img*.png in {folder}: set MEDCONV_DATA to the folder that holds crchistophenotypes/")
    pad = CELL - images[0].shape[0]
    return [np.pad(a, ((0, pad), (0, pad), (0, 0)), mode="reflect") for a in images]


def cell_at(i: int, j: int, images: list[np.ndarray], scale: int) -> np.ndarray:
    """Mosaic cell (row i, column j) at 1/scale: an image turned and flipped by its place, or glass."""
    side = CELL // scale
    rng = np.random.default_rng(i * 100003 + j)
    if rng.random() < GLASS:
        return np.full((side, side, 3), 240, np.uint8)
    a = np.rot90(images[int(rng.integers(len(images)))], int(rng.integers(4)))
    a = a[:, ::-1] if rng.random() < 0.5 else a
    return np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((side, side), Image.BILINEAR)) if scale > 1 \
        else np.ascontiguousarray(a)


def write_slide(path: Path, side: int) -> list[int]:
    """The mosaic as a pyramidal tiled JPEG TIFF (levels 1, 2, 4, ... while a level is at least 2,048 px), one
    tile in memory at a time. Returns the level sides."""
    images = cells()
    sides = [side // 2 ** k for k in range(8) if side // 2 ** k >= 2048]

    def tiles(scale: int):
        per, n = CELL // scale, side // scale // TILE
        for ty in range(n):
            for tx in range(n):
                tile = np.empty((TILE, TILE, 3), np.uint8)
                for y in range(0, TILE, per):
                    for x in range(0, TILE, per):
                        i, j = (ty * TILE + y) // per, (tx * TILE + x) // per
                        tile[y:y + per, x:x + per] = cell_at(i, j, images, scale)
                yield tile

    with tifffile.TiffWriter(path, bigtiff=True) as tiff:
        for k, level_side in enumerate(sides):
            options = dict(shape=(level_side, level_side, 3), dtype=np.uint8, tile=(TILE, TILE), photometric="rgb",
                           compression="jpeg", resolutionunit="CENTIMETER", resolution=(1e4 / (0.5 * 2 ** k),) * 2)
            if k == 0:
                tiff.write(tiles(1), subifds=len(sides) - 1, **options)
            else:
                tiff.write(tiles(2 ** k), subfiletype=1, **options)
    return sides


def detector(out: Path) -> Path:
    """A dense detector (U-Net, disc targets) trained briefly on CRCHistoPhenotypes, cached."""
    if not (out / "metrics.json").exists():
        subprocess.run([sys.executable, "-m", "medconv.cli", "detect", "train", "--dataset", "crchistophenotypes",
                        "--mode", "dense", "--epochs", "3", "--samples-per-epoch", "200", "--precision", "bf16",
                        "--out", str(out)] + (["--resume"] if (out / "checkpoints" / "last.safetensors").exists()
                                              else []), check=True)
    return out


MEASURED = ("import resource, runpy, sys; sys.argv = ['medconv'] + sys.argv[1:]; code = 0\n"
            "try:\n    runpy.run_module('medconv.cli', run_name='__main__')\n"
            "except SystemExit as exc:\n    code = exc.code or 0\n"
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(code)")


def measured(args: list[str]) -> dict:
    """Run `medconv ARGS` in a fresh process: its wall time, peak resident memory (MB) and output."""
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURED, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"medconv {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    peak = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB"))
    return {"seconds": time.perf_counter() - tic, "peak_rss_mb": peak / 1024, "stdout": done.stdout,
            "output": done.stdout + done.stderr}


def tile_batch(output: str) -> int:
    """How many tiles a slide command sent through the network at a time, as its line per slide says ("up to N
    at a time"): the default depends on the device."""
    return int(output.split(" at a time")[0].split("up to ")[-1])


def seam_check(slide_path: Path, run: Path, map_path: Path, detections: list[dict], origin: int) -> dict:
    """Whole-image inference of WINDOW px windows (with 128 px of context on every side, one pass each) over the
    REGION x REGION square at (origin, origin), the windows shifted half a slide tile so every slide seam lies
    inside one: the largest difference of the slide map over the tissue tiles (glass is not mapped), and whether
    the detections there match the windows' peaks exactly (away from the windows' own edges)."""
    import torch

    from medconv.data.slides import MIN_TISSUE_FRACTION, UNET_RADIUS, open_slide, tissue_mask, tissue_tiles
    from medconv.detect.peaks import detect, read_params
    from medconv.segment.evaluate import load_segmenter
    from medconv.segment.maps import MapMaker

    device = "cuda" if torch.cuda.is_available() else "cpu"  # the device the commands mapped the slide on
    model, meta = load_segmenter(run, "best", device)
    maker = MapMaker(model, meta, device=device)
    params = read_params(run)
    slide = open_slide(slide_path)
    computed = np.zeros((slide.sizes[0][1], slide.sizes[0][0]), bool)  # the tissue tiles' cores (glass: not mapped)
    for t in tissue_tiles(slide, 0, TILE, 0, tissue_mask(slide), MIN_TISSUE_FRACTION):
        computed[t.y:t.y + t.height, t.x:t.x + t.width] = True
    import zarr

    stored = zarr.open(tifffile.imread(map_path, aszarr=True, level=0), mode="r")  # full resolution of the pyramid
    worst, theirs, ours = 0.0, set(), set()
    c, side = UNET_RADIUS, slide.sizes[0][0]
    starts = [s for s in range(origin + TILE // 2, origin + REGION - WINDOW + 1, WINDOW)
              if s - c >= 0 and s + WINDOW + c <= side]  # windows and their context inside the slide
    for y in starts:
        for x in starts:
            rgb = slide.read(0, x - c, y - c, WINDOW + 2 * c, WINDOW + 2 * c)
            image = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float() / 255.0
            prob = maker(image)[1].numpy()
            mine = np.asarray(stored[y:y + WINDOW, x:x + WINDOW])  # float32 (--format tif)
            tissue = computed[y:y + WINDOW, x:x + WINDOW]
            if tissue.any():
                worst = max(worst, float(np.abs(mine - prob[c:-c, c:-c])[tissue].max()))
            reach = 16 + int(4 * params["sigma"]) + int(params["min_distance"])  # peaks need this much map around
            peaks = detect(prob, {**params, "nms_radius": None})
            for r, q, _ in peaks:
                if c + reach <= r < c + WINDOW - reach and c + reach <= q < c + WINDOW - reach \
                        and computed[round(r) - c + y, round(q) - c + x]:
                    theirs.add((round(r) - c + y, round(q) - c + x))
            for d in detections:
                r, q = round(float(d["y"])) - 1, round(float(d["x"])) - 1
                if y + reach <= r < y + WINDOW - reach and x + reach <= q < x + WINDOW - reach:
                    ours.add((r, q))
    return {"wsi_seam_max_abs_diff": worst, "seam_detections": len(theirs), "seam_detections_equal": ours == theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=40960, help="slide side in pixels, a multiple of 512")
    args = parser.parse_args()
    work = RUNS / "wsi"
    work.mkdir(parents=True, exist_ok=True)
    slide = work / f"mosaic_{args.side}.tif"
    if not slide.exists():
        tic = time.perf_counter()
        write_slide(slide, args.side)
        print(f"slide {slide} ({slide.stat().st_size / 2 ** 20:.0f} MB) written in {time.perf_counter() - tic:.0f} s")
    run = detector(work / "detector")
    maps, csv_path = work / "maps", work / "detections.csv"
    segment = measured(["segment", "predict", str(run), str(slide), "--slide-level", "0", "--format", "tif",
                        "--out", str(maps)])
    print(f"segment predict: {segment['seconds']:.0f} s, peak {segment['peak_rss_mb']:.0f} MB", flush=True)
    detect = measured(["detect", "predict", str(run), str(slide), "--slide-level", "0", "--out", str(csv_path)])
    print(f"detect predict: {detect['seconds']:.0f} s, peak {detect['peak_rss_mb']:.0f} MB", flush=True)
    import csv

    detections = list(csv.DictReader(open(csv_path)))
    origin = max(0, (args.side - REGION) // 2) // TILE * TILE
    seams = seam_check(slide, run, maps / f"{slide.stem}_prob.tif", detections, origin)
    tissue = int(segment["stdout"].split(" of ")[0].split()[-1])
    rows = [stamped({"verb": f"{kind} predict --slide-level 0", "side": args.side, "tissue_tiles": tissue,
                     "tile_batch": tile_batch(r["output"]),
                     "seconds": r["seconds"], "tiles_per_second": tissue / r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
                     "detections": len(detections) if kind == "detect" else None})
            for kind, r in (("segment", segment), ("detect", detect))]
    summary = {"wsi_peak_rss_mb": max(r["peak_rss_mb"] for r in rows), "wsi_side": args.side,
               "wsi_segment_tiles_per_second": rows[0]["tiles_per_second"],
               "wsi_detect_tiles_per_second": rows[1]["tiles_per_second"], **seams}
    lines = [f"# Whole slide: {args.side:,} x {args.side:,} px mosaic of CRCHistoPhenotypes tissue", "",
             "| command | tissue tiles (512 px) | tiles per pass | seconds | tiles/s | peak memory (MB) |",
             "|---|---|---|---|---|---|",
             *[f"| `{r['verb']}` | {r['tissue_tiles']} | {r['tile_batch']} | {r['seconds']:.0f} | "
               f"{r['tiles_per_second']:.2f} | "
               f"{r['peak_rss_mb']:.0f} |" for r in rows], "",
             f"Peak memory target < {MEMORY_TARGET_MB} MB: " + ("met." if summary["wsi_peak_rss_mb"] < MEMORY_TARGET_MB
                                                                else "missed."),
             f"Seams on a {REGION} px region: largest map difference from whole-image windows "
             f"{seams['wsi_seam_max_abs_diff']:.2g} (float32 maps, target <= 1e-5); detections "
             + ("equal" if seams["seam_detections_equal"] else "differ") + f" ({seams['seam_detections']} there)."]
    print("\n".join(lines))
    if args.side < 40960:
        print(f"(a check at {args.side} px: results not written; the benchmark's slide is 40,960 px)")
        return
    write_results("wsi", summary, rows, "\n".join(lines) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
