"""Bybit V5 market REST (``/v5/market``) as the simulator serves it.

Endpoints: ``kline``, ``orderbook``, ``instruments-info``, ``time``, ``recent-trade``. Every
answer that reaches the application is HTTP 200 with the envelope
``{"retCode", "retMsg", "result", "retExtInfo", "time"}``; errors keep the envelope with a
non-zero ``retCode`` (10001 = request parameter error). The IP rate limit (600 requests per
5 s, all endpoints) answers HTTP 403 ``access too frequent`` and blocks the IP for
``bybit_block_seconds``. Only ``category=spot`` lists instruments; ``linear``, ``inverse``
and ``option`` are valid categories with nothing listed (empty lists, "Not supported
symbols" for a symbol).

Kline selection: bars whose interval overlaps ``[start, end]`` (the bar containing an
unaligned ``start`` is included), returned newest first. Which ``limit`` bars: with ``start``
only, the OLDEST ``limit`` bars from ``start`` (``start=9999&limit=1`` answers the earliest
candle: pybit issue #186; ccxt and freqtrade page forward with start-only requests); with
``end`` (alone or with ``start``), or with neither, the NEWEST ``limit`` bars up to ``end`` /
now (exchange-protocols.md 3.2, believed, unconfirmed for both bounds).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from p9cli.sim import http
from p9cli.sim.http import ExchangeRest, ParamError, json_response, query_int, text_response
from p9cli.sim.instruments import INTERVALS as SIM_INTERVALS
from p9cli.sim.instruments import instrument_by_code
from p9cli.sim.ratelimit import BybitLimiter
from p9cli.sim.rest_binance import recent_trades
from p9cli.sim.state import ExchangeState, Simulator

EXCHANGE = "bybit"
CONTENT_TYPE = "application/json; charset=utf-8"
INTERVALS: dict[str, tuple[int, int]] = SIM_INTERVALS[EXCHANGE]
CATEGORIES = ("spot", "linear", "inverse", "option")
KLINE_CATEGORIES = ("spot", "linear", "inverse")
ORDERBOOK_DEFAULT_LIMIT = 1
ORDERBOOK_MAX_LIMIT = 1000
TRADES_DEFAULT_LIMIT = 60
TRADES_MAX_LIMIT = 60
#: retryable per-UID limit answer used for injected rate-limit faults (see docs/sim.md)
INJECTED_LIMIT_RESET_MS = 1000


class BybitError(Exception):
    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code = code
        self.msg = msg


def envelope(result: Any, now_ms: int, code: int = 0, msg: str = "OK") -> dict[str, Any]:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms}


def param_error(exc: ParamError) -> BybitError:
    if exc.kind == "missing":
        return BybitError(10001, f"Missing required parameter: {exc.name}")
    return BybitError(10001, f"params error: {exc.name} invalid")


def parse_category(query, default: str, allowed: tuple[str, ...]) -> str:
    category = query.get("category") or default
    if category not in allowed:
        raise BybitError(10001, "Illegal category")
    return category


def parse_symbol(query, category: str) -> str:
    """Canonical symbol of a spot instrument; every other category lists nothing."""
    code = query.get("symbol")
    if not code:
        raise BybitError(10001, "Missing required parameter: symbol")
    inst = instrument_by_code(EXCHANGE, code) if category == "spot" else None
    if inst is None:
        raise BybitError(10001, "Not supported symbols")
    return inst.symbol


def kline_window(
    start: int | None, end: int | None, limit: int, tf_ms: int, offset_ms: int, oldest: int, newest: int
) -> tuple[int, int] | None:
    """Open times ``(first, last)`` (inclusive) of the bars served for ``[start, end]``: the
    oldest ``limit`` from ``start`` when only ``start`` is given, else the newest ``limit``."""
    last = newest if end is None else min(http.floor_open(end, tf_ms, offset_ms), newest)
    lo = oldest if start is None else max(http.floor_open(start, tf_ms, offset_ms), oldest)
    if start is not None and end is None:
        return (lo, min(last, lo + (limit - 1) * tf_ms)) if lo <= last else None
    first = max(lo, last - (limit - 1) * tf_ms)
    if first > last:
        return None
    return first, last


def kline_rows_desc(bars: Any, inst: Any) -> list[list[str]]:
    """7 strings a row, newest first: start, open, high, low, close, volume, turnover."""
    price, qty, quote = inst.price_str, inst.qty_str, inst.quote_str
    cols = (
        bars.open_time.tolist(),
        bars.open.tolist(),
        bars.high.tolist(),
        bars.low.tolist(),
        bars.close.tolist(),
        bars.volume.tolist(),
        bars.quote.tolist(),
    )
    rows = [
        [str(t), price(o), price(h), price(lo), price(c), qty(v), quote(q)]
        for t, o, h, lo, c, v, q in zip(*cols, strict=True)
    ]
    rows.reverse()
    return rows


#: CloudFront's geo-restriction error page, what a blocked IP gets from api.bybit.com
CLOUDFRONT_GEO_BLOCK = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" "http://www.w3.org/TR/html4/loose.dtd">\n'
    '<HTML><HEAD><META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=iso-8859-1">\n'
    "<TITLE>ERROR: The request could not be satisfied</TITLE>\n"
    "</HEAD><BODY>\n"
    "<H1>403 ERROR</H1>\n"
    "<H2>The request could not be satisfied.</H2>\n"
    '<HR noshade size="1px">\n'
    "The Amazon CloudFront distribution is configured to block access from your country.\n"
    "We can't connect to the server for this app or website at this time. There might be too much "
    "traffic or a configuration error. Try again later, or contact the app or website owner.\n"
    '<BR clear="all">\n'
    "If you provide content to customers through CloudFront, you can find steps to troubleshoot and "
    "help prevent this error by reviewing the CloudFront documentation.\n"
    '<BR clear="all">\n'
    '<HR noshade size="1px">\n'
    "<PRE>\n"
    "Generated by cloudfront (CloudFront)\n"
    "</PRE>\n"
    "<ADDRESS>\n"
    "</ADDRESS>\n"
    "</BODY></HTML>"
)


class BybitRest(ExchangeRest):
    name = EXCHANGE

    def __init__(self, sim: Simulator, state: ExchangeState):
        super().__init__(sim, state)
        self.limiter = BybitLimiter(state.limits)

    def admit(self, request: web.Request, now_ms: int) -> web.StreamResponse | None:
        self.limiter.limits = self.state.limits
        verdict = self.limiter.check(now_ms)
        if verdict.ok:
            return None
        self.state.count("limit.violations")
        return text_response("access too frequent", 403)

    def injected_rate_limit(self, request: web.Request, now_ms: int) -> web.StreamResponse:
        resp = json_response(envelope({}, now_ms, 10006, "Too many visits!"), 200, CONTENT_TYPE)
        resp.headers["X-Bapi-Limit"] = "0"
        resp.headers["X-Bapi-Limit-Status"] = "0"
        resp.headers["X-Bapi-Limit-Reset-Timestamp"] = str(now_ms + INJECTED_LIMIT_RESET_MS)
        return resp

    def server_error(self, status: int) -> web.StreamResponse:
        now = self.sim.clock.now_ms()
        return json_response(envelope({}, now, 10016, "Internal server error."), status, CONTENT_TYPE)

    def geo_blocked(self, request: web.Request) -> web.StreamResponse:
        # HTTP 403 from CloudFront, not JSON (Bybit docs guide.mdx 2026-07-24: US and Mainland
        # China IPs get 403; body as third parties recorded it); tell it from "access too frequent"
        return text_response(CLOUDFRONT_GEO_BLOCK, 403, "text/html")

    def not_found(self, request: web.Request) -> web.StreamResponse:
        return text_response("404 page not found", 404)

    def ok(self, result: Any) -> web.Response:
        return json_response(envelope(result, self.sim.clock.now_ms()), 200, CONTENT_TYPE)

    # -- endpoints -------------------------------------------------------------------------
    async def kline(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        category = parse_category(q, "linear", KLINE_CATEGORIES)
        interval = q.get("interval")
        if not interval:
            raise BybitError(10001, "Missing required parameter: interval")
        symbol = parse_symbol(q, category)
        grid = INTERVALS.get(interval)
        if grid is None:
            raise BybitError(10001, "Invalid period!")
        tf_ms, offset_ms = grid
        try:
            start = query_int(q, "start")
            end = query_int(q, "end")
            limit = query_int(q, "limit")
        except ParamError as exc:
            raise param_error(exc) from None
        limits = self.state.limits
        if limit is None:
            limit = limits.bybit_kline_default_limit
        if limit < 1:
            raise BybitError(10001, "params error: limit invalid")
        limit = min(limit, limits.bybit_kline_max_limit)
        if start is not None and end is not None and start > end:
            raise BybitError(10001, "params error: start must be less than end")
        now = self.sim.clock.now_ms()
        oldest = http.ceil_open(self.sim.model.history_start_ms, tf_ms, offset_ms)
        newest = http.floor_open(now, tf_ms, offset_ms)
        window = kline_window(start, end, limit, tf_ms, offset_ms, oldest, newest)
        inst = http.instrument_of(self.sim, EXCHANGE, symbol)
        rows: list[list[str]] = []
        if window is not None:

            def build() -> list[list[str]]:
                bars = self.sim.model.bars(EXCHANGE, symbol, tf_ms, offset_ms, window[0], window[1], now)
                return kline_rows_desc(bars, inst)

            rows = await http.offload(build)
        return self.ok({"category": category, "symbol": inst.code, "list": rows})

    async def orderbook(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        category = parse_category(q, "linear", CATEGORIES)
        symbol = parse_symbol(q, category)
        try:
            limit = query_int(q, "limit")
        except ParamError as exc:
            raise param_error(exc) from None
        limit = ORDERBOOK_DEFAULT_LIMIT if limit is None else limit
        if limit < 1:
            raise BybitError(10001, "params error: limit invalid")
        limit = min(limit, ORDERBOOK_MAX_LIMIT)
        engine = self.sim.books.get((EXCHANGE, symbol))
        if engine is None:
            return self.server_error(503)
        now = self.sim.clock.now_ms()
        seq, bids, asks = engine.snapshot(limit)
        u = book_u(self.sim, symbol, seq)
        inst = http.instrument_of(self.sim, EXCHANGE, symbol)
        price, qty = inst.price_str, inst.qty_str
        cts = int(getattr(engine, "time_ms", now))
        return self.ok(
            {
                "s": inst.code,
                "a": [[price(p), qty(s)] for p, s in asks],
                "b": [[price(p), qty(s)] for p, s in bids],
                "ts": now,
                "u": u,
                "seq": seq,
                "cts": cts,
            }
        )

    async def recent_trade(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        category = parse_category(q, "linear", CATEGORIES)
        symbol = parse_symbol(q, category)
        try:
            limit = query_int(q, "limit")
        except ParamError as exc:
            raise param_error(exc) from None
        limit = TRADES_DEFAULT_LIMIT if limit is None else limit
        if limit < 1:
            raise BybitError(10001, "params error: limit invalid")
        limit = min(limit, TRADES_MAX_LIMIT)
        now = self.sim.clock.now_ms()
        ids, times, prices, qtys, buys = recent_trades(self.sim.model, EXCHANGE, symbol, now, limit)
        inst = http.instrument_of(self.sim, EXCHANGE, symbol)
        price, qty = inst.price_str, inst.qty_str
        rows = [
            {
                "execId": str(i),
                "symbol": inst.code,
                "price": price(p),
                "size": qty(s),
                "side": "Buy" if b else "Sell",
                "time": str(t),
                "isBlockTrade": False,
                "isRPITrade": False,
            }
            for i, t, p, s, b in zip(ids, times, prices, qtys, buys, strict=True)
        ]
        rows.reverse()
        return self.ok({"category": category, "list": rows})

    async def instruments_info(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        category = parse_category(q, "", CATEGORIES)
        if category != "spot":
            return self.ok({"category": category, "list": [], "nextPageCursor": ""})
        code = q.get("symbol")
        insts = [http.instrument_of(self.sim, EXCHANGE, s) for s in symbols_of_exchange()]
        if code:
            insts = [i for i in insts if i.code == code]
        return self.ok({"category": "spot", "list": [spot_instrument(i) for i in insts]})

    async def time(self, request: web.Request) -> web.StreamResponse:
        now = self.sim.clock.now_ms()
        return self.ok({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)})


def symbols_of_exchange() -> list[str]:
    from p9cli.universe import SYMBOLS

    return list(SYMBOLS)


def spot_instrument(inst: Any) -> dict[str, Any]:
    """One spot entry of ``/v5/market/instruments-info`` (field order of the V5 docs)."""
    meta = inst.meta
    d = inst.decimal_str
    return {
        "symbol": inst.code,
        "baseCoin": inst.base,
        "quoteCoin": inst.quote,
        "innovation": "0",
        "status": "Trading",
        "marginTrading": "utaOnly",
        "stTag": "0",
        "lotSizeFilter": {
            "basePrecision": meta.get("basePrecision", d(inst.lot)),
            "quotePrecision": meta.get("quotePrecision", "0.00000001"),
            "minOrderQty": d(inst.min_qty),
            "maxOrderQty": meta.get("maxOrderQty", "10000"),
            "minOrderAmt": d(inst.min_notional),
            "maxOrderAmt": meta.get("maxOrderAmt", "2000000"),
        },
        "priceFilter": {"tickSize": d(inst.tick)},
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
    }


def book_u(sim: Simulator, symbol: str, seq: int) -> int:
    """The ``u`` of the 1000-level stream matching the engine state ``seq``: the live feed's
    ``bybit_rest_u(symbol, seq)`` when it has one, else the ``orderbook.1000`` topic's counter
    when that topic shows exactly this state, else ``seq`` itself (no stream to agree with)."""
    feed = sim.feed
    fn = getattr(feed, "bybit_rest_u", None)
    if fn is not None:
        value = fn(symbol, seq)
        if value is not None:
            return int(value)
    topics = getattr(feed, "topics", None) or {}
    code = http.instrument_of(sim, EXCHANGE, symbol).code
    topic = topics.get((EXCHANGE, f"orderbook.1000.{code}"))
    if topic is not None and getattr(topic, "seq", None) == seq and getattr(topic, "u", 0):
        return int(topic.u)
    return int(seq)


def setup(app: web.Application, sim: Simulator, state: ExchangeState) -> BybitRest:
    """Add the Bybit REST routes and the request gate to ``app``."""
    rest = BybitRest(sim, state)
    http.install(app, rest)

    routes = {
        "/v5/market/kline": rest.kline,
        "/v5/market/orderbook": rest.orderbook,
        "/v5/market/recent-trade": rest.recent_trade,
        "/v5/market/instruments-info": rest.instruments_info,
        "/v5/market/time": rest.time,
    }
    http.add_get_routes(
        app,
        routes,
        BybitError,
        lambda exc: json_response(
            envelope({}, rest.sim.clock.now_ms(), exc.code, exc.msg), 200, CONTENT_TYPE
        ),
    )
    return rest
