"""Consoles and progress bars for long work: steps done, steps/s, elapsed time and ETA on a terminal; nothing in a
log. A message printed to a log file or a pipe stays one line, however long (rich wraps at 80 columns there)."""
from __future__ import annotations

import os

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

PIPED_WIDTH = 160  # columns of tables printed to a file or a pipe (rich's default there: 80)


def world_size() -> int:
    """The number of processes of a torchrun launch (WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def distributed() -> bool:
    """Whether this process is one of several ranks started by torchrun."""
    return world_size() > 1


def other_rank() -> bool:
    """Whether this process is a rank other than 0 of a torchrun launch (RANK and WORLD_SIZE set): rank 0
    prints and writes for all (training.distributed)."""
    return distributed() and rank() != 0


def make_console(stderr: bool = True, **options) -> Console:
    """A rich Console on standard error (standard output with stderr=False); `options` as Console's. On a stream
    that is not a terminal it wraps and crops nothing (soft wrap) and lays tables out on PIPED_WIDTH columns, so
    a line in a log or a captured output is the line printed. Ranks other than 0 of a torchrun launch print
    nothing (rank 0 speaks for all)."""
    if other_rank():
        options = {**options, "quiet": True}
    console = Console(stderr=stderr, **options)
    if not console.is_terminal:
        console.soft_wrap = True
        if "width" not in options:
            console.width = max(console.width, PIPED_WIDTH)
    return console


class StepsPerSecond(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f} steps/s" if task.speed else "", style="progress.data.speed")


def progress_bar(console: Console, disable: bool = False) -> Progress:
    """A rich Progress whose tasks carry a `status` field; disabled when the console is not a terminal (or with
    `disable`: e.g. for a single step, which its own log line covers)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), StepsPerSecond(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False, disable=disable or not console.is_terminal)
