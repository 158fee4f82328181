"""Indicators against TA-Lib (an independent C implementation) on real recorded Binance candles,
simulator history and synthetic series, plus small hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import talib
from analysis_candles import KLINES_1D, KLINES_1H, recorded_klines, simulator_candles, synthetic_candles

from p9cli.analysis import indicators as ind

REL = 1e-9


def assert_matches(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Same warm-up (NaN positions) and every defined value within 1e-9 relative."""
    assert ours.shape == ref.shape, what
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"{what}: warm-up differs")
    defined = ~np.isnan(ref)
    assert defined.any(), f"{what}: nothing to compare"
    np.testing.assert_allclose(ours[defined], ref[defined], rtol=REL, atol=0, err_msg=what)


def compare_with_talib(c) -> int:
    h, lo, cl = c.high, c.low, c.close
    compared = 0
    for period in (20, 50, 200):
        if len(cl) > period:
            assert_matches(ind.ema(cl, period), talib.EMA(cl, timeperiod=period), f"EMA{period}")
            assert_matches(ind.sma(cl, period), talib.SMA(cl, timeperiod=period), f"SMA{period}")
            compared += 1
    assert_matches(ind.true_range(h, lo, cl), talib.TRANGE(h, lo, cl), "TRANGE")
    assert_matches(ind.atr(h, lo, cl, 14), talib.ATR(h, lo, cl, timeperiod=14), "ATR14")
    adx, pdi, mdi = ind.dmi(h, lo, cl, 14)
    assert_matches(adx, talib.ADX(h, lo, cl, timeperiod=14), "ADX14")
    assert_matches(pdi, talib.PLUS_DI(h, lo, cl, timeperiod=14), "+DI14")
    assert_matches(mdi, talib.MINUS_DI(h, lo, cl, timeperiod=14), "-DI14")
    return compared


@pytest.mark.parametrize("name", [KLINES_1H, KLINES_1D])
def test_matches_talib_on_recorded_binance_klines(name):
    c = recorded_klines(name)
    assert len(c) in (176, 366)
    assert compare_with_talib(c) >= 2  # EMA20 and EMA50 at least (EMA200 on the 366 daily rows)


@pytest.mark.parametrize(("symbol", "timeframe"), [("btc", "1h"), ("xrp", "1m"), ("eth", "6h")])
def test_matches_talib_on_simulator_history(symbol, timeframe):
    c = simulator_candles(symbol, timeframe, 1000)
    assert len(c) >= 900
    assert compare_with_talib(c) == 3


@pytest.mark.parametrize(("timeframe", "price", "tick"), [("1m", 0.6, 0.0001), ("4h", 60_000.0, 0.01)])
def test_matches_talib_on_long_synthetic_series(timeframe, price, tick):
    # 5000 candles: several blocks of the closed-form recurrence (block ~3000 for 13/14).
    c = synthetic_candles(timeframe, 5000, seed=3, start_price=price, tick=tick)
    assert compare_with_talib(c) == 3


def test_matches_talib_with_flat_stretches():
    # A market that stops moving: true range 0, DI undefined; ADX must hold its value as TA-Lib does.
    c = synthetic_candles("1m", 300, seed=5)
    h, lo, cl = c.high.copy(), c.low.copy(), c.close.copy()
    h[100:160] = lo[100:160] = cl[100:160] = cl[99]
    h[100] = max(h[100], cl[99])
    adx, pdi, mdi = ind.dmi(h, lo, cl, 14)
    ref = talib.ADX(h, lo, cl, timeperiod=14)
    np.testing.assert_allclose(adx[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=REL)
    assert_matches(ind.atr(h, lo, cl), talib.ATR(h, lo, cl), "ATR")


def test_linear_recurrence_equals_the_loop_across_blocks():
    rng = np.random.default_rng(7)
    x = rng.lognormal(0, 1, 4000)
    for a in (1 / 3, 13 / 14, 199 / 201, 0.999):
        y, expect = 5.0, []
        for v in x:
            y = a * y + (1 - a) * v
            expect.append(y)
        got = ind.linear_recurrence(x, a, 1 - a, 5.0)
        np.testing.assert_allclose(got, expect, rtol=1e-12)
    with pytest.raises(ValueError):
        ind.linear_recurrence(x, 1.0, 0.0, 0.0)


def test_degenerate_periods():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0])
    assert ind.ema(x, 1).tolist() == x.tolist() == talib.EMA(x, timeperiod=1).tolist()
    assert ind.wilder(x, 1).tolist() == x.tolist()
    assert ind.sma(x, 1).tolist() == x.tolist()
    for bad in (
        lambda: ind.ema(x, 0),
        lambda: ind.wilder(x, 0),
        lambda: ind.sma(x, 0),
        lambda: ind.dmi(x, x, x, 1),
    ):
        with pytest.raises(ValueError):
            bad()


def test_ema_hand_worked():
    # period 3: seed = (1+2+3)/3 = 2; k = 2/(3+1) = 0.5; next: 2 + (4-2)*0.5 = 3; 3 + (5-3)*0.5 = 4
    got = ind.ema([1.0, 2.0, 3.0, 4.0, 5.0], 3)
    assert np.isnan(got[:2]).all()
    assert got[2:].tolist() == [2.0, 3.0, 4.0]


def test_atr_hand_worked():
    high = [10.0, 12.0, 13.0, 12.0]
    low = [9.0, 10.0, 11.0, 8.0]
    close = [9.5, 11.0, 12.5, 9.0]
    # TR: bar1 max(12, 9.5) - min(10, 9.5) = 2.5; bar2 max(13, 11) - min(11, 11) = 2;
    #     bar3 max(12, 12.5) - min(8, 12.5) = 4.5
    tr = ind.true_range(high, low, close)
    assert math.isnan(tr[0]) and tr[1:].tolist() == [2.5, 2.0, 4.5]
    # ATR(2): first = (2.5 + 2)/2 = 2.25 at bar 2; bar 3: (2.25*1 + 4.5)/2 = 3.375
    a = ind.atr(high, low, close, 2)
    assert np.isnan(a[:2]).all() and a[2:].tolist() == [2.25, 3.375]


def test_directional_movement_rules():
    high = [10.0, 11.0, 11.5, 11.0, 12.0]
    low = [9.0, 9.5, 8.0, 9.0, 9.0]
    plus, minus = ind.directional_movement(high, low)
    # bar1: up 1, down -0.5 -> +DM 1; bar2: up 0.5, down 1.5 -> -DM 1.5;
    # bar3: up -0.5, down -1 -> none; bar4: up 1, down 0 -> +DM 1
    assert plus.tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert minus.tolist() == [0.0, 0.0, 1.5, 0.0, 0.0]


def test_short_series_are_all_undefined():
    c = synthetic_candles("1h", 20, seed=1)
    adx, pdi, mdi = ind.dmi(c.high, c.low, c.close, 14)
    assert np.isnan(adx).all()  # ADX needs 2*14 = 28 candles
    assert not np.isnan(pdi[14:]).any() and np.isnan(pdi[:14]).all()
    assert np.isnan(ind.ema(c.close, 50)).all()
    assert ind.last_finite(ind.ema(c.close, 50)) is None
    assert ind.last_finite(np.array([])) is None
