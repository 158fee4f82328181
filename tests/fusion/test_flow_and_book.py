"""Trade-flow windows and book figures on hand-worked cases."""

import math

import pytest

from p9cli.fusion.bookstats import book_figures
from p9cli.fusion.flow import SECONDS_PER_YEAR, TradeFlow

T0 = 1_700_000_000_000  # a whole second


def test_windows_count_complete_seconds_only():
    f = TradeFlow()
    # 2 trades in second 0, 1 in second 5, 3 in second 9, 1 in the (incomplete) second 10
    f.add(T0 + 10, 100.0, 1.0, True)
    f.add(T0 + 900, 102.0, 1.0, False)
    f.add(T0 + 5_000, 101.0, 2.0, True)
    for ms in (9_000, 9_100, 9_999):
        f.add(T0 + ms, 103.0, 0.5, False)
    f.add(T0 + 10_001, 104.0, 4.0, True)
    s = f.snapshot(T0 + 10_500)
    assert s["trades_per_s_1s"] == 3  # second 9
    assert s["trades_per_s_10s"] == pytest.approx(6 / 10)  # seconds 0..9
    assert s["trades_per_s_60s"] == pytest.approx(6 / 60)
    assert s["buy_volume_60s"] == pytest.approx(3.0)
    assert s["sell_volume_60s"] == pytest.approx(2.5)
    assert s["delta_60s"] == pytest.approx(0.5)
    assert s["vwap_60s"] == pytest.approx((100 + 102 + 2 * 101 + 1.5 * 103) / 5.5)
    assert s["cvd"] == pytest.approx(3.0 - 2.5 + 4.0)  # cumulative includes the newest trade
    assert s["last_price"] == 104.0
    assert s["trades"] == 7
    # a quiet market: 2 minutes later nothing is in the windows any more
    q = f.snapshot(T0 + 130_000)
    assert q["trades_per_s_60s"] == 0 and q["vwap_60s"] is None and q["buy_share_60s"] is None


def test_old_buckets_are_dropped_memory_bounded():
    f = TradeFlow()
    for s in range(5_000):
        f.add(T0 + s * 1000, 100.0, 1.0, s % 2 == 0)
    assert len(f.buckets) <= 331


def test_realized_vol_of_alternating_prices():
    f = TradeFlow()
    # price alternates 100, 101 every second for 120 s: |r| = ln(1.01) each second
    for s in range(120):
        f.add(T0 + s * 1000, 100.0 if s % 2 == 0 else 101.0, 1.0, True)
    vol = f.snapshot(T0 + 120_000)["realized_vol_300s_pct"]
    r = math.log(101 / 100)
    assert vol == pytest.approx(100 * math.sqrt(r * r * SECONDS_PER_YEAR), rel=1e-9)
    # too short a history gives None, not a number from two prints
    g = TradeFlow()
    g.add(T0, 100.0, 1.0, True)
    g.add(T0 + 1000, 101.0, 1.0, True)
    assert g.snapshot(T0 + 2000)["realized_vol_300s_pct"] is None


def test_book_figures():
    bids = [["99.9", "2"], ["99.85", "1"], ["99.0", "10"]]
    asks = [["100.1", "1"], ["100.2", "3"], ["101.5", "7"]]
    f = book_figures(bids, asks, 42)
    assert f["bid"] == 99.9 and f["ask"] == 100.1 and f["update_id"] == 42
    assert f["mid"] == pytest.approx(100.0)
    assert f["spread_bps"] == pytest.approx(0.2 / 100.0 * 10_000)
    d01 = f["depth"]["0_1pct"]  # 99.9 .. 100.1
    assert d01["bid_size"] == 2 and d01["ask_size"] == 1 and d01["complete"]
    assert d01["imbalance"] == pytest.approx(1 / 3)
    d1 = f["depth"]["1pct"]  # 99.0 .. 101.0: bids all three (none beyond: incomplete), asks two
    assert d1["bid_size"] == 13 and d1["ask_size"] == 4
    assert d1["complete"] is False
    assert d1["bid_quote"] == pytest.approx(99.9 * 2 + 99.85 + 990)
    assert f["imbalance_top"] == pytest.approx(1 / 3)
    assert book_figures([], asks, 1) is None


def test_take_range_resets():
    f = TradeFlow()
    assert f.take_range() is None
    for p in (101.0, 99.0, 100.0):
        f.add(T0, p, 1.0, True)
    assert f.take_range() == (99.0, 101.0)
    assert f.take_range() is None
