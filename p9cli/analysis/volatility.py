"""Volatility of one timeframe: ATR(14) (Wilder), ATR as a percent of price, and four realised
volatility estimators over a rolling window, annualised with crypto's 365-day year, each with
the current value's percentile within the stored history.

Per bar ``i`` (natural logs; ``O H L C`` the candle, ``C'`` the previous close):

* close-to-close: ``r = ln(C / C')``; variance = sample variance of the window's ``r``
  (``ddof = 1``, mean removed);
* Parkinson (1980): ``ln(H/L)^2 / (4 ln 2)``, averaged over the window;
* Garman-Klass (1980): ``0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2``, averaged;
* Rogers-Satchell (1991): ``ln(H/C) ln(H/O) + ln(L/C) ln(L/O)``, averaged.

Annualised volatility in percent = ``100 * sqrt(variance * periods_per_year)`` with
``periods_per_year = 365 days / bar length`` (8760 for 1h, 365 for 1d). A window's variance that
comes out negative (Garman-Klass can, on tiny samples) is reported as 0.

Percentile: ``100 * (number of values in the history <= current) / (number of values)``,
where the history is the estimator evaluated on every complete window of the stored candles
(the current window included), so the current value is always counted and the result lies in
(0, 100].
"""

from __future__ import annotations

import math

import numpy as np

from p9cli.analysis.indicators import atr

YEAR_MS = 365 * 86_400_000
ATR_PERIOD = 14
#: Bars per realised-volatility window.
VOL_WINDOW = 30
_LN2 = math.log(2.0)


def periods_per_year(timeframe_ms: int) -> float:
    return YEAR_MS / timeframe_ms


def close_to_close_terms(close) -> np.ndarray:
    c = np.asarray(close, dtype=np.float64)
    return np.log(c[1:] / c[:-1])


def parkinson_terms(high, low) -> np.ndarray:
    hl = np.log(np.asarray(high, dtype=np.float64) / np.asarray(low, dtype=np.float64))
    return hl * hl / (4.0 * _LN2)


def garman_klass_terms(open_, high, low, close) -> np.ndarray:
    o = np.asarray(open_, dtype=np.float64)
    hl = np.log(np.asarray(high, dtype=np.float64) / np.asarray(low, dtype=np.float64))
    co = np.log(np.asarray(close, dtype=np.float64) / o)
    return 0.5 * hl * hl - (2.0 * _LN2 - 1.0) * co * co


def rogers_satchell_terms(open_, high, low, close) -> np.ndarray:
    o = np.asarray(open_, dtype=np.float64)
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    return np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)


def rolling_mean(terms: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``terms`` over every complete window (one value per window, oldest first)."""
    if len(terms) < window:
        return np.empty(0)
    return np.lib.stride_tricks.sliding_window_view(terms, window).mean(axis=1)


def rolling_sample_variance(terms: np.ndarray, window: int) -> np.ndarray:
    """Sample variance (ddof=1) of ``terms`` over every complete window."""
    if len(terms) < window or window < 2:
        return np.empty(0)
    return np.lib.stride_tricks.sliding_window_view(terms, window).var(axis=1, ddof=1)


def annualised_pct(variance, ppy: float):
    """Per-bar variance -> annualised volatility in percent (negative variance -> 0)."""
    return 100.0 * np.sqrt(np.maximum(variance, 0.0) * ppy)


def percentile_of_last(history: np.ndarray) -> float | None:
    """Percentile of ``history[-1]`` within ``history`` (see the module doc); NaNs ignored."""
    h = history[np.isfinite(history)]
    if len(h) == 0 or not math.isfinite(float(history[-1])):
        return None
    return 100.0 * float(np.count_nonzero(h <= history[-1])) / len(h)


def _estimate(series: np.ndarray) -> dict:
    if len(series) == 0:
        return {"annualized_pct": None, "percentile_pct": None}
    v = float(series[-1])
    return {"annualized_pct": v if math.isfinite(v) else None, "percentile_pct": percentile_of_last(series)}


def analyze_volatility(
    open_, high, low, close, timeframe_ms: int, window: int = VOL_WINDOW, atr14: np.ndarray | None = None
) -> dict:
    """The volatility section of one timeframe. ``atr14`` (ATR(14) of the same candles) may be
    passed when the caller has it already."""
    c = np.asarray(close, dtype=np.float64)
    ppy = periods_per_year(timeframe_ms)
    atr_s = atr(high, low, c, ATR_PERIOD) if atr14 is None else atr14
    atr_pct_s = atr_s / c * 100.0
    valid_pct = atr_pct_s[np.isfinite(atr_pct_s)]
    atr_now = float(atr_s[-1]) if len(c) else math.nan
    atr_pct_now = float(atr_pct_s[-1]) if len(c) else math.nan
    c2c = annualised_pct(rolling_sample_variance(close_to_close_terms(c), window), ppy)
    park = annualised_pct(rolling_mean(parkinson_terms(high, low), window), ppy)
    gk = annualised_pct(rolling_mean(garman_klass_terms(open_, high, low, c), window), ppy)
    rs = annualised_pct(rolling_mean(rogers_satchell_terms(open_, high, low, c), window), ppy)
    return {
        "atr": atr_now if math.isfinite(atr_now) else None,
        "atr_pct": atr_pct_now if math.isfinite(atr_pct_now) else None,
        "atr_percentile_pct": percentile_of_last(valid_pct) if math.isfinite(atr_pct_now) else None,
        "window": window,
        "periods_per_year": ppy,
        "realized": {
            "close_to_close": _estimate(c2c),
            "parkinson": _estimate(park),
            "garman_klass": _estimate(gk),
            "rogers_satchell": _estimate(rs),
        },
    }
