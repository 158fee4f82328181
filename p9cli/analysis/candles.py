"""Candles for the analytics: the one representation, :class:`p9cli.candles.Candles` (numpy
columns, oldest first), plus the tick seen in the data. ``stream`` hands over the same object,
so the analytics never care where candles came from.
"""

from __future__ import annotations

import numpy as np

from p9cli.candles import Candles

PRICE_COLUMNS = ("open", "high", "low", "close")

__all__ = ["Candles", "PRICE_COLUMNS", "tick_size"]


def tick_size(*series: Candles) -> float | None:
    """The price increment seen in the data: the greatest common divisor of all prices, at a
    resolution of 1e-8 (exchanges quote these spot pairs in multiples of their tick, so the GCD
    of the prices is the tick, or a multiple of it when the data is too sparse to show it).
    None when no candle is given."""
    arrays = [np.concatenate([getattr(s, c) for c in PRICE_COLUMNS]) for s in series if len(s)]
    if not arrays:
        return None
    prices = np.concatenate(arrays)
    prices = prices[np.isfinite(prices)]
    if len(prices) == 0:
        return None
    g = int(np.gcd.reduce(np.rint(prices * 1e8).astype(np.int64)))
    if g == 0:
        return None
    return round(g * 1e-8, 8)
