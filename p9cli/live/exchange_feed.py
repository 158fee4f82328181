"""One exchange's live feed: its connections, books, trades and statistics.

:class:`ExchangeFeed` drives any :class:`~p9cli.exchanges.venue.Venue` the same way (nothing
here knows an exchange by name):

* **Connections.** One slot per ``venue.connection_plan(...)`` entry, each holding one
  :class:`~p9cli.live.connection.Link` (two during a switch-over). New connections are paced
  per exchange (``venue.connect_interval_s``); a failed or lost connection is retried after a
  capped exponential back-off with full jitter (reset once a connection stayed up
  ``stable_after_s``). A connection that asks to be replaced (Binance ``serverShutdown``, OKX
  notice 64008, the exchange's maximum connection age) keeps serving while the replacement
  opens and subscribes; the replacement takes over once all its books are in sync
  (``switch_timeout_s`` at most), so no trade and no book update is lost.
* **Books.** Every connection has its own book-sync machine per symbol (``venue.new_book``);
  only the current connection's books are handed on, and only while the machine says
  ``valid``. A book that stops being valid (gap, checksum, crossed, disconnect, ...) is
  reported at once (:data:`~p9cli.live.events.BOOK_INVALID` with the cause, counted in
  ``book_resyncs``) and resynced: REST snapshot (``wants_snapshot``, through
  :class:`~p9cli.live.rest_jobs.RestJobs`, staggered) or resubscription
  (``wants_resubscribe``).
* **Trades.** De-duplicated by trade id across connections and reconnects
  (:class:`~p9cli.live.trades.TradeTape`); holes in the exchange's trade numbering are
  replayed over REST where the venue can, and what stays missing is counted and reported.
* **Malformed frames** are counted and skipped; an exception in the consumer's handler is
  logged and the frame skipped; neither closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from p9cli.exchanges.book import INVALID, SNAPSHOT_TOO_OLD
from p9cli.exchanges.venue import (
    BOOKS,
    ERROR,
    INFO,
    RECONNECT_SOON,
    SUBSCRIBE_FAILED,
    TRADES,
    BookDelta,
    BookSnapshot,
    ExchangeCandle,
    Keepalive,
    Malformed,
    Notice,
    Trade,
    Venue,
)
from p9cli.live import events as ev_
from p9cli.live import stats as st
from p9cli.live.candles import CompletionWanted
from p9cli.live.clock import SYSTEM_CLOCK, Clock
from p9cli.live.connection import REPLACED, STOPPED, Link
from p9cli.live.events import BookState, FeedEvent
from p9cli.live.pacing import Backoff, Pacer
from p9cli.live.rest_jobs import RestJobs
from p9cli.live.stats import FeedStats
from p9cli.live.trades import TradeTape
from p9cli.live.transport import Connector, TransportClosed, websockets_connector

log = logging.getLogger("p9cli.live")

_HAS_RECV_MS = "recv_ms" in getattr(Trade, "__struct_fields__", ())


@dataclass(frozen=True)
class FeedOptions:
    #: replace a connection that received nothing for this long (None: the venue's default)
    silence_s: float | None = None
    #: replace connections older than this (None: the venue's maximum minus a margin)
    max_connection_age_s: float | None = None
    #: the longest a replacement may take to bring its books in sync before it takes over anyway
    switch_timeout_s: float = 30.0
    #: REST snapshot / replay requests started per second per exchange, and at once
    snapshot_rate_per_s: float = 5.0
    snapshot_concurrency: int = 2
    backoff_base_s: float = 0.25
    backoff_cap_s: float = 15.0
    #: a connection that stayed up this long resets the back-off
    stable_after_s: float = 10.0
    #: an open hole in the trade numbering is final (counted as missing) after this long
    trade_settle_s: float = 3.0
    #: how much longer a trade hole stays open while its REST replay is still being tried (a
    #: Binance 429 asks for up to 60 s of silence from all REST and several can come in a row;
    #: Binance keeps its aggregate trades and OKX three months of trades, so the trades are
    #: there to be had: only a replay failing for this long gives them up)
    replay_hold_s: float = 600.0
    #: larger holes are not replayed over REST (a renumbering, or too long an outage)
    max_replay_trades: int = 5000
    #: subscribe to the exchange's own candle stream (cross-check of live candles)
    exchange_candles: bool = True
    #: housekeeping period (stats, trade holes)
    tick_s: float = 1.0
    #: how often live candles are offered the (estimated) exchange clock
    candle_tick_s: float = 0.25
    #: fetch the exchange's closed candle over REST when a live candle asks for it
    #: (``CompletionWanted``: a partial first candle, a window with trades missing)
    complete_candles: bool = True
    #: multiplies the venue's keepalive intervals and pong timeout (tests against a simulator
    #: whose idle limits were shortened; 1 = the exchange's rule)
    keepalive_scale: float = 1.0


class ExchangeFeed:
    def __init__(
        self,
        venue: Venue,
        ws_url: str,
        symbols: Iterable[str],
        emit: Callable[[object], None],
        *,
        rest_client=None,
        options: FeedOptions | None = None,
        clock: Clock = SYSTEM_CLOCK,
        connector: Connector | None = None,
        candles=None,
    ):
        self.venue = venue
        self.name = venue.name
        self.symbols = tuple(symbols)
        self.emit = emit
        self.options = o = options or FeedOptions()
        self.clock = clock
        self.connector = connector or websockets_connector()
        #: symbol -> live-candle builder (p9cli.live.candles.CandleBuilder) or absent
        self.candles: dict = dict(candles or {})
        self.plans = venue.connection_plan(ws_url, list(self.symbols), candles=o.exchange_candles)
        self.stats = FeedStats(venue.name)
        self.stats.books_total = sum(len(p.symbols) for p in self.plans if BOOKS in p.carries)
        self.tapes = {s: TradeTape(settle_s=o.trade_settle_s) for s in self.symbols}
        self.primaries: list[Link | None] = [None] * len(self.plans)
        self.links: set[Link] = set()
        self.connect_pacer = Pacer(
            1.0 / venue.connect_interval_s if venue.connect_interval_s > 0 else 0, clock
        )
        self.keepalive = _scaled(venue.keepalive, o.keepalive_scale)
        self.silence_s = o.silence_s if o.silence_s is not None else venue.silence_timeout_s
        age = o.max_connection_age_s
        if age is None and venue.max_connection_age_s:
            age = venue.max_connection_age_s - min(600.0, 0.05 * venue.max_connection_age_s)
        self.max_age_s = age
        self.rest = (
            RestJobs(
                venue,
                rest_client,
                self.stats,
                clock,
                rate_per_s=o.snapshot_rate_per_s,
                concurrency=o.snapshot_concurrency,
                on_snapshot=self._on_rest_snapshot,
                on_replay=self._on_replay,
                still_wanted=self._snapshot_wanted,
                replay_span=self._replay_span,
                on_klines=self._on_rest_klines if o.complete_candles else None,
                server_now_ms=self.exchange_now_ms,
                on_error=lambda what, symbol, text: self._event(ev_.NOTICE, symbol, f"{what}_failed", text),
            )
            if rest_client is not None
            else None
        )
        self._ever_live = False
        self._exchange_now = 0
        self._tasks: list[asyncio.Task] = []
        self._handler_errors = 0
        self._background: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Run until cancelled."""
        tasks = [asyncio.ensure_future(self._slot(i, p)) for i, p in enumerate(self.plans)]
        tasks.append(asyncio.ensure_future(self._housekeeping()))
        if self.candles:
            tasks.append(asyncio.ensure_future(self._candle_clock()))
        if self.rest is not None:
            tasks.append(asyncio.ensure_future(self.rest.run()))
        self._tasks = tasks
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for link in list(self.links):
                await link.close(STOPPED)
            self.links.clear()
            for t in list(self._background):
                t.cancel()
            self.stats.state = st.STOPPED
            self.stats.connections_open = 0

    def _spawn(self, coro) -> None:
        """Run ``coro`` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _event(self, kind: str, symbol: str | None = None, cause: str = "", detail: str = "") -> None:
        self._emit(FeedEvent(self.name, kind, symbol, cause, detail, self.clock.wall_ms()))

    def _emit(self, event) -> None:
        try:
            self.emit(event)
        except Exception:  # noqa: BLE001 - a consumer bug must not take the feed down
            self._handler_errors += 1
            if self._handler_errors <= 5:
                log.exception("%s: the event handler failed", self.name)

    # ------------------------------------------------------------------ connections

    async def _open_link(self, plan, backoff: Backoff) -> Link:
        while True:
            await self.connect_pacer.wait()
            link = Link(
                plan,
                self.keepalive,
                self._on_frame,
                clock=self.clock,
                send_interval_s=self.venue.send_interval_s,
                silence_s=self.silence_s,
                max_age_s=self.max_age_s,
            )
            if BOOKS in plan.carries:
                link.books = {s: self.venue.new_book(s) for s in plan.symbols}
            else:
                link.ready.set()
            self.links.add(link)
            try:
                await link.open(self.connector)
            except TransportClosed as exc:
                self.links.discard(link)
                self.stats.connect_failures += 1
                delay = backoff.next_delay()
                self._event(
                    ev_.CONNECT_FAILED,
                    cause="connect",
                    detail=f"{plan.url}: {exc.reason}; retry in {delay:.2f} s",
                )
                await asyncio.sleep(delay)
                continue
            self._event(ev_.CONNECTED, detail=plan.url)
            return link

    async def _slot(self, index: int, plan) -> None:
        o = self.options
        backoff = Backoff(o.backoff_base_s, o.backoff_cap_s)
        primary: Link | None = None
        lost_before = False
        try:
            while True:
                link = await self._open_link(plan, backoff)
                if primary is not None and not primary.done.is_set():
                    # planned replacement: the old connection serves until the new one is in sync
                    await _first(
                        (link.ready.wait(), link.done.wait(), primary.done.wait()), o.switch_timeout_s
                    )
                    if link.done.is_set():
                        self._lost(link, index)
                        await asyncio.sleep(backoff.next_delay())
                        if primary.done.is_set():
                            self._lost(primary, index)
                            primary, lost_before = None, True
                        continue
                    if primary.done.is_set():  # it ended before its replacement was ready
                        self._lost(primary, index)
                        self.stats.reconnects += 1
                        self._promote(index, link, None)
                    else:
                        cause = primary.replace_cause
                        self._promote(index, link, primary)
                        self.stats.switchovers += 1
                        self._event(ev_.SWITCHOVER, cause=cause, detail=plan.url)
                else:
                    if lost_before or primary is not None:  # primary: ended while we connected
                        self.stats.reconnects += 1
                    if primary is not None:
                        self._lost(primary, index)
                    self._promote(index, link, None)
                primary = link
                await _first((primary.done.wait(), primary.replace_wanted.wait()), None)
                if primary.done.is_set():
                    lived = self.clock.monotonic() - primary.opened_at
                    self._lost(primary, index)
                    primary, lost_before = None, True
                    if lived >= o.stable_after_s:
                        backoff.reset()
                    await asyncio.sleep(backoff.next_delay())
        finally:
            if primary is not None:
                await primary.close(STOPPED)

    def _promote(self, index: int, link: Link, previous: Link | None) -> None:
        if previous is not None and not previous.primary:
            previous = None  # it ended meanwhile and was reported lost already
        link.primary = True
        self.primaries[index] = link
        # report the link's end as soon as it happens, whatever the slot is doing (it may be
        # busy opening a replacement)
        self._spawn(self._watch_primary(link, index))
        for symbol, m in link.books.items():
            if m.valid:
                link.handed_valid[symbol] = True
                self._event(ev_.BOOK_SYNCED, symbol, detail=str(m.update_id))
                self._hand_on_book(link, symbol, m, None, self.clock.wall_ms())
            elif previous is not None and previous.handed_valid.get(symbol):
                self.stats.resync(ev_.DISCONNECT)
                self._event(ev_.BOOK_INVALID, symbol, cause=ev_.DISCONNECT, detail="replacement not in sync")
        if previous is not None:
            previous.primary = False
            self.links.discard(previous)
            self._spawn(previous.close(REPLACED))
            self._event(ev_.DISCONNECTED, cause=REPLACED, detail=previous.url)
        self._update_state()

    async def _watch_primary(self, link: Link, index: int) -> None:
        await link.done.wait()
        if link.primary and link.end_reason != STOPPED:  # not when the feed itself stops
            self._lost(link, index)

    def _lost(self, link: Link, index: int) -> None:
        """``link`` ended (or failed to become a replacement)."""
        self.links.discard(link)
        if self.primaries[index] is link:
            self.primaries[index] = None
        if not link.primary:
            self._update_state()
            return
        link.primary = False
        self._event(ev_.DISCONNECTED, cause=link.end_reason or "closed", detail=link.end_detail)
        for symbol, valid in link.handed_valid.items():
            if valid:
                self.stats.resync(ev_.DISCONNECT)
                self._event(ev_.BOOK_INVALID, symbol, cause=ev_.DISCONNECT)
        if TRADES in link.plan.carries:
            for symbol in link.plan.symbols:
                tape = self.tapes.get(symbol)
                if tape is not None and tape.last_seq is None:
                    tape.blind_intervals += 1
                    self.stats.trade_blind_intervals += 1
        self._maybe_lost_trades(link)
        self._update_state()

    # ------------------------------------------------------------------ frames

    def _on_frame(self, link: Link, frame: str | bytes) -> None:
        stats = self.stats
        stats.messages += 1
        recv_ms = self.clock.wall_ms()
        try:
            events = self.venue.decode(frame)
        except Exception as exc:  # noqa: BLE001 - decode must never raise; count it if it does
            stats.malformed += 1
            self._event(ev_.MALFORMED, cause="decode", detail=f"{type(exc).__name__}: {exc}"[:200])
            return
        for event in events:
            kind = type(event)
            if kind is Trade:
                self._on_trade(event, recv_ms)
            elif kind is BookDelta or kind is BookSnapshot:
                self._on_book(link, event, recv_ms)
            elif kind is ExchangeCandle:
                self._emit(event)
                builder = self.candles.get(event.symbol)
                if builder is not None:
                    self._candles_out(builder.on_exchange_candle(event))
            elif kind is Notice:
                self._on_notice(link, event)
            elif kind is Malformed:
                stats.malformed += 1
                self._event(ev_.MALFORMED, cause=event.reason, detail=event.excerpt)
                self._maybe_lost_trades(link)

    def _maybe_lost_trades(self, link: Link) -> None:
        """A frame was lost on ``link`` (truncated, or the connection ended): it may have held
        trades. Until the next trade shows what is missing, the candles from the last trade seen
        on are not complete: the clock may close one meanwhile (book updates keep it going), and
        on a venue that numbers its trades the hole only shows with that next trade."""
        if TRADES not in link.plan.carries:
            return
        for symbol in link.plan.symbols:
            tape = self.tapes.get(symbol)
            builder = self.candles.get(symbol)
            if tape is not None and builder is not None and tape.last_ts:
                builder.suspect_from(tape.last_ts)

    def _on_trade(self, trade: Trade, recv_ms: int) -> None:
        tape = self.tapes.get(trade.symbol)
        if tape is None:
            return
        stats = self.stats
        stats.lag(trade.ts_ms, recv_ms)
        holes = len(tape.holes)
        if not tape.admit(trade.trade_id, trade.id_first, trade.id_last, self.clock.monotonic(), trade.ts_ms):
            stats.trades_duplicate += 1
            return
        if _HAS_RECV_MS:
            trade.recv_ms = recv_ms
        stats.trades += 1
        self._emit(trade)
        opened = len(tape.holes) > holes
        builder = self.candles.get(trade.symbol)
        if builder is not None:
            # trades are missing before this one: the candles over that window wait for the
            # exchange's own (a replayed trade may come too late for its candle). Marked before
            # this trade is added, which may close the candle that lacks them.
            if opened:
                hole = tape.holes[-1]
                builder.mark_incomplete(hole[3], hole[4] + 1)
            if builder.suspect is not None:
                # numbered trades: the hole (if any) was marked above; else up to this trade
                builder.resolve_suspect(trade.ts_ms + 1 if trade.id_last is None else None)
            self._candles_in(builder, trade)
        if opened and self.rest is not None:
            self.rest.want_replay(trade.symbol)

    def _candles_in(self, builder, trade: Trade) -> None:
        # count: the individual trades of the print (Binance aggTrade l - f + 1, OKX count), as the
        # exchange's own candles count them
        out = builder.on_trade(trade.ts_ms, trade.price, trade.size, trade.fills)
        if out:
            self._candles_out(out)

    def _candles_out(self, events) -> None:
        """Hand on what a candle builder returned; a wish for the exchange's own closed candle
        is fetched over REST (and handed on too, for information)."""
        rest = self.rest if self.options.complete_candles else None
        for update in events:
            self._emit(update)
            if rest is not None and type(update) is CompletionWanted:
                rest.want_kline(update.symbol, update.timeframe, update.open_time)

    def _on_rest_klines(self, symbol: str, timeframe: str, bars) -> None:
        builder = self.candles.get(symbol)
        if builder is not None:
            self._candles_out(builder.on_rest_candles(timeframe, bars))

    def _replay_span(self, symbol: str) -> tuple[int, int] | None:
        """The trade numbers to replay: from the first open hole small enough to replay to the
        last hole that still fits within ``max_replay_trades`` of it."""
        tape = self.tapes.get(symbol)
        if tape is None:
            return None
        limit = self.options.max_replay_trades
        first = None
        last = None
        for hole in tape.holes:
            a, b = hole[0], hole[1]
            if first is None:
                if b - a + 1 > limit:
                    continue  # a renumbering or too long an outage: not replayed
                first = a
            if b - first + 1 > limit:
                break
            last = b
        return None if first is None else (first, last)

    def _on_replay(self, symbol: str, trades: list) -> None:
        for trade in trades:
            tape = self.tapes.get(symbol)
            if tape is None:
                return
            if tape.admit(trade.trade_id, trade.id_first, trade.id_last, self.clock.monotonic(), trade.ts_ms):
                if _HAS_RECV_MS:
                    trade.recv_ms = self.clock.wall_ms()
                self.stats.trades += 1
                self.stats.trades_replayed += 1
                self._emit(trade)
                builder = self.candles.get(symbol)
                if builder is not None:
                    self._candles_in(builder, trade)

    def _on_book(self, link: Link, event, recv_ms: int) -> None:
        m = link.books.get(event.symbol)
        if m is None:
            return
        stats = self.stats
        stats.book_updates += 1
        ts = event.ts_ms
        if ts is not None:
            stats.lag(ts, recv_ms)
        status = m.on_event(event)
        self._after_book(link, event.symbol, m, status, ts, recv_ms, event.seq)

    def _after_book(
        self, link: Link, symbol: str, m, status: str, ts_ms: int | None, recv_ms: int, seq: int | None
    ) -> None:
        if m.resyncs != link.seen_resyncs.get(symbol, {}):
            seen = link.seen_resyncs.get(symbol, {})
            for cause, n in m.resyncs.items():
                for _ in range(n - seen.get(cause, 0)):
                    self.stats.resync(cause)
            link.seen_resyncs[symbol] = dict(m.resyncs)
        if seq is not None:
            link.book_seq[symbol] = seq
        if m.valid:
            if m.wants_snapshot and self.rest is not None:
                # a valid book that wants a deeper one (Binance: its known depth ran short)
                self.rest.want_snapshot(link, symbol)
            if status == "stale" or status == SNAPSHOT_TOO_OLD:
                return
            if link.primary:
                if not link.handed_valid.get(symbol):
                    link.handed_valid[symbol] = True
                    self._event(ev_.BOOK_SYNCED, symbol, detail=str(m.update_id))
                    self._update_state()
                self._hand_on_book(link, symbol, m, ts_ms, recv_ms, seq)
            elif not link.ready.is_set() and all(b.valid for b in link.books.values()):
                link.ready.set()
            return
        if status == INVALID:
            if link.primary and link.handed_valid.get(symbol):
                link.handed_valid[symbol] = False
                self._event(ev_.BOOK_INVALID, symbol, cause=m.cause or "")
                self._update_state()
            if m.wants_resubscribe:
                self._spawn(self._resubscribe(link, symbol))
        if m.wants_snapshot and self.rest is not None:
            self.rest.want_snapshot(link, symbol)

    def _hand_on_book(
        self, link: Link, symbol: str, m, ts_ms: int | None, recv_ms: int, seq: int | None = None
    ) -> None:
        book = m.book
        bid = book.bids.best()
        ask = book.asks.best()
        if bid is None or ask is None:
            return
        self.stats.book_states += 1
        self._emit(
            BookState(
                self.name,
                symbol,
                m.update_id,
                ts_ms,
                recv_ms,
                float(bid[0]),
                float(bid[1]),
                float(ask[0]),
                float(ask[1]),
                seq if seq is not None else link.book_seq.get(symbol),
                book,
            )
        )

    async def _resubscribe(self, link: Link, symbol: str) -> None:
        if self.venue.book_resubscribe is None:
            await link.close("resync", f"{symbol} book needs a resubscription")
            return
        unsub, sub = self.venue.book_resubscribe(symbol)
        try:
            await link.send(unsub)
            await link.send(sub)
        except TransportClosed:
            pass

    def _snapshot_wanted(self, link: Link, symbol: str) -> bool:
        m = link.books.get(symbol)
        return m is not None and not link.done.is_set() and m.wants_snapshot

    def _on_rest_snapshot(self, link: Link, symbol: str, snap) -> None:
        if link.done.is_set():
            return
        m = link.books.get(symbol)
        if m is None:
            return
        now = self.clock.wall_ms()
        status = m.on_event(snap)
        self._after_book(link, symbol, m, status, snap.ts_ms, now, snap.seq)

    def _on_notice(self, link: Link, notice: Notice) -> None:
        kind = notice.kind
        if kind == RECONNECT_SOON:
            self.stats.notices += 1
            self._event(ev_.NOTICE, cause=kind, detail=f"{notice.code or ''} {notice.message}".strip())
            link.request_replacement(kind)
        elif kind in (ERROR, SUBSCRIBE_FAILED, INFO):
            self.stats.notices += 1
            self._event(ev_.NOTICE, cause=kind, detail=f"{notice.code or ''} {notice.message}".strip())
            if kind == SUBSCRIBE_FAILED:
                # the connection does not carry what it should: replace it (after a back-off)
                self._spawn(link.close("subscribe_failed", notice.message))

    # ------------------------------------------------------------------ housekeeping

    async def _housekeeping(self) -> None:
        o = self.options
        while True:
            await asyncio.sleep(o.tick_s)
            self.tick()

    def snapshot(self) -> dict:
        """The feed's statistics as plain values (:meth:`FeedStats.snapshot` plus the trades
        currently inside open holes of the numbering: replay pending or not yet final)."""
        out = self.stats.snapshot()
        tapes = self.tapes.values()
        out["trade_ids_pending"] = sum(h[1] - h[0] + 1 for t in tapes for h in t.holes)
        out["trade_renumberings"] = sum(t.renumbered for t in tapes)
        return out

    def exchange_now_ms(self) -> int:
        """The exchange's clock as far as the data handed on shows it: the newest message's
        exchange time plus the local time since it was received, never beyond the local clock
        minus the smallest receive lag seen (clock offset + minimum latency), never backwards.
        While the feed runs behind (a backlog) the estimate stays behind with it, so candles are
        not closed on the clock before their last trades were handed on."""
        stats = self.stats
        wall = self.clock.wall_ms()
        if stats.last_exchange_ts_ms is None:
            return max(self._exchange_now, wall)
        est = stats.last_exchange_ts_ms + (wall - stats.last_recv_ms)
        floor = stats.lag_floor_ms
        if floor is not None:
            est = min(est, wall - floor)
        if est > self._exchange_now:
            self._exchange_now = est
        return self._exchange_now

    async def _candle_clock(self) -> None:
        while True:
            await asyncio.sleep(self.options.candle_tick_s)
            if self.stats.last_exchange_ts_ms is None:
                continue  # nothing received yet: the exchange's clock is unknown
            now = self.exchange_now_ms()
            seen = self.stats.last_exchange_ts_ms
            for builder in self.candles.values():
                out = builder.on_clock(now, seen)
                if out:
                    self._candles_out(out)

    def tick(self) -> None:
        now = self.clock.monotonic()
        stats = self.stats
        stats.tick(now)
        rest = self.rest
        for symbol, tape in self.tapes.items():
            if not tape.holes:
                continue
            # a replay still being tried (REST faults, a restarting exchange) keeps its holes open
            hold = self.options.replay_hold_s if rest is not None and rest.replay_pending(symbol) else 0.0
            lost_holes = [h for h in tape.holes if now - h[2] >= tape.settle_s + hold]
            lost = tape.settle(now, hold)
            if lost:
                log.info(
                    "%s %s: gave up on %d trades (holes %s; replay %s)",
                    self.name,
                    symbol,
                    lost,
                    ", ".join(f"{h[0]}..{h[1]} open {now - h[2]:.0f} s" for h in lost_holes),
                    "pending" if hold else "not pending",
                )
                builder = self.candles.get(symbol)
                if builder is not None:
                    for h in lost_holes:
                        builder.mark_incomplete(h[3], h[4])
                stats.trade_ids_missing += lost
                self._event(ev_.TRADE_GAP, symbol, cause="not_replayable", detail=f"{lost} trades")
        self._update_state()

    def _update_state(self) -> None:
        """Recount open connections and valid books; emit a STATE event when the state changes
        (called on every connection and book transition, and once per tick)."""
        stats = self.stats
        open_ = [p for p in self.primaries if p is not None]
        stats.connections_open = len(self.links)
        stats.books_valid = sum(1 for p in open_ for m in p.books.values() if m.valid)
        if not open_:
            state = st.DOWN if self._ever_live or stats.reconnects or stats.connect_failures else st.STARTING
        elif len(open_) == len(self.primaries) and stats.books_valid == stats.books_total:
            state = st.LIVE
            self._ever_live = True
        else:
            state = st.DEGRADED if self._ever_live else st.SYNCING
        if state != stats.state:
            stats.state = state
            self._event(ev_.STATE, detail=state)


def _scaled(keepalive: Keepalive, factor: float) -> Keepalive:
    if factor == 1.0:
        return keepalive

    def f(v):
        return None if v is None else v * factor

    return replace(
        keepalive,
        ping_every_s=f(keepalive.ping_every_s),
        ping_when_idle_s=f(keepalive.ping_when_idle_s),
        pong_timeout_s=f(keepalive.pong_timeout_s),
    )


async def _first(awaitables, timeout: float | None) -> None:
    """Wait until the first of ``awaitables`` completes (or ``timeout``); cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
