"""``p9 stream``: the live market placed inside its history, published to Redis for bots.

Per (exchange, symbol): the live feeds (trades, in-sync books, live candles of all 11
timeframes) feed a :class:`p9cli.fusion.state.PairState`. ``fusion_data`` is event-driven with a
leading-edge throttle per channel: an input (trade, in-sync book, book invalid, closed candle)
whose channel last published >= 250 ms ago is published at once (built right after the frame
that carried it, so one frame's trades go out together); inputs inside the window mark the pair
dirty and one trailing publish at the window's end sends the newest state (<= 4/s per channel).
Every 1 s ``market_context`` and ``precision9_context``; ``structure`` at start and whenever a
closed candle made a timeframe recompute (``analyze_timeframe`` + ``build_structure(
per_timeframe=...)`` in a worker thread, one at a time, never on the event path). The heartbeat
``precision9_fusion_status`` is the publisher's (status source: the feeds' statistics).

Latency (``report["latency"]``, quick-test p50/p99): per published ``fusion_data`` message, the
time its pipeline completed minus the ``time.perf_counter()`` stamp taken in the event handler for
the newest exchange input it reflects (the feed layer's ``recv_ms`` has only ms resolution; the
handler runs synchronously right after the frame's decode, so the stamp is later than the
socket read by the decode/book-apply time of that frame, a few µs).

Exit codes: 0 done (with ``--quick-test``: every feed delivered data and every channel was
published), 1 the quick test failed, 2 bad input, 69 a configured Redis that does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import defaultdict, deque
from functools import partial
from typing import TextIO

import orjson

from p9cli.config import Settings
from p9cli.errors import EXIT_FAILURE, EXIT_OK, ConfigError, P9Error
from p9cli.fusion.state import PairState, structure_stale
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES

TICK_S = 0.25
CONTEXT_EVERY_TICKS = 4
#: fusion_data: at most one publish per channel per window (leading edge + one trailing)
THROTTLE_S = 0.25
QUICK_TEST_S = 120.0


def channel_symbol(symbol: str) -> str:
    return f"{symbol}usdt"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _json_clean(doc: dict) -> dict:
    from p9cli.analysis.context import to_json

    return orjson.loads(to_json(doc))


class History:
    """One pair's in-memory closed candles per timeframe and its structure document."""

    def __init__(self, exchange: str, symbol: str, candles: dict, doc: dict | None):
        self.exchange = exchange
        self.symbol = symbol
        self.candles = candles  # {tf: Candles}
        self.doc = doc
        self.dirty: set[str] = set()

    def add_closed(self, tf: str, candle) -> None:
        cur = self.candles.get(tf)
        self.candles[tf] = candle if cur is None or not len(cur) else cur.merge(candle)
        self.dirty.add(tf)

    def recompute(self, tfs: set[str], now_ms: int) -> dict | None:
        """Recompute the given timeframes' sections and rebuild the document (thread)."""
        from p9cli.analysis.context import analyze_timeframe, build_structure

        have = {tf: c for tf, c in self.candles.items() if c is not None and len(c)}
        if not have:
            return None
        doc = self.doc or {}
        tick, qty_step = doc.get("tick"), doc.get("qty_step")
        per_tf = dict(doc.get("timeframes") or {})
        for tf in tfs:
            if tf in have:
                per_tf[tf] = analyze_timeframe(have[tf], tf, tick=tick, qty_step=qty_step)
        per_tf = {tf: sec for tf, sec in per_tf.items() if tf in have}
        missing = [tf for tf in have if tf not in per_tf]
        for tf in missing:
            per_tf[tf] = analyze_timeframe(have[tf], tf, tick=tick, qty_step=qty_step)
        new = build_structure(
            self.exchange, self.symbol, have, per_timeframe=per_tf, tick=tick, qty_step=qty_step, now_ms=now_ms
        )
        return _json_clean(new)


def load_history(settings: Settings, out: TextIO) -> dict[tuple[str, str], History]:
    """Stored candles + structure per pair; one line per pair whose data is missing or stale."""
    from p9cli.store import DataStore

    store = DataStore(settings.data_dir)
    now = _now_ms()
    result = {}
    for ex in settings.exchanges:
        for sym in settings.symbols:
            candles, old = {}, []
            for tf in TIMEFRAMES:
                try:
                    s = store.read_series(ex, sym, tf)
                except Exception as exc:  # noqa: BLE001 - one unusable file: say so, keep streaming
                    print(f"p9 stream: {ex} {sym} {tf}: {exc}", file=out)
                    s = None
                if s is None or not len(s.candles):
                    candles[tf] = None
                    old.append(tf)
                    continue
                candles[tf] = s.candles
                behind = (now - int(s.candles.open_time[-1])) // TIMEFRAME_MS[tf] - 1  # closed candles missing
                if behind >= 1:
                    old.append(f"{tf} ({behind} candle{'s' if behind > 1 else ''} behind)")
            try:
                doc = store.read_structure(ex, sym)
            except Exception as exc:  # noqa: BLE001
                print(f"p9 stream: {ex} {sym}: {exc}", file=out)
                doc = None
            if old or doc is None:
                what = f"history missing or old for {', '.join(old)}" if old else ""
                if doc is None:
                    what = (what + "; " if what else "") + "no structure document"
                print(f"p9 stream: {ex} {sym}: {what} (run with --bootstrap, or p9 fetch-history && p9 analyze)",
                      file=out)
            result[(ex, sym)] = History(ex, sym, candles, doc)
    return result


class Counters:
    #: newest samples kept per exchange (a ring: memory stays flat in a long run; ~15 min at
    #: 4 publishes/s for 5 pairs)
    MAX_SAMPLES = 20_000

    def __init__(self):
        ring = partial(deque, maxlen=self.MAX_SAMPLES)
        #: newest input reflected -> pipeline completed, ms, per exchange
        self.latency_ms: dict[str, deque] = defaultdict(ring)
        #: oldest input not yet published when the payload was built -> pipeline completed
        #: (includes the throttle's wait)
        self.window_ms: dict[str, deque] = defaultdict(ring)
        #: payload built -> pipeline completed (the publishing part of the latency)
        self.build_ms: dict[str, deque] = defaultdict(ring)
        #: when each latency sample's pipeline completed (wall clock, s), same order
        self.at_s: dict[str, deque] = defaultdict(ring)
        self.ticks = 0

    def add_latency(self, exchange: str, ms: float) -> None:
        self.latency_ms[exchange].append(ms)

    def on_flushed(self, stamped: list, done: float) -> None:
        """Publisher hook: ``stamped`` = [(channel, (exchange, newest, oldest, built))] (perf_counter
        of the newest input reflected, the oldest unpublished one, and the payload's build)."""
        wall_s = time.time() - (time.perf_counter() - done)
        for _ch, (ex, newest, oldest, built) in stamped:
            self.latency_ms[ex].append((done - newest) * 1000.0)
            self.window_ms[ex].append((done - oldest) * 1000.0)
            self.build_ms[ex].append((done - built) * 1000.0)
            self.at_s[ex].append(wall_s)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def run(
    settings: Settings,
    *,
    duration: float | None = None,
    quick_test: bool = False,
    bootstrap: bool = False,
    out: TextIO | None = None,
    clock=None,
) -> int:
    if duration is not None and not duration > 0:
        raise ConfigError(f"--duration must be a number of seconds > 0, got {duration!r}")
    if quick_test and duration is None:
        duration = QUICK_TEST_S
    out = out or sys.stderr
    from p9cli.publish import open_redis

    target = open_redis(settings.redis_url, settings.redis_probe)
    try:
        asyncio.run(_check_redis(target.url))  # a bad Redis is one line (exit 69) before anything else
        if bootstrap:
            _bootstrap(settings, out)
        histories = load_history(settings, out)
        report = asyncio.run(_stream(settings, histories, target.url, duration, clock))
    finally:
        target.close()
    ok = print_summary(report, out)
    if quick_test and not ok:
        return EXIT_FAILURE
    return EXIT_OK


async def _check_redis(url: str) -> None:
    """Connect and PING once (ServiceUnavailable: one redacted line, exit 69)."""
    from p9cli.publish import Publisher

    pub = Publisher(url, client_name="p9-stream-check")
    await pub.start()
    await pub.close(final_flush=False)


def _bootstrap(settings: Settings, out: TextIO) -> None:
    """``--bootstrap``: fetch-history then analyze; a failure is one line and the stream still
    starts with what is stored (structure fields null where nothing could be analysed)."""
    from p9cli.services import analyze, fetch_history

    try:
        rc = fetch_history.run(settings, out=out)
    except P9Error as exc:
        print(f"p9 stream: --bootstrap: fetch-history failed: {exc}; streaming with what is stored", file=out)
        rc = None
    if rc not in (None, EXIT_OK):
        print(f"p9 stream: --bootstrap: fetch-history did not complete (exit {rc}); streaming with what is "
              "stored", file=out)  # fmt: skip
    try:
        analyze.run(settings, out=out)
    except P9Error as exc:
        print(f"p9 stream: --bootstrap: analyze: {exc}; structure fields stay null until it can run", file=out)


async def _stream(settings, histories, url, duration, clock) -> dict:
    from p9cli.exchanges.venue import Trade, get_venue
    from p9cli.live import BookState, FeedEvent, LiveFeeds
    from p9cli.live.candles import CandleBuilder, LiveCandle
    from p9cli.live.events import BOOK_INVALID
    from p9cli.publish import (
        FUSION_DATA,
        MARKET_CONTEXT,
        PRECISION9_CONTEXT,
        STRUCTURE,
        WorkerInfo,
        channel,
        envelope,
        publishing,
    )

    exchanges, symbols = tuple(settings.exchanges), tuple(settings.symbols)
    states = {
        key: PairState(key[0], key[1], channel_symbol(key[1]), h.doc) for key, h in histories.items()
    }
    wall = clock.wall_ms if clock is not None else _now_ms  # the exchange wall clock (feeds' seam)
    for st in states.values():
        st.set_structure(st.structure, wall())
    builders: dict[tuple[str, str], CandleBuilder] = {}
    counters = Counters()
    feeds_ref: list = []
    loop = asyncio.get_running_loop()
    perf = time.perf_counter
    pub_ref: list = []
    # per pair: [last publish perf, scheduled?, newest input perf, oldest unpublished input perf]
    throttle = {key: [-1e9, False, 0.0, 0.0] for key in states}
    context_ms: dict[tuple[str, str], int] = {}  # when precision9_context was last offered (wall ms)

    def candles_for(exchange: str, symbol: str) -> CandleBuilder:
        venue = get_venue(exchange)
        h = histories[(exchange, symbol)]
        b = CandleBuilder.continuing(
            exchange, symbol, dict(h.candles), empty=venue.empty_candle, counts_trades=venue.candle_trade_counts
        )
        builders[(exchange, symbol)] = b
        return b

    def publish_fusion(key, st: PairState, stamp) -> bool:
        """Build and offer the pair's fusion_data now (False: nothing changed)."""
        b = builders.get(key)
        if b is not None:
            st.on_forming_rows(b.forming_rows())
        now = wall()
        fields = st.fusion_fields(now)
        if fields is None or not pub_ref:
            return False
        pub_ref[0].offer(channel(FUSION_DATA, key[0], st.channel_symbol),
                         envelope(FUSION_DATA, exchange=key[0], symbol=st.channel_symbol,
                                  event_ts=int(st.event_ts or now), stale=bool(st.stale_sources(now)), **fields),
                         stamp=stamp)  # fmt: skip
        st.pending_recv_ms = None
        return True

    def fire(key) -> None:
        """The throttle's publish: leading edge (right after the input's frame) or trailing."""
        th = throttle[key]
        th[1] = False
        if publish_fusion(key, states[key], (key[0], th[2], th[3], perf())):
            th[0] = perf()

    def touched(key, t: float) -> None:
        """An input changed the pair's state at ``t`` (perf_counter): publish now or at the
        end of the throttle window. O(1); the payload is built only when it is published."""
        th = throttle[key]
        th[2] = t
        if th[1]:
            return
        th[1] = True
        th[3] = t
        wait = th[0] + THROTTLE_S - t
        if wait <= 0:
            loop.call_soon(fire, key)
        else:
            loop.call_later(wait, fire, key)

    def handler(ev) -> None:
        kind = type(ev)
        if kind is Trade:
            key = (ev.exchange, ev.symbol)
            st = states.get(key)
            if st is not None:
                st.on_trade(ev.ts_ms, ev.price, ev.size, ev.side == "buy", ev.recv_ms)
                touched(key, perf())
        elif kind is BookState:
            key = (ev.exchange, ev.symbol)
            st = states.get(key)
            if st is not None:
                st.on_book_state(ev)
                touched(key, perf())
        elif kind is FeedEvent and ev.kind == BOOK_INVALID:
            key = (ev.exchange, ev.symbol)
            st = states.get(key)
            if st is not None:
                st.book_invalid()
                touched(key, perf())
        elif kind is LiveCandle:
            key = (ev.exchange, ev.symbol)
            st = states.get(key)
            if st is not None:
                st.on_candle(ev)
                if ev.closed:
                    histories[key].add_closed(ev.timeframe, ev.candle)
                    touched(key, perf())

    def status() -> dict:
        stats = feeds_ref[0].stats() if feeds_ref else {}
        now = wall()
        feeds = []
        for (ex, _sym), st in states.items():
            s = stats.get(ex, {})
            fresh = st.freshness(now)
            stale_sources = fresh["stale_sources"]
            ctx = context_ms.get((ex, _sym))
            feeds.append({"exchange": ex, "symbol": st.channel_symbol,
                          "state": "stale" if stale_sources else str(s.get("state") or "live"),
                          "stale_sources": stale_sources, "messages": s.get("messages"),
                          "trades": st.flow.trades, "reconnects": s.get("reconnects"),
                          "messages_per_s": float(s.get("messages_per_s") or 0.0),
                          "book_resyncs": int(sum((s.get("book_resyncs") or {}).values())),
                          "price": st.flow.last_price,
                          "trade_age_ms": fresh["trade_age_ms"], "book_age_ms": fresh["book_age_ms"],
                          "structure_age_ms": fresh["structure_age_ms"],
                          "context_age_ms": None if ctx is None else int(_now_ms() - ctx)})
        event_ts = max((st.event_ts for st in states.values()), default=0)
        stale = not feeds or any(f["stale_sources"] for f in feeds)
        return {"feeds": feeds, "stale": stale, "event_ts": int(event_ts or now)}

    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    worker = WorkerInfo.create(settings.worker_id, exchanges, tuple(channel_symbol(s) for s in symbols))
    stats_out: dict = {}
    async with publishing(url, worker, source=status, flush_interval_s=0.25,
                          on_flushed=counters.on_flushed) as pub:  # fmt: skip
        pub_ref.append(pub)

        def offer_structure(st: PairState, doc: dict) -> None:
            msg = dict(doc, symbol=st.channel_symbol, event_ts=int(st.event_ts or wall()),
                       stale=bool(st.structure_stale))
            pub.offer(channel(STRUCTURE, st.exchange, st.channel_symbol), msg)

        for st in states.values():
            if st.structure is not None:
                offer_structure(st, st.structure)

        feed_kwargs = {"exchanges": exchanges, "symbols": symbols, "candles_for": candles_for}
        if clock is not None:
            feed_kwargs["clock"] = clock
        async with LiveFeeds(settings, handler, **feed_kwargs) as feeds:
            feeds_ref.append(feeds)
            recompute: asyncio.Task | None = None
            recompute_key = None
            t_end = None if duration is None else time.monotonic() + duration
            tick = 0
            outages_seen = 0
            while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
                await feeds.wait(TICK_S)
                tick += 1
                now = wall()
                context_tick = tick % CONTEXT_EVERY_TICKS == 0
                for key, st in states.items():
                    st.tick_levels(st.event_ts or now)
                    if not context_tick:
                        continue
                    if st.structure is not None and structure_stale(st.structure, now) != st.structure_stale:
                        st.structure_stale = not st.structure_stale  # flipped: say it on structure: too
                        offer_structure(st, st.structure)
                    # a change no exchange input announced (a recompute, level events, staleness):
                    # published here, without a latency sample (no input triggered it)
                    th = throttle[key]
                    if not th[1] and perf() - th[0] >= THROTTLE_S and publish_fusion(key, st, None):
                        th[0] = perf()
                    stale = bool(st.stale_sources(now))
                    event_ts = int(st.event_ts or now)
                    pub.offer(channel(MARKET_CONTEXT, key[0], st.channel_symbol),
                              envelope(MARKET_CONTEXT, exchange=key[0], symbol=st.channel_symbol,
                                       event_ts=event_ts, stale=stale, **st.market_context_fields(now)))
                    pub.offer(channel(PRECISION9_CONTEXT, key[0], st.channel_symbol),
                              envelope(PRECISION9_CONTEXT, exchange=key[0], symbol=st.channel_symbol,
                                       event_ts=event_ts, stale=stale, **st.precision9_fields(now)))
                    context_ms[key] = _now_ms()
                    # ~1 ms per pair: let frames, throttle timers and the publisher run in between,
                    # so the 1 s context burst never holds the event loop for all pairs at once
                    await asyncio.sleep(0)
                # Redis came back after an outage: a restarted server is empty, and structure is
                # offered only on change: offer every pair's document again for its SET twin
                # (or a new connection: a server restarted within ms is reconnected silently)
                restarts = pub.stats.outages + pub.stats.sessions
                if context_tick and restarts != outages_seen and not pub.in_outage:
                    outages_seen = restarts
                    for st in states.values():
                        if st.structure is not None:
                            offer_structure(st, st.structure)
                # structure recompute: one pair at a time, in a thread, off the event path
                if recompute is not None and recompute.done():
                    st = states[recompute_key]
                    try:
                        doc = recompute.result()
                    except Exception as exc:  # noqa: BLE001 - keep streaming; say it once
                        print(f"p9 stream: {recompute_key[0]} {recompute_key[1]}: recompute failed: {exc}",
                              file=sys.stderr)
                        doc = None
                    if doc is not None:
                        histories[recompute_key].doc = doc
                        st.set_structure(doc, wall())
                        offer_structure(st, doc)
                    recompute = None
                if recompute is None:
                    for key, h in histories.items():
                        if h.dirty:
                            tfs, h.dirty = set(h.dirty), set()
                            recompute_key = key
                            recompute = asyncio.ensure_future(asyncio.to_thread(h.recompute, tfs, _now_ms()))
                            break
            if recompute is not None:
                with contextlib.suppress(Exception):
                    await recompute
            stats_out["feeds"] = feeds.stats()
        await asyncio.sleep(0.3)  # a last flush
        stats_out["published"] = dict(pub.stats.published)
        stats_out["publish_cpu_s"] = pub.stats.cpu_s
        stats_out["flushes"] = pub.stats.flushes
    stats_out["latency"] = {ex: list(v) for ex, v in counters.latency_ms.items()}
    stats_out["latency_window"] = {ex: list(v) for ex, v in counters.window_ms.items()}
    stats_out["latency_at"] = {ex: list(v) for ex, v in counters.at_s.items()}
    stats_out["latency_publish"] = {ex: list(v) for ex, v in counters.build_ms.items()}
    stats_out["pairs"] = [f"{ex}:{channel_symbol(s)}" for ex, s in states]
    return stats_out


def print_summary(report: dict, out: TextIO) -> bool:
    """The quick-test table per feed; True when every feed delivered and every channel was published."""
    from rich.console import Console
    from rich.table import Table

    from p9cli.publish import FUSION_DATA, MARKET_CONTEXT, PRECISION9_CONTEXT, STATUS, STRUCTURE

    published = report.get("published", {})
    table = Table(title="p9 stream (latency: input received -> its fusion_data written to Redis)")
    for col in ("feed", "messages", "trades", "book resyncs", "reconnects", "publishes", "p50 ms", "p99 ms",
                "verdict"):
        table.add_column(col)
    all_ok = True
    status_ok = any(ch.startswith(STATUS) for ch in published)
    for ex, s in report.get("feeds", {}).items():
        mine = {ch: n for ch, n in published.items() if f":{ex}:" in ch}
        by_kind = defaultdict(int)
        for ch, n in mine.items():
            by_kind[ch.split(":", 1)[0]] += n
        kinds_ok = all(by_kind.get(k, 0) > 0 for k in (FUSION_DATA, MARKET_CONTEXT, PRECISION9_CONTEXT, STRUCTURE))
        lat = report.get("latency", {}).get(ex, [])
        ok = s.get("messages", 0) > 0 and kinds_ok and status_ok
        all_ok &= ok
        missing = [k for k in (FUSION_DATA, MARKET_CONTEXT, PRECISION9_CONTEXT, STRUCTURE) if not by_kind.get(k)]
        resyncs = sum((s.get("book_resyncs") or {}).values())
        p50, p99 = _pct(lat, 0.5), _pct(lat, 0.99)
        table.add_row(
            ex, str(s.get("messages", 0)), str(s.get("trades", 0)), str(resyncs), str(s.get("reconnects", 0)),
            " ".join(f"{k}={v}" for k, v in sorted(by_kind.items())),
            "-" if p50 is None else f"{p50:.2f}", "-" if p99 is None else f"{p99:.2f}",
            "PASS" if ok else "FAIL" + (f" (no {','.join(missing)})" if missing else ""),
        )
    if not report.get("feeds"):
        all_ok = False
    Console(file=out, width=160).print(table)
    if not status_ok:
        print("p9 stream: the status channel was never published", file=out)
    return all_ok
