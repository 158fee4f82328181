"""The clock seam of the feed layer: monotonic seconds for timers, wall ms for receive times."""

from __future__ import annotations

import time


class Clock:
    """The real clock. Tests pass an object with the same two methods."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000


SYSTEM_CLOCK = Clock()


class ManualClock(Clock):
    """A clock that moves only when told (pure unit tests of timers and pacing)."""

    def __init__(self, wall_ms: int = 1_767_616_496_789, mono: float = 1000.0):
        self._wall_ms = wall_ms
        self._mono = mono

    def monotonic(self) -> float:
        return self._mono

    def wall_ms(self) -> int:
        return self._wall_ms

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall_ms += int(round(seconds * 1000))
