"""What the feed layer hands on besides the venue's own events.

The consumer's handler receives, in arrival order:

* :class:`p9cli.exchanges.venue.Trade` — new trades only (deduplicated), ``recv_ms`` set;
* :class:`BookState` — an order book that is provably in sync, after every change;
* :class:`p9cli.exchanges.venue.ExchangeCandle` — the exchange's own kline stream (cross-check);
* candle updates of the live-candle builder (``p9cli.live.candles``) when it is wired in;
* :class:`FeedEvent` — state changes: connections, books going invalid and back, trade gaps,
  malformed frames, exchange notices.
"""

from __future__ import annotations

import msgspec

# FeedEvent kinds
CONNECTED = "connected"  # a connection is open and subscribed (detail: url)
DISCONNECTED = "disconnected"  # a connection ended (cause: closed / silence / pong_timeout / ...)
CONNECT_FAILED = "connect_failed"  # an attempt to connect failed; retrying after a back-off
SWITCHOVER = "switchover"  # a replacement connection took over (cause: reconnect_soon / max_age)
BOOK_INVALID = "book_invalid"  # the symbol's book is no longer in sync (cause) - nothing handed on
BOOK_SYNCED = "book_synced"  # the symbol's book is in sync again (update_id in detail)
TRADE_GAP = "trade_gap"  # trades the exchange numbered but never delivered (count in detail)
MALFORMED = "malformed"  # a frame could not be decoded: counted and skipped
NOTICE = "notice"  # the exchange said something (error, subscribe failure, upgrade notice)
STATE = "state"  # the feed's overall state changed (detail: the new state)

# book invalidation causes (FeedEvent.cause for BOOK_INVALID, keys of stats "book_resyncs")
GAP = "gap"
CHECKSUM = "checksum"
CROSSED = "crossed"
RESET = "reset"
DISCONNECT = "disconnect"
STALE_SNAPSHOT = "snapshot_too_old"
MALFORMED_BOOK = "malformed"
RESUBSCRIBED = "resubscribed"


class FeedEvent(msgspec.Struct, gc=False):
    exchange: str
    kind: str
    symbol: str | None = None
    cause: str = ""
    detail: str = ""
    ts_ms: int = 0


class BookState(msgspec.Struct, gc=False):
    """A book state that is provably in sync, handed on after every change.

    ``update_id`` is the exchange's own id of this state (Binance ``u``/``lastUpdateId``, Bybit
    ``u``, OKX ``seqId``); ``seq`` Bybit's cross sequence ``seq`` of the same state. ``ts_ms`` the exchange's time of the last message applied,
    ``recv_ms`` when it was received. ``book`` is the live book itself (an
    :class:`p9cli.exchanges.book.OrderBook`): read it inside the handler (e.g. ``state.top(20)``)
    and copy what you keep — it changes with the next update."""

    exchange: str
    symbol: str
    update_id: int
    ts_ms: int | None
    recv_ms: int
    bid: float
    bid_size: float
    ask: float
    ask_size: float
    #: the exchange's cross sequence of this state where it sends one (Bybit ``seq``), else None
    seq: int | None = None
    book: object = None

    def top(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The best ``n`` bids and asks as exact ``(price, size)`` strings, best first."""
        book = self.book
        return book.bids.top(n), book.asks.top(n)
