"""The feed completes a live candle it could not build in full (the first one starts before the
feed did) with the exchange's own closed candle over REST, without the consumer's help: with
the kline stream switched off, the first 1m candle of each exchange arrives complete, from the
exchange, and equals the simulator's true candle; the next ones come from trades."""

from __future__ import annotations

import httpx
from feedutil import Recorder, settings_for

from p9cli.exchanges.venue import get_venue
from p9cli.live import FeedOptions, LiveFeeds
from p9cli.live.candles import CandleBuilder, LiveCandle
from p9cli.live.clock import Clock
from p9cli.universe import EXCHANGES

SPEED = 60.0  # a simulated minute per real second


class SimClock(Clock):
    """Real monotonic time for timers; the simulator's clock as wall time (receive times)."""

    def __init__(self, sim):
        self.sim = sim

    def wall_ms(self) -> int:
        return self.sim.sim.clock.now_ms()


def _closed(events, exchange):
    return [e for e in events if isinstance(e, LiveCandle) and e.exchange == exchange and e.closed]


async def test_first_partial_candle_is_completed_over_rest(live_sim):
    sim = live_sim(speed=SPEED)

    def candles_for(exchange: str, symbol: str) -> CandleBuilder:
        venue = get_venue(exchange)
        return CandleBuilder(
            exchange, symbol, timeframes=("1m",), empty=venue.empty_candle,
            counts_trades=venue.candle_trade_counts, close_delay_ms=10_000, completion_wait_ms=600_000,
        )  # fmt: skip

    rec = Recorder()
    opts = FeedOptions(exchange_candles=False, snapshot_rate_per_s=20)
    async with LiveFeeds(
        settings_for(sim), rec, symbols=("btc",), options=opts, clock=SimClock(sim), candles_for=candles_for
    ) as feeds:
        def enough(ex: str) -> bool:  # the completed first candle and one built from trades after it
            live = _closed(rec.others, ex)
            return len(live) >= 3 and any(x.source == "trades" for x in live[1:])

        for _ in range(400):  # a loaded host can make the clock close (and complete) a few more first
            await feeds.wait(0.1)
            if all(enough(ex) for ex in EXCHANGES):
                break
    async with httpx.AsyncClient(timeout=30) as c:
        for ex in EXCHANGES:
            live = _closed(rec.others, ex)
            assert len(live) >= 3, (ex, live)
            assert live[0].source == "exchange" and live[0].complete, live[0]
            # later candles are built from trades; one the clock had to close during a host stall
            # (feed silent past max_feed_lag at this clock speed) is completed from the exchange
            # instead, which is the designed behaviour, so only require trades-built ones to exist
            assert "trades" in {x.source for x in live[1:]} and all(x.complete for x in live)
            r = await c.get(
                f"{sim.control_url}/truth/candles",
                params={
                    "exchange": ex, "symbol": "btc", "interval": "1m",
                    "start": live[0].open_time, "end": live[-1].open_time,
                },
            )  # fmt: skip
            truth = r.json()["candles"]
            assert [t["open_time"] for t in truth] == [x.open_time for x in live]
            for x, t in zip(live, truth, strict=True):
                values = ("open", "high", "low", "close", "volume")
                assert (x.open, x.high, x.low, x.close, x.volume) == tuple(float(t[k]) for k in values), (
                    ex,
                    x,
                    t,
                )


async def test_candles_stay_exact_when_trades_are_lost(live_sim):
    """Malformed trade frames lose trades: Binance (aggTrades) and OKX (market/trades) replay them
    over REST, Bybit cannot even see which (no numbering: any lost frame counts);
    every closed 1m candle handed on is complete and equals the true candle (a candle that
    lost trades waits for the exchange's own over REST)."""
    sim = live_sim(speed=SPEED, faults={"all": {"ws_malformed_every": 15}})

    def candles_for(exchange: str, symbol: str) -> CandleBuilder:
        venue = get_venue(exchange)
        return CandleBuilder(
            exchange, symbol, timeframes=("1m",), empty=venue.empty_candle,
            counts_trades=venue.candle_trade_counts, close_delay_ms=10_000, completion_wait_ms=600_000,
        )  # fmt: skip

    rec = Recorder()
    exchanges = EXCHANGES
    opts = FeedOptions(exchange_candles=False, snapshot_rate_per_s=20, trade_settle_s=1.0)
    async with LiveFeeds(
        settings_for(sim), rec, exchanges=exchanges, symbols=("btc",), options=opts, clock=SimClock(sim),
        candles_for=candles_for,
    ) as feeds:  # fmt: skip
        for _ in range(250):
            await feeds.wait(0.1)
            if all(len(_closed(rec.others, ex)) >= 5 for ex in exchanges):
                break
        stats = feeds.stats()
    assert stats["binance"]["trades_replayed"] >= 1 and stats["okx"]["trades_replayed"] >= 1, stats
    async with httpx.AsyncClient(timeout=30) as c:
        for ex in exchanges:
            live = _closed(rec.others, ex)
            assert len(live) >= 5 and all(x.complete for x in live), (ex, live)
            r = await c.get(
                f"{sim.control_url}/truth/candles",
                params={
                    "exchange": ex, "symbol": "btc", "interval": "1m",
                    "start": live[0].open_time, "end": live[-1].open_time,
                },
            )  # fmt: skip
            truth = r.json()["candles"]
            assert [t["open_time"] for t in truth] == [x.open_time for x in live]
            for x, t in zip(live, truth, strict=True):
                values = ("open", "high", "low", "close", "volume")
                assert (x.open, x.high, x.low, x.close, x.volume) == tuple(float(t[k]) for k in values), (
                    ex,
                    x,
                    t,
                )
