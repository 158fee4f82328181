"""The unit convention of the structure document (docs/structure.md, "Unit convention"), applied
in one pass: a field's name says its unit, and :func:`apply_units` rounds every number by it.

* prices (:data:`PRICE_FIELDS`) and price differences (``distance``) -> nearest multiple of
  the tick (a value already on the tick is left as it is, so zone edges rounded outward stay);
* price ranges that are not differences of two prices (:data:`FINE_PRICE_FIELDS`: ATR, row
  size, a zone's width bound) -> ``tick / 100``;
* base-asset quantities (:data:`QTY_FIELDS`) -> the quantity step;
* quote-currency amounts (``*_quote``) -> 0.01;
* any other float (percents, shares, ATR multiples, scores, ratios) -> 4 decimals.

Integers (``*_ms`` times, counts), strings, booleans and nulls pass unchanged.
"""

from __future__ import annotations

import math

import numpy as np

PRICE_FIELDS = frozenset(
    {
        "price",
        "last_price",
        "close",
        "poc",
        "vah",
        "val",
        "low",
        "high",
        "mid",
        "zone_low",
        "zone_high",
        "level",
        "value",
        "price_low",
        "price_high",
        "P",
        "R1",
        "R2",
        "R3",
        "S1",
        "S2",
        "S3",
        "distance",
    }
)
FINE_PRICE_FIELDS = frozenset({"atr", "row_size", "max_width"})
QTY_FIELDS = frozenset({"volume", "volume_near", "total_volume", "last", "mean", "median", "std"})
#: Fields whose value is a rounding unit itself (left as computed).
UNIT_FIELDS = frozenset({"tick", "qty_step"})
OTHER_DECIMALS = 4


def qty_step(*series) -> float | None:
    """The quantity increment seen in the data: the greatest common divisor of the candle
    volumes at 1e-8 resolution (volumes are sums of trade sizes, each a multiple of the step).
    None when there is no positive volume."""
    arrays = [np.asarray(s.volume, dtype=np.float64) for s in series if len(s)]
    if not arrays:
        return None
    v = np.concatenate(arrays)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return None
    g = int(np.gcd.reduce(np.rint(v * 1e8).astype(np.int64)))
    return round(g * 1e-8, 8) if g > 0 else None


def decimals_of(step: float) -> int:
    """Decimal places of a step such as 0.01 (2), 1e-05 (5) or 5 (0)."""
    if step >= 1:
        return 0
    return max(0, -math.floor(math.log10(step) + 1e-9)) + (0 if _is_power_of_ten(step) else 1)


def _is_power_of_ten(step: float) -> bool:
    e = math.log10(step)
    return abs(e - round(e)) < 1e-9


def round_to(x: float, step: float | None, decimals: int | None = None) -> float:
    """``x`` rounded to the nearest multiple of ``step`` (then to ``decimals`` places, which
    removes float noise such as 0.30000000000000004). A value within 1e-9 steps of a multiple
    is kept on that multiple; no step (or a non-finite x): ``x`` unchanged."""
    if not step or not math.isfinite(x):
        return x
    d = decimals_of(step) if decimals is None else decimals
    return round(round(x / step) * step, d)


def apply_units(obj, tick: float | None, step: float | None):
    """A copy of ``obj`` (a JSON-ready document or section) with every float rounded by the
    unit its field name declares (see the module doc). Lists take the unit of their field."""
    tick_d = decimals_of(tick) if tick else None
    fine = tick / 100.0 if tick else None
    fine_d = decimals_of(fine) if fine else None
    step_d = decimals_of(step) if step else None

    def unit_of(name: str | None):
        if name is None:
            return None
        if name in UNIT_FIELDS:
            return "keep"
        if name in PRICE_FIELDS:
            return (tick, tick_d) if tick else (None, 8)
        if name in FINE_PRICE_FIELDS:
            return (fine, fine_d) if fine else (None, 8)
        if name in QTY_FIELDS:
            return (step, step_d) if step else (None, 8)
        if name.endswith("_quote"):
            return (0.01, 2)
        return None

    def walk(value, unit):
        if isinstance(value, dict):
            return {k: walk(v, unit_of(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, unit) for v in value]
        if isinstance(value, float):
            if not math.isfinite(value):
                return None
            if unit == "keep":
                return value
            if unit is None:
                return round(value, OTHER_DECIMALS)
            s, d = unit
            return round_to(value, s, d) if s else round(value, d)
        return value

    return walk(obj, None)
