"""Pure parts of the feed layer: trade de-duplication and gap accounting, back-off and pacing,
and one exchange feed driven through the transport seam with hand-built frames (no network):
a book that hits a gap is reported invalid at once and nothing is handed on until it is back."""

from __future__ import annotations

import asyncio
import random

import orjson
from feedutil import AsyncReplay

from p9cli.exchanges.venue import Trade, get_venue
from p9cli.live import BookState, ExchangeFeed, FeedEvent, FeedOptions
from p9cli.live.clock import ManualClock
from p9cli.live.pacing import Backoff, Pacer
from p9cli.live.trades import TradeTape
from p9cli.live.transport import ReplayConnector


def test_tape_admits_each_trade_once_and_counts_holes_that_never_fill():
    tape = TradeTape(settle_s=2.0)
    assert tape.admit("10", 10, 10, 0.0, 1000)
    assert not tape.admit("10", 10, 10, 0.1, 1000)  # the other connection's copy
    assert tape.admit("11", 11, 11, 0.2, 1001)
    assert tape.admit("15", 15, 15, 0.3, 1005)  # 12..14 missing
    assert tape.open_holes() == [(12, 14)]
    assert tape.admit("13", 13, 13, 0.4, 1003)  # a replay fills part of it, out of order
    assert not tape.admit("13", 13, 13, 0.5, 1003)
    assert tape.open_holes() == [(12, 12), (14, 14)]
    assert not tape.admit("9", 9, 9, 0.6, 999)  # older than everything, not in a hole: seen before
    assert tape.settle(1.0) == 0
    assert tape.settle(2.5) == 2 and tape.missing == 2 and tape.holes == []
    assert tape.duplicates == 3 and tape.accepted == 4


def test_tape_spans_and_renumbering():
    tape = TradeTape()
    assert tape.admit("103", 101, 103, 0, 5)  # OKX: tradeId 103 with count 3
    assert tape.admit("105", 104, 105, 0, 6)
    assert tape.holes == []
    # the exchange restarted and numbers from 1 again, at a newer time: not a duplicate
    assert tape.admit("1", 1, 1, 0, 100) and tape.renumbered == 1
    assert tape.admit("2", 2, 2, 0, 101)
    # no numbering (Bybit): by id, and an id reused at another time is another trade
    blind = TradeTape()
    assert blind.admit("a", None, None, 0, 1) and not blind.admit("a", None, None, 0, 1)
    assert blind.admit("a", None, None, 0, 2)


def test_tape_memory_is_bounded():
    tape = TradeTape(remember=100)
    for i in range(1000):
        tape.admit(str(i), i, i, 0, i)
    assert len(tape._ids) == 100 and len(tape._order) == 100
    assert not tape.admit("5", 5, 5, 0, 5)  # forgotten, but below the numbering: still refused


def test_backoff_is_capped_full_jitter():
    b = Backoff(0.5, 4.0, random.Random(1))
    delays = [b.next_delay() for _ in range(40)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(delays[:1]) <= 0.5 and max(delays[10:]) > 2.0  # grows, then stays under the cap
    assert len({round(d, 6) for d in delays}) == 40  # jittered: no two alike
    b.reset()
    assert b.next_delay() <= 0.5


def test_pacer_spaces_actions_evenly():
    clock = ManualClock()
    p = Pacer(4.0, clock)
    waits = [p.reserve() for _ in range(5)]
    assert waits == [0.0, 0.25, 0.5, 0.75, 1.0]
    clock.advance(10)
    assert p.reserve() == 0.0


def _bybit(kind: str, u: int, bids, asks, seq: int) -> bytes:
    data = {"s": "BTCUSDT", "b": bids, "a": asks, "u": u, "seq": seq}
    return orjson.dumps(
        {"topic": "orderbook.50.BTCUSDT", "ts": 1_767_616_500_000 + u, "type": kind, "data": data, "cts": 1}
    )


def _bybit_trade(i: str, t: int) -> bytes:
    item = {"i": i, "T": t, "p": "100.5", "v": "0.1", "S": "Buy", "s": "BTCUSDT", "BT": False}
    return orjson.dumps({"topic": "publicTrade.BTCUSDT", "ts": t, "type": "snapshot", "data": [item]})


async def test_gap_invalidates_at_once_and_nothing_is_handed_on_until_resynced():
    frames = [
        _bybit("snapshot", 100, [["100", "1"], ["99", "2"]], [["101", "1"], ["102", "3"]], 1000),
        _bybit("delta", 101, [["100", "5"]], [], 1001),
        _bybit("delta", 103, [["100", "7"]], [], 1003),  # u=102 missing: a gap
        _bybit("delta", 104, [["99", "0"]], [], 1004),  # nothing may come of this one
        _bybit_trade("7", 1_767_616_500_200),
        _bybit_trade("7", 1_767_616_500_200),  # the same trade again
        b'{"topic":"publicTrade.BTCUSDT","ts":1,"type":"snaps',  # truncated
        _bybit("snapshot", 200, [["100", "9"]], [["101", "2"]], 2000),  # the fresh snapshot
        _bybit("delta", 201, [], [["101", "4"]], 2001),
    ]
    connector = ReplayConnector(lambda url: iter(frames))
    out = []
    feed = ExchangeFeed(
        get_venue("bybit"),
        "ws://replay",
        ("btc",),
        out.append,
        options=FeedOptions(exchange_candles=False),
        connector=connector,
    )
    task = asyncio.ensure_future(feed.run())
    await asyncio.sleep(0.6)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    story = []
    for e in out:
        if type(e) is BookState:
            story.append(("book", e.update_id, e.bid, e.bid_size, e.ask, e.ask_size))
        elif type(e) is FeedEvent and e.kind in ("book_invalid", "book_synced", "malformed"):
            story.append((e.kind, e.cause))
        elif type(e) is Trade:
            story.append(("trade", e.trade_id))
    assert story == [
        ("book_synced", ""),
        ("book", 100, 100.0, 1.0, 101.0, 1.0),
        ("book", 101, 100.0, 5.0, 101.0, 1.0),
        ("book_invalid", "gap"),
        ("trade", "7"),
        ("malformed", story[5][1]),
        ("book_synced", ""),
        ("book", 200, 100.0, 9.0, 101.0, 2.0),
        ("book", 201, 100.0, 9.0, 101.0, 4.0),
    ]
    s = feed.snapshot()
    assert s["book_resyncs"] == {"gap": 1} and s["malformed"] == 1 and s["reconnects"] == 0
    assert s["trades"] == 1 and s["trades_duplicate"] == 1
    sent = connector.transports[0].sent
    assert any('"unsubscribe"' in m and "orderbook.50.BTCUSDT" in m for m in sent), sent  # resubscribed


def _okx_snapshot(seq: int, bid: str) -> bytes:
    item = {"asks": [["101", "1", "0", "1"]], "bids": [[bid, "1", "0", "1"]], "ts": "1767616500000"}
    item.update({"checksum": 0, "prevSeqId": -1, "seqId": seq})
    return orjson.dumps(
        {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "snapshot", "data": [item]}
    )


async def test_connection_lost_while_its_replacement_cannot_connect_is_reported_at_once():
    """OKX announces an upgrade (64008), the replacement cannot connect yet, then the old
    connection closes: its book is reported invalid right then, not when a replacement
    finally connects."""
    from p9cli.live.transport import ReplayTransport, TransportClosed

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    notice = (
        b'{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade."}'
    )
    calls = []

    async def connector(url: str):
        calls.append(loop.time() - t0)
        if len(calls) == 1:

            async def first():  # snapshot, the notice, then the old connection lives 0.3 s more
                yield _okx_snapshot(10, "100")
                yield notice
                await asyncio.sleep(0.3)

            return AsyncReplay(first())
        if loop.time() - t0 < 1.0:
            raise TransportClosed("connect failed: HTTP 503")
        return ReplayTransport([_okx_snapshot(20, "99")])

    out = []
    feed = ExchangeFeed(
        get_venue("okx"),
        "ws://replay",
        ("btc",),
        lambda e: out.append((loop.time() - t0, e)),
        options=FeedOptions(exchange_candles=False, backoff_base_s=0.05, backoff_cap_s=0.1),
        connector=connector,
    )
    task = asyncio.ensure_future(feed.run())
    await asyncio.sleep(1.6)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    story = [
        (t, e.kind, e.cause) if type(e) is FeedEvent else (t, "book", e.update_id)
        for t, e in out
        if type(e) is BookState or (type(e) is FeedEvent and e.kind != "state")
    ]
    kinds = [k for _, k, _ in story]
    invalid = next(t for t, k, c in story if k == "book_invalid" and c == "disconnect")
    synced_again = [t for t, k, _ in story if k == "book_synced"][1]
    assert invalid < 0.8 < synced_again, story  # at the old connection's end, long before the new one
    assert kinds.index("notice") < kinds.index("book_invalid") and ("book", 20) in [
        (k, c) for _, k, c in story
    ]
    assert sum(1 for k in kinds if k == "connect_failed") >= 1
    assert feed.stats.reconnects == 1 and feed.stats.switchovers == 0
