"""How much faster a training step runs with `--precision bf16` than in fp32 on this machine, for two networks:
the default U-Net (the crc_detection benchmark's) on a batch of 8 RGB 128 px tiles with soft targets, and the
AdrenalMNIST3D recipes' 3D CNN on a batch of 32 volumes of 28³ with class labels; each under the engine's
autocast, laid out channels-last in bf16 as the engine lays it out, with segmentation's cross-entropy. A step:
forward, loss, backward and an AdamW step; the median of the timed steps after warm-up steps, both precisions
in one process, fp32 the baseline.

    ./run bench precision_speed [--steps 10] [--threads 2]
    MEDCONV_RESULTS_SUFFIX=_no_amx ./run bench precision_speed   # another kind of CPU: its own results file
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import hardware, stamped, write_results

from medconv.models.registry import build_model
from medconv.models.unet import UNet
from medconv.segment.train import segmentation_loss
from medconv.training.precision import precision_context

WARMUP = 3
NETWORKS = {"unet": "U-Net, 8 x 3 x 128 x 128", "cnn3d": "3D CNN (AdrenalMNIST3D), 32 x 1 x 28³"}


def step_seconds(network: str, precision: str, steps: int) -> list[float]:
    """Seconds of each timed training step of `network` (unet or cnn3d) at `precision` (a fresh network, the same
    seeded batch)."""
    torch.manual_seed(0)
    if network == "unet":
        model, x, target = UNet(3, 2), torch.randn(8, 3, 128, 128), torch.rand(8, 128, 128)  # soft targets
    else:
        model = build_model("cnn3d", 1, 2, (28, 28, 28))
        x, target = torch.randn(32, 1, 28, 28, 28), torch.randint(0, 2, (32,))
    if precision != "fp32":  # as the engine lays a network out for reduced precision
        model.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)

    def step_loss() -> torch.Tensor:
        with precision_context(precision, x.device):
            return segmentation_loss(model(x).float(), target, None)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    out = []
    for i in range(WARMUP + steps):
        tic = time.perf_counter()
        loss = step_loss()
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
    timed = {(n, p): step_seconds(n, p, args.steps) for n in NETWORKS for p in ("fp32", "bf16")}
    median = {k: statistics.median(v) for k, v in timed.items()}
    summary = {"unet_step_seconds_fp32": round(median["unet", "fp32"], 4),
               "unet_step_seconds_bf16": round(median["unet", "bf16"], 4),
               "bf16_speedup": round(median["unet", "fp32"] / median["unet", "bf16"], 2),
               "cnn3d_step_seconds_fp32": round(median["cnn3d", "fp32"], 4),
               "cnn3d_step_seconds_bf16": round(median["cnn3d", "bf16"], 4),
               "cnn3d_bf16_speedup": round(median["cnn3d", "fp32"] / median["cnn3d", "bf16"], 2)}
    runs = [{"network": n, "precision": p, "seconds": s} for (n, p), v in timed.items() for s in v]
    rows = "".join(f"| {NETWORKS[n]} | {median[n, 'fp32']:.3f} | {median[n, 'bf16']:.3f} | "
                   f"{median[n, 'fp32'] / median[n, 'bf16']:.2f}x |\n" for n in NETWORKS)
    md = (f"## Training step, fp32 against bf16\n\nhardware: {hardware()}\n\n"
          "| network, batch | fp32 (baseline), median s per step | bf16 (`--precision bf16`) | bf16 speed-up |\n"
          f"|---|---|---|---|\n{rows}\n"
          f"{args.steps} timed steps each, after {WARMUP} warm-up steps. The gain depends on the CPU's bfloat16 "
          "instructions (AMX, AVX-512 BF16 or none): each kind of CPU gets its own results file.\n")
    write_results("precision_speed", summary, [stamped(r) for r in runs], md)
    print(md)


if __name__ == "__main__":
    main()
