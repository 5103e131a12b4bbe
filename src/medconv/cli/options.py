"""Options shared by several verbs, as parent parsers (argparse `parents=[...]`), and the options generated from the
fields of a run configuration (`config_options`) with their way back into one (`config_from_args`)."""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys

from ..config import TrainConfig, load_config
from ..errors import UserError
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


DEVICE = parent()
DEVICE.add_argument("--device", default="cpu", metavar="DEVICE",
                    help="where the network runs: cpu, cuda or cuda:N (default: cpu)")
JSON = parent()
JSON.add_argument("--json", action="store_true", help="print the result as JSON instead of text")
CHECKPOINT = parent()
CHECKPOINT.add_argument("--checkpoint", default="best", choices=["best", "last"],
                        help="which checkpoint of the run: best (on validation) or last (default: best)")
LEVEL = parent()
LEVEL.add_argument("--level", default=None, help="a level of the run's --taxonomy: leaf probabilities summed up to "
                   "its classes (default: the leaves)")
RESUMABLE = parent()
RESUMABLE.add_argument("--out", required=True, metavar="RUN_DIR",
                       help="run directory to create (or to continue with --resume)")
RESUMABLE.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
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
MEDMNIST.add_argument("--seed", type=int, default=0, metavar="N",
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
                   help="YAML run configuration; options given here override it")
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
            p.add_argument(flag, default=None, metavar=entry.metavar, help=help_text,
                           type=lambda s: [float(v) for v in s.split(",")])
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
            choices = getattr(config_class, "CHOICES", {}).get(f.name, entry.choices)  # validate()'s closed sets
            p.add_argument(flag, type=kind, default=None, choices=choices, metavar=entry.metavar, help=help_text)
    return p


def parse_model_options(items: list[str] | None) -> dict:
    options = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--model-option {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
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
            for key in ("hidden", "activation"):  # shortcuts for the mlp's options
                if getattr(args, key, None) is not None:
                    value[key] = getattr(args, key)
            value = value or None
        if value is not None:
            given[f.name] = value
    return given


def config_from_args(args: argparse.Namespace, config_class=TrainConfig):
    """--config's settings (or the defaults), overridden by the options given on the command line."""
    cfg = load_config(args.config, config_class) if args.config else config_class()
    for name, value in explicit_options(args, config_class).items():
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
