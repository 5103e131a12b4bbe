"""One writer per run directory: an exclusive lock (fcntl.flock) on OUT/.medconv-lock while a run trains.

The kernel drops the lock when its process ends, however it ends, so the lock file a killed run leaves
behind is simply taken over by the next run; the file holds the writer's pid and host for the message
another run gets. The file itself stays (removing it could let two writers lock two different files).
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ..errors import UserError

LOCK_NAME = ".medconv-lock"


class RunLock:
    """An exclusive lock on a run directory; `release()` (or the process ending) frees it."""

    def __init__(self, out: Path):
        self.out, self.file = out, None
        self.created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK_NAME, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"{out} is being written by another medconv run ({holder}): wait for it to end, "
                            "or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self.file = handle

    def release(self, failed: bool = False) -> None:
        """Free the lock; after a run that `failed` before writing anything, remove the folder it created."""
        if self.file is None:
            return
        self.file.close()
        self.file = None
        if failed and self.created and [p.name for p in self.out.iterdir()] == [LOCK_NAME]:
            (self.out / LOCK_NAME).unlink()
            self.out.rmdir()
