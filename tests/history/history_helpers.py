"""Helpers of the fetch-history integration tests (imported by the test modules; the
fixtures are in conftest.py): REST-only simulators in background threads (their own event
loop, so the client under test runs in the test's loop), the ground truth from the
simulator's control API, and exact comparison of stored files with it."""

from __future__ import annotations

import io
from pathlib import Path

import httpx

from p9cli.config import load_settings
from p9cli.history.report import Reporter
from p9cli.rest.client import ClientOptions
from p9cli.services.fetch_history import FetchOptions, fetch_history
from p9cli.sim.testing import SimThread
from p9cli.store import DataStore, StoredSeries
from p9cli.universe import TIMEFRAME_MS

SEED = 9
#: 2026-01-05 12:34:56.789 UTC (the simulator tests' fixed start).
START_MS = 1_767_616_496_789


def start_thread(threads: list[SimThread], **kwargs):
    kwargs.setdefault("seed", SEED)
    kwargs.setdefault("start_ms", START_MS)
    kwargs.setdefault("with_ws", False)
    kwargs.setdefault("with_feed", False)
    kwargs.setdefault("warm_up", False)
    thread = SimThread(**kwargs)
    handle = thread.start()
    threads.append(thread)
    return handle


def sim_settings(handle, data_dir: Path, **flags):
    env = handle.env()
    return load_settings({"data_dir": str(data_dir), **flags}, env=env, config_path=None)


def quick_options(**kw) -> FetchOptions:
    """Client options for tests: the production timeouts and limits, shorter back-off."""
    return FetchOptions(client=ClientOptions(backoff_base_s=0.05, backoff_cap_s=0.5, **kw))


async def run_fetch(settings, full=False, options=None):
    """Run the fetch in this loop; returns (series stats, run result, plain log text)."""
    out = io.StringIO()
    result = await fetch_history(settings, full, Reporter(False, out), options or quick_options())
    return result.series, result, out.getvalue()


def stored(history_dir: Path, exchange: str, symbol: str, timeframe: str) -> StoredSeries | None:
    """The stored series under ``history_dir`` (``DIR/history``), read through the store."""
    return DataStore(Path(history_dir).parent).read_series(exchange, symbol, timeframe)


def counters(handle, exchange: str) -> dict[str, int]:
    return dict(handle.sim.exchanges[exchange].counters)


def truth(handle, exchange: str, symbol: str, timeframe: str, first: int, last: int) -> dict:
    r = httpx.get(
        f"{handle.control_url}/truth/candles",
        params={"exchange": exchange, "symbol": symbol, "interval": timeframe, "start": first, "end": last},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()


def assert_file_matches_truth(
    handle, history_dir: Path, exchange: str, symbol: str, timeframe: str, candles: int
):
    """The stored series is exactly the simulator's closed candles: ``candles`` contiguous
    bars, values equal to the exchange's strings, trades where the exchange has them."""
    tf_ms = TIMEFRAME_MS[timeframe]
    s = stored(history_dir, exchange, symbol, timeframe)
    assert s is not None, f"{exchange}/{symbol}/{timeframe}: no file"
    c = s.candles
    assert len(c) == candles, f"{exchange}/{symbol}/{timeframe}: {len(c)} bars"
    times = c.open_time.tolist()
    first, last = times[0], times[-1]
    assert times == list(range(first, last + 1, tf_ms)), "not contiguous"
    doc = truth(handle, exchange, symbol, timeframe, first, last)
    rows = doc["candles"]
    assert [r["open_time"] for r in rows] == times
    assert all(r["closed"] for r in rows), "a forming candle was stored"
    assert last + tf_ms <= doc["now_ms"]
    by_time = c.rows()
    for r in rows:
        got = by_time[r["open_time"]]
        want = tuple(float(r[k]) for k in ("open", "high", "low", "close", "volume", "quote_volume"))
        assert got[:6] == want, f"{exchange}/{symbol}/{timeframe} bar {r['open_time']}: {got} != {want}"
        assert got[6] == (r["trades"] if exchange == "binance" else None)
    meta = s.meta
    assert meta.exchange == exchange and meta.timeframe == timeframe and meta.symbol == symbol
    assert meta.exchange_symbol == doc["code"]
    assert meta.source == handle.rest_url(exchange)
    assert meta.holes == []
    return s
