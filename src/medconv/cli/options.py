"""Options shared by several verbs, as parent parsers (argparse `parents=[...]`), and the options generated from the
fields of a run configuration (`config_options`) with their way back into one (`config_from_args`)."""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from ..config import DEVICE as DEVICE_NAME
from ..config import TrainConfig, load_config
from ..errors import UserError
from ..infer.tiles import GPU_TILE_BATCH
from .fields import DATA_ROOT, TTA, Field, field_help


def verb_parser(subparsers, name: str, help_text: str, epilog: str, parents=()) -> argparse.ArgumentParser:
    """A verb's (or an action's) parser: its help also as description, its examples as epilog."""
    return subparsers.add_parser(name, help=help_text, description=help_text, epilog=epilog, parents=list(parents),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def verb_actions(subparsers, name: str, help_text: str, epilog: str):
    """A verb made of actions (segment train|predict|evaluate, ...): the subparsers its actions are added to."""
    return verb_parser(subparsers, name, help_text, epilog).add_subparsers(dest="action", required=True,
                                                                           metavar="ACTION")


def parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def number(low: float | None = None, high: float | None = None, low_open: bool = False, whole: bool = False):
    """An argparse type: a finite number (a whole one with `whole`) from `low` (excluded with `low_open`) to
    `high`; anything else is argparse's one-line error naming the option and what it expects."""
    what, shown = ("a whole number" if whole else "a number"), (lambda v: f"{v:d}" if whole else f"{v:g}")
    if low is not None and high is not None:
        what += f" in {'(' if low_open else '['}{shown(low)}, {shown(high)}]"
    elif low is not None:
        what += f" {'>' if low_open else '>='} {shown(low)}"

    def parse(text: str):
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = "number"
    return parse


def numbers(text: str) -> list[float]:
    """An argparse type: comma-separated numbers (--milestones); their range is the configuration's to check."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,0.75, got {text!r}") from None


def cannot_write(folder: Path) -> str | None:
    """Why nothing can be written in the existing `folder` (None: it can): permissions, a read-only file system.
    The probe is a nameless temporary file (nothing is left, nothing is shown)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    return None


def check_target(text: str, kind: str, example: str = "") -> Path:
    """A path to write: kind "folder" (created, or one already there) or "file" (written, or replaced). Refused,
    with a UserError-style line: '' (it would write into the current folder), a folder where a file goes and
    the reverse, a path below a file, and a place where nothing can be written."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} would write into the current folder: give a {kind} name")
    p = Path(text).expanduser().absolute()
    if kind == "folder" and p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a folder (to create, or one to continue)")
    if kind == "file" and p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; expected a file name such as {Path(text) / example}")
    above = p if p.is_dir() else p.parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {above} is a file, not a folder")
    reason = cannot_write(above)
    if reason:
        raise argparse.ArgumentTypeError(f"{text}: cannot write in {above} ({reason})")
    return Path(text)


def out_folder(text: str) -> str:
    """An argparse type: a folder to write into (check_target)."""
    check_target(text, "folder")
    return text


def out_file(example: str):
    """An argparse type: a file to write (check_target); `example`: a file name for the message."""
    def parse(text: str) -> str:
        check_target(text, "file", example)
        return text
    parse.__name__ = "out_file"
    return parse


def check_not_inside(out: str, inputs: list[str], option: str = "--out",
                     remedy: str = "choose a folder outside it") -> None:
    """Refuse to write into (or below) a folder the command reads its images from: they would be read again."""
    target = Path(out).expanduser().resolve()
    for item in inputs:
        folder = Path(item).expanduser().resolve()
        if folder.is_dir() and (target == folder or folder in target.parents):
            raise UserError(f"{option} {out} is inside the input folder {item}, which is read for images: {remedy}")


def device_name(text: str) -> str:
    """An argparse type: a device name as a run configuration takes one (auto, cpu, cuda, cuda:N, ...), refused
    with the configuration's line; "auto" stays to be resolved."""
    if not DEVICE_NAME.fullmatch(text):
        raise argparse.ArgumentError(None, f"--device {text!r}: expected auto, cpu, cuda or cuda:N")  # as train's
    return text


def resolved_device(text: str) -> str:
    """An argparse type: a device name (device_name) resolved as training resolves it: auto becomes cuda when
    there is one, else cpu; cuda on a machine without it is refused. Imports torch, hence only here."""
    from ..training.engine import resolve_device  # torch: not while the parser is built (medconv --help)
    try:
        return str(resolve_device(device_name(text)))
    except UserError as exc:
        raise argparse.ArgumentError(None, str(exc)) from None


def device(exported: bool = False) -> argparse.ArgumentParser:
    """--device, default auto, resolved while parsing; with `exported` (detect predict) only checked then, and
    resolved by the verb, which runs a run's ONNX export on cpu without importing torch."""
    p = parent()
    note = "; with auto or cpu, a run's current ONNX export (medconv export) runs with onnxruntime" if exported else ""
    p.add_argument("--device", default="auto", metavar="DEVICE", type=device_name if exported else resolved_device,
                   help=f"where the network runs: auto (default): cuda if available, else cpu; or cpu, cuda, "
                        f"cuda:N{note}")
    return p


DEVICE = device()
JSON = parent()
JSON.add_argument("--json", action="store_true", help="print the result as JSON instead of text")
CHECKPOINT = parent()
CHECKPOINT.add_argument("--checkpoint", default="best", choices=["best", "last"],
                        help="which checkpoint of the run: best (on validation) or last (default: best)")
LEVEL = parent()
LEVEL.add_argument("--level", default=None, help="a level of the run's --taxonomy: leaf probabilities summed up to "
                   "its classes (default: the leaves)")


def add_nproc(p: argparse.ArgumentParser, what: str, how: str) -> argparse.ArgumentParser:
    """--nproc N on `p`: the command run again under torchrun with N processes (cli.launch, which refuses more
    than the GPUs or CPU cores there are): `what` they do, and `how`."""
    p.add_argument("--nproc", type=number(1, whole=True), default=1, metavar="N",
                   help=f"{what} on N processes of this machine (one per GPU, or CPU processes){how}: runs the "
                        "command under torchrun (default: 1)")
    return p


RESUMABLE = parent()
RESUMABLE.add_argument("--out", required=True, metavar="RUN_DIR", type=out_folder,
                       help="run directory to create (or to continue with --resume)")
RESUMABLE.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
add_nproc(RESUMABLE, "train", " with PyTorch's DistributedDataParallel")
SHARDED = add_nproc(parent(), "predict", ", each taking every N-th input file or slide (rank 0 writes the rows in "
                    "input order, each process the per-image files of its share)")


def slide_options(what: str, halo: str | None, tile: str = "a multiple of 16",
                  batch: str | None = None) -> argparse.ArgumentParser:
    """--slide-level, --slide-tile and --halo of a verb that also works on whole slides: `what` it does with the
    level, what its default `halo` covers (None: no --halo, the verb reads the context it needs) and what the
    `tile` side must be; with `batch` (a note on when tiles are not batched, or ""), --tile-batch too."""
    p = parent()
    p.add_argument("--slide-level", type=number(0, whole=True), default=None, metavar="L",
                   help=f"the inputs are whole slides (pyramidal TIFF, SVS, ...): {what}")
    p.add_argument("--slide-tile", type=number(16, whole=True), default=512, metavar="PX",
                   help=f"with --slide-level: tile side, {tile} (default: 512)")
    if halo is not None:
        p.add_argument("--halo", type=number(0, whole=True), default=None, metavar="PX",
                       help=f"with --slide-level: context read around each tile, a multiple of 16 (default: {halo})")
    if batch is not None:  # the defaults of infer.tiles.default_tile_batch
        p.add_argument("--tile-batch", type=number(1, whole=True), default=None, metavar="N",
                       help="with --slide-level: up to N tiles of one size (with their halos) through the network "
                            f"in one pass, the same map as one at a time, N tiles held in memory{batch} (default: "
                            f"{GPU_TILE_BATCH} on a GPU, 1 on the CPU)")
    return p


ALLOW_UNFINISHED = parent()
ALLOW_UNFINISHED.add_argument("--allow-unfinished", action="store_true",
                              help="use a run whose training has not finished (killed or still running): its best "
                                   "checkpoint so far (default: refuse it)")
NO_TEST = parent()
NO_TEST.add_argument("--no-test", dest="score_test", action="store_false",
                     help="make every choice on the validation images but leave the test images unscored (an "
                          "exploration that must not look at them)")


def run_dir(made_by: str) -> argparse.ArgumentParser:
    """The positional RUN_DIR of a verb that reads a run."""
    p = parent()
    p.add_argument("run_dir", metavar="RUN_DIR", help=f"run directory made by {made_by}")
    return p


def inputs(what: str = "image files or folders") -> argparse.ArgumentParser:
    p = parent()
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=f"{what} to read (folders: every image in them)")
    return p


def tta(default: str | None, note: str, several: bool = False) -> argparse.ArgumentParser:
    """--tta: one test-time augmentation, or with `several` a comma-separated list of candidates; `note` says what
    the default means for this verb."""
    p = parent()
    what = "one of" if not several else "a comma-separated list of candidates among"
    p.add_argument("--tta", default=default, choices=None if several else TTA, metavar="A,B" if several else None,
                   help=f"test-time augmentation, {what} none, flip (the mean posterior of the image and its flips) "
                        f"and d4 (... and its turns) ({note})")
    return p


def split(default: str) -> argparse.ArgumentParser:
    p = parent()
    p.add_argument("--split", default=default, choices=["train", "val", "test"],
                   help=f"which images of the run's data to score (default: {default})")
    return p


def data_root(unset: str = DATA_ROOT) -> argparse.ArgumentParser:
    p = parent()
    p.add_argument("--data-root", default=None, metavar="DIR", help=unset)
    return p


MEDMNIST = argparse.ArgumentParser(add_help=False, parents=[data_root()])  # pretrain, experiment: no run config
MEDMNIST.add_argument("--dataset", default="breastmnist", metavar="NAME",
                      help="MedMNIST 2D flag or 'synthetic' (default: breastmnist)")
MEDMNIST.add_argument("--seed", type=number(0, 2 ** 32 - 1, whole=True), default=0, metavar="N",
                      help="random seed of the weights and the data order (default: 0)")


def add_model_option(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument("--model-option", action="append", metavar="KEY=VALUE", dest="model_options",
                        help=f"architecture option KEY=VALUE, the value read as JSON when it parses, e.g. {example} "
                             "(repeatable)")


def config_options(config_class, only: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """--config and one option per field of `config_class` (or per field in `only`), default None so only the
    options given override --config."""
    p = parent()
    p.add_argument("--config", default=None, metavar="YAML",
                   help="YAML run configuration; options given here override it. For medconv train it may also be "
                        "an ensemble's file (members: NAME: a config file or settings, ...): each member trained "
                        "into --out/NAME, then their ensemble scored into --out")
    own = vars(config_class).get("__annotations__", {})  # the class's own fields first, then a base class's
    for f in sorted(dataclasses.fields(config_class), key=lambda f: f.name not in own):
        if only is not None and f.name not in only:
            continue
        if f.name == "model_options":
            add_model_option(p, "widths=[32,64,128]")
            continue
        entry = field_help(config_class, f.name) or Field("")  # tests/test_cli_help.py fails on a field without one
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag, help_text = "--" + f.name.replace("_", "-"), entry.help
        if default is not None and not isinstance(default, bool):
            help_text += f" (default: {','.join(map(str, default)) if isinstance(default, list) else default})"
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{help_text} (default: {'on' if default else 'off'})")
        elif isinstance(default, list):
            p.add_argument(flag, default=None, metavar=entry.metavar, help=help_text, type=numbers)
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
            choices = getattr(config_class, "CHOICES", {}).get(f.name, entry.choices)  # validate()'s closed sets
            p.add_argument(flag, type=kind, default=None, choices=choices, metavar=entry.metavar, help=help_text)
    return p


def parse_model_options(items: list[str] | None) -> dict:
    options = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if "=" not in item or not key.strip().isidentifier():
            raise UserError(f"--model-option {item!r}: expected KEY=VALUE, e.g. widths=[32,64]")
        key = key.strip()
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def explicit_options(args: argparse.Namespace, config_class=TrainConfig) -> dict:
    """The settings given on the command line, by field name (model options merged)."""
    given = {}
    for f in dataclasses.fields(config_class):
        value = getattr(args, f.name, None)
        if f.name == "model_options":
            value = parse_model_options(value)
            for key in ("hidden", "activation", "deep_supervision"):  # shortcuts for the mlp's and cnn3d's options
                if getattr(args, key, None) is not None:
                    value[key] = getattr(args, key)
            value = value or None
        if value is not None:
            given[f.name] = value
    return given


def config_from_args(args: argparse.Namespace, config_class=TrainConfig):
    """--config's settings (or the defaults), overridden by the options given on the command line."""
    cfg = load_config(args.config, config_class) if args.config else config_class()
    return with_options(cfg, explicit_options(args, config_class))


def with_options(cfg, options: dict):
    """`cfg` with `options` (explicit_options) set over its settings, model options merged key by key."""
    for name, value in options.items():
        setattr(cfg, name, {**cfg.model_options, **value} if name == "model_options" else value)
    return cfg


def training_run(args: argparse.Namespace, config_class) -> tuple:
    """(configuration, keyword arguments) of a training verb: with --resume the saved configuration is used, the
    options given become its overrides; else --config with the options over it."""
    if not args.resume:
        return config_from_args(args, config_class), {}
    if args.config:
        raise UserError("--resume continues with the configuration saved in the run; drop --config")
    return config_class(), {"resume": True, "overrides": explicit_options(args, config_class)}


def print_csv(rows: list[dict]) -> None:
    """Rows as CSV on stdout, header from the first row's keys."""
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
