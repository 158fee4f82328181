"""Shared state of a running simulator: clock, per-exchange faults, limits and counters.

This module is the contract between the simulator's parts:

* ``model.py`` / ``book.py`` — the deterministic market (pure, no I/O);
* ``rest_*.py`` — the REST endpoints of each exchange, rate limits, REST faults;
* ``ws_*.py`` / ``feed.py`` — the WebSocket endpoints and the live feed loop;
* ``control.py`` / ``server.py`` — the control API and the process around it.

Everything here is plain data; the servers read it on every request, so the control API
can change faults and limits at run time.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

#: the fastest clock: a year of simulated time in about 30 s of real time
MAX_SPEED = 1e6


class SimClock:
    """Simulated wall clock in epoch milliseconds.

    ``now_ms() = start_ms + (monotonic elapsed) * speed + jumped``. ``advance(ms)`` jumps the
    clock forward (used by tests: "the market moved on by an hour"); it never goes back.
    """

    def __init__(self, start_ms: int | None = None, speed: float = 1.0):
        if not (math.isfinite(speed) and 0 < speed <= MAX_SPEED):
            raise ValueError(f"must be a number > 0 and <= {MAX_SPEED:g}")
        self.speed = float(speed)
        self._mono0 = time.monotonic()
        self.start_ms = int(time.time() * 1000) if start_ms is None else int(start_ms)
        self._jumped = 0

    def now_ms(self) -> int:
        return self.start_ms + int((time.monotonic() - self._mono0) * 1000 * self.speed) + self._jumped

    def advance(self, ms: int) -> int:
        if ms < 0:
            raise ValueError("the clock only moves forward")
        self._jumped += int(ms)
        return self.now_ms()

    def sim_seconds(self, wall_seconds: float) -> float:
        """Simulated seconds that pass in ``wall_seconds`` of real time."""
        return wall_seconds * self.speed

    def wall_seconds(self, sim_seconds: float) -> float:
        """Real seconds to wait for ``sim_seconds`` of simulated time to pass."""
        return sim_seconds / self.speed


class Settings:
    """What fault and limit settings share: their names, one validated setter, a dict."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def set(self, name: str, value: Any) -> None:
        set_field(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class FaultSettings(Settings):
    """Faults injected on one exchange. 0 / 0.0 / False means off (``ws_reply_latency_ms`` is
    on by default: a realistic reply delay, see below). "every N" counts per
    connection for WebSocket faults and per exchange for REST faults, so they are
    deterministic and a test can predict exactly when they fire."""

    # -- WebSocket --
    ws_drop_every_messages: int = 0  # close the connection (code 1006-like abort) after N frames sent
    ws_drop_every_seconds: float = 0.0  # close each connection T (wall) seconds after it opened
    ws_stall_after_messages: int = 0  # after N frames, stop sending anything (keep the socket open)
    ws_malformed_every: int = 0  # every Nth data frame is sent truncated (invalid JSON)
    depth_gap_every: int = 0  # every Nth book update skips a sequence id (Binance U/u, Bybit u, OKX seqId)
    okx_bad_checksum_every: int = 0  # every Nth OKX `books` update carries a wrong checksum
    bybit_reset_every_seconds: float = 0.0  # Bybit: send a `u=1` snapshot (service restart) every T s
    okx_seq_reset_every_seconds: float = 0.0  # OKX books: the seqId sequence restarts lower every T s
    # announced shutdowns: the notice T (wall) s after a connection opened, the close after the grace
    binance_server_shutdown_every_seconds: float = 0.0  # Binance `{"e":"serverShutdown","E":..}`
    binance_server_shutdown_grace_seconds: float = 600.0  # third parties: ~10 minutes before the close
    okx_notice_every_seconds: float = 0.0  # OKX `{"event":"notice","code":"64008",..}` (service upgrade)
    okx_notice_grace_seconds: float = 60.0  # OKX docs: ~60 s before the forced disconnect
    # -- REST --
    rest_429_every: int = 0  # every Nth REST request answers the exchange's rate-limit error
    rest_5xx_every: int = 0  # every Nth REST request answers HTTP 503 (502/504 variants rotate)
    rest_timeout_every: int = 0  # every Nth REST request hangs for `rest_timeout_seconds` then drops
    rest_timeout_seconds: float = 30.0
    rest_drop_every: int = 0  # every Nth REST request: connection closed without a response
    rest_geo_block: bool = False  # every REST request: the geo-block answer (Binance 451, Bybit 403 CloudFront)
    latency_ms: float = 0.0  # added to every REST response and every WS frame
    #: WebSocket replies to the client's own messages (acks, pongs, errors) leave after this
    #: (wall) delay, like a real exchange a network round trip away; 0 = at once, which makes
    #: clients that record a subscription only after sending it (pybit) race their own ack
    ws_reply_latency_ms: float = 20.0


@dataclass
class LimitSettings(Settings):
    """Page sizes and rate limits of one exchange, at the published values by default."""

    rate_limits: bool = True
    # Binance
    binance_weight_per_minute: int = 6000
    binance_raw_requests_per_5m: int = 300_000  # since 2026-04-02 (was 61,000; CHANGELOG 2026-03-27)
    binance_ban_seconds: float = 120.0  # first 418 ban; doubles on each further ban (capped at 3 days)
    binance_klines_max_limit: int = 1000
    binance_klines_default_limit: int = 500
    # Bybit
    bybit_requests_per_5s: int = 600  # per IP, all endpoints; over it: HTTP 403 "access too frequent"
    bybit_block_seconds: float = 600.0  # how long the IP stays blocked after a 403
    bybit_kline_max_limit: int = 1000
    bybit_kline_default_limit: int = 200
    # OKX: per endpoint per IP, N requests per 2 s; over it: HTTP 429 code 50011
    okx_candles_per_2s: int = 40
    okx_history_candles_per_2s: int = 20
    okx_books_per_2s: int = 40
    okx_instruments_per_2s: int = 20
    okx_time_per_2s: int = 10
    okx_candles_max_limit: int = 300
    okx_history_candles_max_limit: int = 300
    okx_candles_default_limit: int = 100
    okx_candles_window: int = 1440  # /market/candles serves only the newest N bars
    # OKX `books` protocol options (2026 behaviour by default, see docs/sim.md)
    okx_legacy_checksum: bool = False  # real CRC32 `checksum` (before 2026-06-23) instead of 0
    okx_books_snapshot: bool = True  # in-band `action:"snapshot"` on subscribe (announced for removal)


def set_field(obj: Any, name: str, value: Any) -> None:
    """Set a dataclass field from a string or JSON value, converted to the field's type.

    Every numeric setting is a count, a size, a duration or a rate: a finite number >= 0
    (whole for integer fields). Anything else raises ValueError with one clear line (KeyError
    for an unknown name); the field is left unchanged."""
    types = {f.name: f.type for f in fields(obj)}
    if name not in types:
        raise KeyError(f"unknown setting {name!r}; valid: {', '.join(types)}")
    current = getattr(obj, name)
    if isinstance(current, bool):
        if isinstance(value, str):
            low = value.strip().lower()
            if low not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
                raise ValueError(f"{name} takes true/false, not {value!r}")
            value = low in ("1", "true", "on", "yes")
        elif not isinstance(value, bool | int) or value not in (0, 1):
            raise ValueError(f"{name} takes true/false, not {value!r}")
        setattr(obj, name, bool(value))
    elif isinstance(current, int | float):
        setattr(obj, name, _number(name, value, whole=isinstance(current, int)))
    else:
        setattr(obj, name, value)


def _number(name: str, value: Any, whole: bool) -> int | float:
    kind = "a whole number >= 0" if whole else "a number >= 0"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} takes {kind}, not {value!r}")
    try:
        number = float(value.strip()) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"{name} takes {kind}, not {value!r}") from None
    if not math.isfinite(number) or number < 0 or (whole and number != int(number)):
        raise ValueError(f"{name} takes {kind}, not {value!r}")
    return int(number) if whole else float(number)


@dataclass
class ExchangeState:
    """Everything one exchange's servers share. ``counters`` keys (all ints):

    * ``rest.requests`` — REST requests answered (any status);
    * ``limit.violations`` — requests refused by a real rate limit (Binance 429, Bybit 403, OKX 50011);
    * ``limit.bans`` — Binance 418 answers (a request sent while told to wait);
    * ``fault.<name>`` — each injected fault that fired, by FaultSettings field name;
    * ``ws.connections`` / ``ws.open`` (gauge) / ``ws.frames_sent`` / ``ws.messages_received``;
    * ``ws.keepalive_closes`` — connections closed for a missing pong / silence;
    * ``ws.notice_closes`` — connections closed at the end of a shutdown notice's grace period.
    """

    name: str
    faults: FaultSettings = field(default_factory=FaultSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    counters: Counter = field(default_factory=Counter)

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] += n


@dataclass
class Simulator:
    """The running simulator as its servers see it (built by ``server.py``).

    * ``model`` — :class:`p9cli.sim.model.MarketModel` (candles, trades; pure);
    * ``books`` — ``{(exchange, symbol): p9cli.sim.book.BookEngine}``, created and stepped
      by the live feed (``feed.py``); REST depth snapshots and the control API read them;
    * ``feed`` — the live feed loop (``feed.LiveFeed``) that WebSocket handlers subscribe to.
    """

    clock: SimClock
    model: Any
    seed: int
    host: str = "127.0.0.1"
    port_base: int = 8800
    exchanges: dict[str, ExchangeState] = field(default_factory=dict)
    books: dict[tuple[str, str], Any] = field(default_factory=dict)
    feed: Any = None
