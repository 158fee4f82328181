"""Helpers of the `p9 stream` fault tests: a subscriber that survives a Redis restart, a clock
that reads the simulator's time, and small process/port probes."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass

import orjson
import redis

from p9cli.live.clock import Clock


class SimWallClock(Clock):
    """Real monotonic time for timers; the simulator's (fast) time as the exchange wall clock
    (the stream's ``clock=`` seam, handed on to the feed layer and its candle builders)."""

    def __init__(self, handle):
        self.handle = handle

    def wall_ms(self) -> int:
        return self.handle.sim.clock.now_ms()


@dataclass
class Received:
    at: float  # time.monotonic() when received
    channel: str
    msg: dict


class Subscriber(threading.Thread):
    """SUBSCRIBEs in a thread and keeps every message (decoded, with its receive time).
    When the server goes away it keeps trying to subscribe again (a Redis restart)."""

    def __init__(self, url: str, channels: list[str]):
        super().__init__(daemon=True)
        self.url = url
        self.channels = channels
        self.received: list[Received] = []
        self.reconnects = 0
        self.stop_event = threading.Event()
        self._client: redis.Redis | None = None
        self._pubsub = None
        self._subscribe()

    def _subscribe(self) -> None:
        self._client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(*self.channels)

    def _drop(self) -> None:
        with contextlib.suppress(Exception):
            self._pubsub.close()
        with contextlib.suppress(Exception):
            self._client.close()
        self._pubsub = None

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self._pubsub is None:
                    self._subscribe()
                    self.reconnects += 1
                m = self._pubsub.get_message(timeout=0.2)
            except (redis.RedisError, OSError):
                self._drop()
                time.sleep(0.1)
                continue
            if m and m["type"] == "message":
                self.received.append(Received(time.monotonic(), m["channel"].decode(), orjson.loads(m["data"])))

    def of(self, channel: str) -> list[Received]:
        return [r for r in list(self.received) if r.channel == channel]

    def wait_for(self, predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(5)
        self._drop()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0
