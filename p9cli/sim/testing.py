"""Run a simulator from synchronous code (tests, scripts): in a background thread with its
own event loop, or as a ``p9 sim`` subprocess.

    with SimThread(seed=9, faults={"okx": {"rest_5xx_every": 3}}) as handle:
        httpx.get(handle.rest_url("binance") + "/api/v3/time")

``handle`` is the :class:`~p9cli.sim.server.SimHandle` of the running simulator. Its
``sim`` is shared with the server thread: reading counters or changing fault/limit fields
(plain attributes) is fine; anything else should go through the control API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from p9cli.sim.server import SimHandle, running_sim

READY_TIMEOUT_S = 30.0


class SimThread:
    """A simulator running in a daemon thread (see the module docstring)."""

    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs
        self.handle: SimHandle | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> SimHandle:
        self._thread = threading.Thread(target=self._run, name="p9-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT_S):
            raise RuntimeError("the simulator did not start in time")
        if self._error is not None:
            raise self._error
        assert self.handle is not None
        return self.handle

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running_sim(**self.kwargs) as handle:
            self.handle = handle
            self._ready.set()
            await self._stop.wait()

    def call(self, fn, *args: Any, timeout: float = 30.0) -> Any:
        """Run ``fn(*args)`` (plain or coroutine function) on the simulator's loop and return
        its result: the safe way to touch books or the feed from another thread."""
        assert self._loop is not None

        async def run():
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(15)

    def __enter__(self) -> SimHandle:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def free_port_base(host: str = "127.0.0.1", span: int = 4, attempts: int = 50) -> int:
    """A ``port_base`` whose ``span`` consecutive ports are free right now (for subprocesses)."""
    for _ in range(attempts):
        with socket.socket() as s:
            s.bind((host, 0))
            base = s.getsockname()[1]
        if base + span > 65535:
            continue
        ok = True
        for port in range(base, base + span):
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range found")


def wait_listening(host: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.02)
    return False


def sim_subprocess(
    port_base: int, args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> subprocess.Popen:
    """Start ``p9 sim --port-base PORT_BASE ARGS`` (``python -m p9cli``) with piped output."""
    cmd = [sys.executable, "-m", "p9cli", "sim", "--port-base", str(port_base), *args]
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
