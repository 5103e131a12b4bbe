"""Files: atomic writes (a temporary name in the same folder, then rename), CSV rows, image inputs."""
from __future__ import annotations

import csv
import json
import os
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Iterator

from .progress import other_rank


TMP_SUFFIX = ".tmp"
OWN_FILES: ContextVar[bool] = ContextVar("own_files", default=False)  # set by own_files


def umask() -> int:
    """The process's umask: from /proc on Linux (reading it with os.umask means setting it for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0)
    os.umask(current)
    return current


def writes_here() -> bool:
    """Whether this process writes files: yes, unless it is a rank other than 0 of a run started by torchrun
    (training.distributed), whose files rank 0 writes, outside an own_files block."""
    return OWN_FILES.get() or not other_rank()


@contextmanager
def own_files() -> Iterator[None]:
    """Within it, this process writes its files whatever its rank: the per-image outputs (maps, masks,
    overlays) of the inputs that this rank took of a prediction on several processes (infer.shards), which no
    other rank computes. Files shared by all ranks (a CSV of every row) are written outside it, by rank 0."""
    token = OWN_FILES.set(True)
    try:
        yield
    finally:
        OWN_FILES.reset(token)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path), then rename tmp_path to path, so readers never see half a file. The file gets
    the permissions the umask allows (mkstemp's own are 0600). Ranks other than 0 of a torchrun launch write
    nothing (writes_here), but inside own_files."""
    if not writes_here():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temporary files atomic_write leaves in `folder` when a process is killed mid-write."""
    leftovers = [p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file()] if folder.is_dir() else []
    for p in leftovers:
        p.unlink()
    return leftovers


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_json(path: str | Path) -> dict | None:
    """The JSON object in a file; None when the file is missing, unreadable or holds no object."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def write_csv(path: str | Path, rows: list[dict], fields: list[str] | None = None) -> None:
    """CSV of `rows` (written atomically); `fields`: the header, which no rows still get (default: the
    first row's keys)."""
    fields = fields if fields is not None else list(rows[0])

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    atomic_write(path, write)


def image_files(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) in the folders named."""
    from .data.images import SUPPORTED_EXTENSIONS
    from .data.readers import suffix
    from .errors import UserError

    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if suffix(f) in SUPPORTED_EXTENSIONS)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"input {p} not found")
    if not files:
        raise UserError(f"no images found in {', '.join(inputs)}")
    return files
