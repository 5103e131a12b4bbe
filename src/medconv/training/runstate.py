"""What a run directory says about itself: whether its training finished, and the fingerprints of the data it
was trained and scored on (data.fingerprint). Torch-free: it reads the checkpoints' JSON sidecars, not the
checkpoints (detect predict runs an ONNX export without torch).

- Finished: the engine's last checkpoint reached the configured epochs and metrics.json was written after it
  (metrics.json "epochs" = the last checkpoint's epoch). A run killed mid-training, one that diverged, or one
  resumed with more --epochs and killed again is unfinished; `evaluate`/`predict` refuse it unless told
  `allow_unfinished`. Runs whose last checkpoint the engine did not write (a fitted head, a lone checkpoint
  file) have nothing to resume and count as finished.
- Data: RUN/data.json (every split the final evaluation saw, written by it) and the checkpoints' "data" (what
  training trained and validated on, written from the first epoch). `--resume` refuses changed data (the
  engine); `evaluate` warns (`warn_if_data_changed`).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..data.fingerprint import differences, split_fingerprint
from ..errors import UserError
from ..fileio import read_json, write_json, write_text

DATA_FILE = "data.json"


def run_folder(run_dir: str | Path) -> Path | None:
    """The run directory of RUN_DIR or of RUN_DIR/checkpoints/X.safetensors; None for a checkpoint file kept
    elsewhere."""
    p = Path(run_dir)
    if p.suffix == ".safetensors":
        return p.parent.parent if p.parent.name == "checkpoints" else None
    return p


def unfinished(run_dir: str | Path) -> str | None:
    """Why a run has not finished training ("epoch 3 of 10"), or None when it has (or is no engine run)."""
    folder = run_folder(run_dir)
    last = read_json(folder / "checkpoints" / "last.json") if folder is not None else None
    if last is None or "history" not in last or not isinstance(last.get("epoch"), int):
        return None  # no engine run here: a fitted head, or no checkpoint at all (loading it says so)
    epoch, epochs = last["epoch"], (last.get("config") or {}).get("epochs", last["epoch"])
    metrics = read_json(folder / "metrics.json")
    if metrics is not None and metrics.get("epochs", epoch) == epoch and epoch >= epochs:
        return None
    if epoch >= epochs:
        return f"epoch {epoch} of {epochs}, not yet evaluated"
    return f"epoch {epoch} of {epochs}"


def check_finished(run_dir: str | Path, allow_unfinished: bool = False, which: str = "best") -> None:
    """Refuse (UserError) a run that has not finished training, unless `allow_unfinished`."""
    if allow_unfinished:
        return
    state = unfinished(run_dir)
    if state is not None:
        raise UserError(f"{run_folder(run_dir)} has not finished training ({state}): --resume it, or pass "
                        f"--allow-unfinished to use its {which} checkpoint so far")


def stored_fingerprints(run_dir: str | Path) -> dict:
    """{split: fingerprint} a run recorded: its checkpoints' (train, val), updated by RUN/data.json (every split
    its final evaluation scored)."""
    folder = run_folder(run_dir)
    if folder is None:
        return {}
    stored = {}
    for source in (folder / "checkpoints" / "best.json", folder / "checkpoints" / "last.json"):
        meta = read_json(source)
        if meta is not None and isinstance(meta.get("data"), dict):
            stored = dict(meta["data"])
            break
    stored.update(read_json(folder / DATA_FILE) or {})
    return stored


def write_fingerprints(run_dir: Path, fingerprints: dict) -> None:
    """RUN/data.json: the fingerprints of the splits the final evaluation scored."""
    write_json(Path(run_dir) / DATA_FILE, fingerprints)


def warn_if_data_changed(run_dir: str | Path, split: str, items) -> None:
    """One warning line on standard error when split `split` (the loaded data `items`) differs from the data of
    that split the run was trained and scored on; silent when it is the same or the run recorded no fingerprint
    of it."""
    stored = stored_fingerprints(run_dir)
    changed = split in stored and differences({split: stored[split]}, {split: split_fingerprint(items)})
    if changed:
        print(f"warning: the data changed since {run_folder(run_dir)} was trained ({'; '.join(changed)}): "
              f"these {split} figures are not comparable with the ones in its metrics.json", file=sys.stderr)


def tell_data(run_dir: Path, console, lines: list[str], notes: list[str] = (), said: list[str] = ()) -> None:
    """Print the data summary ("data: ..." lines) and notes ("note: ...") of a run whose checks passed and that
    starts to train, and keep them in RUN_DIR/data_summary.txt for its report; `said`: data lines printed
    already (before the checks), kept but not printed again."""
    told = [f"data: {line}" for line in lines] + [f"note: {note}" for note in notes]
    for line in told:
        console.print(line, highlight=False, soft_wrap=True)
    write_text(run_dir / "data_summary.txt", "\n".join([f"data: {line}" for line in said] + told) + "\n")
