"""Shared pieces of the end-to-end tests of the live half (tests/stream, tests/ui, tests/publish):
a stored history ready for `p9 stream`, a threaded Redis subscriber, a process check. Importable
from any test (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
from collections import defaultdict
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent / "history"))

from history_helpers import run_fetch  # noqa: E402

from p9cli.config import Settings, load_settings  # noqa: E402


def fetched_and_analyzed(handle, data_dir, *, symbols: str, exchanges, candles: int = 300,
                         redis_url: str | None = None, worker_id: str | None = None) -> Settings:
    """Settings for ``p9 stream`` against the simulator ``handle`` with ``candles`` of history
    fetched from it into ``data_dir`` and the structure documents written by analyze."""
    from p9cli.services import analyze

    flags = {"data_dir": str(data_dir), "symbols": symbols, "exchanges": ",".join(exchanges), "candles": candles}
    if redis_url is not None:
        flags["redis_url"] = redis_url
    if worker_id is not None:
        flags["worker_id"] = worker_id
    settings = load_settings(flags, env=handle.env(), config_path=None)
    _, fetched, _ = asyncio.run(run_fetch(settings))
    assert fetched.ok
    assert analyze.run(settings, out=io.StringIO()) == 0
    return settings


class ThreadSubscriber(threading.Thread):
    """``ThreadSubscriber(url, channels).start()`` ... ``.messages[channel]`` (raw bytes) ...
    ``.close()``. Subscribed when constructed, so nothing published after the constructor returns
    is missed."""

    def __init__(self, url: str, channels: list[str]):
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(*channels)
        self.messages: dict[str, list[bytes]] = defaultdict(list)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            m = self.pubsub.get_message(timeout=0.2)
            if m and m["type"] == "message":
                self.messages[m["channel"].decode()].append(m["data"])

    def close(self) -> None:
        if self._stop_event.is_set():
            return
        self._stop_event.set()
        if self.is_alive():
            self.join(5)
        self.pubsub.close()
        self.client.close()


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
