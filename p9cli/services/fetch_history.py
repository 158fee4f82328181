"""``p9 fetch-history``: plan, fetch, merge and store every (exchange, symbol, timeframe).

:func:`run` is what the CLI calls. It checks the data directory, takes the lock, then fetches
all exchanges concurrently (each as fast as its limits allow), writes each series as soon as
it is complete, and prints the summary. Exit code 0 only when every series succeeded; a failed
series never touches its file, the others are kept.

Stored candles are the user's data: a run never deletes them. ``--candles N`` is how far back
to reach (the newest N closed bars are made present); bars stored from earlier runs that reach
further back are kept. ``--full`` fetches those N bars again (a re-fetched bar replaces its
stored copy; stored bars outside them stay). Only ``--trim`` deletes: the stored bars older
than the newest N, and it says how many it removed per series. A stored file that cannot be
read is renamed ``{tf}.parquet.bad`` (kept, and said) before the series is fetched again.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TextIO

import httpx

from p9cli.candles import Candles
from p9cli.config import Settings
from p9cli.errors import EXIT_FAILURE, EXIT_OK
from p9cli.exchanges.base import ExchangeError
from p9cli.history.executor import SeriesResult, fetch_series
from p9cli.history.handover import RateLimitHandover
from p9cli.history.lock import HistoryLock
from p9cli.history.planner import SeriesKey, plan_series, recent_boundary, split_gaps, wanted_range
from p9cli.history.report import Reporter, SeriesStats
from p9cli.rest.client import ClientOptions, ExchangeClient, RequestCounters
from p9cli.store import DataStore, SeriesMeta, StoredSeries, StoreError
from p9cli.universe import TIMEFRAME_MS

#: Holes and a short history recorded in a file are asked for again after this long.
GAPS_RECHECK_MS = 24 * 3600 * 1000


@dataclass
class FetchOptions:
    client: ClientOptions = field(default_factory=ClientOptions)
    #: exchange -> httpx transport (None: the default network transport). For tools and tests
    #: that need to sit between p9 and an exchange.
    transport_for: Callable[[str], httpx.AsyncBaseTransport | None] | None = None


def adapter_for(exchange: str) -> ModuleType:
    return importlib.import_module(f"p9cli.exchanges.{exchange}")


def run(
    settings: Settings,
    *,
    full: bool = False,
    trim: bool = False,
    progress: bool | None = None,
    options: FetchOptions | None = None,
    out: TextIO | None = None,
) -> int:
    """Fetch history for ``settings``; return the exit code (0 all ok, 1 some series failed).

    Raises :class:`~p9cli.errors.ConfigError` (exit 2) for a data directory that is not a
    writable directory and :class:`~p9cli.errors.LockedError` (exit 75) when another run holds
    the lock.
    """
    store = DataStore(settings.data_dir)
    store.check_dir(write_into=store.history_dir)
    with HistoryLock(store.history_dir):
        store.remove_temp_files(store.history_dir)  # the lock is held: no other writer there
        reporter = Reporter(progress, out)
        result = asyncio.run(fetch_history(settings, full, reporter, options or FetchOptions(), trim=trim))
    return EXIT_OK if result.ok else EXIT_FAILURE


@dataclass
class ExchangeRun:
    """One exchange's part of a run: its series plus the requests not tied to a series."""

    exchange: str
    series: list[SeriesStats] = field(default_factory=list)
    overhead: RequestCounters = field(default_factory=RequestCounters)
    """Server-time requests (and their retries)."""
    seconds: float = 0.0
    error: str = ""
    """Set when the exchange could not be used at all (unreachable, banned)."""


@dataclass
class RunResult:
    exchanges: list[ExchangeRun] = field(default_factory=list)

    @property
    def series(self) -> list[SeriesStats]:
        return [s for run in self.exchanges for s in run.series]

    @property
    def ok(self) -> bool:
        return bool(self.series) and all(s.ok for s in self.series)


async def fetch_history(
    settings: Settings, full: bool, reporter: Reporter, options: FetchOptions, *, trim: bool = False
) -> RunResult:
    """All exchanges concurrently, each series written as soon as it is complete."""
    store = DataStore(settings.data_dir)
    keys = {
        ex: [SeriesKey(ex, sym, tf) for sym in settings.symbols for tf in settings.timeframes]
        for ex in settings.exchanges
    }
    stored = sum(
        store.series_path(k.exchange, k.symbol, k.timeframe).exists() for ks in keys.values() for k in ks
    )
    reporter.start({ex: len(k) for ex, k in keys.items()}, full, str(store.history_dir), stored)
    handover = RateLimitHandover(store.history_dir)
    windows = [b.window_s for ex in keys for b in adapter_for(ex).RATE_BUCKETS if b.kind == "sliding"]
    wait = handover.settle_s(max(windows, default=0.0))
    if wait:
        reporter.line(f"the previous run ended abruptly; waiting {wait:.1f} s for its requests to age out")
        await asyncio.sleep(wait)
    saver = asyncio.ensure_future(handover.keep_saving())
    try:
        runs = await asyncio.gather(
            *(
                fetch_exchange(ex, keys[ex], settings, full, reporter, options, handover, trim=trim)
                for ex in keys
            )
        )
    finally:
        saver.cancel()
        handover.save(clean=True)
    result = RunResult(list(runs))
    reporter.finish(result.exchanges)
    return result


async def fetch_exchange(
    exchange: str,
    keys: list[SeriesKey],
    settings: Settings,
    full: bool,
    reporter: Reporter,
    options: FetchOptions,
    handover: RateLimitHandover | None = None,
    *,
    trim: bool = False,
) -> ExchangeRun:
    t0 = time.monotonic()
    run = ExchangeRun(exchange)
    adapter = adapter_for(exchange)
    base_url = settings.rest_url(exchange)
    transport = options.transport_for(exchange) if options.transport_for else None
    store = DataStore(settings.data_dir)
    async with ExchangeClient(
        adapter, base_url, options.client, on_event=reporter.event, transport=transport
    ) as client:
        if handover is not None:
            handover.attach(exchange, client)
        try:
            await client.sync_time(run.overhead)
        except (ExchangeError, OSError) as exc:
            run.error = _exchange_error_text(exchange, base_url, exc)
            reporter.event(exchange, f"{run.error}; its {len(keys)} series failed", error=True)
            run.series = [SeriesStats(k, ok=False, error=f"{exchange} {run.error}") for k in keys]
            for st in run.series:
                reporter.series_done(st, quiet=True)
            run.seconds = time.monotonic() - t0
            return run

        async def one(key: SeriesKey) -> SeriesStats:
            st = await fetch_one_series(client, key, store, settings.candles, full, trim)
            reporter.series_done(st, quiet=client.unavailable is not None)
            return st

        run.series = list(await asyncio.gather(*(one(k) for k in keys)))
        if client.unavailable is not None:
            run.error = _exchange_error_text(exchange, base_url, client.unavailable)
            failed = sum(1 for st in run.series if not st.ok)
            reporter.event(exchange, f"{run.error}; {failed} series failed", error=True)
    run.seconds = time.monotonic() - t0
    reporter.exchange_done(run)
    return run


def _exchange_error_text(exchange: str, base_url: str, exc: BaseException) -> str:
    """``unreachable at URL (reason)`` / ``failed at URL: reason``, without the exchange prefix."""
    text = " ".join(str(exc).split())
    prefix = f"{exchange}:"
    if text.startswith(prefix):
        text = text[len(prefix) :].strip()
    return text if text.startswith(("unreachable", "banned")) else f"failed at {base_url}: {text}"


def merge_and_write(
    store: DataStore, key: SeriesKey, fetched: Candles, keep_from_ms: int | None, meta: SeriesMeta
) -> str:
    """Stored candles (from ``keep_from_ms`` on when trimming) + ``fetched`` (they win) -> the
    file. Returns a note when the stored file turned out unusable and was set aside."""
    note = ""
    try:
        stored = store.read_series(key.exchange, key.symbol, key.timeframe)
    except StoreError as exc:
        aside = store.set_aside(store.series_path(key.exchange, key.symbol, key.timeframe))
        note = f"{exc}; kept as {aside.name}" if aside else str(exc)
        stored = None
    candles = fetched
    if stored is not None:
        old = stored.candles
        if keep_from_ms is not None:
            old = old.take(old.open_time >= keep_from_ms)
        candles = old.merge(fetched)
    store.write_series(key.exchange, key.symbol, key.timeframe, StoredSeries(candles, meta))
    return note


async def fetch_one_series(
    client: ExchangeClient, key: SeriesKey, store: DataStore, candles: int, full: bool, trim: bool = False
) -> SeriesStats:
    """Plan, fetch, merge and write one series. Never raises for exchange or file problems:
    they become ``SeriesStats(ok=False, error=...)``."""
    t0 = time.monotonic()
    stats = SeriesStats(key, wanted=candles)
    tf_ms = TIMEFRAME_MS[key.timeframe]
    path = store.series_path(key.exchange, key.symbol, key.timeframe)
    try:  # open times + metadata only; the rows are read if they are needed
        index = await asyncio.to_thread(store.read_index, key.exchange, key.symbol, key.timeframe)
    except StoreError as exc:
        aside = await asyncio.to_thread(store.set_aside, path)
        kept = f"kept as {aside.name}" if aside else "it could not be moved aside"
        stats.note = f"{exc}; {kept}, fetching the series again"
        index = None
    stored_times = frozenset(index[0].tolist()) if index is not None else frozenset()
    meta = index[1] if index is not None else None
    stored_holes = meta.holes if meta is not None else []
    stored_starts = meta.history_starts_ms if meta is not None else None
    checked_ms = meta.gaps_checked_ms if meta is not None else None
    now_wall_ms = int(time.time() * 1000)
    # what the exchange lacked is believed for a day, then asked for again (once): an empty
    # answer may have been a hiccup, and exchanges do backfill. --full asks for everything.
    recheck = full or (
        (stored_holes or stored_starts is not None)
        and (checked_ms is None or now_wall_ms - checked_ms > GAPS_RECHECK_MS)
    )
    known_holes = [] if recheck else stored_holes
    history_starts = None if recheck else stored_starts

    adapter = client.adapter
    reached = client.reached_server_ms()  # never a bar the server may still see forming
    first_wanted, last_wanted = wanted_range(reached, tf_ms, candles)
    reach = candles
    if stored_times and not trim and min(stored_times) < first_wanted:
        # stored bars reach further back: the series stays contiguous from its oldest bar (a
        # refresh after a long pause fills the gap instead of leaving one in the middle)
        reach = (last_wanted - min(stored_times)) // tf_ms + 1
    # --full: the newest `candles` bars again; older stored ones are kept (and gaps filled)
    have = frozenset(t for t in stored_times if t < first_wanted) if full else stored_times
    split_at = recent_boundary(client.server_now_ms(), tf_ms, adapter.RECENT_CANDLES_BARS)
    plan = plan_series(
        key,
        tf_ms,
        reached,
        reach,
        adapter.MAX_KLINES_PER_REQUEST,
        stored_open_times=have,
        known_holes=known_holes,
        history_starts_ms=history_starts,
        split_at=split_at,
    )
    result = SeriesResult()
    try:
        await fetch_series(client, plan, have, history_starts, split_at, result)
    except ExchangeError as exc:
        stats.error = " ".join(str(exc).split())
    except Exception as exc:  # noqa: BLE001 - one series' bug must not sink the others
        stats.error = f"unexpected error: {type(exc).__name__}: {' '.join(str(exc).split())}"
    finally:
        stats.requests = result.counters.requests
        stats.retries = result.counters.retries
        stats.rate_limited = result.counters.rate_limited
    if stats.error:
        stats.seconds = time.monotonic() - t0
        return stats

    fetched_times = set(result.bars.open_time.tolist())
    trimmed = {t for t in stored_times if t < first_wanted} if trim else set()
    merged_times = (stored_times - trimmed) | fetched_times
    if not merged_times:
        code = adapter.symbol_code(key.symbol)
        stats.error = f"{key.exchange} returned no closed candles for {code} {key.timeframe}"
        stats.seconds = time.monotonic() - t0
        return stats

    first_held, last_held = min(merged_times), max(merged_times)
    leading, inner, trailing = split_gaps(result.missing, first_held, last_held)
    outside = {t for t in stored_holes if not plan.first_open_ms <= t <= plan.last_open_ms}
    holes = sorted(t for t in set(plan.known_holes) | set(inner) | outside if first_held < t < last_held)
    if leading:
        history_starts = first_held  # the exchange has nothing before its first bar
    elif history_starts is not None and history_starts <= plan.first_open_ms:
        history_starts = None
    if recheck or index is None or leading or set(inner) - set(stored_holes):
        checked_ms = now_wall_ms
    stats.holes = len(holes) + len(trailing)
    stats.new_holes = len(set(inner) - set(stored_holes)) + len(trailing)
    stats.new_candles = len(fetched_times - stored_times)
    stats.redownloaded = len(fetched_times & stored_times)
    stats.trimmed = len(trimmed)
    stats.trimmed_before_ms = first_wanted if trimmed else None
    stats.stored = len(merged_times)
    if history_starts is not None and history_starts > first_wanted:
        stats.history_starts_ms = history_starts
        stats.short_by = min(candles, (history_starts - first_wanted) // tf_ms)

    changed = (
        index is None
        or bool(fetched_times - stored_times)
        or bool(trimmed)
        or (full and bool(fetched_times))
        or holes != sorted(stored_holes)
        or history_starts != stored_starts
        or checked_ms != (meta.gaps_checked_ms if meta is not None else None)
    )
    if changed:
        fetched_ms = int(time.time() * 1000)
        new_meta = SeriesMeta(
            exchange=key.exchange,
            symbol=key.symbol,
            exchange_symbol=adapter.symbol_code(key.symbol),
            timeframe=key.timeframe,
            source=client.base_url,
            fetched_at_ms=fetched_ms,
            holes=holes,
            history_starts_ms=history_starts,
            gaps_checked_ms=fetched_ms if checked_ms is None else checked_ms,
        )
        keep_from = first_wanted if trim else None
        try:
            note = await asyncio.to_thread(merge_and_write, store, key, result.bars, keep_from, new_meta)
        except StoreError as exc:
            stats.error = str(exc)
            stats.seconds = time.monotonic() - t0
            return stats
        if note:
            stats.note = f"{note}; stored what was fetched"
    stats.ok = True
    stats.seconds = time.monotonic() - t0
    return stats
