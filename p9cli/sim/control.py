"""The simulator's control API (JSON over HTTP on ``port_base``): health, state, run-time
faults and limits, the clock, and ground truth for tests.

=====================================  ==========================================================
``GET /health``                        ``{"status": "ok", "now_ms": ...}``
``GET /state``                         seed, clock, live/history start, ports, per-exchange
                                       faults, limits and counters
``POST /faults/{exchange|all}``        JSON object of FaultSettings fields -> the new faults
``POST /limits/{exchange|all}``        JSON object of LimitSettings fields -> the new limits
``POST /counters/reset``               zero every counter (``?exchange=`` for one exchange)
``POST /clock/advance``                ``{"ms": N}`` jumps the simulated clock forward
``GET /truth/candles``                 ``exchange, symbol, interval, start, end``: the true bars
``GET /truth/trades``                  ``exchange, symbol, start, end``: every trade
``GET /truth/book``                    ``exchange, symbol[, update_id]``: the true book
=====================================  ==========================================================

Errors: HTTP 400 (bad input) / 404 (unknown exchange, book too old) with
``{"error": "<one line>"}``. Truth is formatted exactly as the exchange formats it (price
and quantity strings from the instrument, the exchange's own kline row under ``row``).
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from aiohttp import web

from p9cli.sim.book import trade_tuples
from p9cli.sim.http import ceil_open, floor_open, json_response, offload
from p9cli.sim.instruments import INSTRUMENTS, INTERVALS, instrument_by_code
from p9cli.sim.rest_binance import taker_buy_columns
from p9cli.sim.state import FaultSettings, LimitSettings, Simulator
from p9cli.universe import EXCHANGES, SYMBOLS, TIMEFRAME_MS

#: the most bars / trades one truth request returns
MAX_TRUTH_BARS = 10_000
MAX_TRUTH_TRADES = 200_000
MAX_TRUTH_TRADES_SPAN_MS = 24 * 3_600_000
CANONICAL_CODES: dict[str, dict[str, str]] = {
    "binance": {tf: tf for tf in TIMEFRAME_MS},
    "bybit": {"1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30", "1h": "60", "2h": "120",
              "4h": "240", "6h": "360", "12h": "720", "1d": "D"},
    "okx": {"1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1H", "2h": "2H",
            "4h": "4H", "6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc"},
}  # fmt: skip


class ControlError(Exception):
    def __init__(self, msg: str, status: int = 400):
        super().__init__(msg)
        self.msg = msg
        self.status = status


def error(msg: str, status: int = 400) -> web.Response:
    return json_response({"error": msg}, status)


# ------------------------------------------------------------------------------ parsing


def exchanges_of(name: str) -> tuple[str, ...]:
    if name in ("all", "*"):
        return EXCHANGES
    if name not in EXCHANGES:
        raise ControlError(f"unknown exchange {name!r}; valid: {', '.join(EXCHANGES)}, all", 404)
    return (name,)


def one_exchange(query) -> str:
    name = (query.get("exchange") or "").lower()
    if name not in EXCHANGES:
        raise ControlError(f"exchange={name!r}: valid: {', '.join(EXCHANGES)}")
    return name


def one_symbol(query, exchange: str) -> str:
    raw = query.get("symbol") or ""
    if raw.lower() in SYMBOLS:
        return raw.lower()
    inst = instrument_by_code(exchange, raw)
    if inst is None:
        raise ControlError(
            f"symbol={raw!r}: valid: {', '.join(SYMBOLS)} or {exchange}'s codes "
            f"({', '.join(INSTRUMENTS[(exchange, s)].code for s in SYMBOLS)})"
        )
    return inst.symbol


def an_int(query, name: str, default: int | None = None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ControlError(f"{name} is required (epoch ms)")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ControlError(f"{name}={raw!r} is not an integer") from None


def interval_of(query, exchange: str) -> tuple[str, int, int]:
    """``(exchange code, tf_ms, offset_ms)`` from an exchange code or a canonical timeframe."""
    raw = query.get("interval") or ""
    table = INTERVALS[exchange]
    if raw in table:
        return (raw, *table[raw])
    code = CANONICAL_CODES[exchange].get(raw.lower())
    if code is not None:
        return (code, *table[code])
    raise ControlError(
        f"interval={raw!r}: valid: {', '.join(TIMEFRAME_MS)} or {exchange}'s codes ({', '.join(table)})"
    )


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ControlError("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


def apply_settings(targets: list[Any], cls: type, body: dict[str, Any]) -> None:
    """Validate every ``name: value`` of ``body`` against ``cls`` first, then set them on every
    target (all or nothing)."""
    valid = [f.name for f in fields(cls)]
    unknown = [k for k in body if k not in valid]
    if unknown:
        raise ControlError(f"unknown name(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    probe = cls()
    for name, value in body.items():
        if isinstance(value, dict | list) or value is None:
            raise ControlError(f"{name}: expected a number, boolean or string, not {json.dumps(value)}")
        try:
            probe.set(name, value)
        except (ValueError, TypeError) as exc:
            raise ControlError(f"{name}={value!r}: {exc}") from None
    for target in targets:
        for name in body:
            setattr(target, name, getattr(probe, name))


# ------------------------------------------------------------------------------ truth


def bar_rows(exchange: str, inst: Any, bars: Any, tf_ms: int) -> list[dict[str, Any]]:
    """The true bars, each as named fields plus the exchange's exact REST row."""
    price, qty, quote = inst.price_str, inst.qty_str, inst.quote_str
    out = []
    cols = [
        bars.open_time.tolist(), bars.open.tolist(), bars.high.tolist(), bars.low.tolist(),
        bars.close.tolist(), bars.volume.tolist(), bars.quote.tolist(), bars.trades.tolist(),
        bars.closed.tolist(),
    ]  # fmt: skip
    tbv, tbq = taker_buy_columns(bars)
    for (t, o, h, lo, c, v, q, n, closed), bv, bq in zip(zip(*cols, strict=True), tbv, tbq, strict=True):
        o_s, h_s, l_s, c_s, v_s, q_s = price(o), price(h), price(lo), price(c), qty(v), quote(q)
        if exchange == "binance":
            row: list[Any] = [t, o_s, h_s, l_s, c_s, v_s, t + tf_ms - 1, q_s, n, qty(bv), quote(bq), "0"]
        elif exchange == "bybit":
            row = [str(t), o_s, h_s, l_s, c_s, v_s, q_s]
        else:
            row = [str(t), o_s, h_s, l_s, c_s, v_s, q_s, q_s, "1" if closed else "0"]
        out.append(
            {
                "open_time": t,
                "open": o_s,
                "high": h_s,
                "low": l_s,
                "close": c_s,
                "volume": v_s,
                "quote_volume": q_s,
                "trades": n,
                "closed": bool(closed),
                "row": row,
            }
        )
    return out


def trade_rows(exchange: str, inst: Any, tr: Any) -> list[dict[str, Any]]:
    price, qty = inst.price_str, inst.qty_str
    out = []
    for i, t, p, s, b in trade_tuples(tr):
        out.append(
            {
                "id": i if exchange == "binance" else str(i),
                "time": t,
                "price": price(p),
                "qty": qty(s),
                "taker_side": "buy" if b else "sell",
            }
        )
    return out


# ------------------------------------------------------------------------------ app


def build_app(sim: Simulator, handle: Any = None) -> web.Application:
    """The control API of ``sim`` (``handle`` supplies the ports for ``/state``)."""
    routes = web.RouteTableDef()

    def state_doc() -> dict[str, Any]:
        model = sim.model
        return {
            "seed": sim.seed,
            "clock": {"now_ms": sim.clock.now_ms(), "start_ms": sim.clock.start_ms, "speed": sim.clock.speed},
            "live_start_ms": getattr(model, "live_start_ms", None),
            "history_start_ms": getattr(model, "history_start_ms", None),
            "ports": dict(getattr(handle, "ports", {}) or {}),
            "feed": sim.feed is not None,
            "websocket": bool(getattr(handle, "ws_available", False)),
            "exchanges": {
                name: {
                    "faults": st.faults.as_dict(),
                    "limits": st.limits.as_dict(),
                    "counters": dict(sorted(st.counters.items())),
                }
                for name, st in sim.exchanges.items()
            },
        }

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        return json_response({"status": "ok", "now_ms": sim.clock.now_ms()})

    @routes.get("/state")
    async def state(request: web.Request) -> web.Response:
        return json_response(state_doc())

    @routes.post("/faults/{exchange}")
    async def set_faults(request: web.Request) -> web.Response:
        names = exchanges_of(request.match_info["exchange"].lower())
        body = await json_object(request)
        apply_settings([sim.exchanges[n].faults for n in names], FaultSettings, body)
        return json_response({n: sim.exchanges[n].faults.as_dict() for n in names})

    @routes.post("/limits/{exchange}")
    async def set_limits(request: web.Request) -> web.Response:
        names = exchanges_of(request.match_info["exchange"].lower())
        body = await json_object(request)
        apply_settings([sim.exchanges[n].limits for n in names], LimitSettings, body)
        return json_response({n: sim.exchanges[n].limits.as_dict() for n in names})

    @routes.post("/counters/reset")
    async def reset_counters(request: web.Request) -> web.Response:
        names = exchanges_of((request.query.get("exchange") or "all").lower())
        for n in names:
            counters = sim.exchanges[n].counters
            keep = {k: v for k, v in counters.items() if k == "ws.open"}  # a gauge, not a count
            counters.clear()
            counters.update(keep)
        return json_response({"reset": list(names)})

    @routes.post("/clock/advance")
    async def advance(request: web.Request) -> web.Response:
        body = await json_object(request)
        ms = body.get("ms")
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ControlError('expected {"ms": N} with N a non-negative integer')
        return json_response({"now_ms": sim.clock.advance(ms)})

    @routes.get("/truth/candles")
    async def truth_candles(request: web.Request) -> web.Response:
        q = request.query
        exchange = one_exchange(q)
        symbol = one_symbol(q, exchange)
        code, tf_ms, offset_ms = interval_of(q, exchange)
        now = sim.clock.now_ms()
        newest = floor_open(now, tf_ms, offset_ms)
        start = an_int(q, "start")
        end = an_int(q, "end", newest)
        first = max(
            ceil_open(start, tf_ms, offset_ms), ceil_open(sim.model.history_start_ms, tf_ms, offset_ms)
        )
        last = min(floor_open(end, tf_ms, offset_ms), newest)
        inst = INSTRUMENTS[(exchange, symbol)]
        candles: list[dict[str, Any]] = []
        if first <= last:
            if (last - first) // tf_ms + 1 > MAX_TRUTH_BARS:
                raise ControlError(f"at most {MAX_TRUTH_BARS} bars per request")

            def build() -> list[dict[str, Any]]:
                bars = sim.model.bars(exchange, symbol, tf_ms, offset_ms, first, last, now)
                return bar_rows(exchange, inst, bars, tf_ms)

            candles = await offload(build)
        return json_response(
            {
                "exchange": exchange,
                "symbol": symbol,
                "code": inst.code,
                "interval": code,
                "tf_ms": tf_ms,
                "offset_ms": offset_ms,
                "now_ms": now,
                "candles": candles,
            }
        )

    @routes.get("/truth/trades")
    async def truth_trades(request: web.Request) -> web.Response:
        q = request.query
        exchange = one_exchange(q)
        symbol = one_symbol(q, exchange)
        start = an_int(q, "start")
        end = an_int(q, "end")
        if end < start:
            raise ControlError("end must be >= start")
        if end - start > MAX_TRUTH_TRADES_SPAN_MS:
            raise ControlError(f"at most {MAX_TRUTH_TRADES_SPAN_MS // 3_600_000} hours of trades per request")
        tr = await offload(sim.model.trades, exchange, symbol, start, end)
        if len(tr.id) > MAX_TRUTH_TRADES:
            raise ControlError(f"more than {MAX_TRUTH_TRADES} trades; ask for a shorter range")
        inst = INSTRUMENTS[(exchange, symbol)]
        feed = sim.feed
        sent = bool(feed.trades_were_sent(exchange, symbol, start, end)) if feed is not None else False
        return json_response(
            {
                "exchange": exchange,
                "symbol": symbol,
                "code": inst.code,
                "start": start,
                "end": end,
                "sent": sent,
                "trades": trade_rows(exchange, inst, tr),
            }
        )

    @routes.get("/truth/book")
    async def truth_book(request: web.Request) -> web.Response:
        q = request.query
        exchange = one_exchange(q)
        symbol = one_symbol(q, exchange)
        engine = sim.books.get((exchange, symbol))
        if engine is None:
            raise ControlError("no order book: the live feed is not running", 404)
        update_id = an_int(q, "update_id", int(engine.update_id))
        engine_id = update_id
        if exchange == "okx" and "update_id" in q and sim.feed is not None:
            from p9cli.sim.ws_okx import truth_update_id  # OKX seqIds differ after a sequence reset

            engine_id = truth_update_id(sim.feed, symbol, update_id)
        book = engine.book_at(engine_id)
        if book is None:
            raise ControlError(
                f"update_id {update_id} is not in the book log "
                f"(oldest {engine.oldest_update_id}, newest {engine.update_id})",
                404,
            )
        bids, asks = book
        inst = INSTRUMENTS[(exchange, symbol)]
        price, qty = inst.price_str, inst.qty_str
        return json_response(
            {
                "exchange": exchange,
                "symbol": symbol,
                "code": inst.code,
                "update_id": update_id,
                "bids": [[price(p), qty(s)] for p, s in bids],
                "asks": [[price(p), qty(s)] for p, s in asks],
            }
        )

    @web.middleware
    async def errors(request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ControlError as exc:
            return error(exc.msg, exc.status)
        except web.HTTPNotFound:
            return error(f"no such endpoint: {request.method} {request.path}", 404)
        except web.HTTPMethodNotAllowed:
            return error(f"method {request.method} not allowed on {request.path}", 405)

    app = web.Application(middlewares=[errors])
    app.add_routes(routes)
    return app
