"""Volume of one timeframe: how the last closed candle's volume compares with the candles
before it.

The baseline is the ``window`` candles *before* the last one (the last candle is what is being
judged, so it is not part of its own yardstick):

* ``mean``, ``median``, ``std`` (sample, ddof=1) of the baseline, in base-asset units;
* ``relative = last / mean`` (1 = an ordinary candle);
* ``zscore = (last - mean) / std`` (null when the baseline is flat, std = 0).

Quote volume (USDT) of the last candle and the baseline mean are given too, so volumes compare
across symbols.
"""

from __future__ import annotations

import math

import numpy as np

VOLUME_WINDOW = 20


def _f(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def analyze_volume(volume, quote_volume=None, window: int = VOLUME_WINDOW) -> dict:
    """The volume section of one timeframe. With fewer than ``window + 1`` candles the baseline
    is every candle before the last (null statistics when there is none)."""
    v = np.asarray(volume, dtype=np.float64)
    n = len(v)
    doc: dict = {
        "window": window,
        "last": _f(v[-1]) if n else None,
        "mean": None,
        "median": None,
        "std": None,
        "relative": None,
        "zscore": None,
        "last_quote": None,
        "mean_quote": None,
    }
    if n == 0:
        return doc
    base = v[max(0, n - 1 - window) : n - 1]
    last = float(v[-1])
    if quote_volume is not None:
        q = np.asarray(quote_volume, dtype=np.float64)
        doc["last_quote"] = _f(q[-1])
        if len(base):
            doc["mean_quote"] = _f(q[max(0, n - 1 - window) : n - 1].mean())
    if len(base) == 0:
        return doc
    mean = float(base.mean())
    doc["mean"] = _f(mean)
    doc["median"] = _f(np.median(base))
    if mean > 0:
        doc["relative"] = _f(last / mean)
    if len(base) >= 2:
        std = float(base.std(ddof=1))
        doc["std"] = _f(std)
        if std > 0:
            doc["zscore"] = _f((last - mean) / std)
    return doc
