"""Binance Spot REST (``/api/v3``) as the simulator serves it.

Endpoints: ``klines``, ``depth``, ``exchangeInfo``, ``ping``, ``time``, ``trades``. Bodies are
the bare payload (array or object); errors are ``{"code": <negative int>, "msg": ...}`` with
HTTP 400 (bad input), 429/418 (rate limit / ban, with ``Retry-After``), 5xx (server side).
Every response carries the used request weight of the current minute in
``x-mbx-used-weight`` and ``x-mbx-used-weight-1m``.

Kline selection (Observed in the recorded payloads, see docs/sim.md): by open time,
``startTime <= open <= endTime``; ``startTime`` given -> the oldest ``limit`` bars from it;
otherwise the newest ``limit`` bars up to ``endTime`` (or now). The forming bar is served
like any other (Binance has no closed flag; ``closeTime >= now`` means still open).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from p9cli.sim import http
from p9cli.sim.http import ExchangeRest, ParamError, json_response, query_int
from p9cli.sim.instruments import HOUR_MS
from p9cli.sim.instruments import INTERVALS as SIM_INTERVALS
from p9cli.sim.ratelimit import BANNED, BinanceLimiter, binance_depth_weight
from p9cli.sim.state import ExchangeState, Simulator
from p9cli.universe import MINUTE_MS, QUOTE, SYMBOLS

EXCHANGE = "binance"
CONTENT_TYPE = "application/json;charset=UTF-8"

#: Binance interval code -> (bar length ms, offset ms) (the simulator's own table).
INTERVALS: dict[str, tuple[int, int]] = SIM_INTERVALS[EXCHANGE]
#: Exchange symbol -> canonical symbol.
SYMBOL_CODES: dict[str, str] = {f"{s.upper()}{QUOTE.upper()}": s for s in SYMBOLS}

SYMBOL_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
WEIGHTS: dict[str, int] = {
    "/api/v3/klines": 2,
    "/api/v3/uiKlines": 2,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/trades": 25,
    "/api/v3/aggTrades": 4,
}
DEPTH_DEFAULT_LIMIT = 100
DEPTH_MAX_LIMIT = 5000
TRADES_DEFAULT_LIMIT = 500
TRADES_MAX_LIMIT = 1000


class BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def error_body(code: int, msg: str) -> dict[str, Any]:
    return {"code": code, "msg": msg}


def param_error(exc: ParamError) -> BinanceError:
    if exc.kind == "missing":
        return BinanceError(
            -1102, f"Mandatory parameter '{exc.name}' was not sent, was empty/null, or malformed."
        )
    if exc.kind == "illegal":
        return BinanceError(
            -1100, f"Illegal characters found in parameter '{exc.name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return BinanceError(-1130, "Invalid data sent for a parameter.")


def page_limit(limit: int | None, default: int, maximum: int) -> int:
    """``limit`` of a list endpoint: ``default`` when not sent, -1130 below 1, capped at ``maximum``."""
    if limit is None:
        return default
    if limit < 1:
        raise BinanceError(-1130, "Invalid data sent for a parameter.")
    return min(limit, maximum)


def parse_symbol(query) -> str:
    raw = query.get("symbol")
    if raw is None or raw == "":
        raise BinanceError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    if not SYMBOL_RE.match(raw):
        raise BinanceError(
            -1100, "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
        )
    symbol = SYMBOL_CODES.get(raw)
    if symbol is None:
        raise BinanceError(-1121, "Invalid symbol.")
    return symbol


def request_weight(path: str, query) -> int:
    if path == "/api/v3/depth":
        try:
            limit = int(query.get("limit") or DEPTH_DEFAULT_LIMIT)
        except ValueError:
            limit = DEPTH_DEFAULT_LIMIT
        return binance_depth_weight(min(max(limit, 1), DEPTH_MAX_LIMIT))
    return WEIGHTS.get(path, 1)


def kline_window(
    start: int | None, end: int | None, limit: int, tf_ms: int, offset_ms: int, oldest: int, newest: int
) -> tuple[int, int] | None:
    """Open times ``(first, last)`` (inclusive, on the bar grid) that ``/api/v3/klines`` returns."""
    last = newest if end is None else min(http.floor_open(end, tf_ms, offset_ms), newest)
    if start is not None:
        first = max(http.ceil_open(start, tf_ms, offset_ms), oldest)
        last = min(last, first + (limit - 1) * tf_ms)
    else:
        first = max(last - (limit - 1) * tf_ms, oldest)
    if first > last:
        return None
    return first, last


def kline_rows(bars: Any, inst: Any, tf_ms: int) -> list[list[Any]]:
    """Binance 12-field rows: ints at 0, 6, 8; strings elsewhere; last field ``"0"``."""
    price, qty, quote = inst.price_str, inst.qty_str, inst.quote_str
    cols = (
        bars.open_time.tolist(),
        bars.open.tolist(),
        bars.high.tolist(),
        bars.low.tolist(),
        bars.close.tolist(),
        bars.volume.tolist(),
        bars.quote.tolist(),
        bars.trades.tolist(),
        *taker_buy_columns(bars),
    )
    close_off = tf_ms - 1
    return [
        [
            t,
            price(o),
            price(h),
            price(lo),
            price(c),
            qty(v),
            t + close_off,
            quote(q),
            n,
            qty(bv),
            quote(bq),
            "0",
        ]
        for t, o, h, lo, c, v, q, n, bv, bq in zip(*cols, strict=True)
    ]


def taker_buy_columns(bars: Any) -> tuple[list[int], list[int]]:
    """Taker-buy base and quote volume per bar. The market model has no taker side for
    historical minutes, so unless it provides ``taker_buy_volume`` / ``taker_buy_quote`` the
    simulator publishes half of each bar's volume (floor) and the matching share of its quote
    volume: plausible, consistent (<= volume) and deterministic, but not aggregated from trades."""
    if hasattr(bars, "taker_buy_volume") and hasattr(bars, "taker_buy_quote"):
        return bars.taker_buy_volume.tolist(), bars.taker_buy_quote.tolist()
    half = (bars.volume // 2).tolist()
    # Python ints: quote * volume overflows int64
    quote = [
        q * h // v if v else 0
        for q, h, v in zip(bars.quote.tolist(), half, bars.volume.tolist(), strict=True)
    ]
    return half, quote


#: the body of Binance's HTTP 451 to a restricted location (shared/docs/exchange-protocols.md 2.1)
GEO_BLOCK_MSG = (
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
    "received this message in error."
)


class BinanceRest(ExchangeRest):
    name = EXCHANGE

    def __init__(self, sim: Simulator, state: ExchangeState):
        super().__init__(sim, state)
        self.limiter = BinanceLimiter(state.limits)

    # -- limiter ---------------------------------------------------------------------------
    def admit(self, request: web.Request, now_ms: int) -> web.StreamResponse | None:
        self.limiter.limits = self.state.limits
        verdict = self.limiter.check(now_ms, request_weight(request.path, request.query))
        if verdict.ok:
            return None
        if verdict.outcome == BANNED:
            self.state.count("limit.bans")
            msg = (
                f"Way too much request weight used; IP banned until {verdict.until_ms}. "
                "Please use WebSocket Streams for live updates to avoid bans."
            )
            status = 418
        else:
            self.state.count("limit.violations")
            msg = self._limit_message(verdict.reason)
            status = 429
        return json_response(
            error_body(-1003, msg),
            status,
            CONTENT_TYPE,
            {"Retry-After": str(verdict.retry_after_seconds)},
        )

    def _limit_message(self, reason: str) -> str:
        limits = self.state.limits
        if reason == "raw":
            return (
                f"Too many requests; current limit is {limits.binance_raw_requests_per_5m} requests per "
                "5 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
            )
        return (
            f"Too much request weight used; current limit is {limits.binance_weight_per_minute} request "
            "weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
        )

    def decorate(self, request: web.Request, response: web.StreamResponse, now_ms: int) -> None:
        used = str(self.limiter.used(now_ms))
        response.headers["x-mbx-used-weight"] = used
        response.headers["x-mbx-used-weight-1m"] = used

    # -- bodies ----------------------------------------------------------------------------
    def injected_rate_limit(self, request: web.Request, now_ms: int) -> web.StreamResponse:
        wait_s = max(1, -(-(self.limiter.window_reset_ms(now_ms) - now_ms) // 1000))
        return json_response(
            error_body(-1003, self._limit_message("weight")),
            429,
            CONTENT_TYPE,
            {"Retry-After": str(wait_s)},
        )

    def server_error(self, status: int) -> web.StreamResponse:
        return json_response(
            error_body(-1001, "Internal error; unable to process your request. Please try again."),
            status,
            CONTENT_TYPE,
        )

    def geo_blocked(self, request: web.Request) -> web.StreamResponse:
        # HTTP 451, not in the docs; reported since late 2022 (ccxt/ccxt #16044, dali-rp2 #237)
        return json_response({"code": 0, "msg": GEO_BLOCK_MSG}, 451, CONTENT_TYPE)

    def not_found(self, request: web.Request) -> web.StreamResponse:
        resp = web.Response(status=404, body=b"")
        return resp

    # -- endpoints -------------------------------------------------------------------------
    async def klines(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        symbol = parse_symbol(q)
        interval = q.get("interval")
        if interval is None or interval == "":
            raise BinanceError(
                -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
            )
        grid = INTERVALS.get(interval)
        if grid is None:
            raise BinanceError(-1120, "Invalid interval.")
        tf_ms, offset_ms = grid
        try:
            start = query_int(q, "startTime")
            end = query_int(q, "endTime")
            limit = query_int(q, "limit")
        except ParamError as exc:
            raise param_error(exc) from None
        limits = self.state.limits
        limit = page_limit(limit, limits.binance_klines_default_limit, limits.binance_klines_max_limit)
        if start is not None and end is not None and start > end:
            raise BinanceError(-1023, "Start time is greater than end time.")
        tz = q.get("timeZone")
        if tz not in (None, "", "0", "+0", "-0", "00:00", "+00:00", "-00:00"):
            raise BinanceError(-1130, "Invalid data sent for a parameter.")
        now = self.sim.clock.now_ms()
        oldest = http.ceil_open(self.sim.model.history_start_ms, tf_ms, offset_ms)
        newest = http.floor_open(now, tf_ms, offset_ms)
        window = kline_window(start, end, limit, tf_ms, offset_ms, oldest, newest)
        if window is None:
            return self.ok([])
        inst = http.instrument_of(self.sim, EXCHANGE, symbol)

        def rows() -> list[list[Any]]:
            bars = self.sim.model.bars(EXCHANGE, symbol, tf_ms, offset_ms, window[0], window[1], now)
            return kline_rows(bars, inst, tf_ms)

        return self.ok(await http.offload(rows))

    async def depth(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        symbol = parse_symbol(q)
        try:
            limit = query_int(q, "limit")
        except ParamError as exc:
            raise param_error(exc) from None
        limit = page_limit(limit, DEPTH_DEFAULT_LIMIT, DEPTH_MAX_LIMIT)
        engine = self.sim.books.get((EXCHANGE, symbol))
        if engine is None:
            return self.server_error(503)
        update_id, bids, asks = engine.snapshot(limit)
        inst = http.instrument_of(self.sim, EXCHANGE, symbol)
        price, qty = inst.price_str, inst.qty_str
        return self.ok(
            {
                "lastUpdateId": update_id,
                "bids": [[price(p), qty(s)] for p, s in bids],
                "asks": [[price(p), qty(s)] for p, s in asks],
            }
        )

    async def trades(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        symbol = parse_symbol(q)
        try:
            limit = query_int(q, "limit")
        except ParamError as exc:
            raise param_error(exc) from None
        limit = page_limit(limit, TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT)
        now = self.sim.clock.now_ms()
        ids, times, prices, qtys, buys = recent_trades(self.sim.model, EXCHANGE, symbol, now, limit)
        inst = http.instrument_of(self.sim, EXCHANGE, symbol)
        price, qty, quote = inst.price_str, inst.qty_str, inst.quote_str
        rows = [
            {
                "id": i,
                "price": price(p),
                "qty": qty(s),
                "quoteQty": quote(p * s),
                "time": t,
                "isBuyerMaker": not b,
                "isBestMatch": True,
            }
            for i, t, p, s, b in zip(ids, times, prices, qtys, buys, strict=True)
        ]
        return self.ok(rows)

    async def agg_trades(self, request: web.Request) -> web.StreamResponse:
        """One aggregate per model trade (``a = f = l`` = trade id), as the ``@aggTrade``
        stream publishes them. ``fromId`` / ``startTime`` / ``endTime`` select like Binance:
        from an id or a time the oldest ``limit``, otherwise the newest ``limit``."""
        q = request.query
        symbol = parse_symbol(q)
        try:
            from_id = query_int(q, "fromId")
            start = query_int(q, "startTime")
            end = query_int(q, "endTime")
            limit = query_int(q, "limit")
        except ParamError as exc:
            raise param_error(exc) from None
        limit = page_limit(limit, TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT)
        if start is not None and end is not None:
            if end < start:
                raise BinanceError(-1023, "Start time is greater than end time.")
            if end - start > 3_600_000:
                raise BinanceError(-1127, "More than 1 hours between startTime and endTime.")
        model = self.sim.model
        now = self.sim.clock.now_ms()
        hi = now + 1 if end is None else min(end + 1, now + 1)
        if from_id is not None:
            tr = trades_from_id(model, symbol, from_id, hi, limit)
        elif start is not None:
            tr = trades_from_time(model, symbol, start, hi, limit)
        else:
            ids, times, prices, qtys, buys = recent_trades(model, EXCHANGE, symbol, hi - 1, limit)
            tr = (ids, times, prices, qtys, buys)
        inst = http.instrument_of(self.sim, EXCHANGE, symbol)
        price, qty = inst.price_str, inst.qty_str
        return self.ok(
            [
                {"a": i, "p": price(p), "q": qty(s), "f": i, "l": i, "T": t, "m": not b, "M": True}
                for i, t, p, s, b in zip(*tr, strict=True)
            ]
        )

    async def ping(self, request: web.Request) -> web.StreamResponse:
        return self.ok({})

    async def time(self, request: web.Request) -> web.StreamResponse:
        return self.ok({"serverTime": self.sim.clock.now_ms()})

    async def derivatives_exchange_info(self, request: web.Request) -> web.StreamResponse:
        """USD-M (``/fapi``) / COIN-M (``/dapi``) exchangeInfo with no symbols listed."""
        usdm = request.path.startswith("/fapi/")
        body: dict[str, Any] = {"timezone": "UTC", "serverTime": self.sim.clock.now_ms()}
        if usdm:
            body["futuresType"] = "U_MARGINED"
        body["rateLimits"] = [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}
        ]
        body["exchangeFilters"] = []
        if usdm:
            body["assets"] = []
        body["symbols"] = []
        return json_response(body, 200, CONTENT_TYPE)

    async def exchange_info(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        wanted: list[str] | None = None
        if q.get("symbol"):
            wanted = [parse_symbol(q)]
        elif q.get("symbols"):
            try:
                names = orjson.loads(q["symbols"])
            except orjson.JSONDecodeError:
                raise BinanceError(
                    -1100,
                    "Illegal characters found in parameter 'symbols'; legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.",
                ) from None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.")
            wanted = []
            for name in names:
                if name not in SYMBOL_CODES:
                    raise BinanceError(-1121, "Invalid symbol.")
                wanted.append(SYMBOL_CODES[name])
        permissions = None
        if q.get("permissions"):
            raw = q["permissions"]
            if raw.startswith("["):
                try:
                    permissions = set(orjson.loads(raw))
                except (orjson.JSONDecodeError, TypeError):
                    raise BinanceError(
                        -1100, "Illegal characters found in parameter 'permissions'."
                    ) from None
            else:
                permissions = {raw}
        symbols = wanted if wanted is not None else list(SYMBOLS)
        if permissions is not None and wanted is None and not (permissions & {"SPOT", "MARGIN"}):
            symbols = []
        limits = self.state.limits
        body = {
            "timezone": "UTC",
            "serverTime": self.sim.clock.now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": limits.binance_weight_per_minute,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": limits.binance_raw_requests_per_5m,
                },
            ],
            "exchangeFilters": [],
            "symbols": [symbol_info(http.instrument_of(self.sim, EXCHANGE, s)) for s in symbols],
        }
        return self.ok(body)

    def ok(self, obj: Any) -> web.Response:
        return json_response(obj, 200, CONTENT_TYPE)


def symbol_info(inst: Any) -> dict[str, Any]:
    """One ``exchangeInfo.symbols`` entry (field set and order of the current Spot API)."""
    meta = inst.meta
    return {
        "symbol": inst.code,
        "status": "TRADING",
        "baseAsset": inst.base,
        "baseAssetPrecision": int(meta.get("baseAssetPrecision", 8)),
        "quoteAsset": inst.quote,
        "quotePrecision": int(meta.get("quotePrecision", 8)),
        "quoteAssetPrecision": int(meta.get("quoteAssetPrecision", 8)),
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": [
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "pegInstructionsAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": inst.binance_filters(),
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"],
    }


def recent_trades(
    model: Any, exchange: str, symbol: str, now_ms: int, limit: int
) -> tuple[list, list, list, list, list]:
    """The newest ``limit`` trades with ``time <= now`` as ascending column lists
    (id, time, price, qty, taker_buy). Looks back in growing windows; stops at the live start."""
    span = 60_000
    floor = getattr(model, "live_start_ms", now_ms - 3_600_000)
    while True:
        start = max(now_ms + 1 - span, floor)
        tr = model.trades(exchange, symbol, start, now_ms + 1)
        if len(tr.id) >= limit or start <= floor:
            k = len(tr.id)
            lo = max(0, k - limit)
            return (
                tr.id[lo:].tolist(),
                tr.time[lo:].tolist(),
                tr.price[lo:].tolist(),
                tr.qty[lo:].tolist(),
                tr.taker_buy[lo:].tolist(),
            )
        span *= 4


def _columns(tr: Any, lo: int, hi: int) -> tuple[list, list, list, list, list]:
    return (
        tr.id[lo:hi].tolist(),
        tr.time[lo:hi].tolist(),
        tr.price[lo:hi].tolist(),
        tr.qty[lo:hi].tolist(),
        tr.taker_buy[lo:hi].tolist(),
    )


def trades_from_time(model: Any, symbol: str, start: int, end: int, limit: int) -> tuple:
    """The oldest ``limit`` trades with ``start <= time < end``: one minute first, then
    doubling windows, so a page of a busy tape does not build an hour of trades."""
    t = max(start, model.live_start_ms)
    cols: list[list] = [[], [], [], [], []]
    step = MINUTE_MS
    while t < end and len(cols[0]) < limit:
        tr = model.trades(EXCHANGE, symbol, t, min(t + step, end))
        for acc, part in zip(cols, _columns(tr, 0, limit - len(cols[0])), strict=True):
            acc.extend(part)
        t += step
        step = min(step * 2, HOUR_MS)
    return tuple(cols)


def trades_from_id(model: Any, symbol: str, from_id: int, end: int, limit: int) -> tuple:
    """The oldest ``limit`` trades with ``id >= from_id`` and ``time < end`` (the model jumps
    straight to the minute that holds ``from_id``)."""
    tr = model.trades_from_id(EXCHANGE, symbol, from_id, limit, end)
    return _columns(tr, 0, len(tr.id))


def setup(app: web.Application, sim: Simulator, state: ExchangeState) -> BinanceRest:
    """Add the Binance REST routes and the request gate to ``app``."""
    rest = BinanceRest(sim, state)
    http.install(app, rest)

    # The derivatives hosts (fapi/dapi.binance.com) list nothing here; answering them like
    # Bybit's linear/inverse categories and OKX's SWAP/FUTURES lets clients that load every
    # market type by default (ccxt's binance load_markets) work with only base URLs changed.
    routes = {
        "/api/v3/klines": rest.klines,
        "/api/v3/uiKlines": rest.klines,
        "/api/v3/depth": rest.depth,
        "/api/v3/trades": rest.trades,
        "/api/v3/aggTrades": rest.agg_trades,
        "/api/v3/exchangeInfo": rest.exchange_info,
        "/fapi/v1/exchangeInfo": rest.derivatives_exchange_info,
        "/dapi/v1/exchangeInfo": rest.derivatives_exchange_info,
        "/api/v3/ping": rest.ping,
        "/api/v3/time": rest.time,
    }
    http.add_get_routes(
        app,
        routes,
        BinanceError,
        lambda exc: json_response(error_body(exc.code, exc.msg), exc.status, CONTENT_TYPE),
    )
    return rest


__all__ = ["setup", "BinanceRest", "kline_window", "kline_rows", "INTERVALS", "SYMBOL_CODES"]
