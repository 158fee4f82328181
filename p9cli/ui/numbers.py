"""How the terminal views (``p9 status``, ``p9 watch``) write numbers: one place for prices,
quantities, signed changes and ages. Pure functions; a value that is not a finite number is
written ``–``."""

from __future__ import annotations

import math
from typing import Any

NONE = "–"


def num(x: Any) -> float | None:
    """``x`` as a finite float, else ``None`` (bools, strings, NaN and None are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def price_decimals(price: float | None, tick: float | None = None) -> int:
    """Decimals to show a price with: the tick's (structure document) or, without one, by magnitude."""
    t = num(tick)
    if t and t > 0:
        return max(0, min(8, round(-math.log10(t)) if t < 1 else 0))
    p = abs(num(price) or 0.0)
    return 2 if p >= 100 else 4 if p >= 1 else 6


def fmt_price(x: Any, decimals: int | None = None) -> str:
    """``67,123.45``: with ``decimals`` (the tick's), else by magnitude (:func:`price_decimals`)."""
    v = num(x)
    if v is None:
        return NONE
    return f"{v:,.{price_decimals(v) if decimals is None else decimals}f}"


def fmt_signed(x: Any, decimals: int = 2, suffix: str = "") -> str:
    v = num(x)
    return NONE if v is None else f"{v:+,.{decimals}f}{suffix}"


def fmt_qty(x: Any) -> str:
    v = num(x)
    if v is None:
        return NONE
    a = abs(v)
    if a >= 1_000_000:
        return f"{v / 1_000_000:,.2f}M"
    if a >= 10_000:
        return f"{v / 1_000:,.1f}k"
    if a >= 100:
        return f"{v:,.1f}"
    return f"{v:,.4f}"


def fmt_age(ms: Any, compact: bool = False) -> str:
    """An age: ``4.2 s``, ``42 s``, ``5 min``, ``3.0 h`` (``compact``, for table cells: ``4.2s``,
    ``42s``, ``5m``, ``3.0h``). ``None``: ``never`` (compact: ``–``)."""
    v = num(ms)
    if v is None:
        return NONE if compact else "never"
    s = max(0.0, v / 1000)
    if s < 10:
        text, unit = f"{s:.1f}", "s"
    elif s < 120:
        text, unit = f"{s:.0f}", "s"
    elif s < 7200:
        text, unit = f"{s / 60:.0f}", "m" if compact else "min"
    else:
        text, unit = f"{s / 3600:.1f}", "h"
    return f"{text}{unit}" if compact else f"{text} {unit}"
