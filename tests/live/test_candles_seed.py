"""Forming higher-timeframe candles seeded from the stored 1m history (CandleBuilder.continuing).

The truth is a builder that saw every trade of the interval; the seeded builder sees only the
stored minutes (that builder's closed 1m candles, as fetch-history would have stored them) and
the trades from the live start on. Both must show the same forming candle at every step."""

from __future__ import annotations

import math

import pytest

from p9cli.candles import Candles
from p9cli.live.candles import CandleBuilder, LiveCandle

M = 60_000
H = 60 * M
T0 = 1_767_571_200_000 + 12 * H  # 2026-01-05 12:00 UTC
TFS = ("1m", "5m", "15m", "1h")
LEN = {"1m": M, "5m": 5 * M, "15m": 15 * M, "1h": H}


def trades(start: int, end: int):
    """Deterministic prints every 6.5 s with some empty minutes (no print in minute 7 and 8)."""
    out, t, k = [], start, 0
    while t < end:
        if not (T0 + 7 * M <= t < T0 + 9 * M):
            price = round(100.0 + 3 * math.sin(k / 5.0) + (k % 7) * 0.01, 2)
            out.append((t, price, round(0.001 + (k % 13) * 0.125, 3), 1 + k % 3))
        t += 6_500
        k += 1
    return out


def stored(before: int) -> dict[str, Candles]:
    """A stored history ending right before T0 on every timeframe."""
    return {tf: Candles.from_arrays([T0 - LEN[tf]], [99.0], [99.5], [98.5], [99.2], [1.0], [99.0], [10])
            for tf in TFS}  # fmt: skip


def full_truth(live_start: int):
    """The builder that saw every trade since T0, and its closed 1m candles before ``live_start``."""
    truth = CandleBuilder.continuing("binance", "btc", stored(T0), timeframes=TFS)
    truth.start(T0)
    minutes = []
    for tr in trades(T0, live_start):
        minutes += [e for e in truth.on_trade(*tr) or [] if isinstance(e, LiveCandle) and e.timeframe == "1m"]
    t = live_start + truth.close_delay_ms  # the clock closes the last stored minute
    minutes += [e for e in truth.on_clock(t, t) if isinstance(e, LiveCandle) and e.timeframe == "1m"]
    return truth, minutes


def values(c: LiveCandle | None):
    assert c is not None
    return (c.open_time, c.open, c.high, c.low, c.close, c.volume, c.trades)


@pytest.mark.parametrize("start_offset", [23 * M, 23 * M + 17_000])
def test_forming_higher_timeframes_include_the_stored_minutes(start_offset):
    live_start = T0 + start_offset
    mo = T0 + 23 * M
    truth, minutes = full_truth(mo)
    assert [c.open_time for c in minutes] == [T0 + k * M for k in range(23)]
    hist = stored(T0)
    one = hist["1m"]
    for c in minutes:
        one = one.merge(c.candle)
    hist["1m"] = one  # fetch-history stored every closed minute up to the live start
    seeded = CandleBuilder.continuing("binance", "btc", hist, timeframes=TFS)
    seeded.start(live_start)
    missed = [t for t in trades(mo, live_start)]  # prints of the start minute before the feed listened
    checked = 0
    for tr in trades(mo, T0 + 59 * M):
        truth.on_trade(*tr)
        if tr[0] < live_start:
            continue
        seeded.on_trade(*tr)
        for tf in ("5m", "15m", "1h"):
            s, t = seeded.forming(tf), truth.forming(tf)
            if missed and s.open_time <= mo:  # this bar lacks the missed prints: less volume, same open
                assert (s.open_time, s.open) == (t.open_time, t.open)
                assert s.volume == pytest.approx(t.volume - sum(m[2] for m in missed), abs=1e-9)
                continue
            assert values(s) == values(t), (tf, tr[0])
            assert s.quote_volume == pytest.approx(t.quote_volume, rel=1e-12)
            checked += 1
    assert checked > 100
    # the payload's plain rows say what forming() says
    rows = seeded.forming_rows()
    for tf in TFS:
        c = seeded.forming(tf)
        assert rows[tf] == (c.open_time, c.open, c.high, c.low, c.close, c.volume, c.complete), tf
    # the seeded bars still wait for the exchange's own candle (the start minute was partial)
    assert not seeded.forming("1h").complete
    # when they close without it, the seeded values are handed on (flagged incomplete)
    seeded.completion_wait_ms = truth.completion_wait_ms = 0
    end = T0 + 60 * M + 1000
    s1h = [c for c in seeded.on_clock(end, end) + seeded.on_clock(end + 1, end + 1)
           if isinstance(c, LiveCandle) and c.timeframe == "1h"]  # fmt: skip
    t1h = [c for c in truth.on_clock(end, end) if isinstance(c, LiveCandle) and c.timeframe == "1h"]
    assert [c.open_time for c in s1h] == [c.open_time for c in t1h] == [T0]
    assert not s1h[0].complete and t1h[0].complete
    if not missed:  # the feed listened from the minute's start: the values are the truth's
        assert values(s1h[0]) == values(t1h[0])
        assert s1h[0].quote_volume == pytest.approx(t1h[0].quote_volume, rel=1e-12)
    else:
        assert s1h[0].volume < t1h[0].volume and s1h[0].open == t1h[0].open


def test_no_seeding_when_the_stored_minutes_do_not_reach_the_live_start():
    mo = T0 + 23 * M
    _truth, minutes = full_truth(mo)
    hist = stored(T0)
    one = hist["1m"]
    for c in minutes[:-1]:  # the minute right before the live start is missing
        one = one.merge(c.candle)
    hist["1m"] = one
    b = CandleBuilder.continuing("binance", "btc", hist, timeframes=TFS)
    b.start(mo)
    first = trades(mo, mo + M)[0]
    b.on_trade(*first)
    # the 1h bar shows only what the feed saw (never a bar with a hole in the middle)
    assert (b.forming("1h").open, b.forming("1h").volume) == (first[1], first[2])
