"""Every option of every medconv (sub)command says what it does; shared options are declared once (in process)."""
import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from medconv.cli import build_parser
from medconv.cli import fields
from medconv.cli.fields import field_help
from medconv.config import TrainConfig
from medconv.segment.config import SegmentConfig

CLI = Path(__file__).resolve().parents[1] / "src" / "medconv" / "cli"


def parsers(parser: argparse.ArgumentParser, path: str = "medconv"):
    """(command path, parser) of `parser` and every subparser below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


def options():
    """(command path, action) of every option and positional argument, help and subcommand actions left out."""
    for path, parser in parsers(build_parser()):
        for action in parser._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                yield path, action


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_every_option_says_what_it_does():
    bad = []
    for path, action in options():
        name = action.option_strings[-1] if action.option_strings else action.dest
        text = re.sub(r"\s*\(default: [^()]*\)$", "", action.help or "")  # what it says besides its default
        if len(text) < 20 or words(text) <= words(name) | {"default", "the", "a", "of"}:
            bad.append(f"{path} {name}: {action.help!r}")
        elif action.choices and action.metavar and not all(str(c) in action.help for c in action.choices):
            bad.append(f"{path} {name}: metavar {action.metavar} hides the choices, and the help does not name them")
    assert not bad, "options without a useful help:\n" + "\n".join(bad)


def test_every_subcommand_has_help_and_the_help_renders():
    for path, parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing = [c.dest for c in action._choices_actions if len(c.help or "") < 20]
                assert not missing, f"{path}: subcommands without help: {missing}"
        assert parser.format_help()  # a stray % in a help text fails here


@pytest.mark.parametrize("config_class", [TrainConfig, SegmentConfig])
def test_every_config_field_has_a_help_text(config_class):
    missing = [f.name for f in dataclasses.fields(config_class)
               if f.name != "model_options" and field_help(config_class, f.name) is None]
    assert not missing, f"medconv/cli/fields.py: no help for {config_class.__name__} field(s) {missing}"


def test_no_help_text_outlives_its_field():
    names = {f.name for cls in (TrainConfig, SegmentConfig) for f in dataclasses.fields(cls)}
    stale = [name for table in (fields.COMMON, *fields.BY_CLASS.values()) for name in table if name not in names]
    assert not stale, f"medconv/cli/fields.py: help for fields that no configuration has: {stale}"


@pytest.mark.parametrize("flag", ["--device", "--tta", "--json", "--checkpoint", "--split", "--config",
                                  "--model-option", "--resume", "--data-root", "--dataset", "--seed"])
def test_shared_options_are_declared_once(flag):
    sources = "\n".join(p.read_text() for p in sorted(CLI.glob("*.py")))
    assert sources.count(f'add_argument("{flag}"') == 1, f"{flag}: declare it once, in a parent parser"


def test_device_is_shared_by_the_verbs_that_run_a_network():
    with_device = {path for path, action in options() if "--device" in action.option_strings}
    for path in ("medconv evaluate", "medconv predict", "medconv segment predict", "medconv segment evaluate",
                 "medconv detect tune", "medconv detect predict", "medconv detect evaluate", "medconv train",
                 "medconv segment train", "medconv detect train", "medconv transfer extract", "medconv transfer fit"):
        assert path in with_device, path
