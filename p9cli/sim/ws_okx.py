"""OKX V5 public WebSocket (``/ws/v5/public``, and ``/ws/v5/business``) as the simulator serves it.

Control: ``{"id":..,"op":"subscribe"|"unsubscribe","args":[{"channel":..,"instId":..},..]}``;
one ack per arg ``{"id":..,"event":"subscribe","arg":{..},"connId":..}`` (``id`` only when
sent); errors ``{"id":..,"event":"error","code":"60018","msg":..,"connId":..}`` (string codes).
Plain-text ``ping`` is answered with ``pong``. The business URL serves the ``candle<bar>``
channels (``candle1m`` .. ``candle1Dutc``: the forming bar every second, the closed bar with
``confirm`` ``"1"``) and none of the public ones (60018); candles on the public URL answer 64001.

Channels (``instId`` = ``BTC-USDT``):

* ``trades`` — one frame per model trade (``tradeId`` = model trade id, ``count`` ``"1"``,
  ``source`` ``"0"``, ``seqId`` = :data:`TRADE_SEQ_BASE` + trade id: one more per message);
* ``books`` — a 400-level snapshot on subscribe (unless the ``okx_books_snapshot`` setting is
  off: then only updates, and the client bridges from REST ``/api/v5/market/books``), then
  every 100 ms an update with the levels of the top-400 view that changed (size ``"0"`` =
  gone); ``seqId`` = the engine update id of the state sent (see ``book.py``), ``prevSeqId`` =
  the previous push's ``seqId`` (``-1`` in a snapshot), ``checksum`` = ``0`` (OKX since
  2026-06-23) or, with the ``okx_legacy_checksum`` setting, the signed CRC32 of the top 25
  levels on the exact strings sent. After :data:`KEEPALIVE_SECONDS` (wall) without change an
  update with empty sides and ``seqId == prevSeqId``. REST ``/market/books`` serves the state
  of the last push (:func:`rest_books_view`), so its ``seqId`` is always one of the chain's;
* ``books5`` (100 ms, when changed) and ``bbo-tbt`` (10 ms, when changed): full snapshots.

Levels are ``[px, sz, "0", orders]``. Limits (:data:`SETTINGS`, env ``P9_SIM_OKX_*``): the
connection is closed with code 4004 when nothing was received from the client and nothing
pushed for ``idle_seconds``; more than ``max_new_connections_per_second`` new connections per
second from one IP are refused with HTTP 429; more than ``max_subscribes_per_hour``
(un)subscribe requests on a connection answer error 60014. The fault
``okx_notice_every_seconds`` sends ``{"event":"notice","code":"64008","msg":..,"connId":..}``
and closes the connection after ``okx_notice_grace_seconds``.
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMessage, WSMsgType, web

from p9cli.sim.book import trade_tuples
from p9cli.sim.feed import (
    DATA,
    OKX_BOOK_UPDATE,
    BarTopic,
    Conn,
    LiveFeed,
    ShutdownNotice,
    Topic,
    serve_messages,
    side_diff,
)
from p9cli.sim.instruments import INTERVALS
from p9cli.sim.okx_checksum import okx_checksum
from p9cli.sim.state import ExchangeState, Simulator
from p9cli.universe import QUOTE, SYMBOLS

EXCHANGE = "okx"
BOOKS_DEPTH = 400
BOOKS_INTERVAL_MS = 100
BOOKS5_INTERVAL_MS = 100
BBO_INTERVAL_MS = 10
CANDLE_PUSH_MS = 1000  # candle channels push the forming bar every second (simulated time)
#: bar code of a candle channel (``candle1m`` -> ``1m``) -> (bar length ms, offset ms)
CANDLE_BARS: dict[str, tuple[int, int]] = INTERVALS[EXCHANGE]
MIGRATED_TO_BUSINESS = (
    "This channel has been migrated to the '/business' URL. Please subscribe using the new URL. "
    "More details can refer to: "
    "https://www.okx.com/help-center/changes-to-v5-api-websocket-subscription-parameter-and-url"
)
KEEPALIVE_SECONDS = 60.0  # wall seconds without a change before the empty keep-alive update
#: trades ``seqId`` = this + trade id (increasing by one per message; OKX's own values are ~8e10)
TRADE_SEQ_BASE = 82_000_000_000


def _env(name: str, default: float) -> float:
    value = os.environ.get(f"P9_SIM_OKX_{name.upper()}")
    return float(value) if value else default


@dataclass
class OkxWsSettings:
    idle_seconds: float = _env("idle_seconds", 30.0)
    max_new_connections_per_second: int = int(_env("max_new_connections_per_second", 3))
    max_subscribes_per_hour: int = int(_env("max_subscribes_per_hour", 480))


SETTINGS = OkxWsSettings()

#: instId -> canonical symbol
INST_IDS: dict[str, str] = {f"{s.upper()}-{QUOTE.upper()}": s for s in SYMBOLS}


class OkxTopic(Topic):
    def __init__(self, feed: LiveFeed, channel: str, inst_id: str):
        super().__init__(feed, EXCHANGE, f"{channel}:{inst_id}")
        self.channel = channel
        self.inst_id = inst_id
        self.symbol = INST_IDS[inst_id]
        self.inst = feed.instruments[(EXCHANGE, self.symbol)]
        self.book = feed.sim.books[(EXCHANGE, self.symbol)]
        self.arg = f'{{"channel":"{channel}","instId":"{inst_id}"}}'

    def _levels(self, levels) -> list[list[str]]:
        price, qty, orders = self.inst.price_str, self.inst.qty_str, self.book.orders_at
        return [[price(p), qty(q), "0", str(orders(p, q)) if q else "0"] for p, q in levels]


def _dump_levels(levels: list[list[str]]) -> str:
    return ",".join([f'["{a}","{b}","{c}","{d}"]' for a, b, c, d in levels])


class TradesTopic(OkxTopic):
    async def tick(self, now_ms: int) -> None:
        tr = self.feed.trades(EXCHANGE, self.symbol)
        if not len(tr.id):
            return
        price, qty = self.inst.price_str, self.inst.qty_str
        head = f'{{"arg":{self.arg},"data":[{{"instId":"{self.inst_id}","tradeId":"'
        for i, t, p, q, buy in trade_tuples(tr):
            text = (
                f'{head}{i}","px":"{price(p)}","sz":"{qty(q)}","side":"{"buy" if buy else "sell"}",'
                f'"ts":"{t}","count":"1","source":"0","seqId":{TRADE_SEQ_BASE + i}}}]}}'
            )
            await self.broadcast(text.encode(), DATA)


class BooksTopic(OkxTopic):
    """``books``: shared 400-level view with seqId chaining (and legacy checksums on request)."""

    def __init__(self, feed: LiveFeed, channel: str, inst_id: str):
        super().__init__(feed, channel, inst_id)
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.seq_id = 0
        self.checksum = 0
        self.ts = 0
        self.last_push_ms = 0
        self.last_change = 0.0  # wall (loop) time of the last pushed change or keep-alive
        # sequence resets (okx_seq_reset_every_seconds): published seqId = engine id - shift;
        # segments = [(first published, last published or None, shift)], newest last
        self.shift = 0
        self.segments: list[list] = []
        self.last_reset = 0.0

    def _take_view(self, now_ms: int) -> tuple[list, list]:
        bids, asks = self.book.top(BOOKS_DEPTH)
        self.bids, self.asks = dict(bids), dict(asks)
        self.seq_id = self.book.update_id
        self._set_checksum(bids, asks)
        self.ts = now_ms
        return bids, asks

    @property
    def limits(self):
        return self.feed.sim.exchanges[EXCHANGE].limits

    def _set_checksum(self, bids, asks) -> None:
        if not self.limits.okx_legacy_checksum:
            self.checksum = 0  # OKX since 2026-06-23: always 0, "must no longer be used"
            return
        price, qty = self.inst.price_str, self.inst.qty_str
        self.checksum = okx_checksum(
            [(price(p), qty(q)) for p, q in bids[:25]], [(price(p), qty(q)) for p, q in asks[:25]]
        )

    def published(self, engine_id: int) -> int:
        """The ``seqId`` clients see for an engine update id (they differ after a reset)."""
        return engine_id - self.shift

    def engine_id(self, seq_id: int) -> int:
        """The engine update id of a published ``seqId`` (the newest segment holding it)."""
        newest = self.published(self.seq_id)
        for first, last, shift in reversed(self.segments):
            if first <= seq_id <= (newest if last is None else last):
                return seq_id + shift
        return seq_id

    def _frame(self, action: str, asks, bids, prev: int) -> bytes:
        """``prev``: the published ``prevSeqId`` (-1 in a snapshot)."""
        return (
            f'{{"arg":{self.arg},"action":"{action}","data":[{{"asks":[{_dump_levels(self._levels(asks))}],'
            f'"bids":[{_dump_levels(self._levels(bids))}],"ts":"{self.ts}","checksum":{self.checksum},'
            f'"prevSeqId":{prev},"seqId":{self.published(self.seq_id)}}}]}}'
        ).encode()

    def _maybe_reset(self, wall: float) -> None:
        """``okx_seq_reset_every_seconds``: the sequence restarts lower (as after an OKX
        maintenance, "seqId < prevSeqId", Doc); the next update still chains by prevSeqId."""
        t = self.feed.sim.exchanges[EXCHANGE].faults.okx_seq_reset_every_seconds
        if t <= 0:
            self.last_reset = wall
            return
        if wall - self.last_reset < t:
            return
        self.last_reset = wall
        last = self.published(self.seq_id)
        target = max(1, last // 2)  # the next pushed seqId
        if self.segments:
            self.segments[-1][1] = last
        else:
            self.segments.append([-(2**62), last, self.shift])
        self.shift = self.book.update_id - target
        self.segments.append([target, None, self.shift])
        self.feed.sim.exchanges[EXCHANGE].count("fault.okx_seq_reset_every_seconds")

    def activate(self, now_ms: int) -> None:
        self._take_view(now_ms)
        self.last_push_ms = now_ms
        self.last_change = self.last_reset = self.feed.loop_time()

    async def on_subscribe(self, conn: Conn) -> None:
        if not self.limits.okx_books_snapshot:
            return  # announced 2026-02-12: updates only; the snapshot comes from REST
        bids, asks = self.view(BOOKS_DEPTH)
        if self.limits.okx_legacy_checksum and not self.checksum:
            self._set_checksum(bids, asks)  # switched to legacy since the last push
        await conn.send(self._frame("snapshot", asks, bids, -1), DATA)

    def view(self, depth: int) -> tuple[list, list]:
        """The last pushed state (``seqId`` = :attr:`seq_id`): best ``depth`` levels a side."""
        bids = sorted(self.bids.items(), reverse=True)[:depth]
        asks = sorted(self.asks.items())[:depth]
        return bids, asks

    async def tick(self, now_ms: int) -> None:
        wall = self.feed.loop_time()
        if wall - self.last_change >= KEEPALIVE_SECONDS:
            self.last_change = wall
            self.ts = now_ms
            seq = self.published(self.seq_id)
            await self.broadcast(self._frame("update", [], [], seq), OKX_BOOK_UPDATE)
            return
        if now_ms - self.last_push_ms < BOOKS_INTERVAL_MS:
            return
        book = self.book
        if book.update_id != self.seq_id:
            new_bids, new_asks = book.top(BOOKS_DEPTH)
            bid_changes, bid_map = side_diff(self.bids, new_bids, True)
            ask_changes, ask_map = side_diff(self.asks, new_asks, False)
            if bid_changes or ask_changes:
                prev = self.published(self.seq_id)
                self._maybe_reset(wall)
                self.bids, self.asks = bid_map, ask_map
                self.seq_id = book.update_id
                self._set_checksum(new_bids, new_asks)
                self.ts = now_ms
                self.last_push_ms = now_ms
                self.last_change = wall
                await self.broadcast(self._frame("update", ask_changes, bid_changes, prev), OKX_BOOK_UPDATE)
            # else: changes deeper than 400 levels only: the view (and its seqId) stays


class SnapshotTopic(OkxTopic):
    """``books5`` / ``bbo-tbt``: the top 5 / 1 levels, pushed when they change."""

    def __init__(self, feed: LiveFeed, channel: str, inst_id: str):
        super().__init__(feed, channel, inst_id)
        self.depth = 5 if channel == "books5" else 1
        self.interval_ms = BOOKS5_INTERVAL_MS if channel == "books5" else BBO_INTERVAL_MS
        self.last: tuple = ()
        self.last_push_ms = 0

    def activate(self, now_ms: int) -> None:
        self.last = ()
        self.last_push_ms = now_ms - self.interval_ms

    async def tick(self, now_ms: int) -> None:
        if now_ms - self.last_push_ms < self.interval_ms:
            return
        bids, asks = self.book.top(self.depth)
        key = (tuple(bids), tuple(asks))
        if key == self.last:
            return
        self.last = key
        self.last_push_ms = now_ms
        inst = f',"instId":"{self.inst_id}"' if self.depth == 5 else ""
        text = (
            f'{{"arg":{self.arg},"data":[{{"asks":[{_dump_levels(self._levels(asks))}],'
            f'"bids":[{_dump_levels(self._levels(bids))}]{inst},"ts":"{now_ms}","seqId":{self.book.update_id}}}]}}'
        )
        await self.broadcast(text.encode(), DATA)


class CandleTopic(BarTopic):
    """``candle<bar>`` (business URL): ``[ts,o,h,l,c,vol,volCcy,volCcyQuote,confirm]`` of the
    forming bar every second (simulated), the closed bar (``confirm`` ``"1"``) at its close."""

    push_ms = CANDLE_PUSH_MS

    def __init__(self, feed: LiveFeed, channel: str, inst_id: str):
        tf_ms, offset_ms = CANDLE_BARS[channel[len("candle") :]]
        super().__init__(feed, EXCHANGE, f"{channel}:{inst_id}", tf_ms, offset_ms)
        self.channel = channel
        self.inst_id = inst_id
        self.symbol = INST_IDS[inst_id]
        self.inst = feed.instruments[(EXCHANGE, self.symbol)]
        self.arg = f'{{"channel":"{channel}","instId":"{inst_id}"}}'

    def frame(self, now_ms: int, open_ms: int, at_ms: int) -> bytes | None:
        bars = self.feed.sim.model.bars(
            EXCHANGE, self.symbol, self.tf_ms, self.offset_ms, open_ms, open_ms, at_ms
        )
        if not len(bars.open_time):
            return None
        price, qty, quote = self.inst.price_str, self.inst.qty_str, self.inst.quote_str
        q = quote(int(bars.quote[0]))
        confirm = "1" if at_ms >= open_ms + self.tf_ms - 1 else "0"
        text = (
            f'{{"arg":{self.arg},"data":[["{open_ms}","{price(int(bars.open[0]))}","{price(int(bars.high[0]))}",'
            f'"{price(int(bars.low[0]))}","{price(int(bars.close[0]))}","{qty(int(bars.volume[0]))}","{q}","{q}",'
            f'"{confirm}"]]}}'
        )
        return text.encode()


def rest_books_view(feed: LiveFeed, symbol: str, depth: int) -> tuple[int, list, list, int] | None:
    """``(seqId, bids, asks, ts)`` for REST ``/market/books``: the state of the last ``books``
    push while that channel streams (so the snapshot's ``seqId`` is one of the chain's and the
    next update's ``prevSeqId`` equals it); None when nobody streams ``books`` of ``symbol``."""
    topic = feed.topics.get((EXCHANGE, f"books:{symbol.upper()}-{QUOTE.upper()}"))
    if not isinstance(topic, BooksTopic) or not topic.subscribers:
        return None
    bids, asks = topic.view(depth)
    return topic.published(topic.seq_id), bids, asks, topic.ts


def truth_update_id(feed: LiveFeed, symbol: str, seq_id: int) -> int:
    """The book engine's update id of a ``books`` ``seqId`` a client saw (they differ only
    after an injected sequence reset); for ``/truth/book``."""
    topic = feed.topics.get((EXCHANGE, f"books:{symbol.upper()}-{QUOTE.upper()}"))
    return topic.engine_id(seq_id) if isinstance(topic, BooksTopic) else seq_id


_FACTORIES = {"trades": TradesTopic, "books": BooksTopic, "books5": SnapshotTopic, "bbo-tbt": SnapshotTopic}


def topic_of(feed: LiveFeed, channel: str, inst_id: str, business: bool = False) -> Topic | None:
    """The topic of (channel, instId) on the public (or business) URL; None if not served there."""
    if business:
        if (
            not channel.startswith("candle")
            or channel[len("candle") :] not in CANDLE_BARS
            or inst_id not in INST_IDS
        ):
            return None
        return feed.topic(EXCHANGE, f"{channel}:{inst_id}", lambda f: CandleTopic(f, channel, inst_id))
    cls = _FACTORIES.get(channel)
    if cls is None or inst_id not in INST_IDS:
        return None
    return feed.topic(EXCHANGE, f"{channel}:{inst_id}", lambda f: cls(f, channel, inst_id))


def _error(conn: Conn, code: str, msg: str, req_id: Any) -> bytes:
    body: dict[str, Any] = {}
    if req_id is not None:
        body["id"] = req_id
    body.update({"event": "error", "code": code, "msg": msg, "connId": conn.conn_id})
    return orjson.dumps(body)


def _ack(conn: Conn, event: str, arg: dict, req_id: Any) -> bytes:
    body: dict[str, Any] = {}
    if req_id is not None:
        body["id"] = req_id
    body.update({"event": event, "arg": arg, "connId": conn.conn_id})
    return orjson.dumps(body)


def _wrong_url(arg: Any) -> str:
    if isinstance(arg, dict):
        desc = ",".join(f"{k}:{v}" for k, v in arg.items())
    else:
        desc = str(arg)
    return (
        f"Wrong URL or {desc} doesn't exist. Please use the correct URL, channel and parameters "
        "referring to API document."
    )


async def handle_text(feed: LiveFeed, conn: Conn, text: str, business: bool) -> None:
    if text == "ping":
        await conn.send(b"pong")
        return
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        await conn.send(_error(conn, "60012", f"Invalid request: {text[:200]}", None))
        return
    if not isinstance(msg, dict):
        await conn.send(_error(conn, "60012", f"Invalid request: {text[:200]}", None))
        return
    req_id = msg.get("id")
    if req_id is not None and (not isinstance(req_id, str) or len(req_id) > 32 or not req_id.isalnum()):
        await conn.send(_error(conn, "60013", "Invalid args", None))
        return
    op = msg.get("op")
    if op not in ("subscribe", "unsubscribe"):
        await conn.send(_error(conn, "60019", f"Invalid op: {op}", req_id))
        return
    window: deque = conn.extra.setdefault("sub_times", deque())
    now = feed.loop_time()
    while window and now - window[0] >= 3600.0:
        window.popleft()
    if len(window) >= SETTINGS.max_subscribes_per_hour:
        await conn.send(_error(conn, "60014", "Requests too frequent.", req_id))
        return
    window.append(now)
    args = msg.get("args")
    if not isinstance(args, list) or not args:
        await conn.send(_error(conn, "60013", "Invalid args", req_id))
        return
    for arg in args:
        if not isinstance(arg, dict) or not isinstance(arg.get("channel"), str):
            await conn.send(_error(conn, "60013", "Invalid args", req_id))
            continue
        channel, inst_id = arg["channel"], arg.get("instId")
        echo = {"channel": channel, "instId": inst_id} if inst_id is not None else {"channel": channel}
        topic = topic_of(feed, channel, inst_id if isinstance(inst_id, str) else "", business)
        if topic is None:
            if not business and channel.startswith("candle"):
                await conn.send(_error(conn, "64001", MIGRATED_TO_BUSINESS, req_id))
            else:
                await conn.send(_error(conn, "60018", _wrong_url(echo), req_id))
            continue
        if op == "subscribe":
            fresh = feed.subscribe(conn, topic)
            await conn.send(_ack(conn, "subscribe", echo, req_id))
            if fresh:
                await topic.on_subscribe(conn)
        else:
            feed.unsubscribe(conn, topic)
            await conn.send(_ack(conn, "unsubscribe", echo, req_id))


#: OKX error code 64008 (Doc, WebSocket error codes): the connection closes soon for a service upgrade
SERVICE_UPGRADE_MSG = "The connection will soon be closed for a service upgrade. Please reconnect."


def notice_frame(conn: Conn) -> bytes:
    return orjson.dumps({"event": "notice", "code": "64008", "msg": SERVICE_UPGRADE_MSG, "connId": conn.conn_id})


SERVICE_UPGRADE = ShutdownNotice("okx_notice_every_seconds", "okx_notice_grace_seconds", notice_frame)


def housekeep(conn: Conn, loop_now: float) -> None:
    if loop_now - max(conn.last_recv, conn.last_push) >= SETTINGS.idle_seconds:
        conn.state.count("ws.keepalive_closes")
        conn.close(4004, "No data received in 30s.")


def _connection_allowed(recent: dict[str, deque], ip: str, now: float) -> bool:
    times = recent.setdefault(ip, deque())
    while times and now - times[0] >= 1.0:
        times.popleft()
    if len(times) >= SETTINGS.max_new_connections_per_second:
        return False
    times.append(now)
    return True


def setup(app: web.Application, sim: Simulator, state: ExchangeState) -> None:
    """Add ``/ws/v5/public`` and ``/ws/v5/business`` to the OKX app (``server.py`` calls this)."""

    recent_connections: dict[str, deque] = {}  # per IP: times of the last new connections

    async def serve(request: web.Request, business: bool) -> web.StreamResponse:
        feed: LiveFeed = sim.feed
        if not _connection_allowed(recent_connections, request.remote or "", feed.loop_time()):
            state.count("limit.violations")
            return web.Response(status=429, text="Too Many Requests")
        ws = web.WebSocketResponse(autoping=True, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        feed.housekeepers[EXCHANGE] = housekeep
        feed.notices[EXCHANGE] = SERVICE_UPGRADE
        conn = feed.open_conn(EXCHANGE, ws, request, conn_id=secrets.token_hex(4))

        async def on_message(msg: WSMessage) -> None:
            if msg.type == WSMsgType.TEXT:
                await handle_text(feed, conn, msg.data, business)

        await serve_messages(conn, ws, on_message)
        return ws

    async def public(request: web.Request) -> web.StreamResponse:
        return await serve(request, False)

    async def business(request: web.Request) -> web.StreamResponse:
        return await serve(request, True)

    app.router.add_get("/ws/v5/public", public)
    app.router.add_get("/ws/v5/business", business)
