"""OKX V5 Spot REST: candles and server time requests, parsing, error classification.

Pure functions over bytes; see ``shared/docs/exchange-protocols.md`` section 4.

* ``GET /api/v5/market/candles`` serves only the newest 1,440 bars of a bar size (40 requests
  per 2 s); ``GET /api/v5/market/history-candles`` serves older ones (20 per 2 s). Both take
  ``instId, bar, after, before, limit`` with EXCLUSIVE ``after`` (older than) / ``before``
  (newer than); rows newest first, 9 strings ``[ts, o, h, l, c, vol, volCcy, volCcyQuote,
  confirm]``; max 300 rows.
* 6h/12h/1d use the UTC-aligned bars ``6Hutc``/``12Hutc``/``1Dutc``.
* Envelope ``{"code": "0", "msg": "", "data": [...]}`` (string code); 50011 = rate limit (HTTP 200
  or 429), 51001 unknown instrument, 51000 bad parameter.
"""

from __future__ import annotations

import zlib
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
    check_symbol,
    check_timeframe,
    limit_param,
    load_json,
    retry_after_seconds,
    status_error,
    timeframe_of,
    try_json,
)
from p9cli.exchanges.base import (
    candles_from_rows as base_candles_from_rows,
)

NAME = "okx"

CANDLES_BUCKET = "okx:candles"
HISTORY_CANDLES_BUCKET = "okx:history-candles"
TIME_BUCKET = "okx:time"
RATE_BUCKETS: tuple[RateBucket, ...] = (
    RateBucket(CANDLES_BUCKET, 40, 2.0, "sliding"),
    RateBucket(HISTORY_CANDLES_BUCKET, 20, 2.0, "sliding"),
    RateBucket(TIME_BUCKET, 10, 2.0, "sliding"),
)

MAX_KLINES_PER_REQUEST = 300
DEFAULT_KLINES_LIMIT = 100
CANDLES_PATH = "/api/v5/market/candles"
HISTORY_CANDLES_PATH = "/api/v5/market/history-candles"
TIME_PATH = "/api/v5/public/time"
#: ``/market/candles`` serves the newest this-many bars (the forming bar included).
RECENT_CANDLES_BARS = 1440

RATE_LIMIT_CODES = frozenset({"50011", "50061"})
#: 50001 service temporarily unavailable, 50004 endpoint request timeout, 50013 system busy,
#: 50026 system error.
SERVER_ERROR_CODES = frozenset({"50001", "50004", "50013", "50026"})


def symbol_code(symbol: str) -> str:
    """``btc`` -> ``BTC-USDT``."""
    return universe.exchange_symbol(NAME, check_symbol(symbol))


def interval_code(timeframe: str) -> str:
    """``1h`` -> ``1H``, ``6h`` -> ``6Hutc``, ``1d`` -> ``1Dutc``."""
    check_timeframe(timeframe)
    return universe.interval_code(NAME, timeframe)


# --------------------------------------------------------------------------------------------
# Requests


def oldest_recent_open(timeframe_ms: int, server_now_ms: int) -> int:
    """Open time of the oldest bar ``/market/candles`` still serves at ``server_now_ms``."""
    forming_open = (server_now_ms // timeframe_ms) * timeframe_ms
    return forming_open - (RECENT_CANDLES_BARS - 1) * timeframe_ms


def klines_request(
    symbol: str,
    timeframe: str,
    first_open_ms: int,
    last_open_ms: int,
    server_now_ms: int,
    limit: int | None = None,
) -> RestRequest:
    """The request for exactly the bars with ``first_open_ms <= open_time <= last_open_ms``.

    ``after = last_open_ms + 1`` and ``before = first_open_ms - 1`` (both exclusive). The
    endpoint is ``/market/candles`` when the whole window lies within the newest 1,440 bars at
    ``server_now_ms`` (forming bar included), else ``/market/history-candles``. ``limit`` is
    left out when ``None`` and the window fits the default page (100 bars), else the window
    size (capped at 300) is sent.
    """
    tf_ms = check_timeframe(timeframe)
    recent = first_open_ms >= oldest_recent_open(tf_ms, server_now_ms)
    n = limit_param(
        limit,
        bars_in_window(first_open_ms, last_open_ms, tf_ms),
        DEFAULT_KLINES_LIMIT,
        MAX_KLINES_PER_REQUEST,
    )
    params = [
        ("instId", symbol_code(symbol)),
        ("bar", interval_code(timeframe)),
        ("after", str(int(last_open_ms) + 1)),
        ("before", str(int(first_open_ms) - 1)),
    ]
    if n is not None:
        params.append(("limit", str(n)))
    if recent:
        return RestRequest(CANDLES_PATH, tuple(params), CANDLES_BUCKET, 1)
    return RestRequest(HISTORY_CANDLES_PATH, tuple(params), HISTORY_CANDLES_BUCKET, 1)


def server_time_request() -> RestRequest:
    return RestRequest(TIME_PATH, (), TIME_BUCKET, 1)


# --------------------------------------------------------------------------------------------
# Parsing


def _data(body: bytes) -> list:
    env = load_json(body, NAME)
    if not isinstance(env, dict) or "code" not in env:
        raise MalformedResponse(f"expected a V5 envelope, got {body_snippet(body)!r}", exchange=NAME)
    if str(env["code"]) != "0":
        raise error_from_envelope(env, status=None)
    data = env.get("data")
    if not isinstance(data, list):
        raise MalformedResponse(f"envelope without a data array: {body_snippet(body)!r}", exchange=NAME)
    return data


def parse_klines(body: bytes, timeframe: str) -> Candles:
    """Candle rows (newest first) -> ascending :class:`Candles`.

    ``volume`` = ``vol`` (base currency on SPOT), ``quote_volume`` = ``volCcyQuote`` (or
    ``volCcy`` for the older 8-field rows), ``confirmed`` from the LAST field (``"1"`` closed)
    when the row has 8 or more fields, else ``None``; OKX gives no trade count.
    """
    check_timeframe(timeframe)
    return candles_from_rows(_data(body))


_CONFIRM = {"1": True, "0": False}


def candles_from_rows(rows_newest_first: list) -> Candles:
    """Rows ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`` (newest first) -> ascending
    candles. Older row formats: 8 fields (no ``volCcyQuote``: quote = ``volCcy``), 7 (no flag)."""
    rows = rows_newest_first[::-1]
    confirmed: list[bool | None] = []
    quote: list[float] = []
    try:
        for r in rows:
            n = len(r) if type(r) is list else 0
            if n < 7:
                raise ValueError(f"short or non-array row {r!r:.80}")
            if n >= 8:
                flag = _CONFIRM.get(r[-1]) if isinstance(r[-1], str) else None
                if flag is None:
                    raise ValueError(f"confirm must be '0' or '1', got {r[-1]!r:.20}")
                confirmed.append(flag)
                quote.append(float(r[7] if n >= 9 else r[6]))
            else:
                confirmed.append(None)
                quote.append(float(r[6]))
    except (TypeError, ValueError) as exc:
        raise MalformedResponse(f"candles: bad row ({exc})", exchange=NAME) from None
    return base_candles_from_rows(rows, NAME, min_fields=7, quote_volume=quote, confirmed=confirmed)


def parse_server_time(body: bytes) -> int:
    """``{"code":"0","data":[{"ts":"1597026383085"}]}`` -> ms."""
    data = _data(body)
    try:
        return int(data[0]["ts"])
    except (IndexError, KeyError, TypeError, ValueError):
        raise MalformedResponse(
            f"server time: unexpected body {body_snippet(body)!r}", exchange=NAME
        ) from None


# --------------------------------------------------------------------------------------------
# Errors


def error_from_envelope(env: dict, status: int | None, retry_after_s: float | None = None) -> ExchangeError:
    """The error for an envelope with ``code != "0"``."""
    code = str(env.get("code"))
    msg = str(env.get("msg", "")) or "error"
    if code in RATE_LIMIT_CODES:
        return RateLimited(retry_after_s, msg, exchange=NAME, status=status, code=code)
    if code in SERVER_ERROR_CODES:
        return ServerError(msg, exchange=NAME, status=status, code=code, retry_after_s=retry_after_s)
    return BadRequest(msg, exchange=NAME, status=status, code=code)


def check_response(status: int, headers: Mapping[str, str], body: bytes) -> None:
    """Raise the right :class:`ExchangeError`; return for a 2xx success envelope.

    By the envelope code first (50011 -> RateLimited, 50013/5000x -> ServerError, others ->
    BadRequest), then by HTTP status: 429 -> RateLimited, 403 -> Banned, 5xx -> ServerError,
    other 4xx -> BadRequest; a non-JSON 2xx body -> MalformedResponse.
    """
    retry_after = retry_after_seconds(headers)
    if 200 <= status < 300:
        if b'"code":"0"' in body[:64]:
            return  # the compact success envelope OKX sends: no need to parse it twice
        env = load_json(body, NAME)
        if not isinstance(env, dict) or "code" not in env:
            raise MalformedResponse(f"expected a V5 envelope, got {body_snippet(body)!r}", exchange=NAME)
        if str(env["code"]) != "0":
            raise error_from_envelope(env, status, retry_after)
        return
    env = try_json(body)
    detail = env if isinstance(env, dict) and "code" in env else None
    msg = str(detail.get("msg", "")) if detail else body_snippet(body)
    code = str(detail.get("code")) if detail else None
    if detail is not None and (code in RATE_LIMIT_CODES or code in SERVER_ERROR_CODES):
        raise error_from_envelope(detail, status, retry_after)
    if status == 403:
        raise Banned(retry_after, msg or "forbidden", exchange=NAME, status=status, code=code)
    raise status_error(NAME, status, msg, code, retry_after)


def used_weight(headers: Mapping[str, str]) -> dict[str, int]:
    """OKX documents no rate-limit headers: always ``{}``."""
    return {}


# --------------------------------------------------------------------------------------------
# WebSocket (public URL: trades, books; business URL: candles)

PUBLIC_WS_PATH = "/ws/v5/public"
BUSINESS_WS_PATH = "/ws/v5/business"
PING = "ping"
PONG = "pong"
CHECKSUM_DEPTH = 25


def checksum_text(bids: list, asks: list) -> str:
    """``bid_px:bid_sz:ask_px:ask_sz:...`` over the best 25 levels of each side, interleaved
    level by level; where one side has no level i only the other side's two fields go in."""
    b = bids[:CHECKSUM_DEPTH]
    a = asks[:CHECKSUM_DEPTH]
    parts: list[str] = []
    extend = parts.extend
    for x, y in zip(b, a, strict=False):
        extend((x[0], x[1], y[0], y[1]))
    n = min(len(b), len(a))
    for x in b[n:] or a[n:]:
        extend((x[0], x[1]))
    return ":".join(parts)


def checksum(bids: list, asks: list) -> int:
    """OKX's signed CRC32 of the top 25 levels (``bids`` best first = descending, ``asks``
    ascending; levels are ``(price, size, ...)`` with the exact strings received)."""
    crc = zlib.crc32(checksum_text(bids, asks).encode())
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def subscribe_message(args: list[dict[str, str]], request_id: str | None = None) -> str:
    """``{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}, ...]}``."""
    msg: dict = {"op": "subscribe", "args": args}
    if request_id is not None:
        msg = {"id": request_id, **msg}
    return orjson.dumps(msg).decode()


def channel_args(symbol: str, channels: tuple[str, ...] = ("trades", "books")) -> list[dict[str, str]]:
    inst = symbol_code(symbol)
    return [{"channel": ch, "instId": inst} for ch in channels]


def decode_frame(text: str | bytes) -> object:
    """A received frame: the JSON object, or the plain text ``"pong"``."""
    if text in (PONG, b"pong"):
        return PONG
    if isinstance(text, str):
        text = text.encode()
    return load_json(text, NAME)


def frame_kind(obj: object) -> str:
    """``pong``, ``ack`` (subscribe/unsubscribe), ``error``, ``notice``, ``trades``, ``book``,
    ``candle``, ``ticker`` or ``other``."""
    if obj == PONG:
        return "pong"
    if not isinstance(obj, dict):
        return "other"
    event = obj.get("event")
    if event is not None:
        if event in ("subscribe", "unsubscribe"):
            return "ack"
        if event == "error":
            return "error"
        return "notice"
    channel = (obj.get("arg") or {}).get("channel", "") if isinstance(obj.get("arg"), dict) else ""
    if channel in ("trades", "trades-all"):
        return "trades"
    if channel in ("books", "books5", "bbo-tbt", "books50-l2-tbt", "books-l2-tbt"):
        return "book"
    if channel.startswith("candle"):
        return "candle"
    if channel == "tickers":
        return "ticker"
    return "other"


def parse_trades(obj: dict) -> list[Trade]:
    """A ``trades`` push -> trades (``tradeId`` is the last id of the aggregation, ``side`` the
    taker side)."""
    try:
        return [
            Trade(
                NAME,
                t["instId"],
                float(t["px"]),
                float(t["sz"]),
                _SIDES[t["side"]],
                str(t["tradeId"]),
                int(t["ts"]),
            )
            for t in obj["data"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"trades frame: {exc!r}", exchange=NAME) from None


_SIDES = {"buy": BUY, "sell": SELL}


def parse_book(obj: dict) -> BookMsg:
    """A ``books``/``books5``/``bbo-tbt`` push -> :class:`BookMsg` (``books5``/``bbo-tbt`` have
    no ``action`` and are full snapshots)."""
    try:
        item = obj["data"][0]
        action = obj.get("action", "snapshot")
        kind = "snapshot" if action == "snapshot" else "delta"
        bids, asks = item.get("bids", []), item.get("asks", [])
        if not isinstance(bids, list) or not isinstance(asks, list):
            raise TypeError("levels are not arrays")
        seq = item.get("seqId")
        prev = item.get("prevSeqId")
        ck = item.get("checksum")
        inst = item.get("instId") or obj["arg"]["instId"]
        return BookMsg(
            NAME,
            inst,
            kind,
            bids,
            asks,
            first_id=None,
            last_id=int(seq) if seq is not None else None,
            prev_id=int(prev) if prev is not None and kind == "delta" else None,
            checksum=int(ck) if ck is not None else None,
            time_ms=int(item["ts"]) if "ts" in item else None,
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"books frame: {exc!r}", exchange=NAME) from None


def parse_candle(obj: dict) -> CandleUpdate:
    """A ``candle<bar>`` push (business URL; rows as in REST, ``confirm`` last) ->
    :class:`CandleUpdate`."""
    try:
        channel = obj["arg"]["channel"]
        tf = timeframe_of(NAME, channel[len("candle") :]) if channel.startswith("candle") else None
        if tf is None:
            raise ValueError(f"channel {channel!r} is not a candle channel of p9's timeframes")
        rows = obj["data"]
        if not isinstance(rows, list):
            raise TypeError("data is not an array")
        return CandleUpdate(NAME, obj["arg"]["instId"], tf, candles_from_rows(rows))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedResponse(f"candle frame: {exc!r}", exchange=NAME) from None
