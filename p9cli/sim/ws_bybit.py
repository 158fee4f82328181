"""Bybit V5 spot public WebSocket (``/v5/public/spot``) as the simulator serves it.

Control (JSON text): ``{"op":"subscribe"|"unsubscribe","args":[..],"req_id":..}`` answered by
``{"success":true,"ret_msg":"subscribe","conn_id":..,"req_id":..,"op":"subscribe"}`` (``req_id``
only when sent; at most :data:`MAX_ARGS` args per spot request, else ``success: false``);
``{"op":"ping"}`` answered by ``{"success":true,"ret_msg":"pong","conn_id":..,"op":"ping"}``.
Failure texts not documented by Bybit follow what clients have reported on the wire
(``args size >10``, ``error:handler not found,topic:<t>``, ``error:already subscribed,topic:<t>``;
sieblyio/bybit-api #477 and #561, yufuquant/rust-bybit #24). A request naming any topic the
connection already has is refused as a whole (ccxt/ccxt #30284): nothing in it is subscribed,
and the existing subscription keeps streaming exactly once.

Topics (``<SYM>`` = ``BTCUSDT``):

* ``publicTrade.<SYM>`` — every feed tick with new trades: one frame, ``data`` = those trades
  ascending (``i`` = model trade id as a string); keys in the recorded spot order
  ``i,T,p,v,S,s,BT`` followed by the newer ``RPI`` and ``seq``;
* ``orderbook.{1,50,200,1000}.<SYM>`` — a snapshot on subscribe, then a delta (the levels of
  the top-N view that changed, size ``"0"`` = gone) every 10/20/100/200 ms when the view
  changed. ``u`` is a per-topic message counter (+1 per message, the same on every
  connection), ``seq`` the engine's update id of the state sent (see ``book.py``), ``cts`` the
  book time, ``ts`` the push time; key order ``topic,ts,type,data,cts``. Level 1 sends snapshots
  only and re-sends the same snapshot (same ``u``) after 3 s unchanged. The fault
  ``bybit_reset_every_seconds`` restarts every order-book topic: a snapshot with ``u = 1``.

* ``kline.<interval>.<SYM>`` — the forming bar every second and the closed bar (``confirm``
  true) at its close; keys ``start,end,interval,open,close,high,low,volume,turnover,confirm,timestamp``
  (frame ``topic,data,ts,type`` as in the docs' example; no recording exists).

Keepalive (:data:`SETTINGS`, env ``P9_SIM_BYBIT_IDLE_SECONDS``): a connection with neither a
frame received nor data pushed for ``idle_seconds`` is closed.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMessage, WSMsgType, web

from p9cli.sim.book import trade_tuples
from p9cli.sim.feed import BOOK_UPDATE, DATA, BarTopic, Conn, LiveFeed, Topic, serve_messages, side_diff
from p9cli.sim.instruments import INTERVALS
from p9cli.sim.state import ExchangeState, Simulator
from p9cli.universe import QUOTE, SYMBOLS

EXCHANGE = "bybit"
MAX_ARGS = 10  # spot: args per subscribe request
DEPTH_INTERVAL_MS = {1: 10, 50: 20, 200: 100, 1000: 200}
LEVEL1_RESEND_SECONDS = 3.0  # wall seconds
TRADES_PER_FRAME = 1024
KLINE_PUSH_MS = 1000  # kline topics push the forming bar every second (simulated time)
#: kline interval code -> (bar length ms, offset ms), the simulator's own Bybit table
KLINE_INTERVALS: dict[str, tuple[int, int]] = INTERVALS[EXCHANGE]


@dataclass
class BybitWsSettings:
    idle_seconds: float = float(os.environ.get("P9_SIM_BYBIT_IDLE_SECONDS") or 600.0)


SETTINGS = BybitWsSettings()

#: exchange code -> canonical symbol
SYMBOL_CODES: dict[str, str] = {f"{s.upper()}{QUOTE.upper()}": s for s in SYMBOLS}


class TradeTopic(Topic):
    def __init__(self, feed: LiveFeed, name: str, symbol: str):
        super().__init__(feed, EXCHANGE, name)
        self.symbol = symbol
        self.inst = feed.instruments[(EXCHANGE, symbol)]
        self.book = feed.sim.books[(EXCHANGE, symbol)]
        self._head = f'{{"topic":"{name}","ts":'

    async def tick(self, now_ms: int) -> None:
        tr = self.feed.trades(EXCHANGE, self.symbol)
        n = len(tr.id)
        if not n:
            return
        price, qty, code = self.inst.price_str, self.inst.qty_str, self.inst.code
        seq = self.book.update_id
        items = [
            f'{{"i":"{i}","T":{t},"p":"{price(p)}","v":"{qty(q)}","S":"{"Buy" if buy else "Sell"}",'
            f'"s":"{code}","BT":false,"RPI":false,"seq":{seq}}}'
            for i, t, p, q, buy in trade_tuples(tr)
        ]
        for k in range(0, n, TRADES_PER_FRAME):
            text = f'{self._head}{now_ms},"type":"snapshot","data":[{",".join(items[k : k + TRADES_PER_FRAME])}]}}'
            await self.broadcast(text.encode(), DATA)


class OrderBookTopic(Topic):
    """``orderbook.<depth>.<SYM>``: shared top-N view, snapshot then deltas."""

    def __init__(self, feed: LiveFeed, name: str, symbol: str, depth: int):
        super().__init__(feed, EXCHANGE, name)
        self.symbol = symbol
        self.depth = depth
        self.interval_ms = DEPTH_INTERVAL_MS[depth]
        self.inst = feed.instruments[(EXCHANGE, symbol)]
        self.book = feed.sim.books[(EXCHANGE, symbol)]
        self.u = 0  # message counter of this topic (0 = nothing sent yet)
        self.seq = 0
        self.cts = 0
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.last_push_ms = 0
        self.last_push_wall = 0.0
        self.last_reset = 0.0
        self._head = f'{{"topic":"{name}","ts":'
        self._code = self.inst.code

    def _levels(self, levels) -> str:
        price, qty = self.inst.price_str, self.inst.qty_str
        return ",".join([f'["{price(p)}","{qty(q)}"]' for p, q in levels])

    def _frame(self, now_ms: int, kind: str, bids, asks) -> bytes:
        return (
            f'{self._head}{now_ms},"type":"{kind}","data":{{"s":"{self._code}","b":[{self._levels(bids)}],'
            f'"a":[{self._levels(asks)}],"u":{self.u},"seq":{self.seq}}},"cts":{self.cts}}}'
        ).encode()

    def _take_view(self) -> tuple[list, list]:
        bids, asks = self.book.top(self.depth)
        self.bids, self.asks = dict(bids), dict(asks)
        self.seq = self.book.update_id
        self.cts = self.book.time_ms
        return bids, asks

    def activate(self, now_ms: int) -> None:
        # a fresh view; the counter goes on from where it was (u only grows)
        self._take_view()
        self.u = self.u + 1 if self.u else 1 + (self.book.update_id % 9_000_000)
        self.last_push_ms = now_ms
        self.last_push_wall = self.last_reset = self.feed.loop_time()

    async def on_subscribe(self, conn: Conn) -> None:
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        await conn.send(self._frame(self.feed.now_ms, "snapshot", bids, asks), DATA)

    async def tick(self, now_ms: int) -> None:
        reset_every = self.feed.sim.exchanges[EXCHANGE].faults.bybit_reset_every_seconds
        if reset_every > 0:
            t = self.feed.loop_time()
            if t - self.last_reset >= reset_every:
                self.last_reset = t
                self.feed.sim.exchanges[EXCHANGE].count("fault.bybit_reset_every_seconds")
                self.u = 1
                bids, asks = self._take_view()
                self.last_push_ms = now_ms
                await self.broadcast(self._frame(now_ms, "snapshot", bids, asks), DATA)
                return
        else:
            self.last_reset = self.feed.loop_time()
        wall = self.feed.loop_time()
        if self.depth == 1 and wall - self.last_push_wall >= LEVEL1_RESEND_SECONDS:
            # level 1: nothing sent for 3 s -> the same snapshot again (same u)
            self.last_push_wall = wall
            self.last_push_ms = now_ms
            frame = self._frame(now_ms, "snapshot", list(self.bids.items()), list(self.asks.items()))
            await self.broadcast(frame, DATA)
            return
        if now_ms - self.last_push_ms < self.interval_ms:
            return
        book = self.book
        if book.update_id == self.seq:
            return
        new_bids, new_asks = book.top(self.depth)
        if self.depth == 1:
            if dict(new_bids) == self.bids and dict(new_asks) == self.asks:
                return  # a deeper change only: nothing to send
            self.u += 1
            self._take_view()
            self.last_push_ms = now_ms
            self.last_push_wall = wall
            await self.broadcast(self._frame(now_ms, "snapshot", new_bids, new_asks), DATA)
            return
        bid_changes, bid_map = side_diff(self.bids, new_bids, True)
        ask_changes, ask_map = side_diff(self.asks, new_asks, False)
        self.seq = book.update_id
        if not bid_changes and not ask_changes:
            return
        self.bids, self.asks = bid_map, ask_map
        self.cts = book.time_ms
        self.u += 1
        self.last_push_ms = now_ms
        self.last_push_wall = wall
        await self.broadcast(self._frame(now_ms, "delta", bid_changes, ask_changes), BOOK_UPDATE)


class KlineTopic(BarTopic):
    """``kline.<interval>.<SYM>``: the forming bar every second (simulated), the closed bar
    (``confirm`` true) when the next one starts; values as ``/v5/market/kline`` serves them."""

    push_ms = KLINE_PUSH_MS

    def __init__(self, feed: LiveFeed, name: str, symbol: str, interval: str):
        tf_ms, offset_ms = KLINE_INTERVALS[interval]
        super().__init__(feed, EXCHANGE, name, tf_ms, offset_ms)
        self.symbol = symbol
        self.interval = interval
        self.inst = feed.instruments[(EXCHANGE, symbol)]

    def frame(self, now_ms: int, open_ms: int, at_ms: int) -> bytes | None:
        bars = self.feed.sim.model.bars(
            EXCHANGE, self.symbol, self.tf_ms, self.offset_ms, open_ms, open_ms, at_ms
        )
        if not len(bars.open_time):
            return None
        price, qty, quote = self.inst.price_str, self.inst.qty_str, self.inst.quote_str
        confirm = "true" if at_ms >= open_ms + self.tf_ms - 1 else "false"
        text = (
            f'{{"topic":"{self.name}","data":[{{"start":{open_ms},"end":{open_ms + self.tf_ms - 1},'
            f'"interval":"{self.interval}","open":"{price(int(bars.open[0]))}","close":"{price(int(bars.close[0]))}",'
            f'"high":"{price(int(bars.high[0]))}","low":"{price(int(bars.low[0]))}","volume":"{qty(int(bars.volume[0]))}",'
            f'"turnover":"{quote(int(bars.quote[0]))}","confirm":{confirm},"timestamp":{now_ms}}}],'
            f'"ts":{now_ms},"type":"snapshot"}}'
        )
        return text.encode()


def topic_of(feed: LiveFeed, name: str) -> Topic | None:
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "kline" and parts[1] in KLINE_INTERVALS and parts[2] in SYMBOL_CODES:
        symbol, interval = SYMBOL_CODES[parts[2]], parts[1]
        return feed.topic(EXCHANGE, name, lambda f: KlineTopic(f, name, symbol, interval))
    if len(parts) == 2 and parts[0] == "publicTrade" and parts[1] in SYMBOL_CODES:
        symbol = SYMBOL_CODES[parts[1]]
        return feed.topic(EXCHANGE, name, lambda f: TradeTopic(f, name, symbol))
    if len(parts) == 3 and parts[0] == "orderbook" and parts[2] in SYMBOL_CODES and parts[1].isdigit():
        depth = int(parts[1])
        if depth in DEPTH_INTERVAL_MS and parts[1] == str(depth):
            symbol = SYMBOL_CODES[parts[2]]
            return feed.topic(EXCHANGE, name, lambda f: OrderBookTopic(f, name, symbol, depth))
    return None


def _reply(conn: Conn, op: str, success: bool, ret_msg: str, req_id: Any, with_req_id: bool) -> bytes:
    body: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": conn.conn_id}
    if with_req_id:
        body["req_id"] = req_id
    body["op"] = op
    return orjson.dumps(body)


async def handle_text(feed: LiveFeed, conn: Conn, text: str) -> None:
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        await conn.send(_reply(conn, "", False, "error:request not json", None, False))
        return
    if not isinstance(msg, dict):
        await conn.send(_reply(conn, "", False, "error:request not json", None, False))
        return
    op = msg.get("op")
    has_req_id = "req_id" in msg
    req_id = msg.get("req_id")
    if op == "ping":
        await conn.send(_reply(conn, "ping", True, "pong", req_id, False))
        return
    if op not in ("subscribe", "unsubscribe"):
        await conn.send(_reply(conn, str(op), False, f"error:op not supported,op:{op}", req_id, has_req_id))
        return
    args = msg.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        await conn.send(_reply(conn, op, False, "error:args invalid", req_id, has_req_id))
        return
    if len(args) > MAX_ARGS:
        await conn.send(_reply(conn, op, False, f"args size >{MAX_ARGS}", req_id, has_req_id))
        return
    topics: list[Topic] = []
    for name in args:
        topic = topic_of(feed, name)
        if topic is None:
            await conn.send(
                _reply(conn, op, False, f"error:handler not found,topic:{name}", req_id, has_req_id)
            )
            return
        topics.append(topic)
    if op == "subscribe":
        # The real server refuses the WHOLE request when any topic in it is already
        # subscribed on this connection: the new topics of that request are not subscribed
        # either (raw probe in ccxt/ccxt #30284; the text as in sieblyio/bybit-api #477).
        # The repeat itself is harmless: the existing subscription keeps streaming, once.
        repeated = next((t.name for t in topics if conn in t.subscribers), None)
        if repeated is not None:
            await conn.send(
                _reply(conn, op, False, f"error:already subscribed,topic:{repeated}", req_id, has_req_id)
            )
            return
        fresh = list(dict.fromkeys(topics))
        for topic in fresh:
            feed.subscribe(conn, topic)
        await conn.send(_reply(conn, op, True, "subscribe", req_id, has_req_id))
        for topic in fresh:
            await topic.on_subscribe(conn)
        return
    for topic in topics:
        feed.unsubscribe(conn, topic)
    await conn.send(_reply(conn, op, True, "unsubscribe", req_id, has_req_id))


def housekeep(conn: Conn, loop_now: float) -> None:
    if loop_now - max(conn.last_recv, conn.last_push) >= SETTINGS.idle_seconds:
        conn.state.count("ws.keepalive_closes")
        conn.close(1000, "idle")


def setup(app: web.Application, sim: Simulator, state: ExchangeState) -> None:
    """Add ``/v5/public/spot`` to the Bybit app (``server.py`` calls this)."""

    async def spot(request: web.Request) -> web.StreamResponse:
        feed: LiveFeed = sim.feed
        ws = web.WebSocketResponse(autoping=True, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        feed.housekeepers[EXCHANGE] = housekeep
        conn = feed.open_conn(EXCHANGE, ws, request, conn_id=str(uuid.uuid4()))

        async def on_message(msg: WSMessage) -> None:
            if msg.type == WSMsgType.TEXT:
                await handle_text(feed, conn, msg.data)

        await serve_messages(conn, ws, on_message)
        return ws

    app.router.add_get("/v5/public/spot", spot)
