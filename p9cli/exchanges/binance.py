"""Binance Spot: REST requests and parsing, error classification, and the live venue
(``VENUE``: combined WebSocket streams, ``decode``, diff-depth book sync with REST snapshots).

Pure functions over bytes; see ``shared/docs/exchange-protocols.md`` section 2.

* ``GET /api/v3/klines``: ``startTime``/``endTime`` filter on the bar OPEN time, inclusive
  at both ends; rows ascending, 12 positions, ints at 0, 6, 8; no closed flag.
* Errors: ``{"code": -1121, "msg": "Invalid symbol."}`` with HTTP 4xx; 429 (+ ``Retry-After``)
  when over the weight limit, 418 when banned, 403 WAF block, 5xx server side.
* Weight: 6000 per minute per IP (fixed window, reported in ``X-MBX-USED-WEIGHT-1M``),
  klines cost 2, server time 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
import orjson

from p9cli import universe
from p9cli.exchanges.base import (
    BadRequest,
    Banned,
    ExchangeError,
    GeoBlocked,
    KlinesPage,
    MalformedResponse,
    RateBucket,
    RateLimited,
    RestRequest,
    ServerError,
    bars_in_window,
    body_snippet,
    candles_from_rows,
    canonical_symbol,
    check_symbol,
    check_timeframe,
    header,
    limit_param,
    load_json,
    retry_after_seconds,
    status_error,
    timeframe_of,
    try_json,
)
from p9cli.exchanges.book import BinanceBookSync
from p9cli.exchanges.venue import (
    ACK,
    BOOKS,
    BUY,
    CANDLES,
    ERROR,
    RECONNECT_SOON,
    SELL,
    TRADES,
    BookDelta,
    BookSnapshot,
    ConnectionPlan,
    ExchangeCandle,
    Keepalive,
    Notice,
    Trade,
    Venue,
    malformed,
)

NAME = "binance"

WEIGHT_BUCKET = "binance:weight"
RATE_BUCKETS: tuple[RateBucket, ...] = (RateBucket(WEIGHT_BUCKET, 6000, 60.0, "fixed"),)
#: concurrent REST requests of one client (keep-alive connections in its pool)
REST_MAX_IN_FLIGHT = 16
#: header with the server time (ms) a rate limit resets at: none (429/418 carry Retry-After)
RATE_LIMIT_RESET_HEADER: str | None = None

MAX_KLINES_PER_REQUEST = 1000
#: The klines endpoint serves the whole history (no recent-bars window like OKX's, so
#: a history fetch never splits its windows at one).
RECENT_CANDLES_BARS: int | None = None
DEFAULT_KLINES_LIMIT = 500
KLINES_PATH = "/api/v3/klines"
KLINES_WEIGHT = 2
TIME_PATH = "/api/v3/time"
TIME_WEIGHT = 1

#: Error codes of the server side (retry): -1000 UNKNOWN, -1001 DISCONNECTED, -1004 SERVER_BUSY,
#: -1006 UNEXPECTED_RESP, -1007 TIMEOUT, -1008 SERVER_BUSY (overloaded).
SERVER_ERROR_CODES = frozenset({-1000, -1001, -1004, -1006, -1007, -1008})
TOO_MANY_REQUESTS = -1003


def symbol_code(symbol: str) -> str:
    """``btc`` -> ``BTCUSDT``."""
    return universe.exchange_symbol(NAME, check_symbol(symbol))


def interval_code(timeframe: str) -> str:
    """``1h`` -> ``1h`` (Binance uses the canonical codes)."""
    check_timeframe(timeframe)
    return universe.interval_code(NAME, timeframe)


# --------------------------------------------------------------------------------------------
# Requests


def klines_request(
    symbol: str,
    timeframe: str,
    first_open_ms: int,
    last_open_ms: int,
    server_now_ms: int,
    limit: int | None = None,
) -> RestRequest:
    """The request for exactly the bars with ``first_open_ms <= open_time <= last_open_ms``.

    Parameters go in alphabetical order (``endTime, interval, limit, startTime, symbol``), the
    order of the recorded requests. ``limit`` is left out when ``None`` and the window fits
    Binance's default page (500 bars); otherwise the window size (capped at 1000) is sent.
    ``server_now_ms`` is not needed by Binance (same signature as the other exchanges).
    """
    tf_ms = check_timeframe(timeframe)
    n = limit_param(
        limit,
        bars_in_window(first_open_ms, last_open_ms, tf_ms),
        DEFAULT_KLINES_LIMIT,
        MAX_KLINES_PER_REQUEST,
    )
    params = [("endTime", str(int(last_open_ms))), ("interval", interval_code(timeframe))]
    if n is not None:
        params.append(("limit", str(n)))
    params.append(("startTime", str(int(first_open_ms))))
    params.append(("symbol", symbol_code(symbol)))
    return RestRequest(KLINES_PATH, tuple(params), WEIGHT_BUCKET, KLINES_WEIGHT)


def server_time_request() -> RestRequest:
    return RestRequest(TIME_PATH, (), WEIGHT_BUCKET, TIME_WEIGHT)


# --------------------------------------------------------------------------------------------
# Parsing


def parse_klines(body: bytes, timeframe: str) -> KlinesPage:
    """Kline rows -> :class:`KlinesPage` (ascending; ``confirmed`` is ``None``: Binance has no flag)."""
    check_timeframe(timeframe)
    rows = load_json(body, NAME)
    if isinstance(rows, dict) and "code" in rows:
        raise error_from_body(rows, status=None)
    if not isinstance(rows, list):
        raise MalformedResponse(f"klines: expected a JSON array, got {body_snippet(body)!r}", exchange=NAME)
    return candles_from_rows(rows, NAME, min_fields=9, quote_volume=7, trades_at=8)


def parse_server_time(body: bytes) -> int:
    """``{"serverTime": 1499827319559}`` -> ms."""
    obj = load_json(body, NAME)
    if isinstance(obj, dict) and "serverTime" in obj:
        try:
            return int(obj["serverTime"])
        except (TypeError, ValueError):
            pass
    if isinstance(obj, dict) and "code" in obj:
        raise error_from_body(obj, status=None)
    raise MalformedResponse(f"server time: unexpected body {body_snippet(body)!r}", exchange=NAME)


# --------------------------------------------------------------------------------------------
# Errors and rate-limit headers


def error_from_body(obj: dict, status: int | None, retry_after_s: float | None = None) -> ExchangeError:
    """The error for a Binance error body ``{"code": <negative int>, "msg": "..."}``."""
    code = obj.get("code")
    msg = str(obj.get("msg", "")) or "error"
    code_s = str(code) if code is not None else None
    if code == TOO_MANY_REQUESTS:
        if status == 418:
            return Banned(retry_after_s, msg, exchange=NAME, status=status, code=code_s)
        return RateLimited(retry_after_s, msg, exchange=NAME, status=status, code=code_s)
    if code in SERVER_ERROR_CODES:
        return ServerError(msg, exchange=NAME, status=status, code=code_s, retry_after_s=retry_after_s)
    return BadRequest(msg, exchange=NAME, status=status, code=code_s)


def check_response(status: int, headers: Mapping[str, str], body: bytes) -> None:
    """Raise the right :class:`ExchangeError` for a failed response; return for a 2xx.

    451 -> GeoBlocked, 429 -> RateLimited, 418 -> Banned (both with ``Retry-After``), 403 -> Banned (WAF block),
    408 -> RequestTimeout, 5xx -> ServerError, other 4xx -> BadRequest (or RateLimited/
    ServerError by the body's code). A 2xx body is checked by the parsers.
    """
    if 200 <= status < 300:
        return
    retry_after = retry_after_seconds(headers)
    obj = try_json(body)
    detail = obj if isinstance(obj, dict) and "code" in obj else None
    msg = str(detail.get("msg", "")) if detail else body_snippet(body)
    code = str(detail.get("code")) if detail else None
    if status == 451:  # reference 2.1: a request from a restricted location
        raise GeoBlocked(status, exchange=NAME, detail=msg[:160])
    if status == 418:
        raise Banned(retry_after, msg or "IP banned", exchange=NAME, status=status, code=code)
    if status == 403:
        raise Banned(
            retry_after,
            msg or "blocked by the web application firewall",
            exchange=NAME,
            status=status,
            code=code,
        )
    client_error = error_from_body(detail, status, retry_after) if detail is not None else None
    raise status_error(NAME, status, msg, code, retry_after, client_error)


def used_weight(headers: Mapping[str, str]) -> dict[str, int]:
    """``X-MBX-USED-WEIGHT-1M: 42`` -> ``{"binance:weight": 42}``; ``{}`` when absent or bad."""
    raw = header(headers, "X-MBX-USED-WEIGHT-1M")
    if raw is None:
        return {}
    try:
        return {WEIGHT_BUCKET: int(raw.strip())}
    except ValueError:
        return {}


# --------------------------------------------------------------------------------------------
# Order book snapshot (REST), trades (REST)

DEPTH_PATH = "/api/v3/depth"
TRADES_PATH = "/api/v3/trades"
AGG_TRADES_PATH = "/api/v3/aggTrades"
AGG_TRADES_WEIGHT = 4
#: (max limit, weight) steps of GET /api/v3/depth.
DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))
SNAPSHOT_DEPTH = 1000


def depth_request(symbol: str, limit: int = SNAPSHOT_DEPTH) -> RestRequest:
    """``GET /api/v3/depth?symbol=BTCUSDT&limit=1000`` (weight by limit: 5/25/50/250)."""
    for top, weight in DEPTH_WEIGHTS:
        if limit <= top:
            return RestRequest(
                DEPTH_PATH, (("symbol", symbol_code(symbol)), ("limit", str(limit))), WEIGHT_BUCKET, weight
            )
    raise ValueError(f"depth limit must be <= 5000, got {limit}")


class _DepthSnapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[list[str]]
    asks: list[list[str]]
    E: int | None = None
    T: int | None = None


_depth_snapshot_decoder = msgspec.json.Decoder(_DepthSnapshot)


def parse_depth_snapshot(body: bytes, symbol: str) -> BookSnapshot:
    """REST depth ``{"lastUpdateId", "bids", "asks"}`` (USD-M adds ``E``, ``T``) -> a
    :class:`BookSnapshot` (``from_rest``) of canonical ``symbol``."""
    try:
        d = _depth_snapshot_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        obj = try_json(body)
        if isinstance(obj, dict) and "code" in obj:
            raise error_from_body(obj, status=None) from None
        raise MalformedResponse(f"depth: unexpected body {body_snippet(body)!r}", exchange=NAME) from None
    t = d.T if d.T is not None else d.E
    return BookSnapshot(NAME, symbol, d.lastUpdateId, d.bids, d.asks, t, True)


def parse_rest_trades(body: bytes, symbol: str) -> list[Trade]:
    """``GET /api/v3/trades`` rows (``id, price, qty, time, isBuyerMaker``) -> trades."""
    rows = load_json(body, NAME)
    if isinstance(rows, dict) and "code" in rows:
        raise error_from_body(rows, status=None)
    try:
        return [
            Trade(
                NAME,
                symbol,
                int(r["time"]),
                float(r["price"]),
                float(r["qty"]),
                SELL if r["isBuyerMaker"] else BUY,
                str(r["id"]),
                int(r["id"]),
                int(r["id"]),
            )
            for r in rows
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"trades: bad row ({exc!r})", exchange=NAME) from None


def agg_trades_request(
    symbol: str, from_id: int, to_id: int | None = None, page: int = 0, limit: int = 1000
) -> RestRequest:
    """``GET /api/v3/aggTrades?symbol=BTCUSDT&fromId=N&limit=1000`` (weight 4): the aggregate
    trades from id ``from_id`` on (the replay of a hole ``from_id..to_id``). The venue's
    ``trade_replay_request(symbol, from_id, to_id, page)``: ``to_id`` and ``page`` are not
    needed (every page starts at the bottom of what is still missing)."""
    params = (("symbol", symbol_code(symbol)), ("fromId", str(int(from_id))), ("limit", str(limit)))
    return RestRequest(AGG_TRADES_PATH, params, WEIGHT_BUCKET, AGG_TRADES_WEIGHT)


class _RestAggTrade(msgspec.Struct):
    a: int
    p: str
    q: str
    T: int
    m: bool
    f: int | None = None
    l: int | None = None  # noqa: E741 - the exchange's field name


_rest_agg_trades_decoder = msgspec.json.Decoder(list[_RestAggTrade])


def parse_agg_trades(body: bytes, symbol: str) -> list[Trade]:
    """``GET /api/v3/aggTrades`` rows -> trades (ascending by id, as sent)."""
    try:
        rows = _rest_agg_trades_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        obj = try_json(body)
        if isinstance(obj, dict) and "code" in obj:
            raise error_from_body(obj, status=None) from None
        raise MalformedResponse(f"aggTrades: unexpected body {body_snippet(body)!r}", exchange=NAME) from None
    return [
        Trade(
            NAME, symbol, r.T, float(r.p), float(r.q), SELL if r.m else BUY, str(r.a), r.a, r.a, fills=_fills(r.f, r.l)
        )
        for r in rows
    ]


# --------------------------------------------------------------------------------------------
# WebSocket: combined streams, decode


TRADE_STREAM = "aggTrade"
DEPTH_STREAM = "depth@100ms"
CANDLE_STREAM = "kline_1m"
#: streams per connection: the exchange allows 1024; the stream list travels in the URL, kept short.
STREAMS_PER_CONNECTION = 200


def stream_names(symbol: str, candles: bool = False) -> tuple[str, ...]:
    """``("btcusdt@aggTrade", "btcusdt@depth@100ms"[, "btcusdt@kline_1m"])``."""
    code = symbol_code(symbol).lower()
    names = [f"{code}@{TRADE_STREAM}", f"{code}@{DEPTH_STREAM}"]
    if candles:
        names.append(f"{code}@{CANDLE_STREAM}")
    return tuple(names)


def combined_stream_path(streams: tuple[str, ...] | list[str]) -> str:
    """``/stream?streams=a/b/c`` (every frame then arrives wrapped ``{"stream", "data"}``)."""
    return "/stream?streams=" + "/".join(streams)


def subscribe_message(streams: tuple[str, ...] | list[str], request_id: int = 1) -> str:
    return orjson.dumps({"method": "SUBSCRIBE", "params": list(streams), "id": request_id}).decode()


def connection_plan(ws_base_url: str, symbols: Sequence[str], candles: bool = True) -> list[ConnectionPlan]:
    """Streams in the URL (``/stream?streams=...``, nothing to send: Binance counts every
    message sent against 5 per second), at most :data:`STREAMS_PER_CONNECTION` per connection,
    a symbol's streams always on one connection."""
    base = ws_base_url.rstrip("/")
    per_symbol = 3 if candles else 2
    chunk = max(1, STREAMS_PER_CONNECTION // per_symbol)
    carries = frozenset({TRADES, BOOKS, CANDLES} if candles else {TRADES, BOOKS})
    plans = []
    for i in range(0, len(symbols), chunk):
        group = tuple(symbols[i : i + chunk])
        streams = tuple(s for sym in group for s in stream_names(sym, candles))
        plans.append(ConnectionPlan(base + combined_stream_path(streams), (), group, carries, streams))
    return plans


_NO_RAW = msgspec.Raw()


class _Envelope(msgspec.Struct):
    stream: str | None = None
    data: msgspec.Raw = _NO_RAW
    e: str | None = None
    id: int | str | None = None
    code: int | str | None = None
    msg: str | None = None
    error: msgspec.Raw = _NO_RAW


class _AggTrade(msgspec.Struct):
    a: int
    p: str
    q: str
    T: int
    m: bool
    s: str = ""
    f: int | None = None
    l: int | None = None  # noqa: E741 - the exchange's field name


class _RawTrade(msgspec.Struct):
    t: int
    p: str
    q: str
    T: int
    m: bool
    s: str = ""


class _DepthUpdate(msgspec.Struct):
    U: int
    u: int
    b: list[list[str]]
    a: list[list[str]]
    E: int | None = None
    pu: int | None = None
    s: str = ""


class _KlineBar(msgspec.Struct):
    t: int
    i: str
    o: str
    h: str
    l: str  # noqa: E741 - the exchange's field name
    c: str
    v: str
    x: bool
    q: str | None = None
    n: int | None = None


class _Kline(msgspec.Struct):
    k: _KlineBar
    s: str = ""


class _Shutdown(msgspec.Struct):
    E: int | None = None


class _ErrorBody(msgspec.Struct):
    code: int | str | None = None
    msg: str = ""


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_agg_decoder = msgspec.json.Decoder(_AggTrade)
_trade_decoder = msgspec.json.Decoder(_RawTrade)
_depth_decoder = msgspec.json.Decoder(_DepthUpdate)
_kline_decoder = msgspec.json.Decoder(_Kline)
_shutdown_decoder = msgspec.json.Decoder(_Shutdown)
_error_decoder = msgspec.json.Decoder(_ErrorBody)
_symbols: dict[str, str] = {}


def _symbol(code: str) -> str:
    """``BTCUSDT`` / ``btcusdt`` -> ``btc`` (cached); other codes unchanged (upper case)."""
    sym = _symbols.get(code)
    if sym is None:
        sym = canonical_symbol(code) or code.upper()
        _symbols[code] = sym
    return sym


def _fills(first: int | None, last: int | None) -> int:
    """The individual trades ``f``..``l`` an aggregate trade covers (1 when not sent)."""
    return last - first + 1 if first is not None and last is not None and last >= first else 1


def _agg_trade(raw, sym: str | None) -> list:
    d = _agg_decoder.decode(raw)
    side = SELL if d.m else BUY
    fills = _fills(d.f, d.l)
    return [Trade(NAME, sym or _symbol(d.s), d.T, float(d.p), float(d.q), side, str(d.a), d.a, d.a, fills=fills)]


def _raw_trade(raw, sym: str | None) -> list:
    d = _trade_decoder.decode(raw)
    return [Trade(NAME, sym or _symbol(d.s), d.T, float(d.p), float(d.q), SELL if d.m else BUY, str(d.t), d.t, d.t)]


def _depth_update(raw, sym: str | None) -> list:
    d = _depth_decoder.decode(raw)
    return [BookDelta(NAME, sym or _symbol(d.s), d.U, d.u, d.b, d.a, d.pu, d.E)]


def _partial_depth(raw, sym: str | None) -> list:
    if sym is None:  # a bare partial-depth frame names no symbol
        raise ValueError("partial depth outside a combined stream: no symbol")
    d = _depth_snapshot_decoder.decode(raw)
    t = d.T if d.T is not None else d.E
    return [BookSnapshot(NAME, sym, d.lastUpdateId, d.bids, d.asks, t)]


def _kline(raw, sym: str | None) -> list:
    d = _kline_decoder.decode(raw)
    k = d.k
    tf = timeframe_of(NAME, k.i)
    if tf is None:
        raise ValueError(f"interval {k.i!r} is not one of p9's timeframes")
    return [
        ExchangeCandle(
            NAME,
            sym or _symbol(d.s),
            tf,
            k.t,
            float(k.o),
            float(k.h),
            float(k.l),
            float(k.c),
            float(k.v),
            k.x,
            float(k.q) if k.q is not None else None,
            k.n,
        )
    ]


def _shutdown(raw, sym: str | None) -> list:
    d = _shutdown_decoder.decode(raw)
    return [Notice(NAME, RECONNECT_SOON, None, "serverShutdown", None, d.E)]


def _ignored(raw, sym: str | None) -> list:
    return []  # bookTicker and other streams p9 does not use


_BY_EVENT = {
    "aggTrade": _agg_trade,
    "trade": _raw_trade,
    "depthUpdate": _depth_update,
    "kline": _kline,
    "serverShutdown": _shutdown,
}
_routes: dict[str, tuple] = {}


def _route(stream: str) -> tuple:
    """Stream name -> (handler, canonical symbol or None), cached."""
    route = _routes.get(stream)
    if route is not None:
        return route
    code, _, kind = stream.partition("@")
    if stream == "!serverShutdown" or kind == "serverShutdown":
        handler = _shutdown
    elif kind == TRADE_STREAM:
        handler = _agg_trade
    elif kind == "trade":
        handler = _raw_trade
    elif kind == "depth" or kind.startswith("depth@"):
        handler = _depth_update
    elif kind.startswith("depth"):
        handler = _partial_depth
    elif kind.startswith("kline_"):
        handler = _kline
    else:
        handler = _ignored
    route = (handler, _symbol(code) if code and not code.startswith("!") else None)
    if len(_routes) < 10_000:
        _routes[stream] = route
    return route


def decode(frame: bytes | str) -> list:
    """One received frame -> normalized events (``[]`` for streams p9 does not use, such as
    bookTicker); never raises: an unreadable frame is one :class:`Malformed`."""
    try:
        env = _envelope_decoder.decode(frame)
        if env.stream is not None and env.data:
            handler, sym = _route(env.stream)
            return handler(env.data, sym)
        if env.e is not None:  # a raw (/ws/<stream>) event
            handler = _BY_EVENT.get(env.e)
            return handler(frame, None) if handler is not None else []
        if env.error:  # {"error": {"code", "msg"}, "id"}
            err = _error_decoder.decode(env.error)
            return [Notice(NAME, ERROR, _str(err.code), err.msg, _str(env.id))]
        if env.code is not None:  # {"code", "msg"[, "id"]}
            return [Notice(NAME, ERROR, _str(env.code), env.msg or "", _str(env.id))]
        if env.id is not None:  # {"result": null, "id": 1}: a request was accepted
            return [Notice(NAME, ACK, None, "", _str(env.id))]
        return [malformed(NAME, "not a Binance stream frame", frame)]
    except Exception as exc:  # noqa: BLE001 - decode never raises (see Malformed)
        return [malformed(NAME, f"{type(exc).__name__}: {exc}", frame)]


def _str(value) -> str | None:
    return None if value is None else str(value)


VENUE = Venue(
    name=NAME,
    decode=decode,
    connection_plan=connection_plan,
    keepalive=Keepalive(ping_text=None),  # the server pings every 20 s; websockets answers
    new_book=lambda symbol: BinanceBookSync(symbol),
    snapshot_request=lambda symbol: depth_request(symbol, SNAPSHOT_DEPTH),
    parse_snapshot=parse_depth_snapshot,
    book_resubscribe=None,  # a gap needs a new REST snapshot only
    trade_replay_request=agg_trades_request,
    parse_trade_replay=parse_agg_trades,
    candle_timeframe="1m",
    # reference 2.2: a bar with no trades still appears, OHLC = previous close (UNCONFIRMED there)
    empty_candle="previous_close",
    candle_trade_counts=True,
    max_connection_age_s=24 * 3600.0,
    streams_per_connection=STREAMS_PER_CONNECTION,
    send_interval_s=0.25,  # 5 incoming messages per second per connection
    connect_interval_s=1.0,  # 300 connection attempts per 5 minutes per IP
    silence_timeout_s=60.0,
)
