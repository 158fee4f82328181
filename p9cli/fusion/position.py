"""The live price against a structure document (``p9.structure/2``): nearest support and
resistance with distances in % and in ATR of 1h/4h/1d, value-area position, liquidity zone,
volatility regime and trend bias. Pure functions over plain dicts; ``None`` where the
structure does not say.

Level, value-area and zone prices are the document's (already on its tick); what is computed here
is rounded once (:mod:`p9cli.fusion.units`): the stop hints to the nearest multiple of the
document's ``tick``, ``distance_pct`` and ``distance_atr`` to 6 decimals."""

from __future__ import annotations

import math

from p9cli.fusion.units import Units, units_of

#: ATR timeframes every distance is expressed in
ATR_TIMEFRAMES = ("1h", "4h", "1d")
#: stop hint: this many ATR(STOP_ATR_TF) beyond the nearest level
STOP_ATR_MULT = 2.0
STOP_ATR_TF = "1h"
#: size hint: scalar = min(SIZE_MAX_SCALAR, SIZE_TARGET_VOL_PCT / live realised vol %)
SIZE_TARGET_VOL_PCT = 50.0
SIZE_MAX_SCALAR = 2.0


def _num(x) -> float | None:
    if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None


def atr_of(doc: dict | None, tf: str) -> float | None:
    if not doc:
        return None
    return _num(((doc.get("timeframes") or {}).get(tf) or {}).get("volatility", {}).get("atr"))


def atrs(doc: dict | None) -> dict[str, float | None]:
    return {tf: atr_of(doc, tf) for tf in (doc or {}).get("timeframes") or {}}


def atr_pcts(doc: dict | None) -> dict[str, float | None]:
    out = {}
    for tf, sec in ((doc or {}).get("timeframes") or {}).items():
        out[tf] = _num((sec.get("volatility") or {}).get("atr_pct"))
    return out


def level_distance(doc: dict | None, level: dict, price: float) -> dict:
    lp = float(level["price"])
    out = {
        "price": lp,
        "distance_pct": Units.ratio((lp - price) / price * 100.0) if price else None,
        "distance_atr": {},
        "kind": level.get("kind"),
        "strength": _num(level.get("strength")),
    }
    for tf in ATR_TIMEFRAMES:
        atr = atr_of(doc, tf)
        out["distance_atr"][tf] = Units.ratio((lp - price) / atr) if atr else None
    return out


def nearest_levels(doc: dict | None, price: float | None) -> tuple[dict | None, dict | None]:
    """(support, resistance): the nearest structure level at or below / above ``price``."""
    if not doc or price is None:
        return None, None
    below, above = None, None
    for lv in doc.get("levels") or []:
        p = _num(lv.get("price"))
        if p is None:
            continue
        if p <= price and (below is None or p > below["price"]):
            below = lv
        elif p > price and (above is None or p < above["price"]):
            above = lv
    return (
        level_distance(doc, below, price) if below else None,
        level_distance(doc, above, price) if above else None,
    )


def value_area(doc: dict | None, price: float | None) -> dict | None:
    """Position against the previous day's value area (``sessions.day.previous``)."""
    if not doc or price is None:
        return None
    prev = ((doc.get("sessions") or {}).get("day") or {}).get("previous") or {}
    poc, vah, val = _num(prev.get("poc")), _num(prev.get("vah")), _num(prev.get("val"))
    if poc is None or vah is None or val is None:
        return None
    position = "above" if price > vah else "below" if price < val else "inside"
    return {"position": position, "poc": poc, "vah": vah, "val": val, "above_poc": price > poc}


def zone_at(doc: dict | None, price: float | None) -> dict | None:
    """The liquidity zone ``price`` is inside, or ``None``."""
    if not doc or price is None:
        return None
    for z in doc.get("liquidity_zones") or []:
        lo, hi = _num(z.get("low")), _num(z.get("high"))
        if lo is not None and hi is not None and lo <= price <= hi:
            return {"low": lo, "high": hi, "kind": z.get("kind"), "strength": _num(z.get("strength"))}
    return None


def regime(doc: dict | None, rv_pct: float | None, tf: str = "1h") -> dict | None:
    """Volatility regime: the historical ATR percentile of ``tf`` (structure), with the live
    realised volatility beside it."""
    if not doc:
        return None
    vol = (((doc.get("timeframes") or {}).get(tf)) or {}).get("volatility") or {}
    pct = _num(vol.get("atr_percentile_pct"))
    if pct is None:
        return None
    label = "low" if pct < 25 else "normal" if pct < 75 else "high" if pct < 95 else "extreme"
    return {"label": label, "rv_pct": _num(rv_pct), "percentile_pct": pct}


def live_emas(trend: dict, price: float) -> dict[int, float | None]:
    """The stored EMAs (``trend.ema.{20,50,200}.value``) advanced one bar closing at ``price``."""
    from p9cli.analysis.trend import EMA_PERIODS

    ema = trend.get("ema") or {}
    out: dict[int, float | None] = {}
    for p in EMA_PERIODS:
        v = _num((ema.get(str(p)) or {}).get("value"))
        out[p] = None if v is None else v + 2.0 / (p + 1) * (price - v)
    return out


def live_trend(trend: dict | None, price: float | None) -> dict | None:
    """One timeframe's stored trend (``timeframes.{tf}.trend``) re-evaluated with the live close.

    The forming candle closes at ``price`` for the purpose of the trend: each EMA (20/50/200)
    advances one bar, ``ema + 2/(p+1) * (price - ema)``, and the label rule of
    :func:`p9cli.analysis.trend.trend_label` runs again on that close and those EMAs (the stack:
    close vs EMA20, EMA20 vs EMA50, EMA50 vs EMA200). The EMA50 slope, the last swing labels and
    ADX stay those of the last closed candle (they change when a candle closes, and the
    timeframe is then recomputed). ``None`` when the section has no EMA value or no price.
    Returns ``{"label", "strength", "score"}`` like the stored section."""
    from p9cli.analysis.trend import trend_label

    if not trend or _num(price) is None:
        return None
    ema = trend.get("ema") or {}
    values = live_emas(trend, price)
    if all(v is None for v in values.values()):
        return None
    swings = trend.get("swings") or {}
    label, strength, score = trend_label(
        float(price),
        values,
        _num((ema.get("50") or {}).get("slope_atr")),
        (swings.get("last_high") or {}).get("label"),
        (swings.get("last_low") or {}).get("label"),
        _num(trend.get("adx")),
    )
    return {"label": label, "strength": strength, "score": score}


def bias(doc: dict | None, price: float | None = None) -> dict:
    """Sign and confidence of the multi-timeframe trend alignment (+ = bullish).

    With the live ``price`` every timeframe's trend is re-evaluated with it (:func:`live_trend`;
    a timeframe where that is not possible keeps its stored trend) and the alignment score is
    :func:`p9cli.analysis.trend.trend_alignment` of those trends (the structure's own rule and
    weights); without a price, the structure's stored ``alignment.score``. ``tf_alignment``:
    per timeframe the sign of its (live) direction score; ``structure_score``: the stored
    document's ``alignment.score`` for comparison."""
    from p9cli.analysis.trend import trend_alignment
    from p9cli.universe import TIMEFRAME_MS

    sections = (doc or {}).get("timeframes") or {}
    tf_align: dict[str, int | None] = {}
    trends: dict[str, dict] = {}
    for tf, sec in sections.items():
        stored = sec.get("trend") or {}
        live = live_trend(stored, price) if price is not None else None
        t = live or stored
        score = _num(t.get("score"))
        tf_align[tf] = None if score is None else (1 if score > 0 else -1 if score < 0 else 0)
        if tf in TIMEFRAME_MS and t.get("label") is not None and _num(t.get("strength")) is not None:
            trends[tf] = t
    structure_score = _num(((doc or {}).get("alignment") or {}).get("score"))
    score = structure_score
    if price is not None and trends:
        score = trend_alignment(trends, TIMEFRAME_MS)
    if score is not None:
        score = max(-1.0, min(1.0, score))
    sign = 0 if score is None or abs(score) < 0.1 else (1 if score > 0 else -1)
    return {
        "sign": sign,
        "confidence": abs(score) if score is not None else 0.0,
        "score": score,
        "tf_alignment": tf_align,
        "structure_score": structure_score,
    }


def hints(doc: dict | None, support: dict | None, resistance: dict | None, rv_pct: float | None) -> dict:
    """Stop hints (``STOP_ATR_MULT`` x ATR(``STOP_ATR_TF``) beyond the nearest support /
    resistance, on the document's tick) and the volatility size scalar."""
    atr = atr_of(doc, STOP_ATR_TF)
    stop = None
    if atr:
        units = units_of(doc)
        stop = {
            "atr_mult": STOP_ATR_MULT,
            "atr_timeframe": STOP_ATR_TF,
            "long": units.on_tick(support["price"] - STOP_ATR_MULT * atr) if support else None,
            "short": units.on_tick(resistance["price"] + STOP_ATR_MULT * atr) if resistance else None,
        }
    size = None
    rv = _num(rv_pct)
    if rv and rv > 0:
        size = {
            "scalar": min(SIZE_MAX_SCALAR, SIZE_TARGET_VOL_PCT / rv),
            "target_vol_pct": SIZE_TARGET_VOL_PCT,
            "max_scalar": SIZE_MAX_SCALAR,
        }
    return {"stop": stop, "size": size}
