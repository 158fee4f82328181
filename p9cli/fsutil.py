"""The one atomic file writer: every file p9 writes goes through :func:`write_atomic`.

The new content goes to a hidden temporary file in the target's directory (``.{name}.{random}.tmp``,
created with mode 0666 so the process umask decides the final mode, like any other tool's
output: 0644 under umask 022), is flushed and fsynced, renamed over the target with
``os.replace`` and the directory is fsynced. A reader, or a run killed at any instant, sees
the old file or the new one, never a mix. On failure the temporary file is removed and the
target is untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def temp_name(path: Path) -> Path:
    """A fresh hidden temporary name next to ``path``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def write_atomic(
    path: Path | str, content: bytes | Callable[[BinaryIO], None], *, durable: bool = True
) -> Path:
    """Replace ``path`` with ``content`` (bytes, or a function that writes to the open binary
    file). Creates missing parent directories. Raises ``OSError`` (the target unchanged).
    ``durable=False`` skips the two fsyncs (still atomic for readers; for state files rewritten
    several times a second whose loss in a power cut does not matter)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = temp_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(content, bytes | bytearray | memoryview):
                fh.write(content)
            else:
                content(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every file system allows it)."""
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def remove_temp_files(directory: Path, older_than_s: float = 0.0, pattern: str = f".*{TEMP_SUFFIX}") -> int:
    """Delete temporary files a killed writer left below ``directory`` (only those last
    modified more than ``older_than_s`` ago: a writer that may still be running keeps its
    own). Returns how many."""
    n = 0
    cutoff = time.time() - older_than_s
    for p in Path(directory).rglob(pattern):
        with contextlib.suppress(OSError):
            if p.is_file() and (not older_than_s or p.stat().st_mtime < cutoff):
                p.unlink()
                n += 1
    return n
