"""Live candles against the simulator's ground truth, for all three exchanges.

The simulator starts at 12:34:56.789 (frozen clock); ``p9 fetch-history`` stores the closed
1m/5m/15m/1h candles; the clock then moves 27 minutes on. The simulator's true trades from the
start instant on are fed to a :class:`CandleBuilder` seeded from the stored files, as the feed
would hand them on, with a clock call every 250 ms of exchange time. The candle of every
timeframe that contains the start instant is partial: its completion is fetched from the
exchange's REST klines with p9's own adapter. Every closed candle must then equal the
simulator's true candle exactly and the stored series must continue without a gap or overlap.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import math
from types import SimpleNamespace

import httpx
import pytest

from p9cli.candles import Candles
from p9cli.config import load_settings
from p9cli.exchanges.venue import get_venue
from p9cli.history.report import Reporter
from p9cli.live.candles import CandleBuilder, CandleGap, CandleMismatch, CompletionWanted, LiveCandle
from p9cli.services.fetch_history import FetchOptions, fetch_history
from p9cli.sim.testing import SimThread
from p9cli.store import DataStore
from p9cli.universe import TIMEFRAME_MS

SEED = 9
#: 2026-01-05 12:34:56.789 UTC (the simulator tests' fixed start)
START_MS = 1_767_616_496_789
FROZEN = 1e-9
ADVANCE_MS = 27 * 60_000
TIMEFRAMES = ("1m", "5m", "15m", "1h")
CASES = [("binance", "btc"), ("bybit", "xrp"), ("okx", "btc"), ("okx", "xrp")]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    thread = SimThread(
        seed=SEED, start_ms=START_MS, speed=FROZEN, warm_up=False, with_ws=False, with_feed=False
    )
    handle = thread.start()
    try:
        data = tmp_path_factory.mktemp("candles_sim")
        flags = {
            "data_dir": str(data),
            "symbols": "btc,xrp",
            "timeframes": ",".join(TIMEFRAMES),
            "candles": 30,
        }
        settings = load_settings(flags, env=handle.env(), config_path=None)
        result = asyncio.run(fetch_history(settings, False, Reporter(False, io.StringIO()), FetchOptions()))
        assert result.ok
        r = httpx.post(f"{handle.control_url}/clock/advance", json={"ms": ADVANCE_MS}, timeout=10)
        r.raise_for_status()
        state = httpx.get(f"{handle.control_url}/state", timeout=10).json()
        yield SimpleNamespace(handle=handle, settings=settings, now_ms=state["clock"]["now_ms"])
    finally:
        thread.stop()


def control(market, path: str, **params) -> dict:
    r = httpx.get(f"{market.handle.control_url}{path}", params=params, timeout=60)
    r.raise_for_status()
    return r.json()


def rest_klines(market, exchange: str, symbol: str, timeframe: str, first: int, last: int) -> Candles:
    """The exchange's own closed candles over REST, requested and parsed by p9's adapter."""
    adapter = importlib.import_module(f"p9cli.exchanges.{exchange}")
    req = adapter.klines_request(symbol, timeframe, first, last, market.now_ms)
    r = httpx.get(market.handle.rest_url(exchange) + req.target, timeout=30)
    r.raise_for_status()
    return adapter.parse_klines(r.content, timeframe).closed(TIMEFRAME_MS[timeframe], market.now_ms)


@pytest.mark.parametrize(("exchange", "symbol"), CASES)
def test_live_candles_equal_the_true_candles_and_continue_the_stored_history(market, exchange, symbol):
    store = DataStore(market.settings.data_dir)
    stored = {tf: store.read_series(exchange, symbol, tf).candles for tf in TIMEFRAMES}
    seed = {tf: int(s.open_time[-1]) for tf, s in stored.items()}
    venue = get_venue(exchange)
    counts_trades = venue.candle_trade_counts
    assert counts_trades == (not math.isnan(stored["1m"].trades[-1]))  # as the stored candles
    b = CandleBuilder.continuing(
        exchange, symbol, stored, empty=venue.empty_candle, counts_trades=counts_trades, timeframes=TIMEFRAMES
    )
    assert b.start(START_MS) == []  # the stored history reaches the first live candle of every tf

    # the exchange's own candles over REST: completion of the partial candles, cross-check
    rest = {
        tf: rest_klines(market, exchange, symbol, tf, seed[tf] + TIMEFRAME_MS[tf], market.now_ms)
        for tf in TIMEFRAMES
    }
    tape = control(market, "/truth/trades", exchange=exchange, symbol=symbol, start=START_MS,
                   end=market.now_ms + 1)["trades"]  # fmt: skip
    assert len(tape) > 1000

    got: dict[str, list[LiveCandle]] = {tf: [] for tf in TIMEFRAMES}
    wanted: list[tuple[str, int]] = []

    def handle(events):
        for e in events or ():
            if isinstance(e, CompletionWanted):
                wanted.append((e.timeframe, e.open_time))
                handle(b.on_rest_candles(e.timeframe, rest[e.timeframe].between(e.open_time, e.open_time)))
            elif isinstance(e, LiveCandle):
                got[e.timeframe].append(e)
                if e.source == "trades":  # the exchange's closed bar comes right after ours
                    handle(
                        b.on_rest_candles(e.timeframe, rest[e.timeframe].between(e.open_time, e.open_time))
                    )
            else:
                assert not isinstance(e, (CandleGap, CandleMismatch)), e

    next_clock = START_MS
    for t in tape:
        ts = t["time"]
        while next_clock <= ts:  # every trade before next_clock has been delivered
            handle(b.on_clock(next_clock, next_clock - 1))
            next_clock += 250
        handle(b.on_trade(ts, float(t["price"]), float(t["qty"])))
    handle(b.on_clock(market.now_ms, market.now_ms))

    # the candle of each timeframe containing the start instant was partial and completed
    assert sorted(wanted) == sorted((tf, START_MS - START_MS % TIMEFRAME_MS[tf]) for tf in TIMEFRAMES)
    assert b.stats["completed"] == len(TIMEFRAMES) and b.stats["incomplete"] == 0
    assert b.stats["late_trades"] == 0 and b.stats["exchange_unmatched"] == 0
    checked = sum(1 for tf in TIMEFRAMES for c in got[tf] if c.source == "trades")
    assert b.stats["checked"] == checked and b.stats["mismatches"] == 0

    for tf in TIMEFRAMES:
        length = TIMEFRAME_MS[tf]
        live = got[tf]
        # continues the stored series: no gap, no overlap, every closed interval up to now
        times = stored[tf].open_time.tolist() + [c.open_time for c in live]
        assert times == list(range(times[0], times[-1] + 1, length)), tf
        assert live[-1].open_time + length <= market.now_ms < live[-1].open_time + 2 * length, tf
        assert all(c.closed and c.complete for c in live)
        truth = control(market, "/truth/candles", exchange=exchange, symbol=symbol, interval=tf,
                        start=live[0].open_time, end=live[-1].open_time)["candles"]  # fmt: skip
        assert [c["open_time"] for c in truth] == [c.open_time for c in live]
        for c, want in zip(live, truth, strict=True):
            assert want["closed"]
            ours = (c.open, c.high, c.low, c.close, c.volume, c.quote_volume)
            exp = tuple(float(want[k]) for k in ("open", "high", "low", "close", "volume", "quote_volume"))
            assert ours == exp, f"{exchange} {symbol} {tf} {c.open_time} ({c.source}): {ours} != {exp}"
            assert c.trades == (want["trades"] if counts_trades else None)
            assert not math.isnan(c.quote_volume)
    # 1m and 5m candles built from the trades themselves (not completed from REST)
    assert sum(c.source == "trades" for c in got["1m"]) >= 26
    assert sum(c.source == "trades" for c in got["5m"]) >= 4
