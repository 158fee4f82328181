"""REST work of a feed: order-book snapshots, trade replays and candle completions, paced.

One :class:`RestJobs` per exchange feed: order-book snapshots, trade replays and the
exchange's closed candles that complete a live candle (``CompletionWanted``). Jobs are queued
(at most one pending per book and connection, one per symbol for all its trade holes, one per
candle) and started one at a time at most ``rate_per_s`` per second (after a mass reconnect 15
books want a snapshot at once: they go out spaced, not together), at most ``concurrency`` in
flight. Each request goes through the one REST client of p9
(:class:`p9cli.rest.client.ExchangeClient`), so it shares the exchange's rate limits,
``Retry-After`` pauses and back-off with ``fetch-history`` in the same process.

Order: trade replays and candle completions go before book snapshots. They are few and cheap,
and they have a deadline (a trade the feed gives up on is lost to the bots; a candle waits for
its completion); a book without its snapshot is only not yet valid and asks again. Under a
rate-limit storm (a Binance 429 asks for silence from all REST until its window resets) the
few requests that get through are spent where a loss would be final.

A failed job is tried again after a back-off, without holding a slot while it waits: a snapshot
while the book still wants one, a replay while its holes are open, a candle for up to
``KLINE_RETRY_S``.

A replay is paged: ``venue.trade_replay_request(symbol, from_id, to_id, page)`` for the span
of the open holes; after each answer the span is recomputed (the trades handed on closed part
of it) and the next page asked for as long as the span moved (or after the first page, which
on OKX is the newest trades only; later pages go back by id through ``history-trades``).
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
        #: replays and candle completions (first), book snapshots (after them)
        self._urgent: deque[tuple] = deque()
        self._queue: deque[tuple] = deque()
        #: queued, in flight or waiting to be tried again
        self._pending: set[tuple] = set()
        self._wake = asyncio.Event()
        self._backoff: dict[tuple, Backoff] = {}
        self._retries: set[asyncio.TimerHandle] = set()
        #: symbol -> the page of its replay in progress
        self._replay_page: dict[str, int] = {}
        #: candle job -> loop time after which it is given up
        self._kline_deadline: dict[tuple, float] = {}
        self.in_flight = 0

    # ------------------------------------------------------------------ wishes

    def want_snapshot(self, link, symbol: str) -> None:
        if self.venue.snapshot_request is None:
            return
        self._want((SNAPSHOT, link.id, symbol), link)

    def want_replay(self, symbol: str) -> None:
        """Replay the symbol's open trade holes (one job per symbol covers all of them)."""
        if self.venue.trade_replay_request is None:
            return
        self._want((REPLAY, symbol), None)

    def want_kline(self, symbol: str, timeframe: str, open_time: int) -> None:
        """The exchange's closed candle ``open_time`` of ``timeframe`` over REST (completes a
        live candle the feed could not build in full)."""
        if self.on_klines is None:
            return
        key = (KLINE, symbol, timeframe, open_time)
        if key not in self._pending:
            self._kline_deadline[key] = asyncio.get_running_loop().time() + KLINE_RETRY_S
        self._want(key, None)

    def replay_pending(self, symbol: str) -> bool:
        """A replay of ``symbol``'s trade holes is queued, in flight or waiting to be retried."""
        return (REPLAY, symbol) in self._pending

    def _want(self, key: tuple, arg) -> None:
        if key in self._pending:
            return
        self._pending.add(key)
        self._enqueue(key, arg)

    def _enqueue(self, key: tuple, arg) -> None:
        (self._queue if key[0] == SNAPSHOT else self._urgent).append((key, arg))
        self._wake.set()

    def _done(self, key: tuple) -> None:
        self._pending.discard(key)
        self._backoff.pop(key, None)
        self._kline_deadline.pop(key, None)

    def _later(self, delay: float, then: Callable[[], None]) -> None:
        """Run ``then`` after ``delay`` (the job stays pending meanwhile; no slot is held)."""
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._retries.discard(handle)
            then()

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._retries.add(handle)

    def _backoff_delay(self, key: tuple, base: float, cap: float) -> float:
        return self._backoff.setdefault(key, Backoff(base, cap)).next_delay()

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task] = set()
        try:
            while True:
                if not self._urgent and not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await slots.acquire()
                await self.pacer.wait()
                queue = self._urgent or self._queue  # the urgent ones first, also after the wait
                if not queue:
                    slots.release()
                    continue
                key, arg = queue.popleft()
                task = asyncio.ensure_future(self._do(key, arg))
                running.add(task)
                task.add_done_callback(lambda t: (running.discard(t), slots.release()))
        finally:
            for handle in list(self._retries):
                handle.cancel()
            self._retries.clear()
            for t in list(running):
                t.cancel()

    async def _do(self, key: tuple, arg) -> None:
        self.in_flight += 1
        try:
            if key[0] == SNAPSHOT:
                await self._snapshot(key, arg)
            elif key[0] == REPLAY:
                await self._replay(key)
            else:
                await self._kline(key)
        finally:
            self.in_flight -= 1

    # ------------------------------------------------------------------ snapshots

    async def _snapshot(self, key: tuple, link) -> None:
        symbol = key[2]
        venue = self.venue
        if not self.still_wanted(link, symbol):
            self._done(key)
            return
        self.stats.snapshot_requests += 1
        try:
            body = await self.client.send(venue.snapshot_request(symbol))
            snap = venue.parse_snapshot(body, symbol)
        except (ExchangeError, OSError) as exc:
            self.stats.snapshot_failures += 1
            log.info("%s %s: book snapshot failed (%s)", venue.name, symbol, exc)
            self.on_error(SNAPSHOT, symbol, str(exc))

            def again() -> None:
                if self.still_wanted(link, symbol):
                    self._enqueue(key, link)
                else:
                    self._done(key)

            self._later(self._backoff_delay(key, 0.5, 10.0), again)
            return
        self._done(key)
        self.on_snapshot(link, symbol, snap)

    # ------------------------------------------------------------------ trade replays

    async def _replay(self, key: tuple) -> None:
        symbol = key[1]
        venue = self.venue
        span = self.replay_span(symbol)
        if span is None:
            self._done(key)
            self._replay_page.pop(symbol, None)
            return
        from_id, to_id = span
        page = self._replay_page.get(symbol, 0)
        try:
            body = await self.client.send(venue.trade_replay_request(symbol, from_id, to_id, page))
            trades = venue.parse_trade_replay(body, symbol)
        except (ExchangeError, OSError) as exc:
            # the trades are still at the exchange: try again after a back-off while the hole
            # is open (the feed holds a hole open while its replay is pending, up to a bound)
            log.info("%s %s: trade replay from %s failed (%s)", venue.name, symbol, from_id, exc)
            self.on_error(REPLAY, symbol, str(exc))

            def again() -> None:
                if self.replay_span(symbol) is not None:
                    self._enqueue(key, None)
                else:
                    self._done(key)
                    self._replay_page.pop(symbol, None)

            self._later(self._backoff_delay(key, 0.5, 5.0), again)
            return
        self._done(key)
        # only the trades inside the holes' span (OKX answers with the newest trades, not from
        # ``from_id``; what the feed already has would only count as duplicates)
        wanted = [
            t
            for t in trades
            if (t.id_first is None or t.id_first <= to_id) and (t.id_last is None or t.id_last >= from_id)
        ]
        self.on_replay(symbol, wanted)
        # holes left: the next page while the answer moved the span (or after the first page,
        # which may hold only the newest trades); an answer that closes nothing ends the replay
        # and the holes are final once their hold is over
        after = self.replay_span(symbol)
        if after is not None and trades and (after != span or page == 0):
            self._replay_page[symbol] = page + 1
            self.want_replay(symbol)
        else:
            self._replay_page.pop(symbol, None)

    # ------------------------------------------------------------------ candle completions

    async def _kline(self, key: tuple) -> None:
        _, symbol, timeframe, open_time = key
        adapter = rest_adapter(self.venue)
        loop = asyncio.get_running_loop()
        deadline = self._kline_deadline.get(key, loop.time())
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
            delay = self._backoff_delay(key, 1.0, 8.0)
        else:
            if len(bars):
                self._done(key)
                self.on_klines(symbol, timeframe, bars)
                return
            # not closed at the exchange yet: ask again soon
            attempts = self._backoff.setdefault(key, Backoff(1.0, 8.0))
            attempts.failures += 1
            delay = min(1.0 + attempts.failures, 5.0)
        if loop.time() + delay >= deadline:
            self._done(key)  # given up: the builder hands the candle on as incomplete
            return
        self._later(delay, lambda: self._enqueue(key, None))

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.__aexit__(None, None, None)
