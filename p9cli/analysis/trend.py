"""Trend of one timeframe: EMA 20/50/200 with ATR-normalised slopes, ADX/+DI/-DI, swing
structure from confirmed pivots, a label (up / down / range) with a strength in 0..1, and the
multi-timeframe alignment score.

Definitions (all pure functions over arrays, oldest first):

* **Confirmed pivot** (fractal): bar ``i`` is a pivot high when its high is strictly above the
  ``left`` highs before it and at least as high as the ``right`` highs after it (of equal highs
  the first one is the pivot). It is *confirmed* ``right`` bars later; a pivot is never
  reported before it is confirmed, so nothing repaints.
* **Swing labels**: each pivot high against the previous pivot high is HH (higher), LH (lower)
  or EH (equal); each pivot low against the previous pivot low is HL, LL or EL.
* **Break of structure**: a close above the most recent confirmed pivot high (after the bar
  that confirmed it) is an upward break; a close below the most recent confirmed pivot low is
  a downward break. Each pivot breaks at most once. A break in the same direction as the
  previous break is a ``bos`` (continuation), the first break against it a ``choch`` (change
  of character).
* **EMA slope**: ``(ema[-1] - ema[-1-k]) / k / ATR14[-1]``, in ATRs per bar (k = 5).
* **Label**: a direction score ``d`` in -1..1 is ``0.4 * stack + 0.3 * slope + 0.3 * swings``,
  where ``stack`` is the mean sign of (close - EMA20, EMA20 - EMA50, EMA50 - EMA200), ``slope``
  is ``tanh(EMA50 slope / 0.05 ATR per bar)`` and ``swings`` is the mean of the last high's
  (+1 HH, -1 LH) and last low's (+1 HL, -1 LL) labels. ADX gives the trend's vigour
  ``a = clip((ADX - 15) / 20, 0, 1)``. The label is up (down) when ``d >= 0.25`` (``<= -0.25``)
  and ADX >= 20, or when ``|d| >= 0.6`` whatever ADX says; otherwise range. Strength:
  ``|d| * (0.5 + 0.5 a)`` for a trend, ``(1 - |d|) * (1 - a)`` for a range (a quiet, balanced
  market is a strong range).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from p9cli.analysis.indicators import atr, dmi, ema, last_finite
from p9cli.analysis.pivots import fractal_pivots

EMA_PERIODS = (20, 50, 200)
ATR_PERIOD = 14
ADX_PERIOD = 14
SLOPE_BARS = 5
SWING_LEFT = 3
SWING_RIGHT = 3
#: Slope (ATR per bar) of the EMA50 that counts as a clear trend (tanh(1) = 0.76).
SLOPE_SCALE = 0.05
TREND_SCORE_MIN = 0.25
TREND_SCORE_STRONG = 0.6
ADX_TRENDING = 20.0
ADX_FLOOR = 15.0
ADX_SPAN = 20.0
#: How many of the most recent swings the document lists.
SWINGS_LISTED = 4


def _label(prices: np.ndarray, up: str, down: str, equal: str) -> list[str | None]:
    """Each pivot against the previous one of its kind (None for the first)."""
    if len(prices) == 0:
        return []
    diff = np.sign(np.diff(prices)).tolist()
    names = {1.0: up, -1.0: down, 0.0: equal}
    return [None, *(names[d] for d in diff)]


def _breaks(
    close: np.ndarray, pivots: np.ndarray, prices: np.ndarray, right: int, upward: bool
) -> list[tuple[int, int]]:
    """(pivot index, breaking bar) for each pivot broken while it was the most recent one.

    Pivot ``k`` is the active one on bars ``confirm[k] + 1 .. confirm[k+1]`` (``confirm = pivot +
    right``); its break is the first of those bars whose close is beyond its price.
    """
    n = len(close)
    if len(pivots) == 0:
        return []
    confirm = pivots + right
    bars = np.arange(n)
    # Active pivot of each bar: the last pivot confirmed strictly before it (-1: none yet).
    active = np.searchsorted(confirm, bars, side="left") - 1
    ok = active >= 0
    bars, active = bars[ok], active[ok]
    level = prices[active]
    hit = close[bars] > level if upward else close[bars] < level
    hit_active = active[hit]
    if len(hit_active) == 0:
        return []
    # `active` is non-decreasing, so the first hit of each pivot is its first occurrence.
    ks, first = np.unique(hit_active, return_index=True)
    hit_bars = bars[hit][first]
    return [(int(pivots[k]), int(b)) for k, b in zip(ks, hit_bars, strict=True)]


def swing_structure(open_time, high, low, close, left: int = SWING_LEFT, right: int = SWING_RIGHT) -> dict:
    """Swing structure from confirmed pivots: the last pivot high and low with their labels, the
    last few swings in time order, the swing bias and the last break of structure."""
    ot = np.asarray(open_time, dtype=np.int64)
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    hi_idx, lo_idx = fractal_pivots(h, lo, left, right)
    hi_px, lo_px = h[hi_idx], lo[lo_idx]
    hi_lab = _label(hi_px, "HH", "LH", "EH")
    lo_lab = _label(lo_px, "HL", "LL", "EL")

    k = SWINGS_LISTED  # the last k swings are among the last k highs and the last k lows
    swings = [
        (int(i), "high", float(p), lab)
        for i, p, lab in zip(hi_idx[-k:], hi_px[-k:], hi_lab[-k:], strict=True)
    ]
    swings += [
        (int(i), "low", float(p), lab) for i, p, lab in zip(lo_idx[-k:], lo_px[-k:], lo_lab[-k:], strict=True)
    ]
    swings.sort(key=lambda s: (s[0], s[1]))
    recent = [
        {"kind": kind, "label": lab, "price": p, "time_ms": int(ot[i])}
        for i, kind, p, lab in swings[-SWINGS_LISTED:]
    ]

    last_high = hi_lab[-1] if hi_lab else None
    last_low = lo_lab[-1] if lo_lab else None
    if last_high == "HH" and last_low == "HL":
        bias = "bullish"
    elif last_high == "LH" and last_low == "LL":
        bias = "bearish"
    else:
        bias = "mixed"

    events = [(bar, "up", pi) for pi, bar in _breaks(c, hi_idx, hi_px, right, True)]
    events += [(bar, "down", pi) for pi, bar in _breaks(c, lo_idx, lo_px, right, False)]
    events.sort()
    last_break = None
    if events:
        bar, direction, pi = events[-1]
        previous = next((e[1] for e in reversed(events[:-1])), None)
        last_break = {
            "direction": direction,
            "kind": "bos" if previous in (None, direction) else "choch",
            "level": float(h[pi] if direction == "up" else lo[pi]),
            "pivot_time_ms": int(ot[pi]),
            "time_ms": int(ot[bar]),
            "bars_ago": len(c) - 1 - bar,
        }
    return {
        "pivot_bars": {"left": left, "right": right},
        "last_high": _pivot_doc(ot, h, hi_idx, hi_lab),
        "last_low": _pivot_doc(ot, lo, lo_idx, lo_lab),
        "recent": recent,
        "bias": bias,
        "last_break": last_break,
    }


def _pivot_doc(ot, prices, idx, labels) -> dict | None:
    if len(idx) == 0:
        return None
    i = int(idx[-1])
    return {"price": float(prices[i]), "time_ms": int(ot[i]), "label": labels[-1]}


def ema_slope_atr(ema_values: np.ndarray, atr_now: float | None, bars: int = SLOPE_BARS) -> float | None:
    """The EMA's change over the last ``bars`` bars, per bar, in ATRs."""
    if atr_now is None or atr_now <= 0 or len(ema_values) <= bars:
        return None
    d = float(ema_values[-1] - ema_values[-1 - bars])
    v = d / bars / atr_now
    return v if math.isfinite(v) else None


def _sign(x: float) -> float:
    return 1.0 if x > 0 else -1.0 if x < 0 else 0.0


def trend_label(
    close: float,
    emas: Mapping[int, float | None],
    slope50: float | None,
    last_high_label: str | None,
    last_low_label: str | None,
    adx_now: float | None,
) -> tuple[str, float, float]:
    """``(label, strength, direction score)``; see the module doc for the formula. Missing
    inputs (too little history) count as neutral."""
    e20, e50, e200 = (emas.get(p) for p in EMA_PERIODS)
    pairs = [(close, e20), (e20, e50), (e50, e200)]
    signs = [_sign(a - b) for a, b in pairs if a is not None and b is not None]
    stack = sum(signs) / 3.0
    slope = math.tanh(slope50 / SLOPE_SCALE) if slope50 is not None else 0.0
    hs = {"HH": 1.0, "LH": -1.0}.get(last_high_label or "", 0.0)
    ls = {"HL": 1.0, "LL": -1.0}.get(last_low_label or "", 0.0)
    swings = (hs + ls) / 2.0
    d = 0.4 * stack + 0.3 * slope + 0.3 * swings
    d = max(-1.0, min(1.0, d))
    adx_v = adx_now if adx_now is not None else 0.0
    a = max(0.0, min(1.0, (adx_v - ADX_FLOOR) / ADX_SPAN))
    trending = (abs(d) >= TREND_SCORE_MIN and adx_v >= ADX_TRENDING) or abs(d) >= TREND_SCORE_STRONG
    if trending:
        return ("up" if d > 0 else "down"), abs(d) * (0.5 + 0.5 * a), d
    return "range", (1.0 - abs(d)) * (1.0 - a), d


def analyze_trend(open_time, high, low, close, atr14: np.ndarray | None = None) -> dict:
    """The trend section of one timeframe. ``atr14`` (ATR(14) of the same candles) may be passed
    when the caller has it already."""
    c = np.asarray(close, dtype=np.float64)
    if atr14 is None:
        atr14 = atr(high, low, c, ATR_PERIOD)
    atr_now = last_finite(atr14)
    last_close = float(c[-1])
    ema_doc = {}
    values: dict[int, float | None] = {}
    slope50 = None
    for p in EMA_PERIODS:
        e = ema(c, p)
        v = last_finite(e)
        values[p] = v
        slope = ema_slope_atr(e, atr_now) if v is not None else None
        if p == 50:
            slope50 = slope
        ema_doc[str(p)] = {
            "value": v,
            "slope_atr": slope,
            "distance_atr": (last_close - v) / atr_now if v is not None and atr_now else None,
        }
    adx_s, pdi_s, mdi_s = dmi(high, low, c, ADX_PERIOD)
    adx_now = last_finite(adx_s)
    swings = swing_structure(open_time, high, low, c)
    label, strength, score = trend_label(
        last_close,
        values,
        slope50,
        (swings["last_high"] or {}).get("label"),
        (swings["last_low"] or {}).get("label"),
        adx_now,
    )
    return {
        "label": label,
        "strength": strength,
        "score": score,
        "ema": ema_doc,
        "adx": adx_now,
        "plus_di": last_finite(pdi_s),
        "minus_di": last_finite(mdi_s),
        "swings": swings,
    }


def timeframe_weight(timeframe_ms: int) -> float:
    """Weight of a timeframe in the alignment score: ``1 + log2(minutes)`` (1m: 1, 1h: 6.9,
    1d: 11.5), so higher timeframes count more without drowning the rest."""
    return 1.0 + math.log2(timeframe_ms / 60_000)


def trend_alignment(trends: Mapping[str, Mapping], timeframe_ms: Mapping[str, int]) -> float | None:
    """Multi-timeframe alignment in -1..1: the weighted mean over timeframes of ``+strength``
    (up), ``-strength`` (down) or 0 (range). 1 = every timeframe in a full up trend."""
    num = den = 0.0
    for tf, t in trends.items():
        w = timeframe_weight(timeframe_ms[tf])
        sign = {"up": 1.0, "down": -1.0}.get(t["label"], 0.0)
        num += w * sign * float(t["strength"])
        den += w
    if den == 0:
        return None
    return max(-1.0, min(1.0, num / den))
