"""Bybit V5 Spot: REST requests and parsing, error classification, and the live venue
(``VENUE``: public spot WebSocket, ``decode``, ``orderbook.50`` snapshot/delta book sync).

Pure functions over bytes; see ``shared/docs/exchange-protocols.md`` section 3.

* ``GET /v5/market/kline?category=spot&symbol=&interval=&start=&end=&limit=``: rows newest
  first, 7 strings ``[start, open, high, low, close, volume, turnover]``; the bar that
  CONTAINS ``start`` is included (so ``start`` is rounded up to a bar boundary here); no closed
  flag; default 200, max 1000 rows.
* Every answer is HTTP 200 with ``{"retCode": 0, "retMsg": "OK", "result": ..., "time": ..}``;
  errors keep the envelope with ``retCode != 0`` (10006 = rate limit). HTTP 403 = the IP limit
  (600 requests per 5 s) was breached: stop for at least 10 minutes.
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
    limit_param,
    load_json,
    retry_after_seconds,
    status_error,
    timeframe_of,
    try_json,
)
from p9cli.exchanges.book import BybitBookSync
from p9cli.exchanges.venue import (
    ACK,
    BOOKS,
    BUY,
    CANDLES,
    ERROR,
    PONG,
    SELL,
    SUBSCRIBE_FAILED,
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

NAME = "bybit"

IP_BUCKET = "bybit:ip"
RATE_BUCKETS: tuple[RateBucket, ...] = (RateBucket(IP_BUCKET, 600, 5.0, "sliding"),)
#: concurrent REST requests of one client (keep-alive connections in its pool)
REST_MAX_IN_FLIGHT = 32
#: header with the server time (ms) a rate limit resets at (sent with retCode 10006)
RATE_LIMIT_RESET_HEADER: str | None = "X-Bapi-Limit-Reset-Timestamp"

MAX_KLINES_PER_REQUEST = 1000
#: The klines endpoint serves the whole history (no recent-bars window like OKX's, so
#: a history fetch never splits its windows at one).
RECENT_CANDLES_BARS: int | None = None
DEFAULT_KLINES_LIMIT = 200
KLINES_PATH = "/v5/market/kline"
TIME_PATH = "/v5/market/time"
CATEGORY = "spot"

#: How long Bybit asks a client to stay away after an HTTP 403 "access too frequent" (Doc).
IP_BAN_WAIT_S = 600.0

#: retCodes meaning "too many requests": 10006 (per-UID limit), 10018 (IP limit), 10429
#: (system-level frequency protection).
RATE_LIMIT_CODES = frozenset({10006, 10018, 10429})
#: retCodes meaning "the server failed; retry": 10000 server timeout, 10016 internal error /
#: restarting, 10019 service restarting.
SERVER_ERROR_CODES = frozenset({10000, 10016, 10019})

_OK_MARKERS = (b'"retCode":0,', b'"retCode":0}')


def symbol_code(symbol: str) -> str:
    """``btc`` -> ``BTCUSDT``."""
    return universe.exchange_symbol(NAME, check_symbol(symbol))


def interval_code(timeframe: str) -> str:
    """``1h`` -> ``60``, ``1d`` -> ``D``."""
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

    Bybit returns the bar containing ``start``, so ``start`` is rounded UP to a bar boundary.
    Parameters in the order ``category, symbol, interval, start, end[, limit]``. ``limit`` is
    left out when ``None`` and the window fits the default page (200 bars), else the window size
    (capped at 1000) is sent. The caller keeps the window <= the limit, so which end Bybit keeps
    when a window holds more bars than the limit (undocumented) never matters.
    """
    tf_ms = check_timeframe(timeframe)
    start = -(-int(first_open_ms) // tf_ms) * tf_ms
    n = limit_param(
        limit,
        bars_in_window(first_open_ms, last_open_ms, tf_ms),
        DEFAULT_KLINES_LIMIT,
        MAX_KLINES_PER_REQUEST,
    )
    params = [
        ("category", CATEGORY),
        ("symbol", symbol_code(symbol)),
        ("interval", interval_code(timeframe)),
        ("start", str(start)),
        ("end", str(int(last_open_ms))),
    ]
    if n is not None:
        params.append(("limit", str(n)))
    return RestRequest(KLINES_PATH, tuple(params), IP_BUCKET, 1)


def server_time_request() -> RestRequest:
    return RestRequest(TIME_PATH, (), IP_BUCKET, 1)


# --------------------------------------------------------------------------------------------
# Parsing


def _result(body: bytes) -> dict:
    """The ``result`` object of a success envelope; raises the classified error otherwise."""
    env = load_json(body, NAME)
    if not isinstance(env, dict) or "retCode" not in env:
        raise MalformedResponse(f"expected a V5 envelope, got {body_snippet(body)!r}", exchange=NAME)
    if env["retCode"] != 0:
        raise error_from_envelope(env, status=None)
    result = env.get("result")
    if not isinstance(result, dict):
        raise MalformedResponse(f"envelope without a result object: {body_snippet(body)!r}", exchange=NAME)
    return result


def parse_klines(body: bytes, timeframe: str) -> KlinesPage:
    """``result.list`` (newest first) -> ascending :class:`KlinesPage`.

    Bybit gives no trade count (``trades`` None) and no closed flag in REST (``confirmed`` None).
    """
    check_timeframe(timeframe)
    rows = _result(body).get("list")
    if not isinstance(rows, list):
        raise MalformedResponse("klines: result.list missing or not an array", exchange=NAME)
    return candles_from_rows(rows[::-1], NAME, min_fields=7, quote_volume=6)


def parse_server_time(body: bytes) -> int:
    """``result.timeNano`` (ns) -> ms; falls back to ``timeSecond`` then the envelope ``time``."""
    env = load_json(body, NAME)
    if not isinstance(env, dict) or "retCode" not in env:
        raise MalformedResponse(f"server time: unexpected body {body_snippet(body)!r}", exchange=NAME)
    if env["retCode"] != 0:
        raise error_from_envelope(env, status=None)
    result = env.get("result") if isinstance(env.get("result"), dict) else {}
    try:
        if "timeNano" in result:
            return int(result["timeNano"]) // 1_000_000
        if "timeSecond" in result:
            return int(result["timeSecond"]) * 1000
        if "time" in env:
            return int(env["time"])
    except (TypeError, ValueError):
        pass
    raise MalformedResponse(f"server time: unexpected body {body_snippet(body)!r}", exchange=NAME)


# --------------------------------------------------------------------------------------------
# Errors


def error_from_envelope(env: dict, status: int | None, retry_after_s: float | None = None) -> ExchangeError:
    """The error for an envelope with ``retCode != 0``."""
    code = env.get("retCode")
    msg = str(env.get("retMsg", "")) or "error"
    code_s = str(code)
    if code in RATE_LIMIT_CODES:
        return RateLimited(retry_after_s, msg, exchange=NAME, status=status, code=code_s)
    if code in SERVER_ERROR_CODES:
        return ServerError(msg, exchange=NAME, status=status, code=code_s, retry_after_s=retry_after_s)
    return BadRequest(msg, exchange=NAME, status=status, code=code_s)


def check_response(status: int, headers: Mapping[str, str], body: bytes) -> None:
    """Raise the right :class:`ExchangeError`; return for a 2xx success envelope.

    403 with an HTML (CloudFront) page -> GeoBlocked; other 403 -> Banned (IP limit;
    ``retry_after_s`` = 600 unless a ``Retry-After`` says otherwise),
    429 -> RateLimited (system-level protection), 5xx -> ServerError, other 4xx -> BadRequest;
    on 200 an envelope with ``retCode != 0`` -> RateLimited (10006/10018/10429), ServerError
    (10000/10016/10019) or BadRequest; a non-JSON 2xx body -> MalformedResponse.
    """
    retry_after = retry_after_seconds(headers)
    if 200 <= status < 300:
        head = body[:64]
        if any(m in head for m in _OK_MARKERS):
            return  # the compact success envelope Bybit sends: no need to parse it twice
        env = load_json(body, NAME)
        if not isinstance(env, dict) or "retCode" not in env:
            raise MalformedResponse(f"expected a V5 envelope, got {body_snippet(body)!r}", exchange=NAME)
        if env["retCode"] != 0:
            raise error_from_envelope(env, status, retry_after)
        return
    env = try_json(body)
    detail = env if isinstance(env, dict) and "retCode" in env else None
    msg = str(detail.get("retMsg", "")) if detail else body_snippet(body)
    code = str(detail.get("retCode")) if detail else None
    if status == 403 and detail is None and _is_html(body):
        # reference 3.1: the geo-block (US, Mainland China) is a CloudFront page, not JSON;
        # the IP limit's 403 says "access too frequent"
        raise GeoBlocked(status, exchange=NAME, detail="a CloudFront page")
    if status == 403:
        wait = retry_after if retry_after is not None else IP_BAN_WAIT_S
        raise Banned(
            wait, msg or "access too frequent (IP rate limit)", exchange=NAME, status=status, code=code
        )
    if status == 429:  # system-level frequency protection
        raise RateLimited(
            retry_after, msg or "system-level frequency protection", exchange=NAME, status=status, code=code
        )
    client_error = (
        error_from_envelope(detail, status, retry_after)
        if detail is not None and detail.get("retCode") != 0
        else None
    )
    raise status_error(NAME, status, msg, code, retry_after, client_error)


def _is_html(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"cloudfront" in body[:4096].lower()


def used_weight(headers: Mapping[str, str]) -> dict[str, int]:
    """Bybit reports no per-IP usage for public calls (``X-Bapi-*`` are per-UID): always ``{}``."""
    return {}


# --------------------------------------------------------------------------------------------
# Order book and recent trades (REST)

ORDERBOOK_PATH = "/v5/market/orderbook"
BOOK_DEPTHS = (1, 50, 200, 1000)


def orderbook_request(symbol: str, limit: int = 200) -> RestRequest:
    return RestRequest(
        ORDERBOOK_PATH,
        (("category", CATEGORY), ("symbol", symbol_code(symbol)), ("limit", str(limit))),
        IP_BUCKET,
        1,
    )


def parse_rest_orderbook(body: bytes) -> BookSnapshot:
    """``result = {s, b, a, ts, u[, seq, cts]}`` -> a :class:`BookSnapshot` (``from_rest``).
    Its ``u`` belongs to the 1000-level stream: it cannot bridge ``orderbook.50``."""
    data = _result(body)
    try:
        bids, asks = data["b"], data["a"]
        if not isinstance(bids, list) or not isinstance(asks, list):
            raise TypeError("levels are not arrays")
        seq, t = data.get("seq"), data.get("cts", data.get("ts"))
        return BookSnapshot(
            NAME,
            _symbol(data["s"]),
            int(data["u"]),
            bids,
            asks,
            int(t) if t is not None else None,
            True,
            None,
            int(seq) if seq is not None else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"order book: {exc!r}", exchange=NAME) from None


def parse_rest_recent_trades(body: bytes) -> list[Trade]:
    """``GET /v5/market/recent-trade`` ``result.list`` (newest first) -> trades, oldest first."""
    rows = _result(body).get("list")
    if not isinstance(rows, list):
        raise MalformedResponse("recent-trade: result.list missing or not an array", exchange=NAME)
    try:
        return [
            Trade(
                NAME,
                _symbol(r["symbol"]),
                int(r["time"]),
                float(r["price"]),
                float(r["size"]),
                _SIDES[r["side"]],
                str(r["execId"]),
            )
            for r in reversed(rows)
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"recent-trade: bad row ({exc!r})", exchange=NAME) from None


# --------------------------------------------------------------------------------------------
# WebSocket: public spot stream, decode

PUBLIC_WS_PATH = "/v5/public/spot"
BOOK_DEPTH = 50
CANDLE_INTERVAL = "1"
#: Spot: at most 10 args per subscribe request; at most 21,000 characters of args per connection.
ARGS_PER_REQUEST = 10
ARGS_CHARS_PER_CONNECTION = 21_000
PING = '{"op":"ping"}'


def topics(symbol: str, depth: int = BOOK_DEPTH, candles: bool = False) -> list[str]:
    """``["publicTrade.BTCUSDT", "orderbook.50.BTCUSDT"[, "kline.1.BTCUSDT"]]``."""
    if depth not in BOOK_DEPTHS:
        raise ValueError(f"Bybit spot order-book depth must be one of {BOOK_DEPTHS}")
    code = symbol_code(symbol)
    names = [f"publicTrade.{code}", f"orderbook.{depth}.{code}"]
    if candles:
        names.append(f"kline.{CANDLE_INTERVAL}.{code}")
    return names


def subscribe_message(args: list[str], req_id: str | None = None, op: str = "subscribe") -> str:
    """``{"op":"subscribe","args":[...]}`` (spot: at most 10 args per request)."""
    if len(args) > ARGS_PER_REQUEST:
        raise ValueError("Bybit spot accepts at most 10 args per subscribe request")
    msg: dict = {"op": op, "args": list(args)}
    if req_id is not None:
        msg = {"req_id": req_id, **msg}
    return orjson.dumps(msg).decode()


def ping_message(req_id: str | None = None) -> str:
    return orjson.dumps({"req_id": req_id, "op": "ping"}).decode() if req_id else PING


def connection_plan(ws_base_url: str, symbols: Sequence[str], candles: bool = True) -> list[ConnectionPlan]:
    """One connection to ``/v5/public/spot`` per 21,000 characters of topics; subscribe
    messages of at most 10 topics; a symbol's topics always on one connection."""
    url = ws_base_url.rstrip("/") + PUBLIC_WS_PATH
    carries = frozenset({TRADES, BOOKS, CANDLES} if candles else {TRADES, BOOKS})
    groups: list[tuple[list[str], list[str]]] = []
    for sym in symbols:
        names = topics(sym, BOOK_DEPTH, candles)
        size = sum(len(n) + 3 for n in names)
        if not groups or sum(len(n) + 3 for n in groups[-1][1]) + size > ARGS_CHARS_PER_CONNECTION:
            groups.append(([], []))
        groups[-1][0].append(sym)
        groups[-1][1].extend(names)
    plans = []
    for syms, names in groups:
        msgs = tuple(
            subscribe_message(names[i : i + ARGS_PER_REQUEST], req_id=f"sub{i // ARGS_PER_REQUEST + 1}")
            for i in range(0, len(names), ARGS_PER_REQUEST)
        )
        plans.append(ConnectionPlan(url, msgs, tuple(syms), carries, tuple(names)))
    return plans


def book_resubscribe(symbol: str) -> tuple[str, str]:
    """Unsubscribe + subscribe the symbol's book topic (a fresh snapshot follows; Bybit refuses
    to subscribe a topic that is still subscribed)."""
    topic = f"orderbook.{BOOK_DEPTH}.{symbol_code(symbol)}"
    return (
        subscribe_message([topic], req_id="unbook", op="unsubscribe"),
        subscribe_message([topic], req_id="rebook"),
    )


_NO_RAW = msgspec.Raw()


class _Envelope(msgspec.Struct):
    topic: str | None = None
    type: str | None = None
    ts: int | None = None
    cts: int | None = None
    data: msgspec.Raw = _NO_RAW
    op: str | None = None
    success: bool | None = None
    ret_msg: str | None = None
    req_id: str | None = None


class _Trade(msgspec.Struct):
    i: str
    T: int
    p: str
    v: str
    S: str
    seq: int | None = None


class _Book(msgspec.Struct):
    b: list[list[str]]
    a: list[list[str]]
    u: int
    seq: int | None = None


class _Kline(msgspec.Struct):
    start: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    confirm: bool
    turnover: str | None = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_trades_decoder = msgspec.json.Decoder(list[_Trade])
_book_decoder = msgspec.json.Decoder(_Book)
_klines_decoder = msgspec.json.Decoder(list[_Kline])
_SIDES = {"Buy": BUY, "Sell": SELL}
_symbols: dict[str, str] = {}


def _symbol(code: str) -> str:
    """``BTCUSDT`` -> ``btc`` (cached); other codes unchanged."""
    sym = _symbols.get(code)
    if sym is None:
        sym = canonical_symbol(code) or code
        _symbols[code] = sym
    return sym


def _trades(env: _Envelope, code: str) -> list:
    sym = _symbol(code)
    sides = _SIDES
    return [
        Trade(NAME, sym, t.T, float(t.p), float(t.v), sides[t.S], t.i, None, None, t.seq)
        for t in _trades_decoder.decode(env.data)
    ]


def _book(env: _Envelope, code: str) -> list:
    d = _book_decoder.decode(env.data)
    t = env.cts if env.cts is not None else env.ts
    if env.type == "snapshot":
        return [BookSnapshot(NAME, _symbol(code), d.u, d.b, d.a, t, False, None, d.seq)]
    if env.type == "delta":
        return [BookDelta(NAME, _symbol(code), d.u, d.u, d.b, d.a, None, t, None, d.seq)]
    raise ValueError(f"order book type {env.type!r}")


def _klines(env: _Envelope, interval: str, code: str) -> list:
    tf = timeframe_of(NAME, interval)
    if tf is None:
        raise ValueError(f"interval {interval!r} is not one of p9's timeframes")
    sym = _symbol(code)
    rows = sorted(_klines_decoder.decode(env.data), key=lambda k: k.start)
    return [
        ExchangeCandle(
            NAME,
            sym,
            tf,
            k.start,
            float(k.open),
            float(k.high),
            float(k.low),
            float(k.close),
            float(k.volume),
            k.confirm,
            float(k.turnover) if k.turnover is not None else None,
        )
        for k in rows
    ]


def _control(env: _Envelope) -> list:
    op = env.op or ""
    msg = env.ret_msg or ""
    if not env.success:
        kind = SUBSCRIBE_FAILED if op == "subscribe" else ERROR
        return [Notice(NAME, kind, None, msg, env.req_id or None)]
    if op == "ping" or msg == "pong":
        return [Notice(NAME, PONG, None, msg, env.req_id or None)]
    return [Notice(NAME, ACK, None, msg or op, env.req_id or None)]


def decode(frame: bytes | str) -> list:
    """One received frame -> normalized events (``[]`` for topics p9 does not use); never
    raises: an unreadable frame is one :class:`Malformed`."""
    try:
        env = _envelope_decoder.decode(frame)
        topic = env.topic
        if topic is not None:
            kind, _, rest = topic.partition(".")
            if kind == "publicTrade":
                return _trades(env, rest)
            if kind == "orderbook":
                return _book(env, rest.partition(".")[2])
            if kind == "kline":
                interval, _, code = rest.partition(".")
                return _klines(env, interval, code)
            return []
        if env.success is not None:
            return _control(env)
        return [malformed(NAME, "not a Bybit frame", frame)]
    except Exception as exc:  # noqa: BLE001 - decode never raises (see Malformed)
        return [malformed(NAME, f"{type(exc).__name__}: {exc}", frame)]


VENUE = Venue(
    name=NAME,
    decode=decode,
    connection_plan=connection_plan,
    keepalive=Keepalive(ping_text=PING, ping_every_s=20.0, pong_timeout_s=10.0),
    new_book=lambda symbol: BybitBookSync(symbol),
    snapshot_request=None,  # the stream sends snapshots (REST orderbook's u is the 1000-level one)
    parse_snapshot=None,
    book_resubscribe=book_resubscribe,
    trade_replay_request=None,
    parse_trade_replay=None,
    candle_timeframe="1m",
    empty_candle="previous_close",  # undocumented for Bybit: assumed like Binance and OKX
    candle_trade_counts=False,
    max_connection_age_s=None,
    streams_per_connection=ARGS_CHARS_PER_CONNECTION // 20,
    send_interval_s=0.1,
    connect_interval_s=0.6,  # 500 new connections per 5 minutes per IP
    silence_timeout_s=60.0,
)
