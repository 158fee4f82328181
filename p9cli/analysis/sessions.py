"""Session volume profiles: the previous and the developing UTC day, week and month, each with
its point of control (POC) and value area (VAH/VAL), and the naked POCs of recent sessions.

Pure functions over candle frames (:class:`p9cli.analysis.candles.Candles` or anything
:func:`p9cli.analysis.profile.column` reads); no I/O, no clock.

Sessions (UTC): a **day** is ``[00:00, 24:00)``; a **week** starts on Monday 00:00; a **month**
on the 1st at 00:00. The *developing* session is the one holding ``now_ms``; the *previous*
session is the one before it.

A session's profile uses, for every moment of the session, the finest timeframe that covers
it (the composite rule of :func:`p9cli.analysis.profile.composite_profile`, applied to the
candles that lie inside the session), so each minute's volume counts once. Its row height is
``row_size_for(tick, ATR)`` with the ATR(14) of 1h for days, 4h for weeks and 1d for months
(a row is ~0.1 ATR of that timeframe), so the POC is precise to about 0.05 ATR.

A POC is **naked** when no candle after its session's close traded at it (low <= POC <= high),
checked on the same finest-available coverage.

``stream`` calls :func:`session_profiles` when a session closes (and may call it on any candle
close to refresh the developing sessions): it costs ~1-2 ms for 11 timeframes x 1000 candles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from p9cli.analysis.profile import column, composite_profile, composite_slices, row_size_for, value_area
from p9cli.analysis.units import apply_units
from p9cli.universe import TIMEFRAME_MS

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
_MONDAY_OFFSET_MS = 4 * DAY_MS  # 1970-01-05, the first Monday after the epoch
SESSION_KINDS = ("day", "week", "month")
#: The timeframe whose ATR sets a session kind's row height.
ROW_ATR_TIMEFRAME = {"day": "1h", "week": "4h", "month": "1d"}
VALUE_AREA_SHARE = 0.70


def session_start(kind: str, t_ms: int) -> int:
    """Open time (ms) of the ``kind`` session ("day", "week", "month") holding ``t_ms``."""
    if kind == "day":
        return t_ms // DAY_MS * DAY_MS
    if kind == "week":
        return (t_ms - _MONDAY_OFFSET_MS) // WEEK_MS * WEEK_MS + _MONDAY_OFFSET_MS
    if kind == "month":
        d = datetime.fromtimestamp(t_ms / 1000, tz=UTC)
        return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000)
    raise ValueError(f"unknown session kind {kind!r}; one of {', '.join(SESSION_KINDS)}")


def session_end(kind: str, start_ms: int) -> int:
    """Close time (ms, exclusive) of the ``kind`` session opening at ``start_ms``."""
    if kind == "day":
        return start_ms + DAY_MS
    if kind == "week":
        return start_ms + WEEK_MS
    if kind == "month":
        d = datetime.fromtimestamp(start_ms / 1000, tz=UTC)
        y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return int(datetime(y, m, 1, tzinfo=UTC).timestamp() * 1000)
    raise ValueError(f"unknown session kind {kind!r}; one of {', '.join(SESSION_KINDS)}")


def _window(frames: Mapping[str, Any], start_ms: int, end_ms: int) -> dict[str, dict[str, np.ndarray]]:
    """Per timeframe, the candles lying wholly inside ``[start_ms, end_ms)``."""
    out = {}
    for tf, df in frames.items():
        if tf not in TIMEFRAME_MS or len(df) == 0:
            continue
        ot = column(df, "open_time")
        a = int(np.searchsorted(ot, start_ms, side="left"))
        b = int(np.searchsorted(ot, end_ms - TIMEFRAME_MS[tf], side="right"))
        if b > a:
            out[tf] = {name: column(df, name)[a:b] for name in ("open_time", "high", "low", "volume")}
    return out


def profile_of_window(
    frames: Mapping[str, Any], start_ms: int, end_ms: int, row_size: float, value_area_share: float = 0.70
) -> dict | None:
    """POC, value area, range and volume of the candles inside ``[start_ms, end_ms)`` (finest
    timeframe for each moment). None when no candle lies inside the window."""
    inside = _window(frames, start_ms, end_ms)
    if not inside:
        return None
    prof = composite_profile(inside, row_size)
    if prof.total <= 0:
        return None
    va = value_area(prof, value_area_share)
    used = [s[0] for s in prof.sources]
    lows = [float(inside[tf]["low"].min()) for tf in used]
    highs = [float(inside[tf]["high"].max()) for tf in used]
    return {
        "poc": va.poc,
        "vah": va.vah,
        "val": va.val,
        "value_area_share": va.share,
        "high": max(highs),
        "low": min(lows),
        "volume": prof.total,
        "row_size": prof.row_size,
        "timeframes": used,
        "candles": int(sum(s[3] for s in prof.sources)),
        "covered_from_ms": int(min(s[1] for s in prof.sources)),
    }


def _coverage(frames: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(open_time, low, high) of the finest-available coverage (each moment once), time order."""
    ots, lows, highs = [], [], []
    for tf, a, b in composite_slices(frames):
        ots.append(column(frames[tf], "open_time")[a:b])
        lows.append(column(frames[tf], "low")[a:b])
        highs.append(column(frames[tf], "high")[a:b])
    if not ots:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    ot = np.concatenate(ots)
    order = np.argsort(ot, kind="stable")
    return ot[order], np.concatenate(lows)[order], np.concatenate(highs)[order]


def _distances(price: float, last_price: float, atr_ref: float | None) -> tuple[float, float | None]:
    pct = 100.0 * (price - last_price) / last_price if last_price else math.nan
    return pct, ((price - last_price) / atr_ref if atr_ref else None)


def _position(last_price: float, val: float, vah: float) -> str:
    return "above" if last_price > vah else "below" if last_price < val else "inside"


def session_profiles(
    frames: Mapping[str, Any],
    atr: Mapping[str, float],
    last_price: float,
    tick: float,
    *,
    now_ms: int,
    atr_ref: float | None = None,
    naked_sessions: Mapping[str, int] | None = None,
    value_area_share: float = VALUE_AREA_SHARE,
    qty_step: float | None = None,
) -> dict:
    """The ``sessions`` and ``naked_pocs`` sections of the structure document.

    Args:
        frames: timeframe -> closed candles, oldest first (any subset of the 11 timeframes).
        atr: timeframe -> current ATR(14) in price units (row heights, see the module doc; a
            missing ATR falls back to the nearest longer, then shorter timeframe that has one).
        last_price: the latest price; distances are measured from it.
        tick: the price increment (rows are whole ticks).
        now_ms: the time the developing sessions hold (the close time of the latest candle
            for stored history; the wall clock for a live caller).
        atr_ref: the ATR that ``*_distance_atr`` fields are measured in (the document's
            ``atr_timeframe``); None leaves them null.
        naked_sessions: how many complete sessions back to look for naked POCs, per kind
            (default ``{"day": 10, "week": 4}``).
        qty_step: the quantity increment (volumes are rounded to it; prices to ``tick``: the
            result follows the document's unit convention, :func:`p9cli.analysis.units.apply_units`).

    Returns::

        {"sessions": {kind: {"previous": profile | None, "developing": profile | None}},
         "naked_pocs": [{"session", "start_ms", "end_ms", "poc", "distance",
                         "distance_pct", "distance_atr"}, ...]}   # nearest first

    where a profile is ``{"start_ms", "end_ms", "complete", "poc", "vah", "val",
    "value_area_share", "high", "low", "volume", "row_size", "timeframes", "candles",
    "covered_from_ms", "position", "poc_distance_pct", "poc_distance_atr",
    "vah_distance_pct", "vah_distance_atr", "val_distance_pct", "val_distance_atr"}``;
    ``complete`` is false for the developing session and for a previous session whose
    stored candles start after its open (``covered_from_ms`` > ``start_ms``).
    """
    frames = {tf: df for tf, df in frames.items() if tf in TIMEFRAME_MS and len(df) > 0}
    naked_sessions = {"day": 10, "week": 4} if naked_sessions is None else naked_sessions
    usable = sorted((tf for tf in TIMEFRAME_MS if _positive(atr.get(tf))), key=TIMEFRAME_MS.__getitem__)
    sessions: dict[str, dict] = {}
    naked: list[dict] = []
    if not frames or not usable or not (tick > 0):
        return {
            "sessions": {k: {"previous": None, "developing": None} for k in SESSION_KINDS},
            "naked_pocs": [],
        }
    cov = _coverage(frames)
    for kind in SESSION_KINDS:
        row = row_size_for(tick, _atr_for(atr, usable, ROW_ATR_TIMEFRAME[kind]))
        dev_start = session_start(kind, now_ms)
        prev_start = session_start(kind, dev_start - 1)
        out = {}
        for name, start in (("previous", prev_start), ("developing", dev_start)):
            end = session_end(kind, start)
            prof = profile_of_window(frames, start, end, row, value_area_share)
            if prof is not None:
                prof = _describe(prof, start, end, name == "previous", last_price, atr_ref)
            out[name] = prof
        sessions[kind] = out
        # naked POCs of the complete sessions before the developing one
        start = dev_start
        for _ in range(naked_sessions.get(kind, 0)):
            start = session_start(kind, start - 1)
            end = session_end(kind, start)
            prof = profile_of_window(frames, start, end, row, value_area_share)
            if prof is None or prof["covered_from_ms"] > start:
                break  # older sessions are not (fully) stored
            poc = prof["poc"]
            after = cov[0] >= end
            if np.any((cov[1][after] <= poc) & (cov[2][after] >= poc)):
                continue
            pct, in_atr = _distances(poc, last_price, atr_ref)
            naked.append(
                {
                    "session": kind,
                    "start_ms": start,
                    "end_ms": end,
                    "poc": poc,
                    "distance": poc - last_price,
                    "distance_pct": pct,
                    "distance_atr": in_atr,
                }
            )
    naked.sort(key=lambda n: abs(n["distance"]))
    return apply_units({"sessions": sessions, "naked_pocs": naked}, tick, qty_step)


def _describe(prof: dict, start: int, end: int, closed: bool, last_price: float, atr_ref) -> dict:
    out = {"start_ms": start, "end_ms": end, "complete": bool(closed and prof["covered_from_ms"] <= start)}
    out.update(prof)
    out["position"] = _position(last_price, prof["val"], prof["vah"])
    for name in ("poc", "vah", "val"):
        pct, in_atr = _distances(prof[name], last_price, atr_ref)
        out[f"{name}_distance_pct"] = pct
        out[f"{name}_distance_atr"] = in_atr
    return out


def _positive(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x)) and float(x) > 0
    except (TypeError, ValueError):
        return False


def _atr_for(atr: Mapping[str, float], usable: list[str], want: str) -> float:
    """ATR of ``want``, else of the nearest longer timeframe that has one, else the longest."""
    if want in usable:
        return float(atr[want])
    longer = [tf for tf in usable if TIMEFRAME_MS[tf] > TIMEFRAME_MS[want]]
    return float(atr[longer[0] if longer else usable[-1]])
