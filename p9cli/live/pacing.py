"""Reconnect back-off and pacing of what the feed layer sends (pure, clock injected).

* :class:`Backoff` — capped exponential back-off with full jitter
  (``uniform(0, min(cap, base * 2**n))``): many connections dropped together do not come
  back together (no reconnect storm).
* :class:`Pacer` — at most ``rate`` actions per second, spaced evenly: new connections per
  exchange (OKX 3/s, Binance 300 per 5 min), subscribe requests per connection (Binance 5
  incoming messages/s counts them) and REST snapshot requests after a mass reconnect.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from p9cli.live.clock import Clock


class Backoff:
    def __init__(self, base_s: float = 0.25, cap_s: float = 15.0, rng: random.Random | None = None):
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failure."""
        ceiling = min(self.cap_s, self.base_s * (2**self.failures))
        self.failures = min(self.failures + 1, 30)
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.failures = 0


class Pacer:
    """Admit at most ``rate`` actions per second, evenly spaced (``rate <= 0``: no limit)."""

    def __init__(self, rate: float, clock: Clock, sleep: Callable[[float], object] | None = None):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self._next = 0.0
        self._sleep = sleep or asyncio.sleep

    def reserve(self) -> float:
        """Book the next free slot; returns how long to wait for it (0 = now)."""
        now = self.clock.monotonic()
        at = max(now, self._next)
        self._next = at + self.interval
        return at - now

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)
