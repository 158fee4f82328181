"""Live-candle builder (p9cli/live/candles.py): hand-built cases, one rule each."""

from __future__ import annotations

import logging

import pytest

from p9cli.candles import Candles
from p9cli.exchanges.venue import ExchangeCandle
from p9cli.live.candles import (
    OMIT,
    CandleBuilder,
    CandleGap,
    CandleMismatch,
    CompletionWanted,
    LiveCandle,
)

M = 60_000
H = 60 * M
D = 24 * H
#: 2026-01-05 00:00:00 UTC
DAY0 = 1_767_571_200_000
T0 = DAY0 + 12 * H  # 12:00 UTC
TIMEFRAMES3 = ("1m", "5m", "15m")


def closed(events, tf=None) -> list[LiveCandle]:
    return [e for e in events or [] if isinstance(e, LiveCandle) and (tf is None or e.timeframe == tf)]


def of(events, kind) -> list:
    return [e for e in events or [] if isinstance(e, kind)]


def builder(tfs=("1m", "5m"), last_open=T0 - M, last_close=100.0, **kw) -> CandleBuilder:
    """Seeded as if the stored history ended with the candle before ``T0`` on every tf."""
    seed = {tf: T0 - {"1m": M, "3m": 3 * M, "5m": 5 * M, "15m": 15 * M}[tf] for tf in tfs}
    return CandleBuilder("binance", "btc", seed=seed, last_close=last_close, timeframes=tfs, **kw)


def xc(tf, open_time, o, h, lo, c, v, closed=True) -> ExchangeCandle:
    return ExchangeCandle("binance", "btc", tf, open_time, o, h, lo, c, v, closed)


def clock(now: int) -> tuple[int, int]:
    """``on_clock`` arguments of a feed that is up to date: estimated now and newest seen."""
    return now, now


def feed(b: CandleBuilder, trades) -> list:
    out = []
    for t in trades:
        out += b.on_trade(*t) or []
    return out


def test_a_trade_exactly_on_a_boundary_opens_the_next_candle():
    b = builder()
    assert b.start(T0) == []
    ev = feed(b, [(T0, 100.0, 1.0), (T0 + M - 1, 101.0, 1.0), (T0 + M, 102.0, 2.0)])
    [c] = closed(ev)
    assert (c.timeframe, c.open_time, c.open, c.high, c.low, c.close, c.volume, c.trades) == (
        "1m",
        T0,
        100.0,
        101.0,
        100.0,
        101.0,
        2.0,
        2,
    )
    assert c.closed and c.complete and c.source == "trades"
    f = b.forming("1m")
    assert (f.open_time, f.open, f.close, f.volume, f.closed) == (T0 + M, 102.0, 102.0, 2.0, False)


def test_candle_closes_on_the_clock_without_a_further_trade():
    b = builder(close_delay_ms=500)
    b.start(T0)
    feed(b, [(T0 + 10, 100.0, 1.0), (T0 + 20_000, 99.5, 0.5)])
    assert b.on_clock(*clock(T0 + M + 499)) == []
    [c] = closed(b.on_clock(*clock(T0 + M + 500)))
    assert (c.open_time, c.open, c.high, c.low, c.close, c.volume) == (T0, 100.0, 100.0, 99.5, 99.5, 1.5)
    # a trade of the closed minute arriving afterwards is late: counted, not applied
    assert b.on_trade(T0 + 59_999, 98.0, 1.0) is None
    assert b.stats["late_trades"] == 1
    # the next 4 minutes pass without a trade: the 5m candle closes on the clock too
    ev = b.on_clock(*clock(T0 + 5 * M + 500))
    assert [c.open_time for c in closed(ev, "1m")] == [T0 + M * k for k in range(1, 5)]
    [five] = closed(ev, "5m")
    assert (five.open_time, five.open, five.high, five.low, five.close, five.volume) == (
        T0,
        100.0,
        100.0,
        99.5,
        99.5,
        1.5,
    )


def test_a_lagging_feed_does_not_close_a_candle_early_a_silent_one_closes_incomplete():
    b = builder(close_delay_ms=1000, max_feed_lag_ms=5000)
    b.start(T0)
    feed(b, [(T0 + 10, 100.0, 1.0), (T0 + 59_000, 101.0, 1.0)])
    # the estimated clock is past the end, but the feed has delivered only up to T0+59.5s
    assert b.on_clock(T0 + M + 2000, T0 + 59_500) == []
    assert b.on_trade(T0 + 59_900, 102.0, 1.0) is None  # the queued last trade still counts
    [c] = closed(b.on_clock(T0 + M + 2000, T0 + M + 1000))
    assert (c.close, c.volume) == (102.0, 3.0)
    # a quiet symbol on a live connection: the feed's newest time says the minute is over
    [c] = closed(b.on_clock(T0 + 2 * M + 1000, T0 + 2 * M + 1000))
    assert (c.open_time, c.volume, c.close, c.complete) == (T0 + M, 0.0, 102.0, True)
    # nothing at all is delivered (a dead connection): the estimated clock alone closes the
    # next candle once the feed has been silent for max_feed_lag_ms, but as incomplete
    assert b.on_clock(T0 + 3 * M + 5999) == []
    [want] = of(b.on_clock(T0 + 3 * M + 6000), CompletionWanted)
    assert want.open_time == T0 + 2 * M


def test_empty_minutes_follow_previous_close_rule():
    """Binance/OKX (and, assumed, Bybit) REST: a bar without trades is O=H=L=C=previous close,
    volume 0, 0 trades. A higher bar is the aggregate of its TRADES: an empty first minute does
    not make the previous close its open or extend its range."""
    b = builder()
    b.start(T0)
    ev = feed(b, [(T0 + 1, 100.0, 1.0), (T0 + 2 * M + 5, 103.0, 0.5), (T0 + 5 * M, 90.0, 1.0)])
    ones = closed(ev, "1m")
    assert [(c.open_time, c.open, c.high, c.low, c.close, c.volume, c.trades) for c in ones] == [
        (T0, 100.0, 100.0, 100.0, 100.0, 1.0, 1),
        (T0 + M, 100.0, 100.0, 100.0, 100.0, 0.0, 0),
        (T0 + 2 * M, 103.0, 103.0, 103.0, 103.0, 0.5, 1),
        (T0 + 3 * M, 103.0, 103.0, 103.0, 103.0, 0.0, 0),
        (T0 + 4 * M, 103.0, 103.0, 103.0, 103.0, 0.0, 0),
    ]
    [five] = closed(ev, "5m")
    assert (five.open, five.high, five.low, five.close, five.volume, five.trades) == (
        100.0,
        103.0,
        100.0,
        103.0,
        1.5,
        2,
    )
    # a 5m bar whose first minutes are empty opens at its first trade, not at the previous close
    ev = feed(b, [(T0 + 8 * M, 95.0, 1.0), (T0 + 10 * M, 96.0, 1.0)])
    [five] = closed(ev, "5m")
    assert (five.open_time, five.open, five.high, five.low, five.close) == (
        T0 + 5 * M,
        90.0,
        95.0,
        90.0,
        95.0,
    )
    # a bar with no trade at all: previous close, volume 0, on every timeframe
    ev = b.on_clock(*clock(T0 + 20 * M + 1000))
    [empty5] = [c for c in closed(ev, "5m") if c.open_time == T0 + 15 * M]
    assert (empty5.open, empty5.high, empty5.low, empty5.close, empty5.volume, empty5.quote_volume) == (
        96.0,
        96.0,
        96.0,
        96.0,
        0.0,
        0.0,
    )


def test_empty_minutes_omitted_where_the_exchange_omits_them():
    b = builder(empty=OMIT)
    b.start(T0)
    ev = feed(b, [(T0 + 1, 100.0, 1.0), (T0 + 3 * M + 5, 101.0, 1.0)])
    assert [c.open_time for c in closed(ev, "1m")] == [T0]
    ev = b.on_clock(*clock(T0 + 10 * M + 1000))
    assert [c.open_time for c in closed(ev, "1m")] == [T0 + 3 * M]
    assert [c.open_time for c in closed(ev, "5m")] == [T0]  # the empty 5m bar T0+5m is omitted too


def test_trade_counts_are_left_out_where_the_exchange_stores_none():
    b = builder(counts_trades=False)
    b.start(T0)
    [c] = closed(feed(b, [(T0 + 1, 100.0, 1.0), (T0 + M, 101.0, 1.0)]))
    assert c.trades is None


def test_aggregated_prints_count_their_trades():
    b = builder()
    b.start(T0)
    [c] = closed(feed(b, [(T0 + 1, 100.0, 1.0, 3), (T0 + 2, 100.0, 1.0, 2), (T0 + M, 101.0, 1.0)]))
    assert c.trades == 5


def test_volumes_are_exact_decimal_sums():
    b = builder(price_decimals=2, size_decimals=8)
    b.start(T0)
    prices = (0.10, 0.11, 0.12)
    trades = [(T0 + 1 + i, prices[i % 3], 0.1, 1) for i in range(10)]
    naive_volume = sum(t[2] for t in trades)
    assert naive_volume != 1.0  # float addition drifts ...
    [c] = closed(feed(b, [*trades, (T0 + M, 1.0, 1.0)]))
    assert c.volume == 1.0  # ... the builder's integer sum does not
    assert sum(p * q for _, p, q, _ in trades) != 0.109
    assert c.quote_volume == 0.109  # 0.1 * (4 * 0.10 + 3 * 0.11 + 3 * 0.12), exactly


def test_out_of_order_trades_keep_open_and_close_by_time():
    b = builder()
    b.start(T0)
    ev = feed(b, [(T0 + 30, 100.0, 1.0), (T0 + 40, 101.0, 1.0), (T0 + 10, 99.0, 1.0), (T0 + 35, 105.0, 1.0)])
    ev += b.on_clock(*clock(T0 + M + 1000))
    [c] = closed(ev, "1m")
    assert (c.open, c.high, c.low, c.close) == (99.0, 105.0, 99.0, 101.0)


def test_utc_alignment_of_6h_12h_1d_as_stored():
    """OKX 6Hutc/12Hutc/1Dutc (and Binance, Bybit): bars open on UTC boundaries, the stored
    convention. A trade at 23:59:59.999 belongs to the old day, one at 00:00 to the new."""
    tfs = ("1m", "6h", "12h", "1d")
    seed = {"1m": DAY0 - M, "6h": DAY0 - 6 * H, "12h": DAY0 - 12 * H, "1d": DAY0 - D}
    b = CandleBuilder("okx", "btc", seed=seed, last_close=50.0, timeframes=tfs, counts_trades=False)
    b.start(DAY0)
    ev = feed(b, [(DAY0 + 1, 50.0, 1.0), (DAY0 + 6 * H - 1, 51.0, 1.0), (DAY0 + 6 * H, 52.0, 1.0)])
    assert [(c.open_time, c.close) for c in closed(ev, "6h")] == [(DAY0, 51.0)]
    ev = feed(b, [(DAY0 + D - 1, 53.0, 1.0), (DAY0 + D, 54.0, 1.0)])
    assert [(c.open_time - DAY0) // H for c in closed(ev, "6h")] == [6, 12, 18]
    assert [((c.open_time - DAY0) // H, c.open, c.close) for c in closed(ev, "12h")] == [
        (0, 50.0, 52.0), (12, 53.0, 53.0)]  # fmt: skip
    [day] = closed(ev, "1d")
    assert (day.open_time, day.open, day.high, day.low, day.close, day.volume) == (
        DAY0,
        50.0,
        53.0,
        50.0,
        53.0,
        4.0,
    )
    assert b.forming("1d").open_time == DAY0 + D


def test_alignment_follows_the_stored_series_even_off_utc():
    """A series stored on Hong Kong boundaries (OKX plain 1D opens 16:00 UTC) is continued on
    those boundaries: the builder never re-aligns stored data."""
    hk_day = DAY0 - 8 * H  # 16:00 UTC of the previous day
    b = CandleBuilder("okx", "btc", seed={"1m": DAY0 - M, "1d": hk_day - D}, timeframes=("1m", "1d"))
    b.start(hk_day)
    ev = feed(b, [(hk_day + 5, 10.0, 1.0), (hk_day + D - 1, 11.0, 1.0), (hk_day + D, 12.0, 1.0)])
    [day] = closed(ev, "1d")
    assert (day.open_time, day.open, day.close, day.complete) == (hk_day, 10.0, 11.0, True)


def test_stored_history_is_continued_without_gap_or_overlap():
    # stored 1m up to T0-1m, 5m up to T0-5m; the feed starts exactly at T0
    b = builder()
    assert b.start(T0) == []
    ev = feed(b, [(T0 + k * 7_000, 100.0 + k, 1.0) for k in range(0, 90)])
    ev += b.on_clock(*clock(T0 + 11 * M + 1000))
    assert [c.open_time for c in closed(ev, "1m")] == [T0 + k * M for k in range(11)]
    assert [c.open_time for c in closed(ev, "5m")] == [T0, T0 + 5 * M]
    assert all(c.complete for c in closed(ev))
    # stored history AHEAD of the feed (the last stored 1m is T0+1m): nothing is emitted twice
    b = CandleBuilder("binance", "btc", seed={"1m": T0 + M, "5m": T0 - 5 * M}, timeframes=("1m", "5m"))
    assert b.start(T0) == []
    ev = feed(b, [(T0 + k * 7_000, 100.0, 1.0) for k in range(0, 40)]) + b.on_clock(*clock(T0 + 5 * M + 1000))
    assert [c.open_time for c in closed(ev, "1m")] == [T0 + 2 * M, T0 + 3 * M, T0 + 4 * M]
    [five] = closed(ev, "5m")
    assert five.volume == 40.0  # the 5m bar still gets every minute


def test_continuing_a_stored_history():
    one = Candles.from_arrays([T0 - 2 * M, T0 - M], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.5, 2.5], [1, 1])
    five = Candles.from_arrays([T0 - 5 * M], [1.0], [3.0], [0.5], [2.0], [9.0])
    b = CandleBuilder.continuing("binance", "btc", {"1m": one, "5m": five, "15m": None}, timeframes=TIMEFRAMES3)
    assert b.start(T0) == []
    ev = b.on_clock(*clock(T0 + 15 * M + 1000))  # no trade at all: filled with the last stored close
    assert [c.open_time for c in closed(ev, "1m")][:2] == [T0, T0 + M]
    assert {c.close for c in closed(ev)} == {2.5}
    assert [c.open_time for c in closed(ev, "5m")] == [T0, T0 + 5 * M, T0 + 10 * M]
    # 15m had no stored series: it starts at the feed's first interval (here complete)
    assert [(c.open_time, c.complete) for c in closed(ev, "15m")] == [(T0, True)]


def test_stored_history_too_old_is_reported_as_a_gap():
    b = builder(tfs=("1m", "15m"))
    ev = b.start(T0 + 47 * M + 5_000)  # stored 1m ends at T0-1m, the feed starts at T0+47m
    assert [(g.timeframe, g.first_open, g.last_open) for g in of(ev, CandleGap)] == [
        ("1m", T0, T0 + 46 * M), ("15m", T0, T0 + 30 * M)]  # fmt: skip


def test_first_partial_candle_is_completed_from_the_exchange_candle():
    b = builder(tfs=("1m", "5m"))
    b.start(T0 + 2 * M + 30_000)  # p9 starts mid-minute, mid-5m: both first candles are partial
    assert not b.forming("1m").complete and not b.forming("5m").complete
    ev = feed(b, [(T0 + 2 * M + 31_000, 100.0, 1.0), (T0 + 3 * M + 1, 101.0, 1.0)])
    assert [(w.timeframe, w.open_time) for w in of(ev, CompletionWanted)] == [("1m", T0 + 2 * M)]
    assert closed(ev) == []  # held until completed
    # a stream bar without quote volume cannot replace ours (it would leave a hole in it)
    assert b.on_exchange_candle(xc("1m", T0 + 2 * M, 99.0, 100.5, 98.0, 100.0, 7.5)) == []
    assert b.stats["exchange_unusable"] == 1
    # the exchange's own closed candle over REST (p9cli.candles.Candles): it is handed on
    rest = Candles.from_arrays([T0 + 2 * M], [99.0], [100.5], [98.0], [100.0], [7.5], [750.25], [42])
    [c] = closed(b.on_rest_candles("1m", rest))
    got = (c.open_time, c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades)
    assert got == (T0 + 2 * M, 99.0, 100.5, 98.0, 100.0, 7.5, 750.25, 42)
    assert (c.complete, c.source) == (True, "exchange")
    assert b.stats["completed"] == 1
    # the next minutes are complete, built from trades (each timeframe has its own queue)
    ev = b.on_clock(*clock(T0 + 5 * M + 1000))
    assert [(c.open_time, c.complete, c.source) for c in closed(ev, "1m")] == [
        (T0 + 3 * M, True, "trades"), (T0 + 4 * M, True, "trades")]  # fmt: skip
    [want] = of(ev, CompletionWanted)
    assert (want.timeframe, want.open_time) == ("5m", T0)


def test_partial_candle_is_flagged_when_the_exchange_candle_never_comes(caplog):
    b = builder(tfs=("1m",), completion_wait_ms=90_000, close_delay_ms=1000)
    b.start(T0 + 30_000)
    ev = feed(b, [(T0 + 31_000, 100.0, 1.0), (T0 + M + 5, 101.0, 1.0), (T0 + 2 * M + 5, 102.0, 1.0)])
    # the complete T0+1m candle waits behind the held partial one: order is kept
    assert closed(ev) == [] and len(of(ev, CompletionWanted)) == 1
    assert b.on_clock(*clock(T0 + M + 90_999)) == []
    with caplog.at_level(logging.WARNING, logger="p9cli.live.candles"):
        ev = b.on_clock(*clock(T0 + M + 91_000))
    assert [(c.open_time, c.complete) for c in closed(ev)] == [(T0, False), (T0 + M, True)]
    assert b.stats["incomplete"] == 1
    assert "handed on incomplete" in caplog.text


def test_a_feed_gap_makes_the_candles_it_touches_incomplete():
    b = builder()
    b.start(T0)
    feed(b, [(T0 + 1, 100.0, 1.0), (T0 + M + 1, 100.0, 1.0)])
    b.mark_incomplete(T0 + M + 10_000, T0 + M + 20_000)  # reconnect: trades lost, no replay
    ev = feed(b, [(T0 + 2 * M + 1, 100.0, 1.0)])
    assert [(w.timeframe, w.open_time) for w in of(ev, CompletionWanted)] == [("1m", T0 + M)]
    ev = b.on_clock(*clock(T0 + 5 * M + 1000))
    assert [w.timeframe for w in of(ev, CompletionWanted)] == ["5m"]


def test_cross_check_counts_a_disagreement():
    b = builder()
    b.start(T0)
    feed(b, [(T0 + 1, 100.0, 0.5), (T0 + 2, 101.0, 0.25), (T0 + M, 102.0, 1.0)])
    # equal: volume compared to the exchange's decimals
    assert b.on_exchange_candle(xc("1m", T0, 100.0, 101.0, 100.0, 101.0, 0.750000001)) == []
    assert (b.stats["checked"], b.stats["mismatches"]) == (1, 0)
    # a forming exchange bar is not compared
    assert b.on_exchange_candle(xc("1m", T0 + M, 1.0, 1.0, 1.0, 1.0, 1.0, closed=False)) == []
    # the exchange's closed bar arrives BEFORE ours closed (our clock lags): checked at our close
    assert b.on_exchange_candle(xc("1m", T0 + M, 102.0, 103.0, 102.0, 102.0, 1.0)) == []
    ev = b.on_clock(*clock(T0 + 2 * M + 1000))
    [mm] = of(ev, CandleMismatch)
    assert (mm.timeframe, mm.open_time, mm.fields) == ("1m", T0 + M, ("high",))
    assert closed(ev, "1m")[0].high == 102.0  # ours is kept: it is what the trades say
    ev = b.on_exchange_candle(xc("1m", T0, 100.0, 101.0, 100.0, 101.0, 0.76))
    assert of(ev, CandleMismatch)[0].fields == ("volume",)
    assert b.stats["mismatches"] == 2 and b.mismatches["1m"] == 2 and b.stats["checked"] == 3
    # the trade count is compared where both sides have one (Binance kline n)
    ev = b.on_clock(*clock(T0 + 3 * M + 1000))
    [c] = closed(ev, "1m")
    assert c.trades == 0
    x = Candles.from_arrays([T0 + 2 * M], [102.0], [102.0], [102.0], [102.0], [0.0], [0.0], [1])
    assert of(b.on_rest_candles("1m", x), CandleMismatch)[0].fields == ("trades",)


def test_forming_candles_of_all_timeframes():
    b = CandleBuilder("bybit", "eth", last_close=10.0, counts_trades=False)
    assert all(v is None for v in b.forming_all().values())  # not started
    b.start(DAY0 + 3 * H)
    feed(b, [(DAY0 + 3 * H + 10, 11.0, 2.0), (DAY0 + 3 * H + M + 10, 12.0, 1.0)])
    f = b.forming_all()
    assert set(f) == {"1d", "12h", "6h", "4h", "2h", "1h", "30m", "15m", "5m", "3m", "1m"}
    assert f["1m"].open_time == DAY0 + 3 * H + M and f["1m"].volume == 1.0
    assert (f["1d"].open_time, f["1d"].open, f["1d"].high, f["1d"].close, f["1d"].volume) == (
        DAY0,
        11.0,
        12.0,
        12.0,
        3.0,
    )
    assert not f["1d"].complete and f["1h"].complete  # the day began before the feed did
    assert f["4h"].open_time == DAY0


def test_a_trade_with_a_nonsense_timestamp_is_dropped():
    b = builder()
    b.start(T0)
    feed(b, [(T0 + 1, 100.0, 1.0)])
    assert b.on_trade(T0 + 365 * D, 1.0, 1.0) is None  # a year ahead: would close 500k minutes
    assert b.stats["bad_time_trades"] == 1
    [c] = closed(feed(b, [(T0 + M + 1, 101.0, 1.0)]))
    assert (c.open_time, c.close, c.volume) == (T0, 100.0, 1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        CandleBuilder("binance", "btc", empty="zero")
    with pytest.raises(ValueError, match="minute boundary"):
        CandleBuilder("binance", "btc", seed={"1h": T0 + 1})
    with pytest.raises(ValueError, match="unknown timeframe"):
        CandleBuilder("binance", "btc", seed={"2d": T0})
    with pytest.raises(ValueError, match="unknown timeframe"):
        CandleBuilder("binance", "btc", timeframes=("1m", "1w"))
