"""The one venue interface of the live side: normalized events and a declarative description
of each exchange's WebSocket feed.

Every exchange module (``binance``, ``bybit``, ``okx``) exports ``VENUE``, a :class:`Venue`;
:func:`get_venue` / :func:`venues` return them by name. The live layer (``p9cli.live``) drives
any venue the same way and never branches on an exchange's name:

1. ``venue.connection_plan(ws_base_url, symbols, candles=True)`` -> :class:`ConnectionPlan` per
   connection to open (URL, subscribe messages to send in order, at most one every
   ``venue.send_interval_s``); open connections at most one every ``venue.connect_interval_s``.
2. keep each connection alive by ``venue.keepalive`` (:class:`Keepalive`); replace a connection
   that received nothing for ``venue.silence_timeout_s`` or lived ``venue.max_connection_age_s``.
3. ``venue.decode(frame)`` -> ``list`` of events (:data:`Event`). Never raises: a frame it cannot
   read comes back as one :class:`Malformed` event (count it, skip it, keep the connection).
4. one book-sync machine per symbol, ``venue.new_book(symbol)`` (see :mod:`p9cli.exchanges.book`),
   fed every :class:`BookSnapshot` / :class:`BookDelta`; when it says ``wants_snapshot`` send
   ``venue.snapshot_request(symbol)`` (a :class:`~p9cli.exchanges.base.RestRequest`) through the
   shared REST client and feed ``venue.parse_snapshot(body, symbol)`` back; when it says
   ``wants_resubscribe`` resubscribe the symbol's book (``venue.book_resubscribe``).

Event values are ``msgspec.Struct`` (``gc=False``): measured with the Binance aggTrade frame of
the 2021 capture, typed msgspec decode into a Struct costs ~640 ns against ~1,000 ns for
``orjson.loads`` + dict lookups + Struct, and ~1,120 ns with a slotted dataclass (Struct
construction 49 ns vs 131 ns), see ``scripts/bench_exchange_adapters.py``.

Number types: trade ``price``/``size`` and candle values are floats (a float64 holds every
exchange decimal of up to 15 significant digits exactly). Book levels keep the exchange's exact
strings (``[price, size, ...]``): the book is keyed by them and OKX's legacy checksum is computed
over them.

``symbol`` is p9's canonical symbol (``"btc"``) for the USDT spot pairs, otherwise the exchange's
instrument code unchanged (``"UNI-USD-SWAP"`` in recorded captures).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from p9cli.exchanges.base import RestRequest

BUY = "buy"
SELL = "sell"

# --------------------------------------------------------------------------------------------
# Normalized events


class Trade(msgspec.Struct, gc=False):
    """One trade print as the exchange sent it (one aggregate on Binance aggTrade / OKX trades).

    ``ts_ms`` exchange time of the trade; ``side`` the aggressor (taker) side, ``"buy"`` or
    ``"sell"``; ``trade_id`` the exchange's id as a string (Binance aggregate id ``a``, Bybit
    ``i``, OKX ``tradeId``). ``id_first``/``id_last``: the range of the exchange's contiguous
    trade numbers this print covers, where the exchange numbers trades contiguously (Binance
    aggTrade ``a``..``a``, trade ``t``..``t``; OKX ``tradeId - count + 1``..``tradeId``), else
    ``None`` (Bybit; OKX frames without ``count``): a jump between consecutive prints is a gap.
    ``seq``: OKX ``seqId`` / Bybit ``seq`` when sent. ``recv_ms``: wall time the frame was
    received, set by the live layer (``decode`` is pure and leaves it ``None``). ``fills``: how
    many of the exchange's individual trades (fills) this print aggregates, the count a candle's
    ``trades`` adds up: Binance aggTrade ``l - f + 1`` (REST aggTrades too), OKX ``count``; 1 where
    the exchange sends one print per trade (Binance ``@trade``/``/trades``, Bybit) or no count.
    """

    exchange: str
    symbol: str
    ts_ms: int
    price: float
    size: float
    side: str
    trade_id: str
    id_first: int | None = None
    id_last: int | None = None
    seq: int | None = None
    recv_ms: int | None = None
    fills: int = 1


class BookSnapshot(msgspec.Struct, gc=False):
    """A full book: replace the local book. Levels are ``[price, size, ...]`` exact strings,
    bids best (highest) first, asks best (lowest) first as the exchange sends them.

    ``update_id``: Binance ``lastUpdateId``, Bybit ``u``, OKX ``seqId`` (``None`` in pre-2023
    OKX frames). ``from_rest``: taken from a REST request (Binance depth, OKX
    ``/api/v5/market/books``) rather than the stream. ``checksum``: OKX only (0 = none).
    ``seq``: Bybit cross sequence.
    """

    exchange: str
    symbol: str
    update_id: int | None
    bids: list
    asks: list
    ts_ms: int | None = None
    from_rest: bool = False
    checksum: int | None = None
    seq: int | None = None


class BookDelta(msgspec.Struct, gc=False):
    """Changed levels with ABSOLUTE sizes (size zero deletes the level).

    ========== ============================ ================== ===================
    field      Binance                      Bybit              OKX
    ========== ============================ ================== ===================
    first_id   ``U``                        ``u``              ``seqId``
    update_id  ``u``                        ``u``              ``seqId``
    prev_id    ``pu`` (USD-M only)          --                 ``prevSeqId``
    checksum   --                           --                 ``checksum`` (0 = none)
    seq        --                           ``seq``            --
    ========== ============================ ================== ===================
    """

    exchange: str
    symbol: str
    first_id: int | None
    update_id: int | None
    bids: list
    asks: list
    prev_id: int | None = None
    ts_ms: int | None = None
    checksum: int | None = None
    seq: int | None = None


class ExchangeCandle(msgspec.Struct, gc=False):
    """One bar of the exchange's own kline/candle stream (for the live-candle cross-check).
    ``timeframe`` canonical (``"1m"``), ``open_time`` ms, ``closed`` the exchange's flag;
    ``quote_volume`` (Binance ``q``, Bybit ``turnover``, OKX ``volCcyQuote``) and ``trades``
    (Binance ``n``; ``None`` where the exchange gives no count) as stored in the history."""

    exchange: str
    symbol: str
    timeframe: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool
    quote_volume: float | None = None
    trades: int | None = None


#: Notice kinds.
ACK = "ack"  # a subscription (or other request) was accepted
PONG = "pong"  # answer to our keepalive ping
ERROR = "error"  # the exchange reports an error for a request (``code``, ``message``)
SUBSCRIBE_FAILED = "subscribe_failed"  # a subscribe request was refused
RECONNECT_SOON = "reconnect_soon"  # Binance serverShutdown, OKX notice 64008: open a replacement
INFO = "info"  # anything else the exchange announces (logged, no action)


class Notice(msgspec.Struct, gc=False):
    """A control frame: ``kind`` one of ``ack``, ``pong``, ``error``, ``subscribe_failed``,
    ``reconnect_soon``, ``info``; ``code``/``message`` as the exchange sent them;
    ``request_id`` the id echoed back (``str``), when there is one."""

    exchange: str
    kind: str
    code: str | None = None
    message: str = ""
    request_id: str | None = None
    ts_ms: int | None = None


class Malformed(msgspec.Struct, gc=False):
    """A frame that could not be decoded: count it and skip it (never a reason to reconnect).
    ``reason`` one line; ``excerpt`` the first 120 characters of the frame."""

    exchange: str
    reason: str
    excerpt: str = ""


Event = Trade | BookSnapshot | BookDelta | ExchangeCandle | Notice | Malformed
BookEvent = BookSnapshot | BookDelta


def malformed(exchange: str, reason: str, frame: bytes | str | Any) -> Malformed:
    """A :class:`Malformed` with a short printable excerpt of ``frame``."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        text = bytes(frame[:480]).decode("utf-8", "replace")
    else:
        text = str(frame)[:480]
    text = " ".join(text.split())
    return Malformed(exchange, " ".join(str(reason).split())[:200], text[:120])


# --------------------------------------------------------------------------------------------
# Declarative venue description

#: What a connection carries (``ConnectionPlan.carries``).
TRADES = "trades"
BOOKS = "books"
CANDLES = "candles"


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """One WebSocket connection to open: ``url`` (full, including path and any stream list),
    the ``subscribe`` messages to send after it opened (in order, paced by the venue's
    ``send_interval_s``), the ``symbols`` it carries and what for (``carries``), and the
    stream/topic names (for logs)."""

    url: str
    subscribe: tuple[str, ...]
    symbols: tuple[str, ...]
    carries: frozenset[str]
    streams: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Keepalive:
    """How a connection is kept alive.

    * ``ping_text`` ``None``: the SERVER pings with protocol ping frames and the WebSocket
      library answers (Binance); nothing for the client to send.
    * ``ping_every_s``: send ``ping_text`` at this fixed interval (Bybit ``{"op":"ping"}``, 20 s).
    * ``ping_when_idle_s``: send ``ping_text`` when nothing was received for this long (OKX
      ``ping`` before 30 s of silence).
    * ``pong_timeout_s``: after a ping, no :data:`PONG` notice (or any frame) within this long
      means the connection is dead: replace it.
    """

    ping_text: str | None
    ping_every_s: float | None = None
    ping_when_idle_s: float | None = None
    pong_timeout_s: float | None = None


@dataclass(frozen=True)
class Venue:
    """Everything the live layer needs to know about one exchange's market-data feed."""

    name: str
    #: ``decode(frame) -> list[Event]``; never raises (see :class:`Malformed`).
    decode: Callable[[bytes | str], list]
    #: ``connection_plan(ws_base_url, symbols, candles=True) -> list[ConnectionPlan]`` where
    #: ``ws_base_url`` is ``Settings.ws_url(name)`` (``wss://ws.okx.com``, ``ws://127.0.0.1:8803``)
    #: and ``symbols`` canonical (``"btc"``).
    connection_plan: Callable[..., list[ConnectionPlan]]
    keepalive: Keepalive
    #: ``new_book(symbol) -> BookSync`` (a fresh machine of :mod:`p9cli.exchanges.book`).
    new_book: Callable[[str], Any]
    #: ``snapshot_request(symbol) -> RestRequest`` for the book's REST snapshot (``None``: the
    #: venue's books never need one).
    snapshot_request: Callable[[str], RestRequest] | None
    #: ``parse_snapshot(body, symbol) -> BookSnapshot`` (raises ``ExchangeError`` subclasses
    #: like the REST parsers; the caller runs the adapter's ``check_response`` first).
    parse_snapshot: Callable[[bytes, str], BookSnapshot] | None
    #: ``book_resubscribe(symbol) -> (unsubscribe message, subscribe message)`` on the
    #: connection that carries the symbol's book (for ``wants_resubscribe``); ``None``: never.
    book_resubscribe: Callable[[str], tuple[str, str]] | None
    #: optional replay of a hole in the trade numbering, paged:
    #: ``trade_replay_request(symbol, from_id, to_id, page)`` for the open span ``from_id..to_id``
    #: (inclusive; page 0 the first request of a replay, page k the k-th follow-up while the span
    #: is still open, recomputed from what arrived) and ``parse_trade_replay(body, symbol) ->
    #: list[Trade]`` (ascending). Binance: aggTrades ``fromId=from_id`` on every page; OKX: page 0
    #: ``market/trades`` (newest 500), then ``history-trades`` ``after=to_id+1`` (100 below the top).
    trade_replay_request: Callable[[str, int, int, int], RestRequest] | None
    parse_trade_replay: Callable[[bytes, str], list] | None
    #: timeframe of the exchange-candle subscription for the cross-check.
    candle_timeframe: str = "1m"
    #: what the exchange's own candles show for an interval without trades:
    #: ``"previous_close"`` (a bar with O=H=L=C=previous close, volume 0) or ``"omit"`` (no bar).
    empty_candle: str = "previous_close"
    #: the exchange's candles carry a trade count (stored in the history's ``trades`` column).
    candle_trade_counts: bool = False
    #: the exchange closes connections older than this (Binance: 24 h); ``None``: no limit.
    max_connection_age_s: float | None = None
    #: the most streams/channels on one connection (the plan respects it).
    streams_per_connection: int = 1024
    #: at most one message SENT per this many seconds on one connection (exchange incoming limit).
    send_interval_s: float = 0.1
    #: at most one NEW connection per this many seconds per IP.
    connect_interval_s: float = 1.0
    #: default watchdog: replace a connection that received nothing for this long.
    silence_timeout_s: float = 60.0


VENUE_NAMES: tuple[str, ...] = ("binance", "bybit", "okx")


def get_venue(name: str) -> Venue:
    """The :class:`Venue` of exchange ``name`` (``ValueError`` for an unknown one)."""
    if name not in VENUE_NAMES:
        raise ValueError(f"unknown exchange {name!r}; valid: {', '.join(VENUE_NAMES)}")
    return importlib.import_module(f"p9cli.exchanges.{name}").VENUE


def venues(names: Sequence[str] = VENUE_NAMES) -> list[Venue]:
    return [get_venue(n) for n in names]
