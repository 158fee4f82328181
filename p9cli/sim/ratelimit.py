"""REST rate limiters of the three exchanges, as pure state machines over a clock in ms.

Every limiter reads its numbers from the live :class:`~p9cli.sim.state.LimitSettings` on each
call (so the control API can change them at run time) and is told the time by the caller
(the simulator passes its :class:`~p9cli.sim.state.SimClock`; tests pass plain numbers).

* Binance: ``REQUEST_WEIGHT`` per minute and ``RAW_REQUESTS`` per 5 minutes, fixed windows
  aligned to the clock (the minute starts at ``now // 60000 * 60000``). The request that
  takes the used weight past the limit is answered 429 with ``Retry-After`` = seconds until
  the window resets; a further request before that moment is "continuing past a 429" and
  earns an IP ban (418) of ``binance_ban_seconds``, doubling with each further ban and capped
  at 3 days. Requests during a ban answer 418 with the time left.
* Bybit: ``bybit_requests_per_5s`` requests in any 5-second sliding window per IP; the request
  that would exceed it is refused (HTTP 403) and the IP is blocked for ``bybit_block_seconds``.
* OKX: per endpoint, N requests in any 2-second sliding window; over it: HTTP 429 / 50011.
  Refused requests do not count towards the window (OKX counts accepted requests only).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from p9cli.sim.state import LimitSettings

MINUTE_MS = 60_000
FIVE_MINUTES_MS = 5 * MINUTE_MS
BINANCE_MAX_BAN_MS = 3 * 24 * 3600 * 1000
BYBIT_WINDOW_MS = 5_000
OKX_WINDOW_MS = 2_000

OK = "ok"
LIMITED = "limited"  # Binance 429, Bybit 403, OKX 50011: counted as limit.violations
BANNED = "banned"  # Binance 418: counted as limit.bans


@dataclass(frozen=True)
class Verdict:
    """What a limiter decided about one request."""

    outcome: str  # OK, LIMITED or BANNED
    retry_after_ms: int = 0  # how long the client must wait (LIMITED / BANNED)
    used_weight: int = 0  # Binance: weight used in the current minute, after this request
    until_ms: int = 0  # Binance ban end (epoch ms) / Bybit block end
    reason: str = ""  # "weight" or "raw" (Binance), endpoint name (OKX)

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def retry_after_seconds(self) -> int:
        """``Retry-After`` header value: whole seconds, rounded up, at least 1 when waiting."""
        return max(1, math.ceil(self.retry_after_ms / 1000)) if self.retry_after_ms > 0 else 0


def binance_depth_weight(limit: int) -> int:
    """Request weight of ``GET /api/v3/depth`` by ``limit`` (1-100: 5, -500: 25, -1000: 50, more: 250)."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


class BinanceLimiter:
    """IP request-weight limiter with 429 -> 418 escalation (see module doc)."""

    def __init__(self, limits: LimitSettings):
        self.limits = limits
        self.window_start = -1  # start of the current minute window
        self.used_weight = 0
        self.raw_window_start = -1
        self.raw_requests = 0
        self.told_to_wait_until = 0  # after a 429: the client must not call before this
        self.banned_until = 0
        self.bans = 0  # bans so far (the next lasts ban_seconds * 2**bans)

    def _roll(self, now_ms: int) -> None:
        minute = now_ms - now_ms % MINUTE_MS
        if minute != self.window_start:
            self.window_start = minute
            self.used_weight = 0
        five = now_ms - now_ms % FIVE_MINUTES_MS
        if five != self.raw_window_start:
            self.raw_window_start = five
            self.raw_requests = 0

    def used(self, now_ms: int) -> int:
        """Weight used in the minute containing ``now_ms`` (for the header on any response)."""
        self._roll(now_ms)
        return self.used_weight

    def window_reset_ms(self, now_ms: int) -> int:
        return now_ms - now_ms % MINUTE_MS + MINUTE_MS

    def check(self, now_ms: int, weight: int) -> Verdict:
        """Account one request of ``weight`` at ``now_ms`` and decide."""
        self._roll(now_ms)
        if not self.limits.rate_limits:
            self.used_weight += weight
            self.raw_requests += 1
            return Verdict(OK, used_weight=self.used_weight)
        if now_ms < self.banned_until:
            return Verdict(BANNED, self.banned_until - now_ms, self.used_weight, self.banned_until, "ban")
        if now_ms < self.told_to_wait_until:
            length = min(int(self.limits.binance_ban_seconds * 1000) * (2**self.bans), BINANCE_MAX_BAN_MS)
            self.bans += 1
            self.banned_until = now_ms + max(length, 1)
            self.told_to_wait_until = 0
            return Verdict(BANNED, self.banned_until - now_ms, self.used_weight, self.banned_until, "ban")
        self.used_weight += weight
        self.raw_requests += 1
        if self.used_weight > self.limits.binance_weight_per_minute:
            reset = self.window_reset_ms(now_ms)
            self.told_to_wait_until = reset
            return Verdict(LIMITED, reset - now_ms, self.used_weight, reset, "weight")
        if self.raw_requests > self.limits.binance_raw_requests_per_5m:
            reset = now_ms - now_ms % FIVE_MINUTES_MS + FIVE_MINUTES_MS
            self.told_to_wait_until = reset
            return Verdict(LIMITED, reset - now_ms, self.used_weight, reset, "raw")
        return Verdict(OK, used_weight=self.used_weight)


class SlidingWindow:
    """Timestamps of accepted requests within a sliding window of ``window_ms``."""

    def __init__(self, window_ms: int):
        self.window_ms = window_ms
        self.times: deque[int] = deque()

    def _expire(self, now_ms: int) -> None:
        edge = now_ms - self.window_ms
        times = self.times
        while times and times[0] <= edge:
            times.popleft()

    def count(self, now_ms: int) -> int:
        self._expire(now_ms)
        return len(self.times)

    def try_add(self, now_ms: int, capacity: int) -> int:
        """Add a request if fewer than ``capacity`` are in the window; return 0, else the ms
        until the oldest request leaves the window (a request may then pass)."""
        self._expire(now_ms)
        if len(self.times) < capacity:
            self.times.append(now_ms)
            return 0
        return max(1, self.times[0] + self.window_ms - now_ms)


class BybitLimiter:
    """600 requests per 5 s sliding window per IP; over it: refused and blocked for a while."""

    def __init__(self, limits: LimitSettings):
        self.limits = limits
        self.window = SlidingWindow(BYBIT_WINDOW_MS)
        self.blocked_until = 0

    def check(self, now_ms: int) -> Verdict:
        if not self.limits.rate_limits:
            return Verdict(OK)
        if now_ms < self.blocked_until:
            return Verdict(
                LIMITED, self.blocked_until - now_ms, until_ms=self.blocked_until, reason="blocked"
            )
        if self.window.try_add(now_ms, self.limits.bybit_requests_per_5s):
            self.blocked_until = now_ms + max(1, int(self.limits.bybit_block_seconds * 1000))
            return Verdict(LIMITED, self.blocked_until - now_ms, until_ms=self.blocked_until, reason="window")
        return Verdict(OK)


#: OKX rate-limited endpoints (path suffix after /api/v5/) -> LimitSettings field.
OKX_ENDPOINT_LIMITS: dict[str, str] = {
    "market/candles": "okx_candles_per_2s",
    "market/history-candles": "okx_history_candles_per_2s",
    "market/books": "okx_books_per_2s",
    "public/instruments": "okx_instruments_per_2s",
    "public/time": "okx_time_per_2s",
}
#: Endpoints whose limit is not in LimitSettings: the published numbers.
OKX_FIXED_LIMITS: dict[str, int] = {"market/trades": 100, "market/history-trades": 20}


class OkxLimiter:
    """Per-endpoint N requests per 2 s sliding windows."""

    def __init__(self, limits: LimitSettings):
        self.limits = limits
        self.windows: dict[str, SlidingWindow] = {}

    def capacity(self, endpoint: str) -> int | None:
        name = OKX_ENDPOINT_LIMITS.get(endpoint)
        if name is not None:
            return int(getattr(self.limits, name))
        return OKX_FIXED_LIMITS.get(endpoint)

    def check(self, now_ms: int, endpoint: str) -> Verdict:
        if not self.limits.rate_limits:
            return Verdict(OK)
        capacity = self.capacity(endpoint)
        if capacity is None:
            return Verdict(OK)
        window = self.windows.get(endpoint)
        if window is None:
            window = self.windows[endpoint] = SlidingWindow(OKX_WINDOW_MS)
        wait = window.try_add(now_ms, capacity)
        if wait:
            return Verdict(LIMITED, wait, reason=endpoint)
        return Verdict(OK)
