"""Classic indicators as plain functions over float arrays: SMA, EMA, Wilder smoothing, true
range, ATR and Wilder's directional movement system (+DI, -DI, DX, ADX).

Every function takes 1-D float64 arrays (oldest first) and returns arrays of the same length,
NaN where the indicator is not defined yet (its warm-up). The recurrences and their seeds are
the ones TA-Lib uses (``TA_EMA``, ``TA_ATR``, ``TA_PLUS_DI``/``TA_MINUS_DI``, ``TA_ADX`` with the
default "unstable period" of 0), so values agree with TA-Lib to rounding from the first defined
bar on:

* EMA(n): seeded with the SMA of the first ``n`` values (defined from index ``n-1``), then
  ``ema += (x - ema) * 2/(n+1)``.
* Wilder smoothing / ATR(n): the first value is the mean of the first ``n`` inputs, then
  ``s = (s*(n-1) + x) / n``. ATR smooths the true range from index 1 (the first bar has no
  previous close), so ATR(n) is defined from index ``n``.
* Directional movement: ``up = high - prev high``, ``down = prev low - low``; +DM = up when
  ``up > down and up > 0``, -DM = down when ``down > up and down > 0`` (else 0). The running
  sums start with ``n-1`` raw values and are then smoothed ``s = s - s/n + x`` (Wilder's running
  total), so +DI/-DI are defined from index ``n`` and ADX from index ``2n-1`` (mean of the first
  ``n`` DX values, then Wilder smoothing).

The recurrences are scalar loops over Python floats (a 1000-bar series costs ~0.1 ms per loop);
numpy does the vector parts.
"""

from __future__ import annotations

import math

import numpy as np

NAN = math.nan
#: TA-Lib's TA_IS_ZERO tolerance: a smoothed true range or DI sum this close to 0 counts as 0.
_ZERO = 1e-14


def as_float_array(values) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64)


def sma(values, period: int) -> np.ndarray:
    """Simple moving average; NaN for the first ``period-1`` values."""
    x = as_float_array(values)
    n = len(x)
    out = np.full(n, NAN)
    if period < 1:
        raise ValueError("period must be >= 1")
    if n >= period:
        windows = np.lib.stride_tricks.sliding_window_view(x, period)
        out[period - 1 :] = windows.mean(axis=1)
    return out


def ema(values, period: int) -> np.ndarray:
    """Exponential moving average with ``k = 2/(period+1)``, seeded with the SMA of the first
    ``period`` values (TA-Lib's default); NaN before index ``period-1``."""
    if period < 1:
        raise ValueError("period must be >= 1")
    x = as_float_array(values)
    n = len(x)
    out = np.full(n, NAN)
    if n < period:
        return out
    k = 2.0 / (period + 1)
    xs = x.tolist()
    prev = math.fsum(xs[:period]) / period
    res = [prev]
    append = res.append
    for v in xs[period:]:
        prev = (v - prev) * k + prev
        append(prev)
    out[period - 1 :] = res
    return out


def wilder(values, period: int) -> np.ndarray:
    """Wilder's smoothing (an EMA with ``alpha = 1/period``) seeded with the mean of the first
    ``period`` values: ``s = (s*(period-1) + x) / period``; NaN before index ``period-1``."""
    if period < 1:
        raise ValueError("period must be >= 1")
    x = as_float_array(values)
    n = len(x)
    out = np.full(n, NAN)
    if n < period:
        return out
    xs = x.tolist()
    prev = math.fsum(xs[:period]) / period
    res = [prev]
    append = res.append
    m = period - 1
    for v in xs[period:]:
        prev = (prev * m + v) / period
        append(prev)
    out[period - 1 :] = res
    return out


def true_range(high, low, close) -> np.ndarray:
    """True range ``max(high, prev close) - min(low, prev close)``; the first bar, which has no
    previous close, gets NaN (as in TA-Lib's TRANGE)."""
    h, lo, c = as_float_array(high), as_float_array(low), as_float_array(close)
    out = np.full(len(h), NAN)
    if len(h) > 1:
        pc = c[:-1]
        out[1:] = np.maximum(h[1:], pc) - np.minimum(lo[1:], pc)
    return out


def atr(high, low, close, period: int = 14) -> np.ndarray:
    """Average true range (Wilder): NaN before index ``period``."""
    tr = true_range(high, low, close)
    out = np.full(len(tr), NAN)
    if len(tr) > period:
        out[1:] = wilder(tr[1:], period)
    return out


def directional_movement(high, low) -> tuple[np.ndarray, np.ndarray]:
    """Raw +DM and -DM per bar (index 0 is 0: no previous bar)."""
    h, lo = as_float_array(high), as_float_array(low)
    plus = np.zeros(len(h))
    minus = np.zeros(len(h))
    if len(h) > 1:
        up = h[1:] - h[:-1]
        down = lo[:-1] - lo[1:]
        plus[1:] = np.where((up > down) & (up > 0), up, 0.0)
        minus[1:] = np.where((down > up) & (down > 0), down, 0.0)
    return plus, minus


def dmi(high, low, close, period: int = 14) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wilder's directional movement index: ``(adx, plus_di, minus_di)``, all in 0..100.

    +DI/-DI are NaN before index ``period``, ADX before index ``2*period-1`` (and everywhere
    when the series is shorter). Matches TA-Lib's ADX, PLUS_DI and MINUS_DI.
    """
    if period < 2:
        raise ValueError("period must be >= 2")
    h = as_float_array(high)
    n = len(h)
    adx_out = np.full(n, NAN)
    pdi_out = np.full(n, NAN)
    mdi_out = np.full(n, NAN)
    if n <= period:
        return adx_out, pdi_out, mdi_out
    pdm, mdm = directional_movement(high, low)
    tr = true_range(high, low, close)
    pdm_l, mdm_l, tr_l = pdm.tolist(), mdm.tolist(), tr.tolist()
    # Running totals start with the first period-1 raw values (indices 1..period-1).
    s_p = math.fsum(pdm_l[1:period])
    s_m = math.fsum(mdm_l[1:period])
    s_tr = math.fsum(tr_l[1:period])
    pdi = [NAN] * n
    mdi = [NAN] * n
    dx = [NAN] * n
    for i in range(period, n):
        s_p = s_p - s_p / period + pdm_l[i]
        s_m = s_m - s_m / period + mdm_l[i]
        s_tr = s_tr - s_tr / period + tr_l[i]
        if -_ZERO < s_tr < _ZERO:
            continue
        p = 100.0 * (s_p / s_tr)
        m = 100.0 * (s_m / s_tr)
        pdi[i] = p
        mdi[i] = m
        tot = p + m
        if not (-_ZERO < tot < _ZERO):
            dx[i] = 100.0 * (abs(m - p) / tot)
    pdi_out[:] = pdi
    mdi_out[:] = mdi
    first = 2 * period - 1
    if n > first:
        # ADX seed: mean of the first `period` DX values (TA-Lib counts an undefined DX as 0).
        seed = [0.0 if d != d else d for d in dx[period : first + 1]]
        prev = math.fsum(seed) / period
        res = [prev]
        append = res.append
        m1 = period - 1
        for d in dx[first + 1 :]:
            if d == d:  # an undefined DX (flat market) leaves ADX unchanged, as in TA-Lib
                prev = (prev * m1 + d) / period
            append(prev)
        adx_out[first:] = res
    return adx_out, pdi_out, mdi_out


def adx(high, low, close, period: int = 14) -> np.ndarray:
    return dmi(high, low, close, period)[0]


def last_finite(values) -> float | None:
    """The last value of an indicator as a Python float, or None when it is not defined."""
    if len(values) == 0:
        return None
    v = float(values[-1])
    return v if math.isfinite(v) else None
