"""Volatility estimators on small hand-worked cases (the arithmetic is written out), the
annualisation, the percentile, and the section on real and short data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_candles import KLINES_1H, recorded_klines, synthetic_candles

from p9cli.analysis import volatility as vol

LN2 = math.log(2.0)


def test_periods_per_year_use_a_365_day_year():
    assert vol.periods_per_year(86_400_000) == 365.0
    assert vol.periods_per_year(3_600_000) == 365.0 * 24  # 8760
    assert vol.periods_per_year(60_000) == 365.0 * 24 * 60  # 525600
    assert vol.periods_per_year(4 * 3_600_000) == 365.0 * 6  # 2190


def test_close_to_close_hand_worked():
    close = [100.0, 110.0, 99.0, 99.0]
    # r = ln(110/100) = 0.0953101798, ln(99/110) = ln(0.9) = -0.1053605157, ln(99/99) = 0
    r = [math.log(1.1), math.log(0.9), 0.0]
    mean = sum(r) / 3  # -0.0100503 / 3 = -0.0033501
    # deviations 0.0986603, -0.1020104, 0.0033501; squares 0.0097339 + 0.0104061 + 0.0000112
    # = 0.0201512; sample variance (ddof=1) = 0.0201512 / 2 = 0.0100756
    var = sum((x - mean) ** 2 for x in r) / 2
    assert var == pytest.approx(0.0100756, rel=1e-5)
    got = vol.rolling_sample_variance(vol.close_to_close_terms(close), 3)
    assert got.shape == (1,) and got[0] == pytest.approx(var, rel=1e-12)
    # daily bars: annualised % = 100 * sqrt(0.0100756 * 365) = 100 * sqrt(3.677594) = 191.77 %
    ann = vol.annualised_pct(got, vol.periods_per_year(86_400_000))
    assert ann[0] == pytest.approx(100 * math.sqrt(var * 365), rel=1e-12)
    assert ann[0] == pytest.approx(191.77, abs=0.01)


def test_parkinson_hand_worked():
    # one candle H=110, L=100: ln(1.1)^2 / (4 ln 2) = 0.00908403 / 2.77258872 = 0.00327637
    terms = vol.parkinson_terms([110.0], [100.0])
    assert terms[0] == pytest.approx(math.log(1.1) ** 2 / (4 * LN2), rel=1e-12)
    assert terms[0] == pytest.approx(0.00327637, rel=1e-5)
    # two candles: (ln(1.1)^2 + ln(1.05)^2) / 2 / (4 ln 2) = (0.00908403 + 0.00238048)/2/2.7725887
    two = vol.rolling_mean(vol.parkinson_terms([110.0, 105.0], [100.0, 100.0]), 2)
    assert two[0] == pytest.approx((0.0090840 + 0.0023805) / 2 / 2.7725887, rel=1e-4)


def test_garman_klass_hand_worked():
    # O=100 H=110 L=95 C=105: ln(H/L) = ln(1.157895) = 0.1466035, ln(C/O) = ln(1.05) = 0.0487902
    # 0.5 * 0.1466035^2 - (2 ln2 - 1) * 0.0487902^2 = 0.0107463 - 0.3862944 * 0.0023805 = 0.0098267
    t = vol.garman_klass_terms([100.0], [110.0], [95.0], [105.0])
    hl, co = math.log(110 / 95), math.log(1.05)
    assert t[0] == pytest.approx(0.5 * hl * hl - (2 * LN2 - 1) * co * co, rel=1e-12)
    assert t[0] == pytest.approx(0.0098267, rel=1e-4)


def test_rogers_satchell_hand_worked():
    # O=100 H=110 L=95 C=105: ln(H/C) ln(H/O) + ln(L/C) ln(L/O)
    #   = ln(1.047619) ln(1.1) + ln(0.904762) ln(0.95)
    #   = 0.0465200 * 0.0953102 + (-0.1000835) * (-0.0512933) = 0.0044338 + 0.0051336 = 0.0095674
    t = vol.rogers_satchell_terms([100.0], [110.0], [95.0], [105.0])
    assert t[0] == pytest.approx(0.0095674, rel=1e-4)
    # A candle that closes at its high and opened at its low: ln(H/C)=0 and ln(L/O)=0 -> 0
    assert vol.rogers_satchell_terms([100.0], [110.0], [100.0], [110.0])[0] == 0.0


def test_rogers_satchell_is_drift_free_and_parkinson_sees_the_range():
    # A steady trend with no wicks: every bar opens at its low and closes at its high.
    o = np.array([100.0, 101.0, 102.0])
    c = o + 1.0
    assert np.all(vol.rogers_satchell_terms(o, c, o, c) == 0.0)
    assert np.all(vol.parkinson_terms(c, o) > 0)


def test_percentile_of_last():
    # history [1, 3, 2, 2]: values <= 2 are 1, 2, 2 -> 3 of 4 -> 75
    assert vol.percentile_of_last(np.array([1.0, 3.0, 2.0, 2.0])) == 75.0
    assert vol.percentile_of_last(np.array([1.0, 2.0, 3.0])) == 100.0
    assert vol.percentile_of_last(np.array([3.0, 2.0, 1.0])) == pytest.approx(100 / 3)
    assert vol.percentile_of_last(np.array([np.nan, 1.0])) == 100.0
    assert vol.percentile_of_last(np.array([1.0, np.nan])) is None
    assert vol.percentile_of_last(np.array([])) is None


def test_negative_variance_is_reported_as_zero():
    assert vol.annualised_pct(np.array([-1e-9]), 365.0)[0] == 0.0


def test_section_on_recorded_hourly_candles():
    c = recorded_klines(KLINES_1H)
    doc = vol.analyze_volatility(c.open, c.high, c.low, c.close, 3_600_000)
    assert doc["periods_per_year"] == 8760.0 and doc["window"] == vol.VOL_WINDOW
    # Hand check of the close-to-close figure from its definition.
    r = np.log(c.close[1:] / c.close[:-1])[-vol.VOL_WINDOW :]
    expect = 100 * math.sqrt(float(np.var(r, ddof=1)) * 8760)
    assert doc["realized"]["close_to_close"]["annualized_pct"] == pytest.approx(expect, rel=1e-12)
    assert doc["atr_pct"] == pytest.approx(doc["atr"] / c.close[-1] * 100)
    for est in doc["realized"].values():
        assert 0 < est["annualized_pct"] < 200  # BTC in the first week of 2023 was calm
        assert 0 < est["percentile_pct"] <= 100
    assert 0 < doc["atr_percentile_pct"] <= 100


def test_range_estimators_agree_with_the_true_volatility_on_a_known_process():
    # Brownian motion sampled per minute, aggregated to bars: every estimator should find the
    # volatility that was put in (20% a year per bar of 60 one-minute steps), within sampling error.
    rng = np.random.default_rng(11)
    bars, steps = 3000, 60
    ppy = vol.periods_per_year(3_600_000)
    sigma_bar = 0.20 / math.sqrt(ppy)
    paths = np.cumsum(rng.normal(0, sigma_bar / math.sqrt(steps), (bars, steps)), axis=1)
    level = np.concatenate(([0.0], paths[:-1, -1])).cumsum()
    o = 100 * np.exp(level)
    pts = o[:, None] * np.exp(np.concatenate((np.zeros((bars, 1)), paths), axis=1))
    h, lo, c = pts.max(axis=1), pts.min(axis=1), pts[:, -1]
    est = {
        "parkinson": vol.parkinson_terms(h, lo).mean(),
        "garman_klass": vol.garman_klass_terms(o, h, lo, c).mean(),
        "rogers_satchell": vol.rogers_satchell_terms(o, h, lo, c).mean(),
        "close_to_close": np.log(c / o).var(ddof=1),
    }
    for name, v in est.items():
        annual = math.sqrt(v * ppy)
        # discrete sampling biases range estimators down a little (~5% with 60 steps)
        assert 0.17 < annual < 0.215, (name, annual)


def test_short_series_give_nulls_not_nans():
    c = synthetic_candles("1h", 10, seed=2)
    doc = vol.analyze_volatility(c.open, c.high, c.low, c.close, 3_600_000)
    assert doc["atr"] is None and doc["atr_pct"] is None and doc["atr_percentile_pct"] is None
    for est in doc["realized"].values():
        assert est == {"annualized_pct": None, "percentile_pct": None}
