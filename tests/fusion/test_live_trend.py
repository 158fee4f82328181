"""Trend alignment including the live candle (p9cli.fusion.position.live_trend / bias)."""

from __future__ import annotations

import numpy as np
import pytest

from p9cli.analysis.indicators import ema
from p9cli.analysis.trend import analyze_trend, trend_alignment
from p9cli.fusion import position as pos
from p9cli.universe import TIMEFRAME_MS


def _trend(e20, e50, e200, slope, last_high, last_low, adx=30.0) -> dict:
    return {"ema": {"20": {"value": e20}, "50": {"value": e50, "slope_atr": slope}, "200": {"value": e200}},
            "swings": {"last_high": {"label": last_high}, "last_low": {"label": last_low}}, "adx": adx}


def test_live_emas_equal_the_ema_of_the_series_extended_by_the_live_close():
    rng = np.random.default_rng(9)
    close = 100 + np.cumsum(rng.normal(0.05, 1.0, 400))
    high, low = close + 0.5, close - 0.5
    t = analyze_trend(np.arange(400) * 60_000, high, low, close)
    price = float(close[-1]) - 7.5
    live = pos.live_emas(t, price)
    for p in (20, 50, 200):
        assert live[p] == pytest.approx(float(ema(np.append(close, price), p)[-1]), rel=1e-12)
    # at the last close the live trend keeps the stored direction (the EMAs barely move)
    same = pos.live_trend(t, float(close[-1]))
    assert same["label"] == t["label"] and np.sign(same["score"]) == np.sign(t["score"])


def test_the_live_close_can_turn_a_timeframe_and_the_alignment():
    # 1h stored: stack fully up, mild slope, mixed swings, ADX 30 -> d = 0.4 + 0.3 tanh(0.2) = 0.459: up
    up = _trend(100.0, 99.0, 95.0, 0.01, "LH", "HL")
    t_stored = pos.live_trend(up, 100.5)
    assert t_stored["label"] == "up" and t_stored["score"] == pytest.approx(0.4 + 0.3 * np.tanh(0.2))
    # at 90 the close is below EMA20 (stack 1/3): weaker, no longer a trend
    t90 = pos.live_trend(up, 90.0)
    assert t90["label"] == "range" and 0 < t90["score"] < t_stored["score"]
    # at 80 EMA20 crosses below EMA50 too (98.095 < 98.255): the direction turns down
    t80 = pos.live_trend(up, 80.0)
    assert t80["score"] == pytest.approx(-0.4 / 3 + 0.3 * np.tanh(0.2))
    doc = {"timeframes": {"1h": {"trend": {**up, "label": "up", "strength": 0.46, "score": 0.459}},
                          "4h": {"trend": {**_trend(90.0, 88.0, 80.0, 0.05, "HH", "HL"), "label": "up",
                                           "strength": 0.9, "score": 0.93}}},
           "alignment": {"score": 0.8}}  # fmt: skip
    stored = pos.bias(doc)
    assert stored["tf_alignment"] == {"1h": 1, "4h": 1} and stored["score"] == 0.8 == stored["structure_score"]
    live = pos.bias(doc, 80.0)
    assert live["tf_alignment"] == {"1h": -1, "4h": 1}
    assert live["structure_score"] == 0.8
    expected = trend_alignment({"1h": pos.live_trend(doc["timeframes"]["1h"]["trend"], 80.0),
                                "4h": pos.live_trend(doc["timeframes"]["4h"]["trend"], 80.0)}, TIMEFRAME_MS)
    assert live["score"] == pytest.approx(expected) and live["score"] < stored["score"]
    assert live["sign"] == (1 if expected >= 0.1 else -1 if expected <= -0.1 else 0)
    # a section without EMAs keeps its stored trend
    doc["timeframes"]["1d"] = {"trend": {"label": "down", "strength": 0.5, "score": -0.7}}
    assert pos.bias(doc, 80.0)["tf_alignment"]["1d"] == -1
