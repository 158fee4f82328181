"""Live candles end to end: the feed layer (p9cli.live.LiveFeeds) drives one CandleBuilder per
exchange from the simulator's WebSocket trades and clock, and the exchange's own kline stream
cross-checks it. Closed 1m and 5m candles built from trades must equal the simulator's true
candles exactly, and agree with the exchange's closed kline bars.

The simulator runs 60x faster than real time (a simulated minute per real second), so the
builders are given the simulator's clock as the exchange clock (the feed layer's clock seam).
"""

from __future__ import annotations

import httpx
from feedutil import Recorder, settings_for

from p9cli.live import LiveFeeds
from p9cli.live.candles import CandleBuilder, CandleGap, CandleMismatch, LiveCandle
from p9cli.live.clock import Clock
from p9cli.universe import EXCHANGES, TIMEFRAME_MS

SPEED = 60.0
#: 2026-01-05 12:39:30 UTC: the feed starts half a minute before a 5m boundary, so the first
#: complete 5m candle (12:40-12:45) closes about 5.5 s (real) after the start
START_MS = 1_767_616_770_000


class SimWallClock(Clock):
    """Real monotonic time for timers; the simulator's time as the wall (exchange) clock."""

    def __init__(self, sim):
        self.sim = sim

    def wall_ms(self) -> int:
        return self.sim.sim.clock.now_ms()


def closed_from_trades(events, exchange: str, timeframe: str) -> list[LiveCandle]:
    return [
        e
        for e in events
        if isinstance(e, LiveCandle)
        and e.exchange == exchange
        and e.timeframe == timeframe
        and e.closed
        and e.complete
        and e.source == "trades"
    ]


async def test_feed_built_candles_equal_the_true_candles(live_sim):
    sim = live_sim(speed=SPEED, start_ms=START_MS)
    builders: dict[str, CandleBuilder] = {}

    def candles_for(exchange: str, symbol: str) -> CandleBuilder:
        # the clock closes a candle once the feed has delivered 10 s of exchange time past its
        # end (1/6 s real at 60x); the feed may lag the simulated clock by up to 2 minutes
        b = CandleBuilder(
            exchange, symbol, timeframes=("1m", "5m"), close_delay_ms=10_000, max_feed_lag_ms=120_000
        )
        builders[exchange] = b
        return b

    def done() -> bool:
        return all(len(closed_from_trades(rec.others, ex, "5m")) >= 1 for ex in EXCHANGES)

    rec = Recorder()
    settings = settings_for(sim)
    async with LiveFeeds(
        settings, rec, exchanges=EXCHANGES, symbols=("btc",), clock=SimWallClock(sim), candles_for=candles_for
    ) as feeds:
        for _ in range(250):  # at most ~25 s real (a full 5m candle needs ~6 s)
            await feeds.wait(0.1)
            if done():
                break
        stats = feeds.stats()
    assert done(), {ex: b.stats for ex, b in builders.items()}
    bad = [e for e in rec.others if isinstance(e, (CandleGap, CandleMismatch))]
    assert not bad, bad

    async with httpx.AsyncClient(timeout=30) as c:
        for ex in EXCHANGES:
            b = builders[ex]
            assert stats[ex]["reconnects"] == 0 and stats[ex]["malformed"] == 0, stats[ex]
            assert b.stats["late_trades"] == 0, b.stats
            # the exchange's closed 1m bars (kline stream) were compared with ours: all agree
            assert b.stats["checked"] >= 2 and b.stats["mismatches"] == 0, b.stats
            for tf in ("1m", "5m"):
                live = closed_from_trades(rec.others, ex, tf)
                first, last = live[0].open_time, live[-1].open_time
                times = [x.open_time for x in live]
                assert times == list(range(first, last + 1, TIMEFRAME_MS[tf])), (ex, tf, times)
                r = await c.get(
                    f"{sim.control_url}/truth/candles",
                    params={"exchange": ex, "symbol": "btc", "interval": tf, "start": first, "end": last},
                )
                truth = r.json()["candles"]
                assert [t["open_time"] for t in truth] == times
                for x, t in zip(live, truth, strict=True):
                    assert t["closed"]
                    ours = (x.open, x.high, x.low, x.close, x.volume, x.quote_volume, x.trades)
                    exp = tuple(
                        float(t[k]) for k in ("open", "high", "low", "close", "volume", "quote_volume")
                    )
                    assert ours == (*exp, t["trades"]), f"{ex} {tf} {x.open_time}: {ours} != {exp}"
