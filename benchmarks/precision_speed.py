"""How much faster a U-Net training step runs with `--precision bf16` than in fp32 on this machine: the
default U-Net (the crc_detection benchmark's) on a batch of 8 RGB 128 px tiles with soft targets, forward,
loss, backward and an AdamW step, through segment training's own `forward`; the median of the timed steps
after warm-up steps, both precisions in one process, fp32 the baseline.

    ./run bench precision_speed [--steps 10] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import hardware, stamped, write_results

from medconv.models.unet import UNet
from medconv.segment.train import forward, segmentation_loss

WARMUP = 3


def step_seconds(precision: str, steps: int) -> list[float]:
    """Seconds of each timed training step at `precision` (a fresh U-Net, the same seeded batch)."""
    torch.manual_seed(0)
    model = UNet(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    x, soft = torch.randn(8, 3, 128, 128), torch.rand(8, 128, 128)
    out = []
    for i in range(WARMUP + steps):
        tic = time.perf_counter()
        loss = segmentation_loss(forward(model, x, precision), soft, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= WARMUP:
            out.append(time.perf_counter() - tic)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    timed = {p: step_seconds(p, args.steps) for p in ("fp32", "bf16")}
    median = {p: statistics.median(v) for p, v in timed.items()}
    summary = {"unet_step_seconds_fp32": round(median["fp32"], 4), "unet_step_seconds_bf16": round(median["bf16"], 4),
               "bf16_speedup": round(median["fp32"] / median["bf16"], 2)}
    runs = [{"precision": p, "seconds": s} for p, v in timed.items() for s in v]
    md = (f"## U-Net training step, fp32 against bf16\n\nhardware: {hardware()}\n\n"
          "| precision | median seconds per step (batch 8 x 3 x 128 x 128) |\n|---|---|\n"
          f"| fp32 (baseline) | {median['fp32']:.3f} |\n| bf16 (`--precision bf16`) | {median['bf16']:.3f} |\n\n"
          f"bf16 runs a step {summary['bf16_speedup']:.2f}x as fast as fp32 ({args.steps} timed steps each, after "
          f"{WARMUP} warm-up steps). On a CPU without native bfloat16 (AMX or AVX-512 BF16) expect no gain.\n")
    write_results("precision_speed", summary, [stamped(r) for r in runs], md)
    print(md)


if __name__ == "__main__":
    main()
