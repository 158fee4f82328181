"""Swing pivots (confirmed, never repainting), swing labels, break of structure, the trend label
and the multi-timeframe alignment."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_candles import KLINES_1H, recorded_klines, simulator_candles, synthetic_candles

from p9cli.analysis import trend
from p9cli.analysis.indicators import atr, ema
from p9cli.analysis.pivots import fractal_pivots
from p9cli.universe import TIMEFRAME_MS


def zigzag(
    points: list[float], bars_per_leg: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candles that walk linearly between the turning ``points``; returns (time, high, low, close).
    Each bar's high/low is its close +- 0.1, so pivots sit exactly on the turning points."""
    closes = []
    for a, b in zip(points[:-1], points[1:], strict=True):
        closes.extend(np.linspace(a, b, bars_per_leg, endpoint=False).tolist())
    closes.append(points[-1])
    c = np.array(closes)
    t = np.arange(len(c), dtype=np.int64) * 3_600_000
    return t, c + 0.1, c - 0.1, c


def test_pivots_are_found_at_planted_turning_points():
    t, h, lo, c = zigzag([100, 110, 104, 115, 108, 120, 112])
    hi_idx, lo_idx = fractal_pivots(h, lo, 3, 3)
    # turning points every 6 bars: highs at 6, 18, 30; lows at 12, 24 (36 is the last bar: unconfirmed)
    assert hi_idx.tolist() == [6, 18, 30]
    assert lo_idx.tolist() == [12, 24]
    assert h[hi_idx].tolist() == pytest.approx([110.1, 115.1, 120.1])


def test_equal_highs_give_one_pivot_the_first():
    high = np.array([1, 2, 3, 5, 5, 3, 2, 1, 0.5], dtype=float)
    low = high - 0.5
    hi_idx, _ = fractal_pivots(high, low, 2, 2)
    assert hi_idx.tolist() == [3]


def test_pivots_never_repaint():
    c = synthetic_candles("15m", 400, seed=4)
    full_hi, full_lo = fractal_pivots(c.high, c.low, 3, 3)
    for end in (50, 123, 250, 399):
        hi, lo = fractal_pivots(c.high[:end], c.low[:end], 3, 3)
        # every pivot known on a prefix is a pivot of the full series, and every pivot of the
        # full series that was confirmed inside the prefix is already known there
        assert set(hi.tolist()) == {i for i in full_hi.tolist() if i + 3 < end}
        assert set(lo.tolist()) == {i for i in full_lo.tolist() if i + 3 < end}


def test_uptrend_swings_are_higher_highs_and_higher_lows():
    t, h, lo, c = zigzag([100, 110, 104, 115, 108, 120, 112, 118])
    s = trend.swing_structure(t, h, lo, c, 3, 3)
    assert s["last_high"]["label"] == "HH" and s["last_low"]["label"] == "HL"
    assert s["bias"] == "bullish"
    # swings: high 110.1 (first), low 103.9 (first), 115.1 HH, 107.9 HL, 120.1 HH, 111.9 HL
    assert [r["label"] for r in s["recent"]] == ["HH", "HL", "HH", "HL"]
    assert [r["kind"] for r in s["recent"]] == ["high", "low", "high", "low"]
    assert [r["price"] for r in s["recent"]] == pytest.approx([115.1, 107.9, 120.1, 111.9])
    # the close crossed 110.1 (first high) on the way to 115, and 115.1 on the way to 120
    lb = s["last_break"]
    assert lb["direction"] == "up" and lb["kind"] == "bos"
    assert lb["level"] == pytest.approx(115.1)
    assert lb["pivot_time_ms"] == int(t[18])
    first_above = int(np.argmax(c[22:] > 115.1)) + 22
    assert lb["time_ms"] == int(t[first_above])
    assert lb["bars_ago"] == len(c) - 1 - first_above


def test_downtrend_and_change_of_character():
    t, h, lo, c = zigzag([120, 110, 116, 105, 111, 100, 118])
    s = trend.swing_structure(t, h, lo, c, 3, 3)
    assert s["last_high"]["label"] == "LH" and s["last_low"]["label"] == "LL"
    assert s["bias"] == "bearish"
    # the last leg rallies from 100 through the last lower high (111.1): a change of character
    lb = s["last_break"]
    assert lb["direction"] == "up" and lb["kind"] == "choch" and lb["level"] == pytest.approx(111.1)


def test_no_swings_on_a_short_series():
    t, h, lo, c = zigzag([100, 101], bars_per_leg=3)
    s = trend.swing_structure(t, h, lo, c)
    assert s["last_high"] is None and s["last_low"] is None and s["last_break"] is None
    assert s["recent"] == [] and s["bias"] == "mixed"


def test_ema_slope_in_atr_per_bar():
    e = np.array([100.0, 101, 102, 103, 104, 105, 106])
    # (106 - 101) / 5 bars / ATR 2 = 0.5 ATR per bar
    assert trend.ema_slope_atr(e, 2.0, 5) == 0.5
    assert trend.ema_slope_atr(e, None, 5) is None
    assert trend.ema_slope_atr(e[:5], 2.0, 5) is None


def test_trend_label_formula():
    emas = {20: 105.0, 50: 100.0, 200: 90.0}
    # stack = +1, slope = tanh(0.05/0.05) = 0.7616, swings = +1
    # d = 0.4 + 0.3*0.7616 + 0.3 = 0.92848; ADX 35 -> a = (35-15)/20 = 1; strength = d
    label, strength, d = trend.trend_label(110.0, emas, 0.05, "HH", "HL", 35.0)
    assert label == "up"
    assert d == pytest.approx(0.4 + 0.3 * math.tanh(1.0) + 0.3)
    assert strength == pytest.approx(d)
    # the mirror image is a down trend of the same strength
    mirror = {20: 95.0, 50: 100.0, 200: 110.0}
    label, strength2, d2 = trend.trend_label(90.0, mirror, -0.05, "LH", "LL", 35.0)
    assert label == "down" and d2 == pytest.approx(-d) and strength2 == pytest.approx(strength)
    # a mild lean with a weak ADX is a range: d = 0.4*(1/3) = 0.1333, ADX 12 -> a = 0
    # strength = (1 - 0.1333) * (1 - 0) = 0.8667
    label, strength, d = trend.trend_label(101.0, {20: 100.0, 50: None, 200: None}, None, None, None, 12.0)
    assert label == "range" and d == pytest.approx(0.4 / 3) and strength == pytest.approx(1 - 0.4 / 3)
    # d = 0.3 (above 0.25) but ADX 18 < 20: still a range
    label, *_ = trend.trend_label(100.0, {20: 100.0, 50: 100.0, 200: 100.0}, None, "HH", "HL", 18.0)
    assert label == "range"


def test_strong_synthetic_trends_are_labelled():
    n = 400
    rng = np.random.default_rng(3)
    base = 100 * np.exp(np.cumsum(0.004 + rng.normal(0, 0.002, n)))
    for sign, expected in ((1, "up"), (-1, "down")):
        c = base if sign > 0 else 100 * 100 / base
        o = np.concatenate(([c[0]], c[:-1]))
        h = np.maximum(o, c) * 1.001
        lo = np.minimum(o, c) * 0.999
        t = np.arange(n) * 3_600_000
        doc = trend.analyze_trend(t, h, lo, c)
        assert doc["label"] == expected
        assert doc["strength"] > 0.5
        assert (doc["ema"]["50"]["slope_atr"] > 0) == (sign > 0)


def test_section_on_recorded_candles_uses_talib_consistent_inputs():
    c = recorded_klines(KLINES_1H)
    doc = trend.analyze_trend(c.open_time, c.high, c.low, c.close)
    a = atr(c.high, c.low, c.close)[-1]
    e20 = ema(c.close, 20)
    assert doc["ema"]["20"]["value"] == e20[-1]
    assert doc["ema"]["20"]["slope_atr"] == pytest.approx((e20[-1] - e20[-6]) / 5 / a)
    assert doc["ema"]["20"]["distance_atr"] == pytest.approx((c.close[-1] - e20[-1]) / a)
    assert doc["ema"]["200"] == {"value": None, "slope_atr": None, "distance_atr": None}  # 176 candles
    assert 0 <= doc["adx"] <= 100 and doc["label"] in ("up", "down", "range")
    assert 0 <= doc["strength"] <= 1


def test_alignment_weights_and_score():
    assert trend.timeframe_weight(60_000) == 1.0
    assert trend.timeframe_weight(3_600_000) == pytest.approx(1 + math.log2(60))
    assert trend.timeframe_weight(86_400_000) == pytest.approx(1 + math.log2(1440))
    trends = {
        "1d": {"label": "up", "strength": 0.8},
        "1h": {"label": "down", "strength": 0.5},
        "1m": {"label": "range", "strength": 0.9},
    }
    w_d, w_h, w_m = 1 + math.log2(1440), 1 + math.log2(60), 1.0
    expect = (w_d * 0.8 - w_h * 0.5) / (w_d + w_h + w_m)
    assert trend.trend_alignment(trends, TIMEFRAME_MS) == pytest.approx(expect)
    all_up = {tf: {"label": "up", "strength": 1.0} for tf in TIMEFRAME_MS}
    assert trend.trend_alignment(all_up, TIMEFRAME_MS) == pytest.approx(1.0)
    assert trend.trend_alignment({}, TIMEFRAME_MS) is None


def test_simulator_history_gives_a_consistent_section():
    c = simulator_candles("sol", "1h", 1000)
    doc = trend.analyze_trend(c.open_time, c.high, c.low, c.close)
    assert all(doc["ema"][p]["value"] is not None for p in ("20", "50", "200"))
    sw = doc["swings"]
    assert sw["last_high"] is not None and sw["last_low"] is not None
    # a confirmed pivot is at least `right` bars old
    assert sw["last_high"]["time_ms"] <= int(c.open_time[-1 - trend.SWING_RIGHT])
    if sw["last_break"]:
        assert sw["last_break"]["time_ms"] > sw["last_break"]["pivot_time_ms"]
