"""A non-blocking, per-data-directory lock so that overlapping cron runs do not collide.

``flock`` on ``{history}/.fetch-history.lock``: the kernel drops it when the process dies (even
with ``kill -9``), so a crashed run never leaves a stale lock behind. The holder's pid and
start time are written into the file for the message the second run prints.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from p9cli.errors import LockedError, P9Error

LOCK_NAME = ".fetch-history.lock"


class HistoryLock:
    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> HistoryLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides, as for every file
        except OSError as exc:
            raise P9Error(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockedError(
                f"another fetch-history run{holder} holds the lock {self.path}; exiting without changes"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise P9Error(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> HistoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
    except OSError:
        return ""
    if len(text) >= 2 and text[0].isdigit():
        return f" (pid {text[0]}, started {text[1]})"
    return ""
