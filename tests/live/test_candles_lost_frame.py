"""A frame lost on the connection that carries a symbol's trades (a truncated frame, a dropped
connection) may have held trades. Until the next trade shows what was lost, no live candle over
that time may be handed on as complete from the trades seen: on OKX (numbered trades) the hole
only shows when the next trade arrives, and the book updates on the same connection keep the
candle clock going meanwhile.

Found by the full chaos run (seed 11): an OKX ETH 1m candle published ``complete: true`` with
its last trades missing (close 6033.59 instead of 6032.2, volume 19.05 instead of 28.49).

Driven through the transport seam with OKX frames in the recorded format
(../shared/fixtures/exchanges/okx/spot_ws_trades_BTC-USDT_2025-02-24.jsonl) and a manual clock.
"""

from __future__ import annotations

import asyncio

import orjson
from feedutil import AsyncReplay

from p9cli.exchanges.venue import get_venue
from p9cli.live import ExchangeFeed, FeedOptions
from p9cli.live.candles import CandleBuilder, CompletionWanted, LiveCandle
from p9cli.live.clock import ManualClock

M = 1_767_616_560_000  # a minute boundary (2026-01-05 12:36 UTC)
ONE = M - 60_000  # the minute whose last trade is lost


def trade(trade_id: int, ts: int, px: str, sz: str = "0.5") -> bytes:
    item = {"instId": "BTC-USDT", "tradeId": str(trade_id), "px": px, "sz": sz, "side": "buy", "ts": str(ts)}
    item["count"] = "1"
    return orjson.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [item]})


def book(action: str, seq: int, prev: int, ts: int, bid: str) -> bytes:
    item = {"asks": [["101", "1", "0", "1"]], "bids": [[bid, "1", "0", "1"]], "ts": str(ts)}
    item.update({"checksum": 0, "prevSeqId": prev, "seqId": seq})
    return orjson.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action, "data": [item]})


async def run_story(lose: bool) -> list:
    """Trades 99 (previous minute), 100, 101 (minute ONE), 102 (next minute); 101's frame is
    truncated when ``lose``; book updates move the exchange clock past ONE's end before 102."""
    clock = ManualClock(wall_ms=M - 62_000)
    connected = []

    async def frames():
        yield book("snapshot", 10, -1, M - 62_000, "100")
        yield trade(99, M - 61_000, "100.1")
        clock.advance(31.0)  # M - 31 s
        yield trade(100, M - 30_000, "100.2")
        clock.advance(28.0)  # M - 3 s
        t101 = trade(101, M - 2_000, "100.9", "2.0")
        yield t101[:40] if lose else t101
        clock.advance(4.6)  # M + 1.6 s: the book says the exchange is past the minute's end
        yield book("update", 11, 10, M + 1_500, "100")
        await asyncio.sleep(0.8)  # the candle clock ticks (every 0.25 s)
        clock.advance(1.0)
        yield trade(102, M + 2_500, "100.3")
        await asyncio.sleep(0.8)

    async def connector(url: str):
        connected.append(url)
        if len(connected) > 1:
            await asyncio.sleep(10)  # no second connection during the test
        return AsyncReplay(frames())

    builder = CandleBuilder("okx", "btc", seed={"1m": M - 180_000}, last_close=100.0, timeframes=("1m",))
    builder.start(M - 120_000)
    out = []
    feed = ExchangeFeed(
        get_venue("okx"),
        "ws://replay",
        ("btc",),
        out.append,
        options=FeedOptions(exchange_candles=False, complete_candles=False),
        connector=connector,
        clock=clock,
        candles={"btc": builder},
    )
    task = asyncio.ensure_future(feed.run())
    await asyncio.sleep(2.4)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return [e for e in out if type(e) in (LiveCandle, CompletionWanted)]


def closed_one(events) -> list:
    return [e for e in events if type(e) is LiveCandle and e.closed and int(e.candle.open_time[0]) == ONE]


async def test_a_candle_whose_last_trade_frame_was_lost_is_not_handed_on_as_complete():
    events = await run_story(lose=True)
    assert not closed_one(events), closed_one(events)  # waits for the exchange's candle instead
    wanted = [(e.timeframe, e.open_time) for e in events if type(e) is CompletionWanted]
    assert ("1m", ONE) in wanted, events


async def test_without_a_lost_frame_the_candle_is_complete_from_the_trades():
    events = await run_story(lose=False)
    (one,) = closed_one(events)
    c = one.candle
    assert one.complete and (c.open[0], c.high[0], c.low[0], c.close[0]) == (100.2, 100.9, 100.2, 100.9)
    assert c.volume[0] == 2.5
    assert not [e for e in events if type(e) is CompletionWanted and e.open_time == ONE]
