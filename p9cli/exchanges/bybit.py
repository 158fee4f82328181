"""Bybit V5 Spot REST: klines and server time requests, parsing, error classification.

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

from collections.abc import Mapping

import orjson

from p9cli import universe
from p9cli.exchanges.base import (
    BUY,
    SELL,
    BadRequest,
    Banned,
    BookMsg,
    Candles,
    CandleUpdate,
    ExchangeError,
    MalformedResponse,
    RateBucket,
    RateLimited,
    RestRequest,
    ServerError,
    Trade,
    bars_in_window,
    body_snippet,
    candles_from_rows,
    check_symbol,
    check_timeframe,
    limit_param,
    load_json,
    normalize_order,
    retry_after_seconds,
    status_error,
    timeframe_of,
    try_json,
)

NAME = "bybit"

IP_BUCKET = "bybit:ip"
RATE_BUCKETS: tuple[RateBucket, ...] = (RateBucket(IP_BUCKET, 600, 5.0, "sliding"),)

MAX_KLINES_PER_REQUEST = 1000
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


def parse_klines(body: bytes, timeframe: str) -> Candles:
    """``result.list`` (newest first) -> ascending :class:`Candles`.

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

    403 -> Banned (IP limit; ``retry_after_s`` = 600 unless a ``Retry-After`` says otherwise),
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


def used_weight(headers: Mapping[str, str]) -> dict[str, int]:
    """Bybit reports no per-IP usage for public calls (``X-Bapi-*`` are per-UID): always ``{}``."""
    return {}


# --------------------------------------------------------------------------------------------
# Order book (REST) and WebSocket (public spot stream)

ORDERBOOK_PATH = "/v5/market/orderbook"
PUBLIC_WS_PATH = "/v5/public/spot"
BOOK_DEPTHS = (1, 50, 200, 1000)


def orderbook_request(symbol: str, limit: int = 200) -> RestRequest:
    return RestRequest(
        ORDERBOOK_PATH,
        (("category", CATEGORY), ("symbol", symbol_code(symbol)), ("limit", str(limit))),
        IP_BUCKET,
        1,
    )


def parse_rest_orderbook(body: bytes) -> BookMsg:
    """``result = {s, b, a, ts, u[, seq, cts]}`` -> snapshot."""
    return _book_from_data(_result(body), "snapshot", None)


def topics(symbol: str, depth: int = 200) -> list[str]:
    """``["publicTrade.BTCUSDT", "orderbook.200.BTCUSDT"]``."""
    if depth not in BOOK_DEPTHS:
        raise ValueError(f"Bybit spot order-book depth must be one of {BOOK_DEPTHS}")
    code = symbol_code(symbol)
    return [f"publicTrade.{code}", f"orderbook.{depth}.{code}"]


def subscribe_message(args: list[str], req_id: str | None = None) -> str:
    """``{"op":"subscribe","args":[...]}`` (spot: at most 10 args per request)."""
    if len(args) > 10:
        raise ValueError("Bybit spot accepts at most 10 args per subscribe request")
    msg: dict = {"op": "subscribe", "args": list(args)}
    if req_id is not None:
        msg = {"req_id": req_id, **msg}
    return orjson.dumps(msg).decode()


def ping_message(req_id: str | None = None) -> str:
    return orjson.dumps({"req_id": req_id, "op": "ping"} if req_id else {"op": "ping"}).decode()


def decode_frame(text: str | bytes) -> object:
    if isinstance(text, str):
        text = text.encode()
    return load_json(text, NAME)


def frame_kind(obj: object) -> str:
    """``pong``, ``ack``, ``error`` (failed op), ``trades``, ``book``, ``kline``, ``ticker`` or
    ``other``."""
    if not isinstance(obj, dict):
        return "other"
    if "op" in obj and "success" in obj:
        if not obj["success"]:
            return "error"
        return "pong" if obj["op"] == "ping" or obj.get("ret_msg") == "pong" else "ack"
    topic = obj.get("topic")
    if not isinstance(topic, str):
        return "other"
    if topic.startswith("publicTrade."):
        return "trades"
    if topic.startswith("orderbook."):
        return "book"
    if topic.startswith("kline."):
        return "kline"
    if topic.startswith("tickers."):
        return "ticker"
    return "other"


_SIDES = {"Buy": BUY, "Sell": SELL}


def parse_trades(obj: dict) -> list[Trade]:
    """A ``publicTrade`` push -> trades (``S`` is the taker side, ``T`` the fill time)."""
    try:
        return [
            Trade(NAME, t["s"], float(t["p"]), float(t["v"]), _SIDES[t["S"]], str(t["i"]), int(t["T"]))
            for t in obj["data"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"publicTrade frame: {exc!r}", exchange=NAME) from None


def parse_book(obj: dict) -> BookMsg:
    """An ``orderbook.*`` push -> :class:`BookMsg` (``type`` snapshot/delta; ``u``, ``seq``,
    ``cts``)."""
    try:
        kind = "snapshot" if obj["type"] == "snapshot" else "delta"
        cts = obj.get("cts", obj.get("ts"))
        return _book_from_data(obj["data"], kind, int(cts) if cts is not None else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"orderbook frame: {exc!r}", exchange=NAME) from None


def _book_from_data(data: dict, kind: str, time_ms: int | None) -> BookMsg:
    try:
        bids, asks = data["b"], data["a"]
        if not isinstance(bids, list) or not isinstance(asks, list):
            raise TypeError("levels are not arrays")
        u = int(data["u"])
        seq = data.get("seq")
        if time_ms is None:
            t = data.get("cts", data.get("ts"))
            time_ms = int(t) if t is not None else None
        return BookMsg(
            NAME,
            data["s"],
            kind,
            bids,
            asks,
            first_id=u,
            last_id=u,
            seq=int(seq) if seq is not None else None,
            time_ms=time_ms,
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
                r["symbol"],
                float(r["price"]),
                float(r["size"]),
                _SIDES[r["side"]],
                str(r["execId"]),
                int(r["time"]),
            )
            for r in reversed(rows)
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"recent-trade: bad row ({exc!r})", exchange=NAME) from None


def parse_kline(obj: dict) -> CandleUpdate:
    """A ``kline.<interval>.<SYMBOL>`` push -> :class:`CandleUpdate` (``confirm`` = closed)."""
    try:
        _, code, symbol = obj["topic"].split(".", 2)
        tf = timeframe_of(NAME, code)
        if tf is None:
            raise ValueError(f"interval {code!r} is not one of p9's timeframes")
        rows = obj["data"]
        candles = Candles(
            [int(r["start"]) for r in rows],
            [float(r["open"]) for r in rows],
            [float(r["high"]) for r in rows],
            [float(r["low"]) for r in rows],
            [float(r["close"]) for r in rows],
            [float(r["volume"]) for r in rows],
            [float(r["turnover"]) for r in rows],
            [None] * len(rows),
            [bool(r["confirm"]) for r in rows],
        )
        return CandleUpdate(NAME, symbol, tf, normalize_order(candles))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedResponse(f"kline frame: {exc!r}", exchange=NAME) from None
