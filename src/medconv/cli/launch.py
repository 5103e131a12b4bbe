"""--nproc N: a command run again under torchrun with N processes on this machine (torchrun's --standalone
rendezvous); several machines use torchrun itself (docs/verbs.md). Torch-free until it launches.

torchrun is run in this process (torch.distributed.run.main), so that a failed rank ends the command with that
rank's own exit code (2 for bad input, as without --nproc) and its one-line message, not torchrun's exit code 1
and its traceback; every rank reads the same input, so rank 0 alone prints an error the ranks share."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

from ..errors import UserError
from ..progress import rank

FAILURES = "MEDCONV_FAILURES"  # environment: the folder where ranks of a --nproc launch leave their error


def without_nproc(argv: list[str]) -> list[str]:
    """The command line without its --nproc N (or --nproc=N)."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            out.append(item)
    return out


def check_devices(nproc: int, device: str | None) -> None:
    """Refuse more processes than this machine has GPUs (training on CUDA) or CPU cores (on the CPU)."""
    import torch  # torch only once a launch is due: --help and bad input stay fast

    on_gpu = (device or "auto") != "cpu" and torch.cuda.is_available()
    available = torch.cuda.device_count() if on_gpu else (os.cpu_count() or 1)
    if nproc > available:
        kind = "GPUs" if on_gpu else "CPU cores"
        raise UserError(f"--nproc {nproc}: this machine has {available} {kind}; one process per "
                        f"{'GPU' if on_gpu else 'core'} at most")


def note_failure(code: int, line: str) -> bool:
    """In a rank of a --nproc launch: leave `code` and the error `line` for the launcher. Whether this rank
    should print the line itself (rank 0 does; the others leave it to the launcher, which prints only lines
    that differ from rank 0's). Outside a --nproc launch: print it."""
    folder = os.environ.get(FAILURES)
    if not folder:
        return True
    (Path(folder) / f"rank{rank()}").write_text(f"{code}\n{line}")
    return rank() == 0


def failures(folder: Path) -> dict[int, tuple[int, str]]:
    """{rank: (exit code, error line)} that the ranks left in `folder`."""
    found = {}
    for path in folder.glob("rank*"):
        code, _, line = path.read_text().partition("\n")
        found[int(path.name[4:])] = (int(code), line)
    return found


def report_failures(left: dict[int, tuple[int, str]], exit_codes: list[int]) -> int:
    """Print the error lines the ranks `left` ({rank: (code, line)}) that rank 0 did not print itself, each once;
    the command's exit code: 2 when a rank met bad input, else the largest of the codes (torchrun's `exit_codes`
    of the failed ranks when none left a line), at least 1."""
    printed = {left[0][1]} if 0 in left else set()  # rank 0 printed its own line
    for r, (_, line) in sorted(left.items()):
        if line not in printed:
            print(f"(rank {r}) {line}", file=sys.stderr)
            printed.add(line)
    if not left:  # killed, or failed before medconv could say why (out of memory, a crash in a library)
        print(f"medconv: {len(exit_codes)} of the processes failed without a message (exit codes "
              f"{', '.join(map(str, exit_codes))}; negative: killed by that signal)", file=sys.stderr)
    codes = [code for code, _ in left.values()] or exit_codes
    return 2 if 2 in codes else max([1, *codes])


def launch(nproc: int, device: str | None, argv: list[str]) -> int:
    """Run `medconv ARGV` (without --nproc) under torchrun with `nproc` processes; 0, or the exit code of the
    ranks' failure (2 for bad input), with each distinct error line printed once."""
    check_devices(nproc, device)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # (torch: as above)
    from torch.distributed.run import main as torchrun

    if "OMP_NUM_THREADS" not in os.environ:  # torchrun would set 1; the cores shared out is what the user has
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    with tempfile.TemporaryDirectory(prefix="medconv-ranks-") as folder:
        os.environ[FAILURES] = folder
        logging.disable(logging.CRITICAL)  # torchrun's own report of a failed rank: the ranks said it in a line
        try:
            torchrun(["--standalone", f"--nproc_per_node={nproc}", "-m", "medconv.cli", *without_nproc(argv)])
            return 0
        except ChildFailedError as exc:
            return report_failures(failures(Path(folder)), [f.exitcode for f in exc.failures.values()])
        finally:
            logging.disable(logging.NOTSET)
            del os.environ[FAILURES]
