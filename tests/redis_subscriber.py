"""The one threaded Redis subscriber of the end-to-end tests: SUBSCRIBE in a thread, keep every
message (raw bytes) per channel. Used by tests/stream, tests/ui and tests/publish (importable
from any test: tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import threading
from collections import defaultdict

import redis


class ThreadSubscriber(threading.Thread):
    """``ThreadSubscriber(url, channels).start()`` ... ``.messages[channel]`` ... ``.close()``.
    Subscribed when constructed, so nothing published after the constructor returns is missed."""

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
