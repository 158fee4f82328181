"""REST work of a feed: order-book snapshots and trade replays, staggered, never a storm.

One :class:`RestJobs` per exchange feed: order-book snapshots, trade replays and the
exchange's closed candles that complete a live candle (``CompletionWanted``). Jobs are queued
(at most one pending per book and connection, one per symbol for all its trade holes, paged) and started one at a time at most ``rate_per_s`` per second
(after a mass reconnect 15 books want a snapshot at once: they go out spaced, not together),
at most ``concurrency`` in flight. Each request goes through the one REST client of p9
(:class:`p9cli.rest.client.ExchangeClient`), so it shares the exchange's rate limits,
``Retry-After`` pauses and back-off with ``fetch-history`` in the same process. A failed
snapshot is tried again after a back-off while the book still wants one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections import deque
from collections.abc import Callable

from p9cli.exchanges.base import ExchangeError
from p9cli.exchanges.venue import Venue
from p9cli.live.clock import Clock
from p9cli.live.pacing import Backoff, Pacer
from p9cli.live.stats import FeedStats
from p9cli.universe import TIMEFRAME_MS

log = logging.getLogger("p9cli.live")

SNAPSHOT = "snapshot"
REPLAY = "replay"
KLINE = "kline"
#: how long the exchange's closed candle is asked for (retried with back-off) before giving up
KLINE_RETRY_S = 200.0


def rest_adapter(venue: Venue):
    """The exchange module of ``venue`` (its REST requests and parsers)."""
    return importlib.import_module(f"p9cli.exchanges.{venue.name}")


def default_rest_client(venue: Venue, rest_url: str):
    """The shared REST client for ``venue`` (limits shared per host with fetch-history)."""
    from p9cli.rest.client import ClientOptions, ExchangeClient

    return ExchangeClient(rest_adapter(venue), rest_url, ClientOptions(give_up=False, max_attempts=4))


class RestJobs:
    def __init__(
        self,
        venue: Venue,
        client,
        stats: FeedStats,
        clock: Clock,
        *,
        rate_per_s: float = 5.0,
        concurrency: int = 2,
        on_snapshot: Callable[[object, str, object], None],
        on_replay: Callable[[str, list], None],
        still_wanted: Callable[[object, str], bool],
        replay_span: Callable[[str], tuple[int, int] | None] = lambda symbol: None,
        on_klines: Callable[[str, str, object], None] | None = None,
        on_error: Callable[[str, str, str], None] | None = None,
        server_now_ms: Callable[[], int] | None = None,
    ):
        self.venue = venue
        self.client = client
        self.stats = stats
        self.pacer = Pacer(rate_per_s, clock)
        self.concurrency = concurrency
        self.on_snapshot = on_snapshot
        self.on_replay = on_replay
        self.still_wanted = still_wanted
        self.replay_span = replay_span
        self.on_klines = on_klines
        self.on_error = on_error or (lambda what, symbol, text: None)
        self.server_now_ms = server_now_ms
        self._queue: deque[tuple] = deque()
        self._pending: set[tuple] = set()
        self._wake = asyncio.Event()
        self._backoff: dict[tuple, Backoff] = {}
        self.in_flight = 0

    def want_snapshot(self, link, symbol: str) -> None:
        key = (SNAPSHOT, link.id, symbol)
        if key in self._pending or self.venue.snapshot_request is None:
            return
        self._pending.add(key)
        self._queue.append((key, link))
        self._wake.set()

    def want_replay(self, symbol: str) -> None:
        """Replay the symbol's open trade holes (one job per symbol covers all of them)."""
        if self.venue.trade_replay_request is None:
            return
        key = (REPLAY, symbol)
        if key in self._pending:
            return
        self._pending.add(key)
        self._queue.append((key, None))
        self._wake.set()

    def want_kline(self, symbol: str, timeframe: str, open_time: int) -> None:
        """The exchange's closed candle ``open_time`` of ``timeframe`` over REST (completes a
        live candle the feed could not build in full)."""
        if self.on_klines is None:
            return
        key = (KLINE, symbol, timeframe, open_time)
        if key in self._pending:
            return
        self._pending.add(key)
        self._queue.append((key, None))
        self._wake.set()

    async def run(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task] = set()
        try:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await slots.acquire()
                await self.pacer.wait()
                if not self._queue:
                    slots.release()
                    continue
                key, arg = self._queue.popleft()
                task = asyncio.ensure_future(self._do(key, arg))
                running.add(task)
                task.add_done_callback(lambda t: (running.discard(t), slots.release()))
        finally:
            for t in list(running):
                t.cancel()

    async def _do(self, key: tuple, arg) -> None:
        self.in_flight += 1
        try:
            if key[0] == SNAPSHOT:
                await self._snapshot(key, arg)
            elif key[0] == REPLAY:
                await self._replay(key, arg)
            else:
                await self._kline(key)
        finally:
            self.in_flight -= 1

    async def _snapshot(self, key: tuple, link) -> None:
        symbol = key[2]
        venue = self.venue
        if not self.still_wanted(link, symbol):
            self._pending.discard(key)
            self._backoff.pop(key, None)
            return
        self.stats.snapshot_requests += 1
        try:
            body = await self.client.send(venue.snapshot_request(symbol))
            snap = venue.parse_snapshot(body, symbol)
        except (ExchangeError, OSError) as exc:
            self.stats.snapshot_failures += 1
            log.info("%s %s: book snapshot failed (%s)", venue.name, symbol, exc)
            self.on_error(SNAPSHOT, symbol, str(exc))
            delay = self._backoff.setdefault(key, Backoff(0.5, 10.0)).next_delay()
            await asyncio.sleep(delay)
            self._pending.discard(key)
            if self.still_wanted(link, symbol):
                self.want_snapshot(link, symbol)
            else:
                self._backoff.pop(key, None)
            return
        self._backoff.pop(key, None)
        self._pending.discard(key)
        self.on_snapshot(link, symbol, snap)

    async def _replay(self, key: tuple, _unused) -> None:
        symbol = key[1]
        venue = self.venue
        span = self.replay_span(symbol)
        if span is None:
            self._pending.discard(key)
            return
        from_id, to_id = span
        try:
            body = await self.client.send(venue.trade_replay_request(symbol, from_id))
            trades = venue.parse_trade_replay(body, symbol)
        except (ExchangeError, OSError) as exc:
            # the trades are still at the exchange: try again after a back-off while the hole
            # is open (the feed holds a hole open while its replay is pending, up to a bound)
            log.info("%s %s: trade replay from %s failed (%s)", venue.name, symbol, from_id, exc)
            self.on_error(REPLAY, symbol, str(exc))
            delay = self._backoff.setdefault(key, Backoff(0.5, 5.0)).next_delay()
            await asyncio.sleep(delay)
            self._pending.discard(key)
            if self.replay_span(symbol) is not None:
                self.want_replay(symbol)
            else:
                self._backoff.pop(key, None)
            return
        self._backoff.pop(key, None)
        self._pending.discard(key)
        # only the trades inside the holes' span (OKX answers with the newest trades, not from
        # ``from_id``; what the feed already has would only count as duplicates)
        wanted = [
            t
            for t in trades
            if (t.id_first is None or t.id_first <= to_id) and (t.id_last is None or t.id_last >= from_id)
        ]
        self.on_replay(symbol, wanted)
        # the holes reach beyond this page: ask for the next one
        last = max((t.id_last for t in trades if t.id_last is not None), default=None)
        if last is not None and from_id <= last < to_id:
            self.want_replay(symbol)

    def replay_pending(self, symbol: str) -> bool:
        """A replay of ``symbol``'s trade holes is queued, in flight or waiting to be retried."""
        return (REPLAY, symbol) in self._pending

    async def _kline(self, key: tuple) -> None:
        _, symbol, timeframe, open_time = key
        adapter = rest_adapter(self.venue)
        # tried for up to ~KLINE_RETRY_S (the candle builder waits completion_wait_ms for it):
        # under REST faults or an exchange restart a few tries are not enough
        backoff = Backoff(1.0, 8.0)
        deadline = asyncio.get_running_loop().time() + KLINE_RETRY_S
        attempt = 0
        while asyncio.get_running_loop().time() < deadline:
            attempt += 1
            now = self.server_now_ms()
            try:
                req = adapter.klines_request(symbol, timeframe, open_time, open_time, now)
                body = await self.client.send(req)
                bars = adapter.parse_klines(body, timeframe).closed(TIMEFRAME_MS[timeframe], now)
            except (ExchangeError, OSError) as exc:
                log.info(
                    "%s %s: %s candle %s over REST failed (%s)",
                    self.venue.name,
                    symbol,
                    timeframe,
                    open_time,
                    exc,
                )
                self.on_error(KLINE, symbol, str(exc))
                await asyncio.sleep(backoff.next_delay())
                continue
            if len(bars):
                self._pending.discard(key)
                self.on_klines(symbol, timeframe, bars)
                return
            await asyncio.sleep(min(1.0 + attempt, 5.0))  # not closed at the exchange yet
        self._pending.discard(key)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.__aexit__(None, None, None)
