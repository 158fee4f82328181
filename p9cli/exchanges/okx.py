"""OKX V5 Spot: REST requests and parsing, error classification, and the live venue
(``VENUE``: public + business WebSocket, ``decode``, ``books`` sync by seqId/prevSeqId).

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
from collections.abc import Mapping, Sequence

import msgspec
import orjson

from p9cli import universe
from p9cli.exchanges.base import (
    BadRequest,
    Banned,
    ExchangeError,
    KlinesPage,
    MalformedResponse,
    RateBucket,
    RateLimited,
    RestRequest,
    ServerError,
    bars_in_window,
    body_snippet,
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
from p9cli.exchanges.base import (
    candles_from_rows as base_candles_from_rows,
)
from p9cli.exchanges.book import OkxBookSync
from p9cli.exchanges.venue import (
    ACK,
    BOOKS,
    BUY,
    CANDLES,
    ERROR,
    INFO,
    PONG,
    RECONNECT_SOON,
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

NAME = "okx"

CANDLES_BUCKET = "okx:candles"
HISTORY_CANDLES_BUCKET = "okx:history-candles"
TIME_BUCKET = "okx:time"
BOOKS_BUCKET = "okx:books"
TRADES_BUCKET = "okx:trades"
HISTORY_TRADES_BUCKET = "okx:history-trades"
RATE_BUCKETS: tuple[RateBucket, ...] = (
    RateBucket(CANDLES_BUCKET, 40, 2.0, "sliding"),
    RateBucket(HISTORY_CANDLES_BUCKET, 20, 2.0, "sliding"),
    RateBucket(TIME_BUCKET, 10, 2.0, "sliding"),
    RateBucket(BOOKS_BUCKET, 40, 2.0, "sliding"),
    RateBucket(TRADES_BUCKET, 100, 2.0, "sliding"),
    RateBucket(HISTORY_TRADES_BUCKET, 20, 2.0, "sliding"),
)
#: concurrent REST requests of one client (keep-alive connections in its pool)
REST_MAX_IN_FLIGHT = 40
#: header with the server time (ms) a rate limit resets at: none (50011 carries no wait)
RATE_LIMIT_RESET_HEADER: str | None = None

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


def parse_klines(body: bytes, timeframe: str) -> KlinesPage:
    """Candle rows (newest first) -> ascending :class:`KlinesPage`.

    ``volume`` = ``vol`` (base currency on SPOT), ``quote_volume`` = ``volCcyQuote`` (or
    ``volCcy`` for the older 8-field rows), ``confirmed`` from the LAST field (``"1"`` closed)
    when the row has 8 or more fields, else ``None``; OKX gives no trade count.
    """
    check_timeframe(timeframe)
    return candles_from_rows(_data(body))


_CONFIRM = {"1": True, "0": False}


def candles_from_rows(rows_newest_first: list) -> KlinesPage:
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
# Order book snapshot (REST)

BOOKS_PATH = "/api/v5/market/books"
SNAPSHOT_DEPTH = 400


def books_request(symbol: str, depth: int = SNAPSHOT_DEPTH) -> RestRequest:
    """``GET /api/v5/market/books?instId=BTC-USDT&sz=400`` (40 requests per 2 s): the snapshot,
    with the ``books`` channel's ``seqId`` (OKX changelog 2026-02-12), that bridges a stream
    sending no in-band snapshot."""
    if not 1 <= depth <= 400:
        raise ValueError(f"OKX books depth must be 1..400, got {depth}")
    return RestRequest(BOOKS_PATH, (("instId", symbol_code(symbol)), ("sz", str(depth))), BOOKS_BUCKET, 1)


class _RestBook(msgspec.Struct):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: str | None = None
    seqId: int | None = None


class _RestBooks(msgspec.Struct):
    code: str
    data: list[_RestBook] = []
    msg: str = ""


_rest_books_decoder = msgspec.json.Decoder(_RestBooks)


def parse_books_snapshot(body: bytes, symbol: str) -> BookSnapshot:
    """``{"code":"0","data":[{"asks","bids","ts","seqId"}]}`` -> a :class:`BookSnapshot`
    (``from_rest``) of canonical ``symbol``; ``update_id`` is ``seqId`` (``None`` when absent:
    such a snapshot cannot bridge the stream)."""
    try:
        env = _rest_books_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedResponse(f"books: {exc} in {body_snippet(body)!r}", exchange=NAME) from None
    if env.code != "0":
        raise error_from_envelope({"code": env.code, "msg": env.msg}, status=None)
    if len(env.data) != 1:
        raise MalformedResponse(f"books: expected one data item, got {len(env.data)}", exchange=NAME)
    d = env.data[0]
    return BookSnapshot(NAME, symbol, d.seqId, d.bids, d.asks, int(d.ts) if d.ts else None, True)


# --------------------------------------------------------------------------------------------
# Recent and history trades (REST): the replay of a trade hole

TRADES_PATH = "/api/v5/market/trades"
#: the most ``market/trades`` returns (reference 4.3: max 500, default 100)
TRADES_MAX_LIMIT = 500
HISTORY_TRADES_PATH = "/api/v5/market/history-trades"
#: the most ``market/history-trades`` returns (OKX docs: maximum and default 100)
HISTORY_TRADES_MAX_LIMIT = 100


def trades_request(symbol: str, limit: int = TRADES_MAX_LIMIT) -> RestRequest:
    """``GET /api/v5/market/trades?instId=BTC-USDT&limit=500`` (100 requests per 2 s): the newest
    trades, one row per fill (``tradeId``, no ``count``)."""
    if not 1 <= limit <= TRADES_MAX_LIMIT:
        raise ValueError(f"OKX trades limit must be 1..{TRADES_MAX_LIMIT}, got {limit}")
    return RestRequest(
        TRADES_PATH, (("instId", symbol_code(symbol)), ("limit", str(limit))), TRADES_BUCKET, 1
    )


def history_trades_request(symbol: str, after_id: int, limit: int = HISTORY_TRADES_MAX_LIMIT) -> RestRequest:
    """``GET /api/v5/market/history-trades?instId=BTC-USDT&type=1&after=N&limit=100`` (20 requests
    per 2 s, the last three months): the newest ``limit`` trades with ``tradeId < after_id``
    (``after`` is exclusive), newest first, rows as ``market/trades``."""
    if not 1 <= limit <= HISTORY_TRADES_MAX_LIMIT:
        raise ValueError(f"OKX history-trades limit must be 1..{HISTORY_TRADES_MAX_LIMIT}, got {limit}")
    params = (
        ("instId", symbol_code(symbol)),
        ("type", "1"),
        ("after", str(int(after_id))),
        ("limit", str(limit)),
    )
    return RestRequest(HISTORY_TRADES_PATH, params, HISTORY_TRADES_BUCKET, 1)


def trade_replay_request(symbol: str, from_id: int, to_id: int, page: int) -> RestRequest:
    """The replay of a hole ``from_id..to_id`` (inclusive) in the ``trades`` channel's numbering
    (OKX numbers its trades contiguously per instrument). Page 0: ``market/trades``, the newest
    500 fills (cheap; recovers a recent hole at once). Page 1 on: ``history-trades`` by id, the
    100 trades just below ``to_id + 1``; the caller shrinks the span from the top as trades
    arrive and asks again, so a hole older than the newest 500 is reached 100 at a time."""
    if page <= 0:
        return trades_request(symbol, TRADES_MAX_LIMIT)
    return history_trades_request(symbol, int(to_id) + 1, HISTORY_TRADES_MAX_LIMIT)


class _RestTrade(msgspec.Struct):
    tradeId: str
    px: str
    sz: str
    side: str
    ts: str


class _RestTrades(msgspec.Struct):
    code: str
    data: list[_RestTrade] = []
    msg: str = ""


_rest_trades_decoder = msgspec.json.Decoder(_RestTrades)


def parse_recent_trades(body: bytes, symbol: str) -> list[Trade]:
    """``{"code":"0","data":[{"tradeId","px","sz","side","ts",...}]}`` (newest first; the body of
    ``market/trades`` and of ``market/history-trades``) -> trades ascending by ``tradeId``, each
    one fill (``first == last == tradeId``)."""
    try:
        env = _rest_trades_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedResponse(f"trades: {exc} in {body_snippet(body)!r}", exchange=NAME) from None
    if env.code != "0":
        raise error_from_envelope({"code": env.code, "msg": env.msg}, status=None)
    out = []
    for t in env.data:
        side = _SIDES.get(t.side)
        if side is None:
            raise MalformedResponse(f"trades: unknown side {t.side!r}", exchange=NAME)
        n = int(t.tradeId)
        out.append(Trade(NAME, symbol, int(t.ts), float(t.px), float(t.sz), side, t.tradeId, n, n, fills=1))
    out.sort(key=lambda t: t.id_last)
    return out


# --------------------------------------------------------------------------------------------
# WebSocket (public URL: trades, books; business URL: candles), decode

PUBLIC_WS_PATH = "/ws/v5/public"
BUSINESS_WS_PATH = "/ws/v5/business"
PING = "ping"
PONG_TEXT = "pong"
CHECKSUM_DEPTH = 25
TRADE_CHANNEL = "trades"
BOOK_CHANNEL = "books"
CANDLE_CHANNEL = "candle1m"
#: 400-level ``books`` channels per connection: OKX asks for fewer than 30.
BOOKS_PER_CONNECTION = 29
#: error codes that mean a subscription was refused (wrong URL, channel or instrument).
SUBSCRIBE_ERROR_CODES = frozenset({"60008", "60012", "60013", "60018", "64001", "64002"})
#: notice code: the connection will be closed soon for a service upgrade (~60 s).
SERVICE_UPGRADE_CODE = "64008"


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
    """OKX's legacy signed CRC32 of the top 25 levels (``bids`` best first = descending, ``asks``
    ascending; levels are ``(price, size, ...)`` with the exact strings received)."""
    crc = zlib.crc32(checksum_text(bids, asks).encode())
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def subscribe_message(
    args: list[dict[str, str]], request_id: str | None = None, op: str = "subscribe"
) -> str:
    """``{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}, ...]}``."""
    msg: dict = {"op": op, "args": args}
    if request_id is not None:
        msg = {"id": request_id, **msg}
    return orjson.dumps(msg).decode()


def channel_args(
    symbol: str, channels: tuple[str, ...] = (TRADE_CHANNEL, BOOK_CHANNEL)
) -> list[dict[str, str]]:
    inst = symbol_code(symbol)
    return [{"channel": ch, "instId": inst} for ch in channels]


def connection_plan(ws_base_url: str, symbols: Sequence[str], candles: bool = True) -> list[ConnectionPlan]:
    """Public URL: ``trades`` + ``books`` of at most 29 symbols per connection, one subscribe
    request each; business URL (candle channels live there): ``candle1m`` of at most 58
    symbols per connection."""
    base = ws_base_url.rstrip("/")
    plans = []
    for i in range(0, len(symbols), BOOKS_PER_CONNECTION):
        group = tuple(symbols[i : i + BOOKS_PER_CONNECTION])
        args = [a for sym in group for a in channel_args(sym)]
        plans.append(
            ConnectionPlan(
                base + PUBLIC_WS_PATH,
                (subscribe_message(args, f"sub{i // BOOKS_PER_CONNECTION + 1}"),),
                group,
                frozenset({TRADES, BOOKS}),
                tuple(f"{a['channel']}:{a['instId']}" for a in args),
            )
        )
    per_candles_connection = 2 * BOOKS_PER_CONNECTION
    for i in range(0, len(symbols) if candles else 0, per_candles_connection):
        group = tuple(symbols[i : i + per_candles_connection])
        args = [a for sym in group for a in channel_args(sym, (CANDLE_CHANNEL,))]
        plans.append(
            ConnectionPlan(
                base + BUSINESS_WS_PATH,
                (subscribe_message(args, f"candles{i // per_candles_connection + 1}"),),
                group,
                frozenset({CANDLES}),
                tuple(f"{a['channel']}:{a['instId']}" for a in args),
            )
        )
    return plans


def book_resubscribe(symbol: str) -> tuple[str, str]:
    """Unsubscribe + subscribe the symbol's ``books`` channel (a fresh in-band snapshot follows
    while OKX still sends one; otherwise the machine bridges from REST)."""
    args = channel_args(symbol, (BOOK_CHANNEL,))
    return subscribe_message(args, "unbook", op="unsubscribe"), subscribe_message(args, "rebook")


_NO_RAW = msgspec.Raw()


class _Arg(msgspec.Struct):
    channel: str = ""
    instId: str = ""


class _Envelope(msgspec.Struct):
    arg: _Arg | None = None
    action: str | None = None
    data: msgspec.Raw = _NO_RAW
    event: str | None = None
    code: str | None = None
    msg: str = ""
    id: str | None = None


class _Trade(msgspec.Struct):
    instId: str
    tradeId: str
    px: str
    sz: str
    side: str
    ts: str
    count: str | None = None
    seqId: int | None = None


class _Book(msgspec.Struct):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: str | None = None
    checksum: int | None = None
    seqId: int | None = None
    prevSeqId: int | None = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_trades_decoder = msgspec.json.Decoder(list[_Trade])
_books_decoder = msgspec.json.Decoder(list[_Book])
_candles_decoder = msgspec.json.Decoder(list[list[str]])
_SIDES = {"buy": BUY, "sell": SELL}
_CONFIRMED = {"0": False, "1": True}
_symbols: dict[str, str] = {}


def _symbol(code: str) -> str:
    """``BTC-USDT`` -> ``btc`` (cached); other codes (``UNI-USD-SWAP``) unchanged."""
    sym = _symbols.get(code)
    if sym is None:
        sym = canonical_symbol(code) or code
        _symbols[code] = sym
    return sym


def _trades(env: _Envelope) -> list:
    out = []
    for t in _trades_decoder.decode(env.data):
        last = int(t.tradeId)
        fills = int(t.count) if t.count is not None else 1
        first = last - fills + 1 if t.count is not None else None
        out.append(
            Trade(
                NAME,
                _symbol(t.instId),
                int(t.ts),
                float(t.px),
                float(t.sz),
                _SIDES[t.side],
                t.tradeId,
                first,
                last if first is not None else None,
                t.seqId,
                fills=fills,
            )
        )
    return out


def _books(env: _Envelope) -> list:
    items = _books_decoder.decode(env.data)
    if len(items) != 1:
        raise ValueError(f"books: expected one data item, got {len(items)}")
    d = items[0]
    sym = _symbol(env.arg.instId)
    t = int(d.ts) if d.ts else None
    action = env.action
    if action == "snapshot" or (action is None and env.arg.channel != BOOK_CHANNEL):  # books5, bbo-tbt
        return [BookSnapshot(NAME, sym, d.seqId, d.bids, d.asks, t, False, d.checksum)]
    if action == "update":
        return [BookDelta(NAME, sym, d.seqId, d.seqId, d.bids, d.asks, d.prevSeqId, t, d.checksum)]
    raise ValueError(f"books action {action!r}")


def _candles(env: _Envelope) -> list:
    channel = env.arg.channel
    tf = timeframe_of(NAME, channel[len("candle") :])
    if tf is None:
        raise ValueError(f"channel {channel!r} is not a candle channel of p9's timeframes")
    sym = _symbol(env.arg.instId)
    rows = sorted(_candles_decoder.decode(env.data), key=lambda r: int(r[0]))
    return [
        ExchangeCandle(
            NAME,
            sym,
            tf,
            int(r[0]),
            float(r[1]),
            float(r[2]),
            float(r[3]),
            float(r[4]),
            float(r[5]),
            _CONFIRMED[r[8]],
            float(r[7]),  # volCcyQuote (quote currency; == volCcy on spot)
        )
        for r in rows
    ]


def _event(env: _Envelope) -> list:
    event = env.event
    if event in ("subscribe", "unsubscribe"):
        return [Notice(NAME, ACK, None, event, env.id)]
    if event == "error":
        kind = SUBSCRIBE_FAILED if env.code in SUBSCRIBE_ERROR_CODES else ERROR
        return [Notice(NAME, kind, env.code, env.msg, env.id)]
    if event == "notice" and env.code == SERVICE_UPGRADE_CODE:
        return [Notice(NAME, RECONNECT_SOON, env.code, env.msg, env.id)]
    return [Notice(NAME, INFO, env.code, env.msg or event, env.id)]


_CHANNELS = {
    TRADE_CHANNEL: _trades,
    "trades-all": _trades,
    BOOK_CHANNEL: _books,
    "books5": _books,
    "bbo-tbt": _books,
    "books50-l2-tbt": _books,
    "books-l2-tbt": _books,
}


def decode(frame: bytes | str) -> list:
    """One received frame -> normalized events (``[]`` for channels p9 does not use, such as
    tickers); the plain text ``pong`` is a :data:`PONG` notice. Never raises: an unreadable
    frame is one :class:`Malformed`."""
    try:
        if frame == PONG_TEXT or frame == b"pong":
            return [Notice(NAME, PONG)]
        env = _envelope_decoder.decode(frame)
        if env.event is not None:
            return _event(env)
        arg = env.arg
        if arg is None or not env.data:
            return [malformed(NAME, "not an OKX frame", frame)]
        handler = _CHANNELS.get(arg.channel)
        if handler is not None:
            return handler(env)
        if arg.channel.startswith("candle"):
            return _candles(env)
        return []
    except Exception as exc:  # noqa: BLE001 - decode never raises (see Malformed)
        return [malformed(NAME, f"{type(exc).__name__}: {exc}", frame)]


VENUE = Venue(
    name=NAME,
    decode=decode,
    connection_plan=connection_plan,
    keepalive=Keepalive(ping_text=PING, ping_when_idle_s=20.0, pong_timeout_s=8.0),
    new_book=lambda symbol: OkxBookSync(symbol, checksum=checksum),
    snapshot_request=lambda symbol: books_request(symbol, SNAPSHOT_DEPTH),
    parse_snapshot=parse_books_snapshot,
    book_resubscribe=book_resubscribe,
    trade_replay_request=trade_replay_request,
    parse_trade_replay=parse_recent_trades,
    candle_timeframe="1m",
    empty_candle="previous_close",  # reference 4.2: O/H/L/C default to the previous close (Doc)
    candle_trade_counts=False,
    max_connection_age_s=None,
    streams_per_connection=2 * BOOKS_PER_CONNECTION,
    send_interval_s=0.1,
    connect_interval_s=0.34,  # 3 new connections per second per IP
    silence_timeout_s=30.0,  # OKX itself closes after 30 s without data; we ping after 20 s
)
