"""An ensemble recipe in one command: each member trained into its own run folder under OUT (OUT/NAME, as
`medconv train` trains one run), then the mean of the members' class probabilities scored on validation and test
into OUT itself (classify.evaluate.evaluate_ensemble: metrics_{split}.json naming the members, predictions, ROC and
confusion plots). Run again with resume, it keeps the finished members, continues an interrupted one and starts
those not begun.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from rich.console import Console

from ..config import TrainConfig
from ..errors import UserError
from ..fileio import write_json
from ..progress import make_console
from ..training.engine import RESUME_MAY_CHANGE
from .evaluate import evaluate_ensemble
from .train import PATH_FIELDS, train


def train_ensemble(members: dict[str, TrainConfig], out: str | Path, resume: bool = False,
                   overrides: dict | None = None, score_test: bool = True, console: Console | None = None) -> dict:
    """Train `members` ({name: config}) into OUT/NAME one after another, then score their ensemble on val (and
    test, with `score_test`) into OUT. Without `resume`, a member folder that already holds a run is refused before
    anything is trained; with it, finished members are kept and an interrupted one resumes with the configuration
    saved in it (`overrides`: the options given, as `medconv train --resume` takes them). Returns
    {"members": {name: folder}, "val": metrics[, "test": metrics]}, also written to OUT/ensemble.json."""
    console = console or make_console()
    out = Path(out)
    folders = {name: out / name for name in members}
    begun = {name: f for name, f in folders.items() if (f / "checkpoints" / "last.safetensors").exists()
             or (f / "metrics.json").exists()}
    if begun and not resume:
        raise UserError(f"{', '.join(map(str, begun.values()))} already hold{'s' if len(begun) == 1 else ''} a run: "
                        "add --resume to continue the ensemble, or choose another --out")
    saved = {name: check_same_settings(name, folder, members[name]) for name, folder in begun.items()}
    for i, (name, cfg) in enumerate(members.items(), 1):
        folder = folders[name]
        if (folder / "metrics.json").exists():
            other = saved[name].get("precision", cfg.precision)
            note = f"; trained in {other}, not {cfg.precision}" if other != cfg.precision else ""
            console.print(f"member {i}/{len(members)} {name}: finished, kept ({folder}{note})", highlight=False)
            continue
        console.print(f"member {i}/{len(members)} {name}: {'resuming' if name in begun else 'training'} "
                      f"({cfg.arch} on {cfg.dataset}) -> {folder}", highlight=False)
        if name in begun:
            train(TrainConfig(), folder, resume=True, console=console, overrides=overrides, score_test=score_test)
        else:
            train(cfg, folder, console=console, score_test=score_test)
    result = {"members": {name: str(f) for name, f in folders.items()}}
    runs = list(folders.values())
    for split in ("val", "test") if score_test else ("val",):
        result[split] = evaluate_ensemble(runs, out, split)
    write_json(out / "ensemble.json", result)
    scores = ", ".join(f"{s} AUC {result[s]['auc']:.4f} ACC {result[s]['acc']:.4f}" for s in ("val", "test")
                       if s in result)
    console.print(f"ensemble of {len(runs)} ({', '.join(members)}): {scores}  ->  {out}", highlight=False,
                  soft_wrap=True)
    return result


def check_same_settings(name: str, folder: Path, cfg: TrainConfig) -> dict:
    """A member begun earlier must have been trained with the settings the file (and the options) give it now, but
    for those a resumed run may change and the paths (a run stores them absolute), and, once finished, its
    precision (members of one ensemble may need different ones: training.precision refuses bf16 for some networks
    on some CPUs): else one clear line. Returns the member's saved configuration."""
    saved = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    wanted = json.loads(json.dumps(cfg.to_dict()))  # lists, not tuples, as YAML reads them
    finished = (folder / "metrics.json").exists()
    ignored = set(RESUME_MAY_CHANGE) | set(PATH_FIELDS) | ({"precision"} if finished else set())
    differ = [k for k, v in wanted.items() if k not in ignored and saved.get(k) != v]
    if differ:
        shown = ", ".join(f"{k} {saved.get(k)!r} there, {wanted[k]!r} now" for k in differ[:3])
        raise UserError(f"member {name}: {folder} was trained with other settings ({shown}): it would be kept as it "
                        "was; choose another --out for the new settings")
    return saved
