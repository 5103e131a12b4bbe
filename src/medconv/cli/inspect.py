"""medconv inspect: a network's layer table, pictures of its receptive fields and filters, fc vs conv weights."""
from __future__ import annotations

import argparse
import json

from ..errors import UserError
from ..progress import make_console
from .options import JSON, add_model_option, number, out_file, parse_model_options, verb_parser

EXAMPLES = """examples:
  medconv inspect --list
  medconv inspect resnet50 --input 3x224x224 --depth 1
  medconv inspect googlenet --depth 1 --compare-paper
  medconv inspect --fc-vs-conv --image 200x200 --hidden 25000 --kernel 10
  medconv inspect --run runs/breast --plot-rf rf.png --filters filters.png --image scan.png"""


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "inspect", "layer table: output shapes, parameters, multiply-accumulates, receptive "
                    "fields", EXAMPLES, [JSON])
    p.add_argument("arch", nargs="?", default=None, metavar="ARCH", help="architecture to inspect (see --list)")
    p.add_argument("--list", action="store_true", help="list the architectures with a line each")
    p.add_argument("--run", default=None, metavar="RUN_DIR", help="inspect a trained run's network instead")
    p.add_argument("--input", default=None, metavar="CxHxW", help="input shape in channels x px x px, or CxDxHxW "
                   "for a 3D network (default: 3x224x224; 3x299x299 for inception_v3; 1x64x64x64 for a 3D network; a "
                   "run's own)")
    p.add_argument("--classes", type=number(1, whole=True), default=1000, metavar="N",
                   help="classes of the network's output layer (default: 1000, as ImageNet)")
    add_model_option(p, "batch_norm=false")
    p.add_argument("--depth", type=number(1, whole=True), default=None, metavar="N",
                   help="fold modules below this nesting depth (1: one row per block; default: every module)")
    p.add_argument("--compare-paper", action="store_true",
                   help="googlenet: compare with Table 1 of Szegedy et al. 2014")
    p.add_argument("--plot-rf", default=None, metavar="OUT.png", type=out_file("rf.png"),
                   help="draw a layer's receptive field (analytic and empirical) into this PNG file")
    p.add_argument("--layer", default=None, metavar="NAME",
                   help="the layer whose receptive field --plot-rf draws (default: the last spatial layer)")
    p.add_argument("--filters", default=None, metavar="OUT.png", type=out_file("filters.png"),
                   help="draw the first-layer kernels and the feature maps of --image into this PNG file")
    p.add_argument("--image", default=None, metavar="FILE|HxW",
                   help="an image file (for the pictures), or a size in px HxW with --fc-vs-conv")
    p.add_argument("--fc-vs-conv", action="store_true",
                   help="count the weights of a fully connected vs locally connected vs convolutional layer")
    p.add_argument("--hidden", type=number(1, whole=True), default=25_000, metavar="N",
                   help="--fc-vs-conv: hidden units of the layer (default: 25000)")
    p.add_argument("--kernel", type=number(1, whole=True), default=10, metavar="PX",
                   help="--fc-vs-conv: kernel side in px (default: 10)")
    p.add_argument("--channels", type=number(1, whole=True), default=1, metavar="N",
                   help="--fc-vs-conv: image channels (default: 1)")
    p.add_argument("--maps", type=number(1, whole=True), default=100, metavar="N",
                   help="--fc-vs-conv: feature maps of the convolution (default: 100)")
    p.set_defaults(func=run_inspect)


def run_inspect(args: argparse.Namespace) -> None:
    from ..analysis import fc_vs_conv  # torch: imported here to keep medconv --help fast
    from ..analysis.inspect import inspect, list_architectures, parse_shape

    console = make_console(stderr=False)  # piped: tables keep their columns, lines are not wrapped
    if args.list:
        rows = list_architectures()
        if args.json:
            print(json.dumps(rows, indent=2))
        for row in [] if args.json else rows:
            console.print(f"[bold]{row['name']:<22}[/] {row['summary']}", highlight=False)
        return
    if args.fc_vs_conv:
        shape = parse_shape(args.image or "200x200", 2, "--image")
        if args.kernel > min(shape):
            raise UserError(f"--kernel {args.kernel} is larger than the {shape[0]}x{shape[1]} image (--image)")
        result = fc_vs_conv(shape, args.hidden, args.kernel, args.channels, args.maps)
        print(json.dumps(result, indent=2) if args.json else result["explanation"])
        return
    result = inspect(args.arch, args.run, args.input, args.classes, parse_model_options(args.model_options),
                     args.depth, args.compare_paper, args.plot_rf, args.layer, args.filters, args.image)
    table = result["table"]
    if args.json:
        print(json.dumps({**table.to_dict(), "paper": result.get("paper"), "pictures": result["pictures"]}, indent=2))
        return
    console.print(table.to_rich(title=f"{args.arch or args.run}, input {'x'.join(map(str, table.input_shape))}"))
    for row in result.get("paper", []):
        ok = row["weights_match"] and row["ops_match"]
        console.print(f"{row['row']:<18} ours {row['weights_k']:>7.1f}K {row['ops_m']:>6.1f}M   paper "
                      f"{row['paper_weights_k']:>6}K {row['paper_ops_m']:>4}M   "
                      f"{'[green]within 3%[/]' if ok else '[red]differs[/]'}"
                      + (f": {row['erratum']}" if row["erratum"] else ""),
                      highlight=False)
    for kind, path in result["pictures"].items():
        console.print(f"{kind.replace('_', ' ')} picture -> {path}"
                      + (f" (layer {result['layer']})" if kind == "receptive_field" else ""))
