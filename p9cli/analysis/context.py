"""The structure document ``p9.structure/2``: assembled from the per-timeframe analytics.

Entry points, all pure (no I/O, no clock unless ``now_ms`` is omitted):

* :func:`analyze_timeframe` — trend, volatility and volume of ONE timeframe (what ``stream``
  recomputes when a candle closes, ~1-2 ms for 1000 candles);
* :func:`build_structure` — the whole document for one (exchange, symbol) from the candles of
  every timeframe, reusing per-timeframe sections already computed;
* :func:`p9cli.analysis.sessions.session_profiles` — the ``sessions`` and ``naked_pocs``
  sections alone (what ``stream`` recomputes when a session closes).

Tick size and quantity step: taken from the data (:func:`p9cli.analysis.candles.tick_size`,
:func:`p9cli.analysis.units.qty_step`: the GCD of every price, resp. volume, at 1e-8
resolution), not from a table, so they follow the exchange when it changes them.

Units: every number is rounded by the unit its name declares (:func:`p9cli.analysis.units.
apply_units`, docs/structure.md "Unit convention"); every float is finite or null.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import orjson

from p9cli.analysis.candles import Candles, tick_size
from p9cli.analysis.indicators import atr
from p9cli.analysis.trend import ATR_PERIOD, analyze_trend, timeframe_weight, trend_alignment
from p9cli.analysis.units import apply_units, qty_step
from p9cli.analysis.volatility import analyze_volatility
from p9cli.analysis.volume import analyze_volume
from p9cli.analysis.zones import structure_sections
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES, channel_symbol, exchange_symbol

SCHEMA = "p9.structure/2"


_qty_step = qty_step  # the parameters of the same name shadow it


def finite(obj):
    """A copy of ``obj`` (dicts, lists, tuples, numbers) where every non-finite float is None and
    numpy scalars are plain Python numbers."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, float):  # incl. numpy.float64, a float subclass
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, int):
        return int(obj)
    if hasattr(obj, "item"):  # other numpy scalars
        return finite(obj.item())
    return obj


def analyze_timeframe(
    candles: Candles, timeframe: str, tick: float | None = None, qty_step: float | None = None
) -> dict:
    """Trend, volatility and volume of one timeframe (JSON-ready, units applied; see the schema).

    ``candles`` are closed candles, oldest first (at least one). ``tick`` and ``qty_step``
    round prices and quantities (default: what these candles show); pass the document's so a
    recomputed section rounds like the rest of the document.
    """
    if len(candles) == 0:
        raise ValueError(f"{timeframe}: no candles")
    tf_ms = TIMEFRAME_MS[timeframe]
    c = candles
    atr14 = atr(c.high, c.low, c.close, ATR_PERIOD)
    last_open = int(c.open_time[-1])
    doc = {
        "candles": len(c),
        "first_open_ms": int(c.open_time[0]),
        "last_open_ms": last_open,
        "last_close_ms": last_open + tf_ms,
        "close": float(c.close[-1]),
        "trend": analyze_trend(c.open_time, c.high, c.low, c.close, atr14),
        "volatility": analyze_volatility(c.open, c.high, c.low, c.close, tf_ms, atr14=atr14),
        "volume": analyze_volume(c.volume, c.quote_volume),
    }
    if tick is None:
        tick = tick_size(c)
    if qty_step is None:
        qty_step = _qty_step(c)
    return apply_units(finite(doc), tick, qty_step)


def alignment(per_timeframe: Mapping[str, Mapping]) -> dict:
    """The multi-timeframe trend alignment section."""
    trends = {tf: d["trend"] for tf, d in per_timeframe.items()}
    score = trend_alignment(trends, TIMEFRAME_MS)
    return {
        "score": score,
        "weights": {tf: timeframe_weight(TIMEFRAME_MS[tf]) for tf in trends},
        "up": [tf for tf, t in trends.items() if t["label"] == "up"],
        "down": [tf for tf, t in trends.items() if t["label"] == "down"],
        "range": [tf for tf, t in trends.items() if t["label"] == "range"],
    }


def build_structure(
    exchange: str,
    symbol: str,
    candles_by_tf: Mapping[str, Candles],
    *,
    per_timeframe: Mapping[str, dict] | None = None,
    tick: float | None = None,
    qty_step: float | None = None,
    now_ms: int | None = None,
    closed_by_ms: int | None = None,
) -> dict:
    """The ``p9.structure/2`` document for one (exchange, symbol).

    ``candles_by_tf`` maps timeframe -> candles (any subset of the 11 timeframes, each with at
    least one candle). ``per_timeframe`` holds sections already computed by
    :func:`analyze_timeframe` (``stream`` passes all but the timeframe whose candle just closed);
    missing ones are computed here. ``tick`` and ``qty_step`` default to what the data shows
    (``stream`` passes the stored document's, so a recompute rounds the same way). ``now_ms``
    is the document's ``ts`` (default: the wall clock). ``closed_by_ms``: a live caller whose
    last candles may still be forming passes the time; the floor pivots then come from the
    last daily candle closed by then (None: every candle given is closed, as stored).
    """
    order = [tf for tf in TIMEFRAMES if tf in candles_by_tf]
    if not order:
        raise ValueError("no timeframe given")
    if tick is None:
        tick = tick_size(*(candles_by_tf[tf] for tf in order))
    if qty_step is None:
        qty_step = _qty_step(*(candles_by_tf[tf] for tf in order))
    sections = {}
    for tf in order:
        done = per_timeframe.get(tf) if per_timeframe else None
        sections[tf] = done if done is not None else analyze_timeframe(candles_by_tf[tf], tf, tick, qty_step)
    # The last price: the close of the most recent candle (latest close time; of equal close
    # times, the finest timeframe), so a stale file of a short timeframe does not win.
    latest = max(reversed(order), key=lambda tf: sections[tf]["last_close_ms"])
    data_ms = sections[latest]["last_close_ms"]
    last_price = sections[latest]["close"]
    atr_by_tf = {
        tf: sections[tf]["volatility"]["atr"] for tf in order if (sections[tf]["volatility"]["atr"] or 0) > 0
    }
    if atr_by_tf and tick:
        # key levels, floor pivots, session profiles, composite profile and liquidity zones
        price = structure_sections(
            candles_by_tf, atr_by_tf, last_price, tick, now_ms=data_ms, closed_by_ms=closed_by_ms
        )
    else:  # no timeframe has an ATR yet (every series shorter than 15 candles)
        price = {
            "atr_timeframe": None,
            "levels": [],
            "floor_pivots": None,
            "sessions": None,
            "naked_pocs": [],
            "composite_profile": None,
            "liquidity_zones": [],
        }
    doc = {
        "schema": SCHEMA,
        "exchange": exchange,
        "symbol": channel_symbol(symbol),
        "base": symbol,
        "exchange_symbol": exchange_symbol(exchange, symbol),
        "ts": int(time.time() * 1000) if now_ms is None else int(now_ms),
        "event_ts": data_ms,
        "tick": tick,
        "qty_step": qty_step,
        "last_price": last_price,
        "last_price_timeframe": latest,
        "atr_timeframe": price["atr_timeframe"],
        "timeframes": {},
        "alignment": alignment(sections),
        "levels": price["levels"],
        "floor_pivots": price["floor_pivots"],
        "sessions": price["sessions"],
        "naked_pocs": price["naked_pocs"],
        "liquidity_zones": price["liquidity_zones"],
        "composite_profile": price["composite_profile"],
    }
    doc = apply_units(finite(doc), tick, qty_step)
    doc["timeframes"] = sections  # units already applied (analyze_timeframe)
    return doc


def to_json(doc: Mapping) -> bytes:
    """The document as indented UTF-8 JSON (keys in document order), newline-terminated."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
