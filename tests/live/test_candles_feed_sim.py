"""Live candles end to end: the feed layer (p9cli.live.LiveFeeds) drives one CandleBuilder per
exchange from the simulator's WebSocket trades and clock, and the exchange's own kline stream
cross-checks it. Closed 1m and 5m candles built from trades must equal the simulator's true
candles exactly, and agree with the exchange's closed kline bars; the partial first candles
are completed by the feed from the exchange's closed klines (stream or REST) and then equal the
true candles too.

The simulator runs 60x faster than real time (a simulated minute per real second), so the
builders are given the simulator's clock as the exchange clock (the feed layer's clock seam).
"""

from __future__ import annotations

import httpx
from feedutil import Recorder, settings_for

from p9cli.exchanges.venue import get_venue
from p9cli.live import LiveFeeds
from p9cli.live.candles import CandleBuilder, CandleGap, CandleMismatch, CompletionWanted, LiveCandle
from p9cli.live.clock import Clock
from p9cli.universe import EXCHANGES, TIMEFRAME_MS

SPEED = 60.0
#: 2026-01-05 12:39:00 UTC: the feed starts a simulated minute (1 s real) before a 5m boundary,
#: so the first complete 5m candle (12:40-12:45) closes about 6 s (real) after the start
START_MS = 1_767_616_740_000


class SimWallClock(Clock):
    """Real monotonic time for timers; the simulator's time as the wall (exchange) clock."""

    def __init__(self, sim):
        self.sim = sim

    def wall_ms(self) -> int:
        return self.sim.sim.clock.now_ms()


def closed(events, exchange: str, timeframe: str) -> list[LiveCandle]:
    return [
        e
        for e in events
        if isinstance(e, LiveCandle) and e.exchange == exchange and e.timeframe == timeframe and e.closed
    ]


async def test_feed_built_candles_equal_the_true_candles(live_sim):
    sim = live_sim(speed=SPEED, start_ms=START_MS)
    builders: dict[str, CandleBuilder] = {}
    rec = Recorder()
    wanted: list[CompletionWanted] = []

    def candles_for(exchange: str, symbol: str) -> CandleBuilder:
        # exchange-time settings scaled for 60x: the clock closes a candle once the feed has
        # delivered 10 s past its end (1/6 s real), the feed may lag the simulated clock by 2
        # minutes, and a REST completion may take 2 simulated minutes (2 s real)
        venue = get_venue(exchange)
        b = CandleBuilder(
            exchange, symbol, timeframes=("1m", "5m"), empty=venue.empty_candle,
            counts_trades=venue.candle_trade_counts, close_delay_ms=10_000, max_feed_lag_ms=120_000,
            completion_wait_ms=120_000,
        )  # fmt: skip
        builders[exchange] = b
        return b

    def handler(event) -> None:
        rec(event)
        if isinstance(event, CompletionWanted):
            wanted.append(event)

    def done() -> bool:
        return all(len(closed(rec.others, ex, "5m")) >= 2 for ex in EXCHANGES)

    settings = settings_for(sim)
    async with LiveFeeds(
        settings, handler, exchanges=EXCHANGES, symbols=("btc",), clock=SimWallClock(sim),
        candles_for=candles_for,
    ) as feeds:  # fmt: skip
        for _ in range(250):  # at most ~25 s real (a full 5m candle needs ~6 s)
            await feeds.wait(0.1)
            if done():
                break
        stats = feeds.stats()
    assert done(), {ex: b.stats for ex, b in builders.items()}
    # the feed completed the partial first candles itself (closed kline over REST or stream)
    assert {(w.exchange, w.timeframe) for w in wanted} >= {(ex, "5m") for ex in EXCHANGES}
    bad = [e for e in rec.others if isinstance(e, (CandleGap, CandleMismatch))]
    assert not bad, bad

    async with httpx.AsyncClient(timeout=30) as c:
        for ex in EXCHANGES:
            b = builders[ex]
            assert stats[ex]["reconnects"] == 0 and stats[ex]["malformed"] == 0, stats[ex]
            assert b.stats["late_trades"] == 0 and b.stats["incomplete"] == 0, b.stats
            # the exchange's closed 1m bars (kline stream) were compared with ours: all agree
            assert b.stats["checked"] >= 2 and b.stats["mismatches"] == 0, b.stats
            for tf in ("1m", "5m"):
                live = closed(rec.others, ex, tf)
                # the first candle was partial (the feed started mid-interval): completed from
                # the exchange's own closed candle (kline stream or REST); the rest from trades
                assert live[0].source == "exchange" and {x.source for x in live[1:]} == {"trades"}
                assert all(x.complete for x in live)
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
                    values = ("open", "high", "low", "close", "volume", "quote_volume")
                    exp = (*(float(t[k]) for k in values), t["trades"] if b.counts_trades else None)
                    assert ours == exp, f"{ex} {tf} {x.open_time} ({x.source}): {ours} != {exp}"
