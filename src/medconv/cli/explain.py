"""medconv explain: where a trained classifier finds the evidence for a class in image files or volumes
(Grad-CAM or occlusion sensitivity), drawn over them."""
from __future__ import annotations

import argparse

from .options import (ALLOW_UNFINISHED, CHECKPOINT, check_not_inside, device, inputs, out_folder, print_csv, run_dir,
                      verb_parser)

EXAMPLES = """examples:
  medconv explain runs/breast scans/*.png --out why/
  medconv explain runs/breast scan.png --method occlusion --class malignant
  medconv explain runs/adrenal3d volume.nii.gz --layer features.3 --out why/"""


def add_parser(subparsers) -> None:
    p = verb_parser(subparsers, "explain", "heat maps of where a classifier finds its evidence in image files or "
                    "volumes (Grad-CAM, occlusion)", EXAMPLES,
                    [run_dir("medconv train"), inputs("image files (PNG, JPEG, TIFF, DICOM) or folders, or a 3D run's "
                                                      "volumes (NIfTI files, DICOM series folders)"),
                     CHECKPOINT, device(), ALLOW_UNFINISHED])
    p.add_argument("--method", default="gradcam", choices=["gradcam", "occlusion"],
                   help="gradcam: a layer's feature maps weighed by the mean gradient of the class score "
                        "(Grad-CAM); occlusion: the drop in the class probability when each region is blurred "
                        "away (slower, no layer) (default: gradcam)")
    p.add_argument("--layer", default=None, metavar="NAME",
                   help="gradcam: the dotted name of the layer whose feature maps are weighed, as medconv inspect "
                        "--run lists them (default: the last convolution whose output is still a map)")
    p.add_argument("--class", dest="target", default=None, metavar="K|NAME",
                   help="the class to explain, by index or name (default: each input's predicted class)")
    p.add_argument("--out", default="explanations", metavar="DIR", type=out_folder,
                   help="folder for NAME_METHOD.png (each input with its map) and METHOD.csv (a row per input) "
                        "(default: explanations)")
    p.set_defaults(func=run_explain)


def run_explain(args: argparse.Namespace) -> None:
    check_not_inside(args.out, args.inputs)
    from ..analysis.explain import explain_files  # torch: imported here to keep medconv --help fast
    rows = explain_files(args.run_dir, args.inputs, args.out, args.method, args.layer, args.target,
                         args.checkpoint, args.device, args.allow_unfinished)
    print(f"{len(rows)} explanations (NAME_{args.method}.png, {args.method}.csv) -> {args.out}")
    print_csv(rows)
