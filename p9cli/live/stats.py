"""Per-feed statistics: counters kept by the feed layer, published as a plain snapshot.

One :class:`FeedStats` per exchange feed. The hot path only increments attributes; the feed's
once-a-second housekeeping calls :meth:`FeedStats.tick` to turn the message counter into a
rate; :meth:`FeedStats.snapshot` returns plain JSON-ready values for the status channel.
"""

from __future__ import annotations

# feed states
STARTING = "starting"  # nothing connected yet
SYNCING = "syncing"  # connected; not every book in sync yet
LIVE = "live"  # every connection open, every book in sync
DEGRADED = "degraded"  # some connection down or some book out of sync after having been live
DOWN = "down"  # no connection open
STOPPED = "stopped"


class FeedStats:
    __slots__ = (
        "exchange",
        "state",
        "messages",
        "messages_per_s",
        "trades",
        "trades_duplicate",
        "trade_ids_missing",
        "trade_blind_intervals",
        "trades_replayed",
        "book_updates",
        "book_states",
        "book_resyncs",
        "reconnects",
        "connect_failures",
        "switchovers",
        "malformed",
        "notices",
        "snapshot_requests",
        "snapshot_failures",
        "last_exchange_ts_ms",
        "receive_lag_ms",
        "receive_lag_max_ms",
        "connections_open",
        "books_valid",
        "books_total",
        "receive_lag_raw_ms",
        "lag_floor_ms",
        "last_recv_ms",
        "_lag_max_window",
        "_last_messages",
        "_last_tick",
    )

    def __init__(self, exchange: str):
        self.exchange = exchange
        self.state = STARTING
        self.messages = 0  # frames received
        self.messages_per_s = 0.0
        self.trades = 0  # trades handed on (new)
        self.trades_duplicate = 0  # trades received again (overlap, replay) and not handed on
        self.trade_ids_missing = 0  # numbered trades never delivered nor replayable
        self.trade_blind_intervals = 0  # disconnected intervals on venues without trade numbering
        self.trades_replayed = 0  # trades recovered over REST after a reconnect
        self.book_updates = 0  # book messages received
        self.book_states = 0  # in-sync book states handed on
        self.book_resyncs: dict[str, int] = {}  # cause -> count
        self.reconnects = 0  # connections replaced after a failure
        self.connect_failures = 0
        self.switchovers = 0  # planned replacements (server notice, max age)
        self.malformed = 0
        self.notices = 0
        self.snapshot_requests = 0
        self.snapshot_failures = 0
        self.last_exchange_ts_ms: int | None = None
        self.last_recv_ms: int | None = None  # local wall time that message was received
        #: receive time - exchange time of the last message, as measured (local clock minus the
        #: exchange's: includes any offset between the two clocks)
        self.receive_lag_raw_ms: int | None = None
        #: the smallest raw lag seen: the best estimate of clock offset + minimum latency
        self.lag_floor_ms: int | None = None
        #: raw lag above that floor, last message / largest in the last tick: how far behind the
        #: fastest delivery the feed runs (clock offset removed; what a backlog shows up in)
        self.receive_lag_ms: int | None = None
        self.receive_lag_max_ms: int | None = None
        self.connections_open = 0
        self.books_valid = 0
        self.books_total = 0
        self._lag_max_window: int | None = None
        self._last_messages = 0
        self._last_tick: float | None = None

    def resync(self, cause: str) -> None:
        self.book_resyncs[cause] = self.book_resyncs.get(cause, 0) + 1

    def lag(self, exchange_ts_ms: int, recv_ms: int) -> None:
        self.last_exchange_ts_ms = exchange_ts_ms
        self.last_recv_ms = recv_ms
        raw = recv_ms - exchange_ts_ms
        self.receive_lag_raw_ms = raw
        floor = self.lag_floor_ms
        if floor is None or raw < floor:
            self.lag_floor_ms = floor = raw
        lag = raw - floor
        self.receive_lag_ms = lag
        m = self._lag_max_window
        if m is None or lag > m:
            self._lag_max_window = lag

    def tick(self, now: float) -> None:
        """Once a second or so: messages/s over the time since the previous tick."""
        if self._last_tick is not None and now > self._last_tick:
            self.messages_per_s = (self.messages - self._last_messages) / (now - self._last_tick)
        self._last_tick = now
        self._last_messages = self.messages
        self.receive_lag_max_ms = self._lag_max_window
        self._lag_max_window = None

    def snapshot(self) -> dict:
        return {
            "exchange": self.exchange,
            "state": self.state,
            "connections_open": self.connections_open,
            "books_valid": self.books_valid,
            "books_total": self.books_total,
            "messages": self.messages,
            "messages_per_s": round(self.messages_per_s, 1),
            "trades": self.trades,
            "trades_duplicate": self.trades_duplicate,
            "trades_replayed": self.trades_replayed,
            "trade_ids_missing": self.trade_ids_missing,
            "trade_blind_intervals": self.trade_blind_intervals,
            "book_updates": self.book_updates,
            "book_states": self.book_states,
            "book_resyncs": dict(self.book_resyncs),
            "reconnects": self.reconnects,
            "connect_failures": self.connect_failures,
            "switchovers": self.switchovers,
            "malformed": self.malformed,
            "notices": self.notices,
            "snapshot_requests": self.snapshot_requests,
            "snapshot_failures": self.snapshot_failures,
            "last_exchange_ts_ms": self.last_exchange_ts_ms,
            "receive_lag_ms": self.receive_lag_ms,
            "receive_lag_max_ms": self.receive_lag_max_ms,
            "receive_lag_raw_ms": self.receive_lag_raw_ms,
        }
