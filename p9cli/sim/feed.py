"""The simulator's live feed: one asyncio task that moves the market on and fans frames out.

:class:`LiveFeed` owns the true order books (``sim.books``, one :class:`~p9cli.sim.book.BookEngine`
per (exchange, symbol)), and every subscribable WebSocket stream (:class:`Topic`). Every
:data:`TICK_SECONDS` of wall time it

1. steps every book to the simulated ``now``;
2. lets every topic that has subscribers produce its frames (trades with ``time <= now`` not
   yet sent, book diffs/snapshots at the exchange's cadence), each frame encoded **once**;
3. sends the same bytes to every subscriber: a frame is wrapped as a WebSocket text frame once
   (and once more for Binance combined connections); per connection only the fault checks and
   a queue append, then one ``transport.write`` per connection at the end of the tick. A
   connection with more than :data:`SLOW_CONSUMER_BYTES` unsent is cut (``ws.slow_consumer_closes``).

The WebSocket modules (``ws_binance``, ``ws_bybit``, ``ws_okx``) define the topics (frame
formats) and the control protocol; this module is protocol-neutral.

Faults (``state.faults``, read on every frame so the control API changes them at run time) are
applied per connection in :meth:`Conn.send`; each one that fires is counted in
``state.counters["fault.<name>"]``.

Ground truth: a trades topic sends exactly ``model.trades(exchange, symbol, a, b)`` for the
consecutive windows ``[a, b)`` it covers (``b = now + 1`` of each tick); ``sent_trades`` keeps
the covered windows per (exchange, symbol) so the control API can tell what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMessage, web

from p9cli.sim.book import BookEngine, TradeCache
from p9cli.universe import QUOTE, SYMBOLS

log = logging.getLogger("p9cli.sim.feed")

TICK_SECONDS = 0.01  # wall seconds between two feed ticks
IDLE_TICK_SECONDS = 0.05  # ... while nobody is subscribed to anything (books still move for REST)
HOUSEKEEPING_SECONDS = 0.25  # wall seconds between two keepalive / lifetime checks
SLOW_CONSUMER_BYTES = 16 * 1024 * 1024  # a connection with more unsent bytes is cut
TRUTH_WINDOWS = 10_000  # trade windows remembered per (exchange, symbol)
#: after a clock jump (or a stalled loop) trades older than this are not sent in one burst
MAX_TRADE_CATCHUP_MS = 60_000

# frame kinds (what faults may apply to a frame)
CONTROL = 0  # acks, pongs, errors: never faulted except drop/stall/latency
DATA = 1  # trades, snapshots: may be sent malformed
BOOK_UPDATE = 2  # incremental book updates: may also be skipped (sequence gap)
OKX_BOOK_UPDATE = 3  # OKX `books` updates: may also carry a wrong checksum

_CHECKSUM_RE = re.compile(rb'"checksum":(-?\d+)')


def corrupt_checksum(frame: bytes) -> bytes:
    """The same OKX frame with a different (wrong) ``checksum`` value."""

    def repl(m: re.Match) -> bytes:
        value = int(m.group(1))
        wrong = value + 1 if value < 2**31 - 1 else value - 1
        return b'"checksum":%d' % wrong

    return _CHECKSUM_RE.sub(repl, frame, count=1)


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, unfragmented WebSocket text frame (server to client, RFC 6455)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class Conn:
    """One WebSocket connection as the feed sees it."""

    def __init__(
        self, feed: LiveFeed, exchange: str, ws: web.WebSocketResponse, request: web.Request, conn_id: str
    ):
        self.feed = feed
        self.exchange = exchange
        self.state = feed.sim.exchanges[exchange]
        self.ws = ws
        self.transport = request.transport
        self.conn_id = conn_id
        self.peer = request.remote or ""
        loop_now = feed.loop_time()
        self.opened = loop_now
        self.last_recv = loop_now  # wall (loop) time of the last frame received from the client
        self.last_push = loop_now  # wall time of the last data frame sent
        self.frames_sent = 0
        self.data_frames = 0
        self.book_updates = 0
        self.okx_book_updates = 0
        self.topics: dict[Topic, None] = {}
        self.combined = False  # Binance: wrap frames as {"stream":..,"data":..}
        self.closed = False
        self.stalled = False
        self.extra: dict[str, Any] = {}  # per-protocol state (ping deadlines, rate windows, ...)
        self._delayed: deque[tuple[float, bytes]] = deque()
        self._delay_task: asyncio.Task | None = None
        self._out: list[bytes] = []  # framed bytes queued during a feed tick

    # ------------------------------------------------------------------ sending
    async def send(self, payload: bytes, kind: int = CONTROL, framed: bytes | None = None) -> None:
        """Send one text frame (``payload`` = UTF-8 JSON); see :meth:`push`."""
        self.push(payload, kind, framed)

    def push(self, payload: bytes, kind: int = CONTROL, framed: bytes | None = None) -> None:
        """Send one text frame (``payload`` = UTF-8 JSON), applying this exchange's WS faults.

        ``framed`` is the same payload already wrapped as a WebSocket frame (broadcasts frame
        once for every subscriber). During a feed tick frames are queued and written with one
        ``transport.write`` per connection at the end of the tick; otherwise at once. Plain
        (not a coroutine): a broadcast to N subscribers creates no per-subscriber objects."""
        if self.closed or self.stalled:
            return
        state = self.state
        faults = state.faults
        if kind:
            if kind >= BOOK_UPDATE:
                self.book_updates += 1
                n = faults.depth_gap_every
                if n and self.book_updates % n == 0:
                    state.counters["fault.depth_gap_every"] += 1
                    return
                if kind == OKX_BOOK_UPDATE and state.limits.okx_legacy_checksum:
                    # a wrong checksum only exists where checksums are real (legacy mode);
                    # since 2026-06-23 OKX sends 0, which a client must not check
                    self.okx_book_updates += 1
                    n = faults.okx_bad_checksum_every
                    if n and self.okx_book_updates % n == 0:
                        state.counters["fault.okx_bad_checksum_every"] += 1
                        payload = corrupt_checksum(payload)
                        framed = None
            self.data_frames += 1
            n = faults.ws_malformed_every
            if n and self.data_frames % n == 0:
                state.counters["fault.ws_malformed_every"] += 1
                payload = payload[: len(payload) // 2]
                framed = None
            self.last_push = self.feed.wall
        n = faults.ws_stall_after_messages
        if n and self.frames_sent >= n:
            self.stalled = True
            state.counters["fault.ws_stall_after_messages"] += 1
            return
        if framed is None:
            framed = text_frame(payload)
        latency = faults.latency_ms
        if latency > 0:
            state.counters["fault.latency_ms"] += 1
        if not kind:
            latency += faults.ws_reply_latency_ms  # a reply: one network round trip away
        if latency > 0 or self._delayed:
            self._delayed.append((self.feed.loop_time() + latency / 1000.0, framed))
            if self._delay_task is None:
                self._delay_task = asyncio.get_running_loop().create_task(self._send_delayed())
            return
        self._queue(framed)

    def _queue(self, framed: bytes) -> None:
        self._out.append(framed)
        self.frames_sent += 1
        n = self.state.faults.ws_drop_every_messages
        if n and self.frames_sent % n == 0:
            self.state.counters["fault.ws_drop_every_messages"] += 1
            self.flush()
            self.abort()
            return
        if self.feed.batching:
            if len(self._out) == 1:
                self.feed.dirty.append(self)
        else:
            self.flush()

    def flush(self) -> None:
        """Write every queued frame with one ``transport.write``."""
        out = self._out
        if not out:
            return
        self._out = []
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            self.closed = True
            return
        if transport.get_write_buffer_size() > SLOW_CONSUMER_BYTES:
            self.state.count("ws.slow_consumer_closes")
            self.abort()
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        self.state.counters["ws.frames_sent"] += len(out)

    async def _send_delayed(self) -> None:
        try:
            while self._delayed and not self.closed:
                due, framed = self._delayed[0]
                wait = due - self.feed.loop_time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._delayed.popleft()
                self._queue(framed)
                self.flush()
            if self._delayed and self.closed:
                self._delayed.clear()
        finally:
            self._delay_task = None

    # ------------------------------------------------------------------ closing
    def abort(self) -> None:
        """Drop the connection without a close handshake (the client sees 1006)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame (code, reason), in the background."""
        if self.closed:
            return
        self.closed = True
        self.feed.spawn(self._close(code, reason))

    async def close_now(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame and wait for it (from the connection's own handler)."""
        self.closed = True
        await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), 2.0)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def received(self) -> None:
        """Note one frame received from the client (any type)."""
        self.last_recv = self.feed.loop_time()
        self.state.counters["ws.messages_received"] += 1


class Topic:
    """One subscribable stream of one exchange; encodes each frame once for all subscribers."""

    def __init__(self, feed: LiveFeed, exchange: str, name: str):
        self.feed = feed
        self.exchange = exchange
        self.name = name
        self.subscribers: dict[Conn, None] = {}

    def wrap(self, data: bytes) -> bytes:
        """The frame for a connection with ``combined`` set (Binance combined streams)."""
        return data

    def activate(self, now_ms: int) -> None:
        """Called when the first subscriber arrives (after a time without any)."""

    async def on_subscribe(self, conn: Conn) -> None:
        """Frames owed to a new subscriber only (e.g. a book snapshot)."""

    async def tick(self, now_ms: int) -> None:
        """Produce and broadcast this tick's frames."""

    async def broadcast(self, data: bytes, kind: int = DATA) -> None:
        """Send ``data`` to every subscriber: framed once (and wrapped once for combined
        connections); per connection only the fault checks and a queue append."""
        framed = text_frame(data)
        wrapped = wrapped_framed = None
        # no await in this loop: nothing else runs, so the subscribers cannot change under it
        for conn in self.subscribers:
            if conn.combined:
                if wrapped is None:
                    wrapped = self.wrap(data)
                    wrapped_framed = text_frame(wrapped)
                conn.push(wrapped, kind, wrapped_framed)
            else:
                conn.push(data, kind, framed)


class LiveFeed:
    """The clock-driven market loop of a running simulator (see the module docstring)."""

    def __init__(self, sim: Any):
        self.sim = sim
        self.topics: dict[tuple[str, str], Topic] = {}
        self.active: dict[Topic, None] = {}
        self.conns: dict[Conn, None] = {}
        #: exchange -> callable(conn, loop_now) run every HOUSEKEEPING_SECONDS per connection
        self.housekeepers: dict[str, Any] = {}
        #: exchange -> ShutdownNotice: its announced-shutdown message (Binance serverShutdown, OKX 64008)
        self.notices: dict[str, ShutdownNotice] = {}
        self.instruments: dict[tuple[str, str], Any] = {}
        #: the model's trades, served from cached whole minutes (identical rows)
        self.market = TradeCache(sim.model)
        self.sent_trades: dict[tuple[str, str], deque[tuple[int, int]]] = {}
        self.now_ms = 0
        self.wall = 0.0  # loop time at the start of the current tick
        self.batching = False  # True while topics produce a tick's frames
        self.dirty: list[Conn] = []  # connections with frames queued in this tick
        self.ticks = 0
        self.tick_seconds = TICK_SECONDS
        self._trade_cursor: dict[tuple[str, str], int] = {}
        self._tick_trades: dict[tuple[str, str], Any] = {}
        self._task: asyncio.Task | None = None
        self._bg: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_housekeeping = 0.0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        from p9cli.sim.instruments import INSTRUMENTS

        now = self.sim.clock.now_ms()
        self.now_ms = now
        for exchange in self.sim.exchanges:
            for symbol in SYMBOLS:
                inst = INSTRUMENTS[(exchange, symbol)]
                self.instruments[(exchange, symbol)] = inst
                if (exchange, symbol) not in self.sim.books:
                    self.sim.books[(exchange, symbol)] = BookEngine(
                        exchange, symbol, inst, self.market, self.sim.seed, now_ms=now
                    )
                self._trade_cursor[(exchange, symbol)] = now + 1
        self._task = self._loop.create_task(self._run(), name="p9-sim-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # every client gets a close frame (1001 going away) and the handlers end, so the
        # servers stop at once instead of waiting out their shutdown timeouts
        closing = [c for c in self.conns if not c.closed]
        for conn in closing:
            conn.closed = True
        if closing:
            await asyncio.wait(
                [self.spawn(c._close(1001, "simulator shutting down")) for c in closing], timeout=3.0
            )
        for task in list(self._bg):
            task.cancel()
        if self._bg:
            await asyncio.gather(*self._bg, return_exceptions=True)

    def loop_time(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return task

    # ------------------------------------------------------------------ connections
    def open_conn(self, exchange: str, ws: web.WebSocketResponse, request: web.Request, conn_id: str) -> Conn:
        conn = Conn(self, exchange, ws, request, conn_id)
        self.conns[conn] = None
        state = conn.state
        state.count("ws.connections")
        state.counters["ws.open"] += 1
        return conn

    def close_conn(self, conn: Conn) -> None:
        """Forget a connection (its handler ended)."""
        conn.closed = True
        for topic in list(conn.topics):
            self.unsubscribe(conn, topic)
        if self.conns.pop(conn, 0) is None:
            conn.state.counters["ws.open"] -= 1
        if conn._delay_task is not None:
            conn._delay_task.cancel()

    # ------------------------------------------------------------------ topics
    def topic(self, exchange: str, name: str, factory) -> Topic:
        """Get or create the topic ``name`` of ``exchange`` (``factory(feed)`` builds it)."""
        key = (exchange, name)
        topic = self.topics.get(key)
        if topic is None:
            topic = factory(self)
            self.topics[key] = topic
        return topic

    def subscribe(self, conn: Conn, topic: Topic) -> bool:
        """Add ``conn`` to ``topic``; False when it was already subscribed (no duplicate frames)."""
        if conn in topic.subscribers:
            return False
        if not topic.subscribers:
            topic.activate(self.now_ms)
            self.active[topic] = None
        topic.subscribers[conn] = None
        conn.topics[topic] = None
        return True

    def unsubscribe(self, conn: Conn, topic: Topic) -> bool:
        if topic.subscribers.pop(conn, 0) is not None:
            return False
        conn.topics.pop(topic, None)
        if not topic.subscribers:
            self.active.pop(topic, None)
        return True

    # ------------------------------------------------------------------ market data per tick
    def trades(self, exchange: str, symbol: str) -> Any:
        """This tick's new trades of (exchange, symbol): ``model.trades(cursor, now + 1)``,
        fetched once per tick whichever topics ask."""
        key = (exchange, symbol)
        got = self._tick_trades.get(key)
        if got is None:
            start = self._trade_cursor[key]
            end = self.now_ms + 1
            if end - start > MAX_TRADE_CATCHUP_MS:
                start = end - MAX_TRADE_CATCHUP_MS
            got = self.market.trades(exchange, symbol, start, end)
            self._tick_trades[key] = got
            windows = self.sent_trades.get(key)
            if windows is None:
                windows = self.sent_trades[key] = deque(maxlen=TRUTH_WINDOWS)
            if windows and windows[-1][1] == start:
                windows[-1] = (windows[-1][0], end)
            else:
                windows.append((start, end))
        return got

    def bybit_rest_u(self, symbol: str, seq: int) -> int | None:
        """``u`` of the Bybit ``orderbook.1000`` stream (what REST ``/v5/market/orderbook``
        reports) when that stream's last message showed exactly the state ``seq``; else None."""
        topic = self.topics.get(("bybit", f"orderbook.1000.{symbol.upper()}{QUOTE.upper()}"))
        if topic is not None and getattr(topic, "seq", None) == seq and getattr(topic, "u", 0):
            return int(topic.u)
        return None

    def trades_were_sent(self, exchange: str, symbol: str, start_ms: int, end_ms: int) -> bool:
        """True when every trade with ``start_ms <= time < end_ms`` went to the subscribers
        of (exchange, symbol) trade topics at that time (one window covers the interval)."""
        return any(a <= start_ms and end_ms <= b for a, b in self.sent_trades.get((exchange, symbol), ()))

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.tick_once()
                t = loop.time()
                if t - self._last_housekeeping >= HOUSEKEEPING_SECONDS:
                    self._last_housekeeping = t
                    self.housekeeping(t)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the feed must keep running; log and go on
                log.exception("feed tick failed")
            next_at += self.tick_seconds if self.active else max(self.tick_seconds, IDLE_TICK_SECONDS)
            delay = next_at - loop.time()
            if delay < 0:
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    async def tick_once(self) -> None:
        now = self.sim.clock.now_ms()
        if now < self.now_ms:
            now = self.now_ms
        self.now_ms = now
        self.wall = self.loop_time()
        self.ticks += 1
        for book in self.sim.books.values():
            book.step(now)
        self._tick_trades.clear()
        self.batching = True
        try:
            for topic in list(self.active):
                await topic.tick(now)
        finally:
            self.batching = False
            dirty, self.dirty = self.dirty, []
            for conn in dirty:
                conn.flush()
        cursor = self._trade_cursor
        end = now + 1
        for key in cursor:
            cursor[key] = end

    def housekeeping(self, loop_now: float) -> None:
        for conn in list(self.conns):
            if conn.closed:
                continue
            t = conn.state.faults.ws_drop_every_seconds
            if t > 0 and loop_now - conn.opened >= t:
                conn.state.count("fault.ws_drop_every_seconds")
                conn.abort()
                continue
            notice = self.notices.get(conn.exchange)
            if notice is not None and notice.check(conn, loop_now):
                continue
            keeper = self.housekeepers.get(conn.exchange)
            if keeper is not None:
                keeper(conn, loop_now)


class ShutdownNotice:
    """An exchange's announced shutdown as a fault: ``every`` (a FaultSettings field name, wall
    seconds) after a connection opened it gets ``frame(conn)`` once (counted as
    ``fault.<every>``); ``grace`` (a field name, seconds) later it is closed with a close frame
    (1001, counted as ``ws.notice_closes``). Data keeps flowing during the grace period, as on
    the real exchanges, so a client can open the replacement connection first."""

    def __init__(self, every: str, grace: str, frame: Callable[[Conn], bytes]):
        self.every = every
        self.grace = grace
        self.frame = frame

    def check(self, conn: Conn, loop_now: float) -> bool:
        """True when ``conn`` was closed."""
        faults = conn.state.faults
        at = conn.extra.get("notice_at")
        if at is None:
            t = getattr(faults, self.every)
            if t > 0 and loop_now - conn.opened >= t and not conn.stalled:
                conn.extra["notice_at"] = loop_now
                conn.state.count(f"fault.{self.every}")
                conn.push(self.frame(conn), CONTROL)
            return False
        if loop_now - at >= getattr(faults, self.grace):
            conn.state.count("ws.notice_closes")
            conn.close(1001, "service upgrade")
            return True
        return False


async def serve_messages(
    conn: Conn,
    ws: web.WebSocketResponse,
    on_message: Callable[[WSMessage], Awaitable[bool | None]],
    opening: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """A connection's handler loop, the same on every exchange: ``opening()`` first (e.g.
    streams named in the URL), then each frame from the client is noted and handed to
    ``on_message`` (True = stop reading). A failure ends only this connection (logged); the
    feed forgets the connection at the end, whatever happened."""
    try:
        if opening is not None:
            await opening()
        async for msg in ws:
            if conn.closed:
                break
            conn.received()
            if await on_message(msg):
                break
    except ConnectionError:
        pass
    except Exception as exc:  # noqa: BLE001 - one bad connection must not disturb the others
        log.warning("%s websocket handler failed: %s: %s", conn.exchange, type(exc).__name__, exc)
        conn.abort()
    finally:
        conn.feed.close_conn(conn)


def side_diff(
    old: dict[int, int], new: list[tuple[int, int]], descending: bool
) -> tuple[list[tuple[int, int]], dict[int, int]]:
    """Levels that differ between a previously sent side (``old``, price -> qty) and ``new``
    (qty 0 for a level that left), sorted as the side is (bids descending); and ``new`` as a dict."""
    new_map = dict(new)
    changed = [(p, q) for p, q in new if old.get(p) != q]
    gone = [(p, 0) for p in old if p not in new_map]
    if gone:
        changed.extend(gone)
        changed.sort(reverse=descending)
    return changed, new_map


def last_trade_id(feed: LiveFeed, exchange: str, symbol: str, now_ms: int) -> int:
    """Id of the last trade with time <= ``now_ms`` (-1 if none in the last minutes): the next
    trade's id - 1, since the model's trade ids are consecutive."""
    market = feed.market
    minute = now_ms - now_ms % 60_000
    for m in (minute, minute + 60_000, minute + 120_000):
        tr = market.trades(exchange, symbol, max(m, now_ms + 1), m + 60_000)
        if len(tr.id):
            return int(tr.id[0]) - 1
    tr = market.trades(exchange, symbol, now_ms - 180_000, now_ms + 1)
    return int(tr.id[-1]) if len(tr.id) else -1


class BarTopic(Topic):
    """A candle stream: the forming bar every ``push_ms`` (simulated) and, when the next bar
    starts, the closed bar once more in its final state. Subclasses write ``frame()``."""

    push_ms = 2000

    def __init__(self, feed: LiveFeed, exchange: str, name: str, tf_ms: int, offset_ms: int):
        super().__init__(feed, exchange, name)
        self.tf_ms = tf_ms
        self.offset_ms = offset_ms
        self.open_ms = -1
        self.last_push_ms = 0

    def activate(self, now_ms: int) -> None:
        self.open_ms = -1
        self.last_push_ms = 0

    def bar_open(self, t: int) -> int:
        return t - (t - self.offset_ms) % self.tf_ms

    def frame(self, now_ms: int, open_ms: int, at_ms: int) -> bytes | None:
        """The frame of the bar opening at ``open_ms`` as it is at ``at_ms`` (pushed at ``now_ms``)."""
        raise NotImplementedError

    async def tick(self, now_ms: int) -> None:
        open_ms = self.bar_open(now_ms)
        if self.open_ms >= 0 and open_ms != self.open_ms:
            frame = self.frame(now_ms, self.open_ms, self.open_ms + self.tf_ms - 1)
            self.open_ms = open_ms
            self.last_push_ms = now_ms
            if frame is not None:
                await self.broadcast(frame, DATA)
            return
        if self.open_ms < 0 or now_ms - self.last_push_ms >= self.push_ms:
            self.open_ms = open_ms
            self.last_push_ms = now_ms
            frame = self.frame(now_ms, open_ms, now_ms)
            if frame is not None:
                await self.broadcast(frame, DATA)
