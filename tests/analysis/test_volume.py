"""Volume statistics of the last closed candle against the candles before it (hand-worked)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_candles import KLINES_1H, recorded_klines

from p9cli.analysis.volume import analyze_volume


def test_hand_worked_ramp():
    # volumes 1..21: the baseline is the 20 candles before the last, 1..20
    #   mean = 210 / 20 = 10.5; median = (10 + 11) / 2 = 10.5
    #   sample variance of 1..20 = n(n+1)/12 = 20*21/12 = 35 -> std = 5.9160798
    #   last = 21: relative = 21 / 10.5 = 2; z = (21 - 10.5) / 5.9160798 = 1.7748239
    v = np.arange(1.0, 22.0)
    doc = analyze_volume(v, v * 100.0, window=20)
    assert doc["last"] == 21.0
    assert doc["mean"] == 10.5 and doc["median"] == 10.5
    assert doc["std"] == pytest.approx(math.sqrt(35.0), rel=1e-12)
    assert doc["relative"] == 2.0
    assert doc["zscore"] == pytest.approx(10.5 / math.sqrt(35.0), rel=1e-12)
    assert doc["zscore"] == pytest.approx(1.7748239, rel=1e-7)
    assert doc["last_quote"] == 2100.0 and doc["mean_quote"] == 1050.0


def test_only_the_window_before_the_last_candle_counts():
    # a huge old candle outside the window must not move the baseline
    v = np.concatenate(([1e9], np.full(20, 5.0), [10.0]))
    doc = analyze_volume(v, window=20)
    assert doc["mean"] == 5.0 and doc["median"] == 5.0 and doc["relative"] == 2.0
    # flat baseline: std 0 -> z-score undefined (null), never inf
    assert doc["std"] == 0.0 and doc["zscore"] is None


def test_short_and_empty_series():
    doc = analyze_volume(np.array([3.0, 4.0, 8.0]), window=20)
    # baseline = [3, 4]: mean 3.5, median 3.5, std = sqrt(((3-3.5)^2 + (4-3.5)^2)/1) = 0.7071068
    assert doc["mean"] == 3.5 and doc["relative"] == pytest.approx(8 / 3.5)
    assert doc["std"] == pytest.approx(math.sqrt(0.5)) and doc["zscore"] == pytest.approx(
        4.5 / math.sqrt(0.5)
    )
    one = analyze_volume(np.array([3.0]))
    assert one["last"] == 3.0 and one["mean"] is None and one["zscore"] is None and one["relative"] is None
    none = analyze_volume(np.array([]))
    assert none["last"] is None


def test_zero_baseline_has_no_relative_volume():
    doc = analyze_volume(np.array([0.0, 0.0, 0.0, 2.0]), window=3)
    assert doc["mean"] == 0.0 and doc["relative"] is None and doc["zscore"] is None


def test_recorded_hourly_candles():
    c = recorded_klines(KLINES_1H)
    doc = analyze_volume(c.volume, c.quote_volume)
    base = c.volume[-21:-1]
    assert doc["last"] == c.volume[-1]
    assert doc["mean"] == pytest.approx(base.mean()) and doc["median"] == pytest.approx(np.median(base))
    assert doc["zscore"] == pytest.approx((c.volume[-1] - base.mean()) / base.std(ddof=1))
    assert doc["last_quote"] == c.quote_volume[-1]
