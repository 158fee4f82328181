"""Binance Spot REST: klines and server time requests, parsing, error classification.

Pure functions over bytes; see ``shared/docs/exchange-protocols.md`` section 2.

* ``GET /api/v3/klines``: ``startTime``/``endTime`` filter on the bar OPEN time, inclusive
  at both ends; rows ascending, 12 positions, ints at 0, 6, 8; no closed flag.
* Errors: ``{"code": -1121, "msg": "Invalid symbol."}`` with HTTP 4xx; 429 (+ ``Retry-After``)
  when over the weight limit, 418 when banned, 403 WAF block, 5xx server side.
* Weight: 6000 per minute per IP (fixed window, reported in ``X-MBX-USED-WEIGHT-1M``),
  klines cost 2, server time 1.
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
    header,
    limit_param,
    load_json,
    retry_after_seconds,
    status_error,
    timeframe_of,
    try_json,
)

NAME = "binance"

WEIGHT_BUCKET = "binance:weight"
RATE_BUCKETS: tuple[RateBucket, ...] = (RateBucket(WEIGHT_BUCKET, 6000, 60.0, "fixed"),)

MAX_KLINES_PER_REQUEST = 1000
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


def parse_klines(body: bytes, timeframe: str) -> Candles:
    """Kline rows -> :class:`Candles` (ascending; ``confirmed`` is ``None``: Binance has no flag)."""
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

    429 -> RateLimited, 418 -> Banned (both with ``Retry-After``), 403 -> Banned (WAF block),
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
# Order book snapshot (REST) and recent trades (REST)

DEPTH_PATH = "/api/v3/depth"
TRADES_PATH = "/api/v3/trades"
#: (max limit, weight) steps of GET /api/v3/depth.
DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))


def depth_request(symbol: str, limit: int = 1000) -> RestRequest:
    """``GET /api/v3/depth?symbol=BTCUSDT&limit=1000`` (weight by limit: 5/25/50/250)."""
    for top, weight in DEPTH_WEIGHTS:
        if limit <= top:
            return RestRequest(
                DEPTH_PATH, (("symbol", symbol_code(symbol)), ("limit", str(limit))), WEIGHT_BUCKET, weight
            )
    raise ValueError(f"depth limit must be <= 5000, got {limit}")


def parse_depth_snapshot(body: bytes, symbol_code_: str = "") -> BookMsg:
    """REST depth ``{"lastUpdateId", "bids", "asks"}`` (USD-M adds ``E``, ``T``) -> snapshot."""
    obj = load_json(body, NAME)
    if isinstance(obj, dict) and "code" in obj and "lastUpdateId" not in obj:
        raise error_from_body(obj, status=None)
    msg = parse_depth(obj, stream=None, symbol=symbol_code_)
    if msg is None or msg.kind != "snapshot":
        raise MalformedResponse(f"depth: unexpected body {body_snippet(body)!r}", exchange=NAME)
    return msg


def parse_rest_trades(body: bytes, symbol_code_: str) -> list[Trade]:
    """``GET /api/v3/trades`` rows (``id, price, qty, time, isBuyerMaker``) -> trades."""
    rows = load_json(body, NAME)
    if isinstance(rows, dict) and "code" in rows:
        raise error_from_body(rows, status=None)
    try:
        return [
            Trade(
                NAME,
                symbol_code_,
                float(r["price"]),
                float(r["qty"]),
                SELL if r["isBuyerMaker"] else BUY,
                str(r["id"]),
                int(r["time"]),
            )
            for r in rows
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"trades: bad row ({exc!r})", exchange=NAME) from None


# --------------------------------------------------------------------------------------------
# WebSocket streams


def stream_names(symbol: str, depth: str = "depth@100ms", trades: str = "aggTrade") -> tuple[str, ...]:
    """``("btcusdt@aggTrade", "btcusdt@depth@100ms")`` for a canonical symbol."""
    code = symbol_code(symbol).lower()
    return (f"{code}@{trades}", f"{code}@{depth}")


def combined_stream_path(streams: tuple[str, ...] | list[str]) -> str:
    """``/stream?streams=a/b/c`` (every frame then arrives wrapped ``{"stream", "data"}``)."""
    return "/stream?streams=" + "/".join(streams)


def subscribe_message(streams: tuple[str, ...] | list[str], request_id: int = 1) -> str:
    return orjson.dumps({"method": "SUBSCRIBE", "params": list(streams), "id": request_id}).decode()


def decode_frame(text: str | bytes) -> object:
    if isinstance(text, str):
        text = text.encode()
    return load_json(text, NAME)


def unwrap(obj: object) -> tuple[str | None, object]:
    """Combined-stream frame -> ``(stream name, event)``; a raw frame -> ``(None, frame)``."""
    if isinstance(obj, dict) and "stream" in obj and "data" in obj:
        return obj["stream"], obj["data"]
    return None, obj


def frame_kind(event: object) -> str:
    """Kind of an (unwrapped) event: ``trade``, ``aggTrade``, ``depthUpdate``, ``depth``
    (partial snapshot), ``kline``, ``bookTicker``, ``response`` (to SUBSCRIBE etc.),
    ``error``, ``serverShutdown`` or ``other``."""
    if not isinstance(event, dict):
        return "other"
    e = event.get("e")
    if e is not None:
        return (
            e
            if e in ("trade", "aggTrade", "depthUpdate", "kline", "bookTicker", "serverShutdown")
            else "other"
        )
    if "lastUpdateId" in event:
        return "depth"
    if "result" in event and "id" in event:
        return "response"
    if "error" in event or ("code" in event and "msg" in event):
        return "error"
    if "u" in event and "b" in event and "a" in event and "s" in event:
        return "bookTicker"
    return "other"


def parse_trade(event: object) -> Trade | None:
    """A ``trade`` or ``aggTrade`` event -> :class:`Trade` (``m`` true: the buyer was the maker,
    so the taker SOLD); ``None`` for other events."""
    if not isinstance(event, dict):
        return None
    e = event.get("e")
    if e == "aggTrade":
        id_key = "a"
    elif e == "trade":
        id_key = "t"
    else:
        return None
    try:
        return Trade(
            NAME,
            event["s"],
            float(event["p"]),
            float(event["q"]),
            SELL if event["m"] else BUY,
            str(event[id_key]),
            int(event["T"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"{e} event: {exc!r}", exchange=NAME) from None


def parse_depth(event: object, stream: str | None = None, symbol: str = "") -> BookMsg | None:
    """A ``depthUpdate`` diff -> delta; a ``{"lastUpdateId", "bids", "asks"}`` snapshot (REST
    depth or the ``@depth<N>`` partial stream) -> snapshot; ``None`` for other events.

    Partial-stream snapshots carry no symbol: it is taken from the stream name, else ``symbol``.
    """
    if not isinstance(event, dict):
        return None
    try:
        if event.get("e") == "depthUpdate":
            pu = event.get("pu")
            return BookMsg(
                NAME,
                event["s"],
                "delta",
                _levels(event["b"]),
                _levels(event["a"]),
                first_id=int(event["U"]),
                last_id=int(event["u"]),
                prev_id=int(pu) if pu is not None else None,
                time_ms=int(event["E"]),
            )
        if "lastUpdateId" in event:
            sym = stream.split("@", 1)[0].upper() if stream else symbol
            t = event.get("T", event.get("E"))
            return BookMsg(
                NAME,
                sym,
                "snapshot",
                _levels(event["bids"]),
                _levels(event["asks"]),
                last_id=int(event["lastUpdateId"]),
                time_ms=int(t) if t is not None else None,
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"depth event: {exc!r}", exchange=NAME) from None
    return None


def _levels(levels: object) -> list:
    if not isinstance(levels, list):
        raise TypeError("levels are not an array")
    return levels


def parse_kline(event: dict) -> CandleUpdate:
    """A ``kline`` event -> :class:`CandleUpdate` with one candle (``x`` = closed)."""
    try:
        k = event["k"]
        tf = timeframe_of(NAME, k["i"])
        if tf is None:
            raise ValueError(f"interval {k['i']!r} is not one of p9's timeframes")
        candles = Candles(
            [int(k["t"])],
            [float(k["o"])],
            [float(k["h"])],
            [float(k["l"])],
            [float(k["c"])],
            [float(k["v"])],
            [float(k["q"])],
            [int(k["n"])],
            [bool(k["x"])],
        )
        return CandleUpdate(NAME, event["s"], tf, candles)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"kline event: {exc!r}", exchange=NAME) from None
