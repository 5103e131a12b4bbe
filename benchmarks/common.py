"""Shared helpers for benchmarks: hardware/version description and the results JSON + markdown."""
from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = Path(__file__).resolve().parent / "runs"


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}"
    if torch.cuda.is_available():
        text += f"; GPU {torch.cuda.get_device_name(0)}"
    if hasattr(os, "getloadavg"):
        text += f"; load average {os.getloadavg()[0]:.1f} when written (above ~0.5: other work shared the CPUs)"
    return text


def versions() -> dict:
    import torchvision

    import medconv
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "medconv": medconv.__version__}


def command_line() -> str:
    return " ".join(["./run bench", Path(sys.argv[0]).stem, *sys.argv[1:]])


@functools.lru_cache(maxsize=1)
def commit() -> str:
    """The checkout's git commit, with "+changes" when tracked files differ from it (outside git:
    $MEDCONV_COMMIT, else "unknown")."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # no git (a device machine gets a copy of the tree)
        return os.environ.get("MEDCONV_COMMIT", "unknown")
    return head + ("+changes" if dirty else "")


commit()  # read when the benchmark starts: the code that trains is this commit's, whatever is committed later
PROVENANCE = ("command", "commit", "date", "hardware", "versions")


def provenance() -> dict:
    """Where a result row comes from: this process's full command, git commit, date (UTC), hardware and
    library versions. A benchmark stamps a row when the row's figures are computed (see `stamped`)."""
    return {"command": command_line(), "commit": commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "hardware": hardware(), "versions": versions()}


def stamped(row: dict, path: Path | None = None) -> dict:
    """`row` with its provenance: kept from RUN/bench_row.json at `path` when that run was scored before with
    the same figures, else this process's (and saved there), so a cached run keeps the commit, date and
    hardware it was trained and scored with."""
    if path is not None and path.exists():
        saved = json.loads(path.read_text())
        if {k: v for k, v in saved.items() if k not in PROVENANCE} == json.loads(json.dumps(row)):
            return saved
    row = {**row, **provenance()}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row, indent=2) + "\n")
    return row


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean(rows: list[dict], key: str) -> float:
    """The mean of `key` over result rows."""
    return statistics.mean(r[key] for r in rows)


def ensemble_table(rows: dict[str, list[dict]], members: dict[str, tuple], selected: str) -> list[str]:
    """Markdown lines of an ensembles table: per candidate (its rows per seed), the recipes it averages and its
    validation and test AUC / ACC (test: the selected candidate's only)."""
    lines = ["| candidate | runs of seed s | val AUC | val ACC | test AUC | test ACC |", "|---|---|---|---|---|---|"]
    for name, group in rows.items():
        mark = " (selected)" if name == selected else ""
        lines.append(f"| {name}{mark} | {', '.join(members[name])} | {cell(group, 'val_auc')} | "
                     f"{cell(group, 'val_acc')} | {cell(group, 'test_auc')} | {cell(group, 'test_acc')} |")
    return lines


def cell(rows: list[dict], key: str, digits: int = 3) -> str:
    """A table cell: mean ± sd of `key` over the rows (the mean alone for one row), or — when a row lacks it."""
    if not rows or not all(key in r for r in rows):
        return "—"
    m, s = mean_sd([r[key] for r in rows])
    return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if len(rows) > 1 else "")


def paused_minutes(run: Path, start: float, end: float) -> float:
    """Minutes within [start, end] (Unix seconds) that a run's process spent stopped (SIGSTOP) while other work
    was timed alone, as its RUN/PAUSED.txt records them (lines "- SECONDS s, HH:MM:SS to HH:MM:SS UTC on
    YYYY-MM-DD: ..."); 0 without the file. A wall-clock time over that window overstates training by this much."""
    path = Path(run) / "PAUSED.txt"
    total = 0.0
    for line in path.read_text().splitlines() if path.exists() else []:
        if not line.startswith("- "):
            continue
        times, day = line.split(" UTC on ", 1)
        first, last = (part.split()[-1] for part in times.split(" to "))
        stamp = lambda hms: datetime.datetime.strptime(f"{day[:10]} {hms}", "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        begun, ended = stamp(first), stamp(last)
        ended += 86400 if ended < begun else 0  # past midnight
        total += max(0.0, min(ended, end) - max(begun, start))
    return total / 60


def write_results(name: str, summary: dict, runs: list[dict], markdown: str, extra: dict | None = None) -> Path:
    """benchmarks/results/NAME.json in the format docs/protocols.md describes, and NAME.md
    ($MEDCONV_RESULTS_SUFFIX, e.g. _cuda on a GPU machine, keeps other hardware's figures apart from the
    CPU reference ones). Every row of `runs` must carry its provenance (`stamped`)."""
    unstamped = [r for r in runs if not all(k in r for k in PROVENANCE)]
    if unstamped:
        raise ValueError(f"{name}: {len(unstamped)} result rows lack {', '.join(PROVENANCE)} (stamp them)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name += os.environ.get("MEDCONV_RESULTS_SUFFIX", "")
    doc = {"benchmark": name, "command": command_line(), "hardware": hardware(), "versions": versions(),
           "summary": summary, "runs": runs, **(extra or {})}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    return path


def committed_results(name: str) -> dict:
    """benchmarks/results/NAME.json as it stands (the committed figures), or {} when there is none."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def recorded_runs(name: str) -> list[dict]:
    """The runs of the committed benchmarks/results/NAME.json, each marked `"recorded": True`: a benchmark
    reports them for runs whose cache (benchmarks/runs/, not committed) this machine lacks, so training one
    part on a fresh checkout does not drop the other parts' figures."""
    return [{**r, "recorded": True} for r in committed_results(name).get("runs", [])]


def rescore(out: Path) -> dict:
    """A cached segmentation run scored again with today's code (after a change in how maps are made):
    val (choosing its threshold again) and test, written to RUN/metrics.json; cached TTA scores dropped."""
    from medconv.segment.evaluate import evaluate_segmentation

    result = json.loads((out / "metrics.json").read_text())
    for cached in out.glob("metrics_*_tta-*.json"):
        cached.unlink()
    for split in ("val", "test"):
        result[split] = evaluate_segmentation(out, split, choose=split == "val")
    result["threshold"] = result["val"].pop("threshold")  # for segment predict, chosen on validation
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result
