"""OKX V5 public REST (``/api/v5``) as the simulator serves it.

Endpoints: ``market/candles``, ``market/history-candles``, ``market/books`` (with the
``books`` channel's ``seqId``, OKX changelog 2026-02-12; ``source`` 0/1 accepted),
``market/trades``, ``market/history-trades``, ``public/instruments``, ``public/time``. Envelope
``{"code": "0", "msg": "", "data": [...]}`` (``code`` is a string); errors keep it with a
non-zero code: 50014 (parameter empty, HTTP 400), 51000 (parameter error, HTTP 400), 51001
(instrument does not exist, HTTP 200). Rate limits are per endpoint, N requests per 2 s;
over it: HTTP 429 ``{"msg":"Too Many Requests","code":"50011"}``.

Candles: rows ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`` (all strings),
newest first; ``after`` = open time strictly earlier than, ``before`` = strictly later than;
the newest ``limit`` bars of that window. ``market/candles`` only reaches the newest
``okx_candles_window`` (1,440) bars; ``market/history-candles`` reaches every bar back to the
start of history and, like ``candles``, includes the newest (forming, ``confirm "0"``) bar
(see docs/sim.md for why).

History trades (``market/history-trades``, OKX docs: "the last 3 months with pagination"):
``type`` ``1`` (default) pages by ``tradeId``, ``2`` by ``ts``; ``after`` = records earlier
than (id or ts, exclusive), ``before`` = newer than (tradeId only: OKX "does not support
timestamp" there, so ``type=2`` with ``before`` answers 51000); the newest ``limit`` (default
and max 100, more is capped) of that window, newest first, rows as ``market/trades``. Only
trades that have happened (``ts <= now``) and only live ones (the simulator has no trades
before its start, so ``after`` at or below the first trade id answers an empty list).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from p9cli.sim import http
from p9cli.sim.http import ExchangeRest, ParamError, json_response, query_int
from p9cli.sim.instruments import INTERVALS as SIM_INTERVALS
from p9cli.sim.instruments import instrument_by_code
from p9cli.sim.ratelimit import OkxLimiter
from p9cli.sim.rest_binance import recent_trades
from p9cli.sim.state import ExchangeState, Simulator
from p9cli.universe import SYMBOLS

EXCHANGE = "okx"
CONTENT_TYPE = "application/json"
INTERVALS: dict[str, tuple[int, int]] = SIM_INTERVALS[EXCHANGE]
INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")
BOOKS_DEFAULT_SZ = 1
BOOKS_MAX_SZ = 400
TRADES_DEFAULT_LIMIT = 100
TRADES_MAX_LIMIT = 500
HISTORY_TRADES_MAX_LIMIT = 100  # also the default
HISTORY_TRADES_TYPES = ("1", "2")  # 1: by tradeId (default), 2: by timestamp
#: listing time published for every simulated instrument (BTC-USDT's real listTime)
LIST_TIME = "1548133413000"


class OkxError(Exception):
    def __init__(self, code: str, msg: str, status: int):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def envelope(data: list, code: str = "0", msg: str = "") -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


def empty_param(name: str) -> OkxError:
    return OkxError("50014", f"Parameter {name} can not be empty.", 400)


def bad_param(name: str) -> OkxError:
    return OkxError("51000", f"Parameter {name} error", 400)


def parse_inst(query) -> str:
    code = query.get("instId")
    if not code:
        raise empty_param("instId")
    inst = instrument_by_code(EXCHANGE, code)
    if inst is None:
        raise OkxError("51001", "Instrument ID or Spread ID doesn't exist.", 200)
    return inst.symbol


def ints(query, *names: str) -> list[int | None]:
    out = []
    for name in names:
        try:
            out.append(query_int(query, name))
        except ParamError:
            raise bad_param(name) from None
    return out


def candle_window(
    after: int | None,
    before: int | None,
    limit: int,
    tf_ms: int,
    offset_ms: int,
    oldest: int,
    newest: int,
) -> tuple[int, int] | None:
    """Open times ``(first, last)`` (inclusive): the newest ``limit`` bars with
    ``before < open < after`` within ``[oldest, newest]``."""
    last = newest if after is None else min(http.floor_open(after - 1, tf_ms, offset_ms), newest)
    lo = oldest if before is None else max(http.ceil_open(before + 1, tf_ms, offset_ms), oldest)
    first = max(lo, last - (limit - 1) * tf_ms)
    if first > last:
        return None
    return first, last


def candle_rows_desc(bars: Any, inst: Any) -> list[list[str]]:
    price, qty, quote = inst.price_str, inst.qty_str, inst.quote_str
    cols = (
        bars.open_time.tolist(),
        bars.open.tolist(),
        bars.high.tolist(),
        bars.low.tolist(),
        bars.close.tolist(),
        bars.volume.tolist(),
        bars.quote.tolist(),
        bars.closed.tolist(),
    )
    rows = []
    for t, o, h, lo, c, v, q, closed in zip(*cols, strict=True):
        qs = quote(q)
        rows.append([str(t), price(o), price(h), price(lo), price(c), qty(v), qs, qs, "1" if closed else "0"])
    rows.reverse()
    return rows


class OkxRest(ExchangeRest):
    name = EXCHANGE

    def __init__(self, sim: Simulator, state: ExchangeState):
        super().__init__(sim, state)
        self.limiter = OkxLimiter(state.limits)

    def admit(self, request: web.Request, now_ms: int) -> web.StreamResponse | None:
        self.limiter.limits = self.state.limits
        path = request.path
        if not path.startswith("/api/v5/"):
            return None
        verdict = self.limiter.check(now_ms, path[len("/api/v5/") :])
        if verdict.ok:
            return None
        self.state.count("limit.violations")
        return self.rate_limited()

    def rate_limited(self) -> web.Response:
        return json_response({"msg": "Too Many Requests", "code": "50011"}, 429, CONTENT_TYPE)

    def injected_rate_limit(self, request: web.Request, now_ms: int) -> web.StreamResponse:
        return self.rate_limited()

    def server_error(self, status: int) -> web.StreamResponse:
        body = envelope([], "50001", "Service temporarily unavailable. Please try again later.")
        return json_response(body, status, CONTENT_TYPE)

    def not_found(self, request: web.Request) -> web.StreamResponse:
        return json_response({"msg": "Not Found", "code": 404}, 404, CONTENT_TYPE)

    def ok(self, data: list) -> web.Response:
        return json_response(envelope(data), 200, CONTENT_TYPE)

    # -- endpoints -------------------------------------------------------------------------
    async def candles(self, request: web.Request) -> web.StreamResponse:
        return await self._candles(request, history=False)

    async def history_candles(self, request: web.Request) -> web.StreamResponse:
        return await self._candles(request, history=True)

    async def _candles(self, request: web.Request, history: bool) -> web.StreamResponse:
        q = request.query
        symbol = parse_inst(q)
        bar = q.get("bar") or "1m"
        grid = INTERVALS.get(bar)
        if grid is None:
            raise bad_param("bar")
        tf_ms, offset_ms = grid
        after, before, limit = ints(q, "after", "before", "limit")
        limits = self.state.limits
        if limit is None:
            limit = limits.okx_candles_default_limit
        if limit < 1:
            raise bad_param("limit")
        cap = limits.okx_history_candles_max_limit if history else limits.okx_candles_max_limit
        limit = min(limit, cap)
        now = self.sim.clock.now_ms()
        newest = http.floor_open(now, tf_ms, offset_ms)
        oldest = http.ceil_open(self.sim.model.history_start_ms, tf_ms, offset_ms)
        if not history:
            oldest = max(oldest, newest - (limits.okx_candles_window - 1) * tf_ms)
        window = candle_window(after, before, limit, tf_ms, offset_ms, oldest, newest)
        if window is None:
            return self.ok([])
        inst = http.instrument_of(self.sim, EXCHANGE, symbol)

        def rows() -> list[list[str]]:
            bars = self.sim.model.bars(EXCHANGE, symbol, tf_ms, offset_ms, window[0], window[1], now)
            return candle_rows_desc(bars, inst)

        return self.ok(await http.offload(rows))

    async def books(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        symbol = parse_inst(q)
        (sz,) = ints(q, "sz")
        sz = BOOKS_DEFAULT_SZ if sz is None else sz
        if sz < 1:
            raise bad_param("sz")
        sz = min(sz, BOOKS_MAX_SZ)
        source = q.get("source")
        if source is not None and source not in ("0", "1"):
            raise bad_param("source")
        engine = self.sim.books.get((EXCHANGE, symbol))
        if engine is None:
            return self.server_error(503)
        view = books_view(self.sim, symbol, sz)
        if view is None:
            seq_id, bids, asks = engine.snapshot(sz)
            ts = self.sim.clock.now_ms()
        else:
            seq_id, bids, asks, ts = view
        inst = http.instrument_of(self.sim, EXCHANGE, symbol)
        price, qty = inst.price_str, inst.qty_str
        orders = order_counter(engine)
        return self.ok(
            [
                {
                    "asks": [[price(p), qty(s), "0", orders(p, s)] for p, s in asks],
                    "bids": [[price(p), qty(s), "0", orders(p, s)] for p, s in bids],
                    "ts": str(ts),
                    "seqId": int(seq_id),
                }
            ]
        )

    async def trades(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        symbol = parse_inst(q)
        (limit,) = ints(q, "limit")
        limit = TRADES_DEFAULT_LIMIT if limit is None else limit
        if limit < 1:
            raise bad_param("limit")
        limit = min(limit, TRADES_MAX_LIMIT)
        now = self.sim.clock.now_ms()
        cols = recent_trades(self.sim.model, EXCHANGE, symbol, now, limit)
        return self.ok(trade_rows_desc(http.instrument_of(self.sim, EXCHANGE, symbol), *cols))

    async def history_trades(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        symbol = parse_inst(q)
        kind = q.get("type") or "1"
        if kind not in HISTORY_TRADES_TYPES:
            raise bad_param("type")
        after, before, limit = ints(q, "after", "before", "limit")
        for name, value in (("after", after), ("before", before)):
            if value is not None and value < 0:
                raise bad_param(name)
        if kind == "2" and before is not None:
            raise bad_param("before")
        limit = HISTORY_TRADES_MAX_LIMIT if limit is None else limit
        if limit < 1:
            raise bad_param("limit")
        limit = min(limit, HISTORY_TRADES_MAX_LIMIT)
        end = self.sim.clock.now_ms() + 1  # only trades that have happened
        model = self.sim.model
        if kind == "2":
            if after is not None:
                end = min(end, after)
            job = (model.trades_newest, EXCHANGE, symbol, end, limit)
        else:
            job = (model.trades_newest, EXCHANGE, symbol, end, limit, after, before)
        tr = await http.offload(*job)
        cols = (tr.id.tolist(), tr.time.tolist(), tr.price.tolist(), tr.qty.tolist(), tr.taker_buy.tolist())
        return self.ok(trade_rows_desc(http.instrument_of(self.sim, EXCHANGE, symbol), *cols))

    async def instruments(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        inst_type = q.get("instType")
        if not inst_type:
            raise empty_param("instType")
        if inst_type not in INST_TYPES:
            raise bad_param("instType")
        if inst_type == "OPTION" and not q.get("instFamily") and not q.get("uly"):
            raise empty_param("instFamily")
        if inst_type != "SPOT":
            return self.ok([])
        insts = [http.instrument_of(self.sim, EXCHANGE, s) for s in SYMBOLS]
        code = q.get("instId")
        if code:
            insts = [i for i in insts if i.code == code]
            if not insts:
                raise OkxError("51001", "Instrument ID or Spread ID doesn't exist.", 200)
        return self.ok([spot_instrument(i) for i in insts])

    async def time(self, request: web.Request) -> web.StreamResponse:
        return self.ok([{"ts": str(self.sim.clock.now_ms())}])


def trade_rows_desc(inst: Any, ids: list, times: list, prices: list, qtys: list, buys: list) -> list[dict]:
    """``market/trades`` / ``market/history-trades`` rows, newest first, from ascending columns."""
    price, qty = inst.price_str, inst.qty_str
    rows = [
        {
            "instId": inst.code,
            "side": "buy" if b else "sell",
            "sz": qty(s),
            "px": price(p),
            "source": "0",
            "tradeId": str(i),
            "ts": str(t),
        }
        for i, t, p, s, b in zip(ids, times, prices, qtys, buys, strict=True)
    ]
    rows.reverse()
    return rows


def books_view(sim: Simulator, symbol: str, depth: int) -> tuple[int, list, list, int] | None:
    """The ``books`` channel's last pushed state while it streams (see ``ws_okx``), else None."""
    feed = sim.feed
    if feed is None:
        return None
    from p9cli.sim.ws_okx import rest_books_view

    return rest_books_view(feed, symbol, depth)


def order_counter(engine: Any):
    """Number of orders at a level, as the live feed publishes it when it can tell, else a
    deterministic count derived from the level (1..8)."""
    fn = getattr(engine, "orders_at", None)
    if fn is not None:
        return lambda p, s: str(fn(p, s))
    return lambda p, s: str(1 + (p * 7 + s) % 8)


def spot_instrument(inst: Any) -> dict[str, Any]:
    """One SPOT entry of ``/api/v5/public/instruments`` (keys in OKX's alphabetical order)."""
    meta = inst.meta
    d = inst.decimal_str
    return {
        "alias": "",
        "auctionEndTime": "",
        "baseCcy": inst.base,
        "category": "1",
        "contTdSwTime": "",
        "ctMult": "",
        "ctType": "",
        "ctVal": "",
        "ctValCcy": "",
        "expTime": "",
        "futureSettlement": False,
        "groupId": "1",
        "instFamily": "",
        "instId": inst.code,
        "instIdCode": None,
        "instType": "SPOT",
        "lever": "",
        "listTime": LIST_TIME,
        "lotSz": d(inst.lot),
        "maxIcebergSz": meta.get("maxLmtSz", "9999999999"),
        "maxLmtAmt": meta.get("maxLmtAmt", "20000000"),
        "maxLmtSz": meta.get("maxLmtSz", "9999999999"),
        "maxMktAmt": meta.get("maxMktAmt", "1000000"),
        "maxMktSz": meta.get("maxMktSz", "1000000"),
        "maxStopSz": meta.get("maxMktSz", "1000000"),
        "maxTriggerSz": meta.get("maxLmtSz", "9999999999"),
        "maxTwapSz": meta.get("maxLmtSz", "9999999999"),
        "minSz": d(inst.min_qty),
        "openType": "",
        "optType": "",
        "preMktSwTime": "",
        "quoteCcy": inst.quote,
        "ruleType": "normal",
        "settleCcy": "",
        "state": "live",
        "stk": "",
        "tickSz": d(inst.tick),
        "tradeQuoteCcyList": [inst.quote],
        "uly": "",
    }


def setup(app: web.Application, sim: Simulator, state: ExchangeState) -> OkxRest:
    """Add the OKX REST routes and the request gate to ``app``."""
    rest = OkxRest(sim, state)
    http.install(app, rest)

    routes = {
        "/api/v5/market/candles": rest.candles,
        "/api/v5/market/history-candles": rest.history_candles,
        "/api/v5/market/books": rest.books,
        "/api/v5/market/trades": rest.trades,
        "/api/v5/market/history-trades": rest.history_trades,
        "/api/v5/public/instruments": rest.instruments,
        "/api/v5/public/time": rest.time,
    }
    http.add_get_routes(
        app,
        routes,
        OkxError,
        lambda exc: json_response(envelope([], exc.code, exc.msg), exc.status, CONTENT_TYPE),
    )
    return rest
