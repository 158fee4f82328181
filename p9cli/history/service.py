"""``p9 fetch-history``: plan, fetch, merge and store every (exchange, symbol, timeframe).

:func:`run_fetch_history` is what the CLI calls. It checks the data directory, takes the
lock, then fetches all exchanges concurrently (each as fast as its limits allow), writes each
series as soon as it is complete, and prints the summary. Exit code 0 only when every series
succeeded; a failed series never touches its file, the others are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TextIO

import httpx

from p9cli.config import Settings
from p9cli.errors import EXIT_FAILURE, EXIT_OK, P9Error
from p9cli.exchanges.base import ExchangeError
from p9cli.history.executor import SeriesResult, fetch_series
from p9cli.history.lock import HistoryLock
from p9cli.history.planner import SeriesKey, okx_recent_boundary, plan_series, split_gaps
from p9cli.history.report import Reporter, SeriesStats
from p9cli.history.store import (
    Series,
    StoreError,
    build_metadata,
    read_series,
    remove_stale_temp_files,
    series_path,
    write_series,
)
from p9cli.rest.client import ClientOptions, ExchangeClient, RequestCounters
from p9cli.universe import TIMEFRAME_MS, exchange_symbol


@dataclass
class FetchOptions:
    client: ClientOptions = field(default_factory=ClientOptions)
    #: exchange -> httpx transport (None: the default network transport). For tools and tests
    #: that need to sit between p9 and an exchange.
    transport_for: Callable[[str], httpx.AsyncBaseTransport | None] | None = None


def adapter_for(exchange: str) -> ModuleType:
    return importlib.import_module(f"p9cli.exchanges.{exchange}")


def prepare_history_dir(history_dir: Path) -> None:
    """Create the history directory and prove it is writable (one clear line otherwise)."""
    try:
        history_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=history_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise P9Error(
            f"data directory {history_dir.parent} is not writable: {reason} ({history_dir})"
        ) from None


def run_fetch_history(
    settings: Settings,
    full: bool = False,
    progress: bool | None = None,
    *,
    options: FetchOptions | None = None,
    out: TextIO | None = None,
) -> int:
    """Fetch history for ``settings``; return the exit code (0 all ok, 1 some series failed).

    Raises :class:`~p9cli.errors.P9Error` (one line) for an unwritable data directory and
    :class:`~p9cli.errors.LockedError` (exit 75) when another run holds the lock.
    """
    history_dir = Path(settings.history_dir)
    prepare_history_dir(history_dir)
    with HistoryLock(history_dir):
        remove_stale_temp_files(history_dir)
        reporter = Reporter(progress, out)
        result = asyncio.run(fetch_history(settings, full, reporter, options or FetchOptions()))
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


#: Holes and a short history recorded in a file are asked for again after this long.
GAPS_RECHECK_MS = 24 * 3600 * 1000

RATE_STATE_NAME = ".ratelimit-state.json"
#: How often the limiters' state is saved while a run is going (a killed run loses at most this).
RATE_STATE_EVERY_S = 0.25


class RateLimitHandover:
    """The limiters' recent requests and pauses, saved in the history directory so the next
    run (another process, maybe right after this one was killed) counts them too: an
    immediate re-run must not exceed a limit or ignore a ``Retry-After`` it never saw."""

    def __init__(self, history_dir: Path):
        self.path = Path(history_dir) / RATE_STATE_NAME
        self.loaded: dict[str, dict] = {}
        self.live: dict[str, ExchangeClient] = {}
        try:
            doc = json.loads(self.path.read_text())
            if isinstance(doc, dict) and isinstance(doc.get("exchanges"), dict):
                self.loaded = doc["exchanges"]
        except (OSError, ValueError):
            pass

    def attach(self, exchange: str, client: ExchangeClient) -> None:
        with contextlib.suppress(TypeError, ValueError):  # a damaged state file: start afresh
            client.limiter.import_state(self.loaded.get(exchange, {}))
        self.live[exchange] = client

    def save(self) -> None:
        state = dict(self.loaded)
        for ex, client in self.live.items():
            state[ex] = client.limiter.export_state()
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"version": 1, "saved_at": time.time(), "exchanges": state}))
            os.replace(tmp, self.path)
        except OSError:
            pass  # best effort: the limits are still kept within this run

    async def keep_saving(self) -> None:
        while True:
            await asyncio.sleep(RATE_STATE_EVERY_S)
            self.save()


async def fetch_history(
    settings: Settings, full: bool, reporter: Reporter, options: FetchOptions
) -> RunResult:
    """All exchanges concurrently, each series written as soon as it is complete."""
    keys = {
        ex: [SeriesKey(ex, sym, tf) for sym in settings.symbols for tf in settings.timeframes]
        for ex in settings.exchanges
    }
    reporter.start({ex: len(k) for ex, k in keys.items()}, full, str(settings.history_dir))
    handover = RateLimitHandover(settings.history_dir)
    saver = asyncio.ensure_future(handover.keep_saving())
    try:
        runs = await asyncio.gather(
            *(fetch_exchange(ex, keys[ex], settings, full, reporter, options, handover) for ex in keys)
        )
    finally:
        saver.cancel()
        handover.save()
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
) -> ExchangeRun:
    t0 = time.monotonic()
    run = ExchangeRun(exchange)
    adapter = adapter_for(exchange)
    base_url = settings.rest_url(exchange)
    transport = options.transport_for(exchange) if options.transport_for else None
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
            st = await fetch_one_series(client, key, settings, full, reporter)
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


def merge_and_write(path: Path, kept: set[int], bars: dict[int, tuple], meta: dict[str, str]) -> None:
    """Stored rows at ``kept`` open times + the fetched ``bars`` (they win) -> the file."""
    rows: dict[int, tuple] = {}
    if kept:
        stored = read_series(path)
        if stored is not None:
            rows = {t: r for t, r in stored.rows().items() if t in kept}
    rows.update(bars)
    write_series(path, Series.from_rows(rows, meta))


async def fetch_one_series(
    client: ExchangeClient, key: SeriesKey, settings: Settings, full: bool, reporter: Reporter
) -> SeriesStats:
    """Plan, fetch, merge and write one series. Never raises for exchange or file problems:
    they become ``SeriesStats(ok=False, error=...)``."""
    t0 = time.monotonic()
    stats = SeriesStats(key)
    tf_ms = TIMEFRAME_MS[key.timeframe]
    path = series_path(settings.history_dir, key.exchange, key.symbol, key.timeframe)
    stored: Series | None = None  # open times + metadata only; the rows are read if needed
    if not full:
        try:
            stored = await asyncio.to_thread(read_series, path, True)
        except StoreError as exc:
            reporter.event(key.exchange, f"{exc}; fetching it again in full")
            stored = None
    stored_times = frozenset(stored.open_time) if stored is not None else frozenset()
    stored_holes = stored.holes if stored is not None else []
    stored_starts = stored.history_starts_ms if stored is not None else None
    now_wall_ms = int(time.time() * 1000)
    checked_ms = stored.gaps_checked_ms if stored is not None else None
    # what the exchange lacked is believed for a day, then asked for again (once): an empty
    # answer may have been a hiccup, and exchanges do backfill
    recheck = (stored_holes or stored_starts is not None) and (
        checked_ms is None or now_wall_ms - checked_ms > GAPS_RECHECK_MS
    )
    known_holes = [] if recheck else stored_holes
    history_starts = None if recheck else stored_starts

    server_now = client.server_now_ms()
    split_at = okx_recent_boundary(server_now, tf_ms) if key.exchange == "okx" else None
    plan = plan_series(
        key,
        tf_ms,
        client.reached_server_ms(),  # never a bar the server may still see forming
        settings.candles,
        client.adapter.MAX_KLINES_PER_REQUEST,
        stored_open_times=stored_times,
        known_holes=known_holes,
        history_starts_ms=history_starts,
        split_at=split_at,
    )
    result = SeriesResult()
    try:
        await fetch_series(client, plan, stored_times, history_starts, split_at, result)
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

    kept = {t for t in stored_times if plan.first_open_ms <= t <= plan.last_open_ms}
    new_times = [t for t in result.bars if t not in kept]
    merged_times = kept | result.bars.keys()
    if not merged_times:
        stats.error = f"{key.exchange} returned no closed candles for {exchange_symbol(key.exchange, key.symbol)} {key.timeframe}"
        stats.seconds = time.monotonic() - t0
        return stats

    first_held, last_held = min(merged_times), max(merged_times)
    leading, inner, trailing = split_gaps(result.missing, first_held, last_held)
    holes = sorted({t for t in plan.known_holes if first_held < t < last_held} | set(inner))
    if leading:
        history_starts = first_held  # the exchange has nothing before its first bar
    elif history_starts is not None and history_starts <= plan.first_open_ms:
        history_starts = None
    if recheck or stored is None or leading or set(inner) - set(stored_holes):
        checked_ms = now_wall_ms
    stats.holes = len(holes) + len(trailing)
    stats.new_holes = len(set(inner) - set(stored_holes)) + len(trailing)
    stats.new_candles = len(new_times)
    stats.stored = len(merged_times)

    changed = bool(new_times) or len(kept) != len(stored_times) or stored is None
    changed = (
        changed
        or holes != sorted(stored_holes)
        or history_starts != stored_starts
        or checked_ms != (stored.gaps_checked_ms if stored is not None else None)
    )
    if changed:
        meta = build_metadata(
            exchange=key.exchange,
            symbol=key.symbol,
            exchange_symbol=exchange_symbol(key.exchange, key.symbol),
            timeframe=key.timeframe,
            source=client.base_url,
            fetched_at_ms=int(time.time() * 1000),
            holes=holes,
            history_starts_ms=history_starts,
            gaps_checked_ms=checked_ms,
        )
        try:
            await asyncio.to_thread(merge_and_write, path, kept, result.bars, meta)
        except StoreError as exc:
            stats.error = str(exc)
            stats.seconds = time.monotonic() - t0
            return stats
    stats.ok = True
    stats.seconds = time.monotonic() - t0
    return stats
