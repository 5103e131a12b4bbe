"""How long `medconv inspect` takes: the layer table of ResNet-50 at 3x224x224 (target: under 2 s on
2 CPU cores), beside one plain forward pass of the same network at the same size as the baseline.

    ./run bench inspect_speed [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch
from common import hardware, stamped, write_results

from medconv.analysis import layer_table
from medconv.models.registry import build_model


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        out.append(time.perf_counter() - tic)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    shape = (3, 224, 224)
    model = build_model("resnet50", 3, 1000, shape[1:]).eval()
    x = torch.randn(1, *shape)
    with torch.no_grad():
        forward = timed(lambda: model(x), args.repeats)
    table = timed(lambda: layer_table(model, shape), args.repeats)
    build_and_table = timed(lambda: layer_table(build_model("resnet50", 3, 1000, shape[1:]).eval(), shape), args.repeats)
    cli = timed(lambda: subprocess.run([sys.executable, "-m", "medconv.cli", "inspect", "resnet50", "--input", "3x224x224",
                                        "--json"], check=True, capture_output=True), max(1, args.repeats // 2))
    summary = {"resnet50_table_seconds": round(statistics.median(table), 4),
               "resnet50_build_and_table_seconds": round(statistics.median(build_and_table), 4),
               "resnet50_cli_seconds": round(statistics.median(cli), 3),
               "resnet50_forward_seconds": round(statistics.median(forward), 4),
               "table_to_forward_ratio": round(statistics.median(table) / statistics.median(forward), 3)}
    runs = [{"what": k, "seconds": v} for k, vs in
            [("forward", forward), ("table", table), ("build_and_table", build_and_table), ("cli", cli)] for v in vs]
    md = (f"## inspect speed: ResNet-50 at 3x224x224\n\nhardware: {hardware()}\n\n"
          "| what | median seconds |\n|---|---|\n"
          f"| layer table (model built) | {summary['resnet50_table_seconds']:.3f} |\n"
          f"| build ResNet-50 + layer table | {summary['resnet50_build_and_table_seconds']:.3f} |\n"
          f"| `medconv inspect resnet50 --input 3x224x224 --json` (new process, imports included) | {summary['resnet50_cli_seconds']:.2f} |\n"
          f"| baseline: one forward pass, batch 1 | {summary['resnet50_forward_seconds']:.3f} |\n\n"
          f"The table costs {summary['table_to_forward_ratio']:.2f}x one forward pass (shapes are traced on the "
          f"'meta' device, without arithmetic).\n")
    write_results("inspect_speed", summary, [stamped(r) for r in runs], md)
    print(md)


if __name__ == "__main__":
    main()
