"""Binance Spot WebSocket market streams as the simulator serves them.

Paths (same port as the REST API): ``/ws/<stream>[/<stream>...]`` (bare events),
``/ws`` (subscribe later), ``/stream?streams=<a>/<b>`` and ``/stream`` (combined: every frame
is ``{"stream":"<name>","data":<event>}``). Control messages (``SUBSCRIBE``, ``UNSUBSCRIBE``,
``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY``/``GET_PROPERTY`` ``combined``) are answered with
``{"result":..,"id":..}``; errors with ``{"error":{"code":..,"msg":..},"id":..}`` (the nested
form seen on the wire; the docs list only code and msg).

Streams (``<sym>`` is the lower-case symbol, e.g. ``btcusdt``):

* ``<sym>@trade`` — one event per model trade (``t`` = model trade id);
* ``<sym>@aggTrade`` — one event per model trade (``a = f = l`` = model trade id: the model's
  trades are already one per taker order and price);
* ``<sym>@depth`` (1000 ms) / ``<sym>@depth@100ms`` — diff depth: an event covers update ids
  ``[U, u]`` with ``U`` = previous ``u`` + 1 and carries the net absolute quantities of every
  level changed by those updates (``"0.00000000"`` = removed); sent only when the book changed.
  ``GET /api/v3/depth`` ``lastUpdateId`` is the same id space, so the documented sync works;
* ``<sym>@depth5|10|20`` (1000 ms) and ``...@100ms`` — ``{"lastUpdateId","bids","asks"}``
  (an explicit ``@1000ms`` suffix is accepted too, on diff and partial depth);
* ``<sym>@bookTicker`` — ``{"u","s","b","B","a","A"}`` when the best bid or ask changes;
* ``<sym>@kline_<interval>`` — the forming bar every 2 s and the closed bar (``x`` true) at
  its close, values as ``/api/v3/klines`` serves them.

Keepalive and limits (module-level :data:`SETTINGS`, seconds; env ``P9_SIM_BINANCE_*``): a
ping frame every ``ping_interval`` s carrying a payload; a connection that has not answered a
ping with the same payload within ``pong_timeout`` s is closed; more than
``max_incoming_per_second`` frames received in one second closes the connection (code 1008);
at most ``max_streams`` streams per connection; connections live ``lifetime`` s at most
(``serverShutdown`` is sent ``binance_server_shutdown_grace_seconds`` before that close). The fault ``binance_server_shutdown_every_seconds`` sends ``serverShutdown`` (combined:
``{"stream":"!serverShutdown","data":..}``) and closes the connection after
``binance_server_shutdown_grace_seconds``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMessage, WSMsgType, web

from p9cli.sim.book import trade_tuples
from p9cli.sim.feed import (
    BOOK_UPDATE,
    CONTROL,
    DATA,
    BarTopic,
    Conn,
    LiveFeed,
    ShutdownNotice,
    Topic,
    last_trade_id,
    serve_messages,
)
from p9cli.sim.instruments import INTERVALS
from p9cli.sim.state import ExchangeState, Simulator
from p9cli.universe import QUOTE, SYMBOLS

EXCHANGE = "binance"


def _env(name: str, default: float) -> float:
    value = os.environ.get(f"P9_SIM_BINANCE_{name.upper()}")
    return float(value) if value else default


@dataclass
class BinanceWsSettings:
    ping_interval: float = _env("ping_interval", 20.0)
    pong_timeout: float = _env("pong_timeout", 60.0)
    max_incoming_per_second: int = int(_env("max_incoming_per_second", 5))
    max_streams: int = int(_env("max_streams", 1024))
    lifetime: float = _env("lifetime", 24 * 3600.0)


SETTINGS = BinanceWsSettings()

#: kline interval code -> (bar length ms, offset ms), the simulator's own Binance table
KLINE_INTERVALS: dict[str, tuple[int, int]] = INTERVALS[EXCHANGE]
#: stream symbol -> canonical symbol
STREAM_SYMBOLS: dict[str, str] = {f"{s}{QUOTE}": s for s in SYMBOLS}
STREAM_RE = re.compile(
    r"^([a-z0-9]+)@(trade|aggTrade|bookTicker|depth(5|10|20)?(@100ms|@1000ms)?|kline_([0-9]+[smhdwM]))$"
)
KLINE_PUSH_MS = 2000  # kline streams push every 2 s (simulated time) and at each bar close


# ---------------------------------------------------------------------- topics
class BinanceTopic(Topic):
    def __init__(self, feed: LiveFeed, name: str, symbol: str):
        super().__init__(feed, EXCHANGE, name)
        self.symbol = symbol
        self.inst = feed.instruments[(EXCHANGE, symbol)]
        self.code = self.inst.code
        self._prefix = b'{"stream":"' + name.encode() + b'","data":'

    def wrap(self, data: bytes) -> bytes:
        return self._prefix + data + b"}"


class TradeTopic(BinanceTopic):
    """``<sym>@trade`` or ``<sym>@aggTrade``: one event per trade."""

    def __init__(self, feed: LiveFeed, name: str, symbol: str, agg: bool):
        super().__init__(feed, name, symbol)
        self.agg = agg

    async def tick(self, now_ms: int) -> None:
        tr = self.feed.trades(EXCHANGE, self.symbol)
        if not len(tr.id):
            return
        price, qty, code = self.inst.price_str, self.inst.qty_str, self.code
        for i, t, p, q, buy in trade_tuples(tr):
            m = "false" if buy else "true"
            if self.agg:
                text = (
                    f'{{"e":"aggTrade","E":{now_ms},"s":"{code}","a":{i},"p":"{price(p)}","q":"{qty(q)}",'
                    f'"f":{i},"l":{i},"T":{t},"m":{m},"M":true}}'
                )
            else:
                text = (
                    f'{{"e":"trade","E":{now_ms},"s":"{code}","t":{i},"p":"{price(p)}","q":"{qty(q)}",'
                    f'"T":{t},"m":{m},"M":true}}'
                )
            await self.broadcast(text.encode(), DATA)


def _levels(levels, price, qty) -> str:
    return ",".join([f'["{price(p)}","{qty(q)}"]' for p, q in levels])


class DiffDepthTopic(BinanceTopic):
    """``<sym>@depth[@100ms]``: net changes of update ids ``[U, u]`` every interval."""

    def __init__(self, feed: LiveFeed, name: str, symbol: str, interval_ms: int):
        super().__init__(feed, name, symbol)
        self.interval_ms = interval_ms
        self.book = feed.sim.books[(EXCHANGE, symbol)]
        self.last_u = self.book.update_id
        self.last_push_ms = 0

    def activate(self, now_ms: int) -> None:
        self.last_u = self.book.update_id
        self.last_push_ms = now_ms

    async def tick(self, now_ms: int) -> None:
        if now_ms - self.last_push_ms < self.interval_ms:
            return
        self.last_push_ms = now_ms
        book = self.book
        u = book.update_id
        if u == self.last_u:
            return
        changes = book.changes_since(self.last_u)
        first = self.last_u + 1
        self.last_u = u
        if changes is None:  # fell out of the log (the feed stalled for long): restart from here
            return
        bids, asks = changes
        price, qty = self.inst.price_str, self.inst.qty_str
        b = _levels(sorted(bids.items(), reverse=True), price, qty)
        a = _levels(sorted(asks.items()), price, qty)
        text = f'{{"e":"depthUpdate","E":{now_ms},"s":"{self.code}","U":{first},"u":{u},"b":[{b}],"a":[{a}]}}'
        await self.broadcast(text.encode(), BOOK_UPDATE)


class PartialDepthTopic(BinanceTopic):
    """``<sym>@depth<N>[@100ms]``: the top N levels every interval (when the book changed)."""

    def __init__(self, feed: LiveFeed, name: str, symbol: str, levels: int, interval_ms: int):
        super().__init__(feed, name, symbol)
        self.levels = levels
        self.interval_ms = interval_ms
        self.book = feed.sim.books[(EXCHANGE, symbol)]
        self.last_u = -1
        self.last_push_ms = 0

    def activate(self, now_ms: int) -> None:
        self.last_u = -1
        self.last_push_ms = now_ms - self.interval_ms

    async def tick(self, now_ms: int) -> None:
        if now_ms - self.last_push_ms < self.interval_ms:
            return
        self.last_push_ms = now_ms
        u = self.book.update_id
        if u == self.last_u:
            return
        self.last_u = u
        bids, asks = self.book.top(self.levels)
        price, qty = self.inst.price_str, self.inst.qty_str
        text = f'{{"lastUpdateId":{u},"bids":[{_levels(bids, price, qty)}],"asks":[{_levels(asks, price, qty)}]}}'
        await self.broadcast(text.encode(), DATA)


class BookTickerTopic(BinanceTopic):
    """``<sym>@bookTicker``: best bid/ask whenever either changes (checked every tick)."""

    def __init__(self, feed: LiveFeed, name: str, symbol: str):
        super().__init__(feed, name, symbol)
        self.book = feed.sim.books[(EXCHANGE, symbol)]
        self.last: tuple = ()

    def activate(self, now_ms: int) -> None:
        self.last = ()

    async def tick(self, now_ms: int) -> None:
        bids, asks = self.book.top(1)
        if not bids or not asks:
            return
        key = (bids[0], asks[0])
        if key == self.last:
            return
        self.last = key
        price, qty = self.inst.price_str, self.inst.qty_str
        (bp, bq), (ap, aq) = key
        text = (
            f'{{"u":{self.book.update_id},"s":"{self.code}","b":"{price(bp)}","B":"{qty(bq)}",'
            f'"a":"{price(ap)}","A":"{qty(aq)}"}}'
        )
        await self.broadcast(text.encode(), DATA)


class KlineTopic(BarTopic):
    """``<sym>@kline_<interval>``: the forming bar every 2 s, and the closed bar (``x`` true)
    when the next one starts. Values are the model's bar (what ``/api/v3/klines`` serves).
    ``f``/``L`` are the first/last trade ids of the bar (model trade ids are consecutive), or
    ``-1`` when the bar has no trade yet."""

    push_ms = KLINE_PUSH_MS

    def __init__(self, feed: LiveFeed, name: str, symbol: str, interval: str):
        tf_ms, offset_ms = KLINE_INTERVALS[interval]
        super().__init__(feed, EXCHANGE, name, tf_ms, offset_ms)
        self.symbol = symbol
        self.interval = interval
        self.inst = feed.instruments[(EXCHANGE, symbol)]
        self.code = self.inst.code
        self._prefix = b'{"stream":"' + name.encode() + b'","data":'

    def wrap(self, data: bytes) -> bytes:
        return self._prefix + data + b"}"

    def frame(self, now_ms: int, open_ms: int, at_ms: int) -> bytes | None:
        bars = self.feed.sim.model.bars(
            EXCHANGE, self.symbol, self.tf_ms, self.offset_ms, open_ms, open_ms, at_ms
        )
        if not len(bars.open_time):
            return None
        inst = self.inst
        price, qty, quote = inst.price_str, inst.qty_str, inst.quote_str
        n = int(bars.trades[0])
        if n:
            last = last_trade_id(self.feed, EXCHANGE, self.symbol, at_ms)
            first = last - n + 1
        else:
            first = last = -1
        v = int(bars.volume[0])
        bv = int(bars.taker_buy_volume[0]) if hasattr(bars, "taker_buy_volume") else v // 2
        bq = int(bars.taker_buy_quote[0]) if hasattr(bars, "taker_buy_quote") else int(bars.quote[0]) // 2
        closed = "true" if at_ms >= open_ms + self.tf_ms - 1 else "false"
        text = (
            f'{{"e":"kline","E":{now_ms},"s":"{self.code}","k":{{"t":{open_ms},"T":{open_ms + self.tf_ms - 1},'
            f'"s":"{self.code}","i":"{self.interval}","f":{first},"L":{last},"o":"{price(int(bars.open[0]))}",'
            f'"c":"{price(int(bars.close[0]))}","h":"{price(int(bars.high[0]))}","l":"{price(int(bars.low[0]))}",'
            f'"v":"{qty(v)}","n":{n},"x":{closed},"q":"{quote(int(bars.quote[0]))}","V":"{qty(bv)}",'
            f'"Q":"{quote(bq)}","B":"0"}}}}'
        )
        return text.encode()


def parse_stream(name: str) -> tuple[str, str, str | None, str | None] | None:
    """``(symbol_code, kind, levels, speed)`` of a valid stream name, else None (for klines:
    ``(symbol_code, "kline", interval, None)``)."""
    m = STREAM_RE.match(name)
    if m is None:
        return None
    if m.group(5):
        if m.group(5) not in KLINE_INTERVALS:
            return None
        return m.group(1), "kline", m.group(5), None
    return m.group(1), m.group(2), m.group(3), m.group(4)


def stream_topic(feed: LiveFeed, name: str) -> Topic | None:
    """The topic of a valid stream name for a simulated symbol; None otherwise."""
    parsed = parse_stream(name)
    if parsed is None:
        return None
    code, kind, levels, speed = parsed
    symbol = STREAM_SYMBOLS.get(code)
    if symbol is None:
        return None
    if kind in ("trade", "aggTrade"):
        return feed.topic(EXCHANGE, name, lambda f: TradeTopic(f, name, symbol, kind == "aggTrade"))
    if kind == "bookTicker":
        return feed.topic(EXCHANGE, name, lambda f: BookTickerTopic(f, name, symbol))
    if kind == "kline":
        return feed.topic(EXCHANGE, name, lambda f: KlineTopic(f, name, symbol, levels or ""))
    interval = 100 if speed == "@100ms" else 1000
    if levels:
        return feed.topic(EXCHANGE, name, lambda f: PartialDepthTopic(f, name, symbol, int(levels), interval))
    return feed.topic(EXCHANGE, name, lambda f: DiffDepthTopic(f, name, symbol, interval))


# ---------------------------------------------------------------------- control protocol
def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def error_frame(code: int, msg: str, req_id: Any = None) -> bytes:
    return _dumps({"error": {"code": code, "msg": msg}, "id": req_id})


def _valid_id(req_id: Any) -> bool:
    if req_id is None:
        return True
    if isinstance(req_id, bool):
        return False
    if isinstance(req_id, int):
        return -(2**63) <= req_id < 2**63
    if isinstance(req_id, str):
        # The docs say "alphanumeric string of max length 36"; Binance's own SDK
        # (binance-sdk-spot) sends str(uuid4()), dashes included, and the exchange accepts it.
        return 0 < len(req_id) <= 36 and req_id.replace("-", "").isalnum()
    return False


#: error replies seen on the wire (Krypto-trading-bot #1121, 2021; unicorn-binance-websocket-api #17, 2020)
INVALID_STREAM = (2, "Invalid request: invalid stream")
TOO_MANY = (4, "Too many subscriptions")


class BinanceSession:
    """The control protocol of one connection."""

    def __init__(self, feed: LiveFeed, conn: Conn):
        self.feed = feed
        self.conn = conn
        #: subscribed stream names in order (including valid names of unknown symbols)
        self.streams: dict[str, Topic | None] = {}

    async def subscribe(self, names: list[str]) -> tuple[int, str] | None:
        """Subscribe; returns an error (code, message) (nothing subscribed) or None."""
        for name in names:
            if not isinstance(name, str) or parse_stream(name) is None:
                return INVALID_STREAM
        new = [n for n in dict.fromkeys(names) if n not in self.streams]
        if len(self.streams) + len(new) > SETTINGS.max_streams:
            return TOO_MANY
        for name in new:
            topic = stream_topic(self.feed, name)
            self.streams[name] = topic
            if topic is not None:
                self.feed.subscribe(self.conn, topic)
        return None

    def unsubscribe(self, names: list[str]) -> tuple[int, str] | None:
        for name in names:
            if not isinstance(name, str) or parse_stream(name) is None:
                return INVALID_STREAM
        for name in names:
            topic = self.streams.pop(name, None)
            if topic is not None:
                self.feed.unsubscribe(self.conn, topic)
        return None

    async def handle_text(self, text: str) -> None:
        conn = self.conn
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            await conn.send(error_frame(3, "Invalid JSON: expected value at line 1 column 1"))
            return
        if not isinstance(msg, dict):
            await conn.send(error_frame(2, "Invalid request: request must be an object"))
            return
        req_id = msg.get("id")
        if not _valid_id(req_id):
            await conn.send(
                error_frame(
                    2,
                    "Invalid request: request ID must be an integer, a string of at most 36 characters or null",
                )
            )
            return
        method = msg.get("method")
        params = msg.get("params", [])
        if method is None:
            await conn.send(error_frame(2, "Invalid request: missing field `method`", req_id))
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list):
                await conn.send(error_frame(2, "Invalid request: invalid params", req_id))
                return
            err = await self.subscribe(params) if method == "SUBSCRIBE" else self.unsubscribe(params)
            if err:
                await conn.send(error_frame(err[0], err[1], req_id))
                return
            await conn.send(_dumps({"result": None, "id": req_id}))
            if method == "SUBSCRIBE":
                for name in params:
                    topic = self.streams.get(name)
                    if topic is not None:
                        await topic.on_subscribe(conn)
            return
        if method == "LIST_SUBSCRIPTIONS":
            await conn.send(_dumps({"result": list(self.streams), "id": req_id}))
            return
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or not isinstance(params[0], str):
                await conn.send(error_frame(2, "Invalid request: property name must be a string", req_id))
                return
            if params[0] != "combined":
                await conn.send(_dumps({"error": {"code": 0, "msg": "Unknown property"}, "id": req_id}))
                return
            if method == "GET_PROPERTY":
                await conn.send(_dumps({"result": conn.combined, "id": req_id}))
                return
            if len(params) < 2 or not isinstance(params[1], bool):
                await conn.send(error_frame(1, "Invalid value type: expected Boolean", req_id))
                return
            conn.combined = params[1]
            await conn.send(_dumps({"result": None, "id": req_id}))
            return
        await conn.send(
            error_frame(
                2,
                f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, "
                "`LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
                req_id,
            )
        )


def _over_rate(conn: Conn, now: float) -> bool:
    """Record one incoming frame; True when more than the allowed number came within 1 s."""
    times = conn.extra.setdefault("recv_times", [])
    times.append(now)
    limit = SETTINGS.max_incoming_per_second
    if len(times) > limit:
        del times[: len(times) - limit - 1]
        return times[-1] - times[0] < 1.0
    return False


def housekeep(conn: Conn, loop_now: float) -> None:
    """Pings, pong deadline and lifetime (called by the feed every few hundred ms)."""
    if conn.stalled:
        return  # a stalled connection sends nothing at all
    grace = conn.state.faults.binance_server_shutdown_grace_seconds
    if "notice_at" not in conn.extra and loop_now - conn.opened >= max(0.0, SETTINGS.lifetime - grace):
        # "Before a disconnection either due to maintenance or after 24 hours, a serverShutdown
        # event will be sent" (Binance WebSocket API docs): the 24 h close is announced too
        conn.extra["notice_at"] = loop_now
        conn.state.count("ws.lifetime_notices")
        conn.push(server_shutdown_frame(conn), CONTROL)
    # the grace the notice promised is kept even when this check came late (a busy machine):
    # the close never overtakes its notice
    if loop_now - conn.opened >= SETTINGS.lifetime and loop_now >= conn.extra["notice_at"] + grace:
        conn.close(1000, "connection lifetime reached")
        return
    deadline = conn.extra.get("pong_deadline")
    if deadline is not None and loop_now >= deadline:
        conn.state.count("ws.keepalive_closes")
        conn.close(1008, "pong timeout")
        return
    if loop_now - conn.extra.get("last_ping", conn.opened) >= SETTINGS.ping_interval:
        conn.extra["last_ping"] = loop_now
        payload = str(conn.feed.now_ms).encode()
        conn.extra.setdefault("pending_pings", {})[payload] = loop_now
        if deadline is None:
            conn.extra["pong_deadline"] = loop_now + SETTINGS.pong_timeout
        conn.feed.spawn(_ping(conn, payload))


async def _ping(conn: Conn, payload: bytes) -> None:
    if conn.closed:
        return
    try:
        await conn.ws.ping(payload)
    except (ConnectionError, RuntimeError):
        conn.closed = True


def _pong(conn: Conn, payload: bytes) -> None:
    pending: dict = conn.extra.get("pending_pings", {})
    if payload in pending:
        # answered: every older ping is settled too
        sent = pending[payload]
        for key in [k for k, v in pending.items() if v <= sent]:
            del pending[key]
        conn.extra["pong_deadline"] = min(pending.values()) + SETTINGS.pong_timeout if pending else None


def server_shutdown_frame(conn: Conn) -> bytes:
    """``{"e":"serverShutdown","E":<ms>}`` (Doc, web-socket-streams.md); on a combined
    connection wrapped under the stream name ``!serverShutdown``."""
    event = b'{"e":"serverShutdown","E":%d}' % conn.feed.now_ms
    return b'{"stream":"!serverShutdown","data":' + event + b"}" if conn.combined else event


SERVER_SHUTDOWN = ShutdownNotice(
    "binance_server_shutdown_every_seconds", "binance_server_shutdown_grace_seconds", server_shutdown_frame
)


# ---------------------------------------------------------------------- handlers
def setup(app: web.Application, sim: Simulator, state: ExchangeState) -> None:
    """Add the WebSocket routes to the Binance app (``server.py`` calls this)."""

    async def ws_root(request: web.Request) -> web.StreamResponse:
        return await _serve(request, sim, [], combined=False)

    async def ws_streams(request: web.Request) -> web.StreamResponse:
        names = [n for n in request.match_info["streams"].split("/") if n]
        return await _serve(request, sim, names, combined=False)

    async def stream(request: web.Request) -> web.StreamResponse:
        raw = request.query.get("streams", "")
        names = [n for n in raw.split("/") if n]
        return await _serve(request, sim, names, combined=True)

    app.router.add_get("/ws", ws_root)
    app.router.add_get("/ws/", ws_root)
    app.router.add_get("/ws/{streams:.+}", ws_streams)
    app.router.add_get("/stream", stream)


async def _serve(
    request: web.Request, sim: Simulator, names: list[str], combined: bool
) -> web.StreamResponse:
    feed: LiveFeed = sim.feed
    ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    feed.housekeepers[EXCHANGE] = housekeep
    feed.notices[EXCHANGE] = SERVER_SHUTDOWN
    conn = feed.open_conn(EXCHANGE, ws, request, conn_id="")
    conn.combined = combined
    session = BinanceSession(feed, conn)

    async def opening() -> None:
        if names:
            valid = [n for n in names if parse_stream(n) is not None]
            await session.subscribe(valid[: SETTINGS.max_streams])
            for name in valid:
                topic = session.streams.get(name)
                if topic is not None:
                    await topic.on_subscribe(conn)

    async def on_message(msg: WSMessage) -> bool:
        if _over_rate(conn, feed.loop_time()):
            conn.state.count("ws.rate_limit_closes")
            await conn.close_now(1008, "Too many requests")
            return True
        if msg.type == WSMsgType.TEXT:
            await session.handle_text(msg.data)
        elif msg.type == WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type == WSMsgType.PONG:
            _pong(conn, bytes(msg.data))
        elif msg.type == WSMsgType.BINARY:
            await conn.send(error_frame(3, "Invalid JSON: expected value at line 1 column 1"))
        return False

    await serve_messages(conn, ws, on_message, opening)
    return ws


__all__ = ["SETTINGS", "setup", "stream_topic", "parse_stream", "CONTROL"]
