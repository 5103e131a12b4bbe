"""examples/*.yaml: each benchmark's recipe as a config file a user runs with `--config`. Each must be the
benchmark's own recipe, field for field, so the commands the docs give reproduce the benchmark's rows."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from medconv.config import TrainConfig, load_config, load_members
from medconv.segment.config import SegmentConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT / "benchmarks"))
import crc_detection  # noqa: E402  (benchmarks/ is not a package)
import hippocampus  # noqa: E402
import isbi2012  # noqa: E402
import medmnist_2d  # noqa: E402
import medmnist_3d  # noqa: E402
import transfer  # noqa: E402


RECIPES = {  # example: (its config class, the benchmark's configuration of the recipe it reports)
    "breastmnist": (TrainConfig, lambda: medmnist_2d.config_for("breastmnist", "cnn-light", 0)),
    "pneumoniamnist": (TrainConfig, lambda: medmnist_2d.config_for("pneumoniamnist", "cnn-light", 0)),
    "isbi2012": (SegmentConfig, lambda: SegmentConfig(dataset="isbi2012", **isbi2012.UNET_HALF_BORDER)),
    "hippocampus": (SegmentConfig, lambda: SegmentConfig(**hippocampus.RECIPE)),
    "crc_detection": (SegmentConfig,
                      lambda: SegmentConfig(**crc_detection.METHODS["unet-proximity-r6-e60-bf16"][2])),
    "nuclei_types": (TrainConfig, lambda: TrainConfig(**{**transfer.COMMON, **transfer.NUCLEI})),
}
RECIPES.update({f"adrenalmnist3d_{name}": (TrainConfig, lambda name=name: TrainConfig(**{**medmnist_3d.COMMON,
                                                                                         **medmnist_3d.RECIPES[name][1]}))
                for name in medmnist_3d.RECIPES})
# how many CPU threads a benchmark gave torch is not part of a recipe
NOT_RECIPE = ("threads",)


def recipe_fields(cfg) -> dict:
    values = {k: v for k, v in cfg.to_dict().items() if k not in NOT_RECIPE}
    if values.get("taxonomy"):  # a path relative to the repository root in the example, absolute in benchmarks
        values["taxonomy"] = str((ROOT / values["taxonomy"]).resolve())
    return values


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_example_is_its_benchmarks_recipe_field_for_field(name):
    config_class, benchmark = RECIPES[name]
    example = load_config(EXAMPLES / f"{name}.yaml", config_class)
    assert recipe_fields(example) == recipe_fields(benchmark())


ENSEMBLE_FILES = {"adrenalmnist3d_ensemble"}  # ensembles' files: their members are recipes above


def test_every_recipe_example_is_checked_and_its_commands_name_it():
    recipes = {p.stem for p in EXAMPLES.glob("*.yaml")} - {"nuclei_taxonomy"}
    assert recipes == set(RECIPES) | ENSEMBLE_FILES
    for name in recipes:
        commands = [line for line in (EXAMPLES / f"{name}.yaml").read_text().splitlines()
                    if re.match(r"#\s+medconv ", line)]
        assert any(f"--config examples/{name}.yaml" in line for line in commands), name


def test_the_selected_adrenal_ensembles_members_are_examples_and_their_command_joins_them():
    """The ensemble medmnist_3d --ensembles selected (its committed results) is made of recipes with example files,
    and every one of those files ends with the evaluate command that joins the four."""
    selected = json.loads((ROOT / "benchmarks" / "results" / "medmnist_3d_ensembles.json").read_text())["summary"][
        "adrenal_ensemble_selected"]
    members = medmnist_3d.ENSEMBLES[selected]
    assert len(members) > 1
    texts = [(EXAMPLES / f"adrenalmnist3d_{name}.yaml").read_text() for name in members]
    trained = [re.search(rf"medconv train --config examples/adrenalmnist3d_{name}.yaml --out (\S+)", text).group(1)
               for name, text in zip(members, texts)]  # each file's own run directory
    joined = f"medconv evaluate {trained[0]} --with {' '.join(trained[1:])}"
    for name, text in zip(members, texts):
        assert joined in text and f"--out runs/adrenal3d-{selected} --split test" in text, name


def test_the_adrenal_ensembles_file_trains_the_selected_members_each_its_recipe():
    """One command (`train --config examples/adrenalmnist3d_ensemble.yaml`) trains the ensemble medmnist_3d
    --ensembles selected: the same members in the same order, each with its benchmark recipe."""
    selected = json.loads((ROOT / "benchmarks" / "results" / "medmnist_3d_ensembles.json").read_text())["summary"][
        "adrenal_ensemble_selected"]
    members = load_members(EXAMPLES / "adrenalmnist3d_ensemble.yaml")
    assert tuple(members) == medmnist_3d.ENSEMBLES[selected]
    for name, cfg in members.items():
        assert recipe_fields(cfg) == recipe_fields(RECIPES[f"adrenalmnist3d_{name}"][1]()), name
