"""Liquidity zones (high-volume accumulation areas) and the one-call assembly of the price
sections of the structure document (levels, floor pivots, session profiles, composite profile,
zones).

Pure functions over numpy arrays / candle frames (no I/O). A "frame" is a pandas DataFrame
with the Parquet columns or a :class:`p9cli.analysis.candles.Candles`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from p9cli.analysis.levels import (
    combined_timeframe_score,
    floor_pivots,
    key_levels,
    reference_timeframe,
)
from p9cli.analysis.profile import (
    VolumeProfile,
    column,
    composite_profile,
    composite_slices,
    densest_window,
    frame_profile,
    node_core,
    row_size_for,
    value_area,
    volume_nodes,
    volume_profile,
)
from p9cli.analysis.sessions import session_profiles
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES

#: Zone strength = sum of weight * component, see :func:`liquidity_zones`.
ZONE_STRENGTH_WEIGHTS = {"density": 0.4, "timeframes": 0.3, "time": 0.3}


def rolling_max(x: np.ndarray, m: int) -> np.ndarray:
    """``out[i] = max(x[i : i + m])`` for ``i`` in ``0 .. len(x) - m`` (NaN propagates), by
    doubling: O(n log m) with a handful of vectorised ``np.maximum`` passes."""
    r = x
    span = 1
    while span * 2 <= m:
        r = np.maximum(r[:-span], r[span:])  # r[i] = max(x[i : i + 2 * span])
        span *= 2
    if span < m:
        r = np.maximum(r[: r.size - (m - span)], r[m - span :])
    return r[: x.size - m + 1]


def consolidations(
    high: np.ndarray,
    low: np.ndarray,
    atr: float,
    *,
    min_bars: int = 12,
    band_atr: float = 2.5,
    max_band_atr: float | None = None,
) -> list[tuple[int, int]]:
    """Consolidation ranges: stretches where price stayed inside a narrow ATR-relative band.

    A window of ``min_bars`` consecutive bars is *tight* when ``max(high) - min(low) <=
    band_atr * atr``. Tight windows that share bars are joined into one stretch; a stretch whose
    whole range exceeds ``max_band_atr * atr`` (default ``1.5 * band_atr``: a slow drift, not
    a range) is cut greedily, left to right, into pieces that stay within it, and pieces
    shorter than ``min_bars`` are dropped.

    Args:
        high, low: 1-D float arrays of one timeframe, oldest first.
        atr: that timeframe's ATR in price units (finite, > 0; otherwise nothing is found).

    Returns:
        ``[(start, stop), ...]``: disjoint positional bar ranges ``start:stop``, ascending.
    """
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    n = h.size
    if n < min_bars or min_bars < 2 or not (math.isfinite(atr) and atr > 0):
        return []
    band = band_atr * atr
    cap = (max_band_atr if max_band_atr is not None else 1.5 * band_atr) * atr
    win_h = rolling_max(h, min_bars)
    win_l = -rolling_max(-lo, min_bars)
    tight = (win_h - win_l) <= band  # NaN compares False: never tight
    if not tight.any():
        return []
    edges = np.diff(np.concatenate(([0], tight.astype(np.int8), [0])))
    run_starts = np.flatnonzero(edges == 1)
    run_stops = np.flatnonzero(edges == -1)  # window starts s..e-1 -> bars s .. e-1+min_bars
    stretches: list[list[int]] = []
    for s, e in zip(run_starts.tolist(), run_stops.tolist(), strict=True):
        if stretches and s < stretches[-1][1]:  # bars overlap the previous stretch: one stretch
            stretches[-1][1] = e - 1 + min_bars
        else:
            stretches.append([s, e - 1 + min_bars])
    out: list[tuple[int, int]] = []
    for a, b in stretches:
        if float(h[a:b].max() - lo[a:b].min()) <= cap:
            out.append((a, b))
            continue
        # greedy split of a drifting stretch: from each piece's start, the running range
        # (cumulative max - cumulative min) first exceeds the cap where the next piece starts
        start = a
        while b - start >= min_bars:
            rng = np.maximum.accumulate(h[start:b]) - np.minimum.accumulate(lo[start:b])
            over = np.flatnonzero(rng > cap)
            stop = start + max(int(over[0]), 1) if over.size else b  # a lone too-tall bar: skip it
            if stop - start >= min_bars:
                out.append((start, stop))
            if stop >= b:
                break
            start = stop
    return out


def _coverage(frames: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Composite-coverage candles (see :func:`composite_slices`) as flat arrays."""
    closes, durations, opens = [], [], []
    for tf, a, b in composite_slices(frames):
        closes.append(column(frames[tf], "close")[a:b])
        opens.append(column(frames[tf], "open_time")[a:b])
        durations.append(np.full(b - a, TIMEFRAME_MS[tf], dtype=np.int64))
    if not closes:
        return {"close": np.zeros(0), "open_time": np.zeros(0, np.int64), "ms": np.zeros(0, np.int64)}
    return {
        "close": np.concatenate(closes),
        "open_time": np.concatenate(opens),
        "ms": np.concatenate(durations),
    }


def _merge_intervals(lows: list[float], highs: list[float], gap: float) -> list[tuple[float, float]]:
    """Union of price intervals, joining those separated by at most ``gap``."""
    out: list[list[float]] = []
    for a, b in sorted(zip(lows, highs, strict=True)):
        if out and a <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def liquidity_zones(
    frames: Mapping[str, Any],
    atr: Mapping[str, float],
    profile: VolumeProfile,
    *,
    last_close: float | None = None,
    tf_nodes: Mapping[str, Mapping[str, list[dict]]] | None = None,
    profile_nodes: Mapping[str, list[dict]] | None = None,
    tick: float | None = None,
    reference_tf: str | None = None,
    min_bars: int = 12,
    band_atr: float = 2.5,
    min_rel_volume: float = 1.1,
    min_density_ratio: float = 1.0,
    min_volume_share: float = 0.01,
    max_distance_atr: float = 8.0,
    max_width_atr: float = 1.0,
    max_zones: int = 4,
    distance_atr: float | None = None,
) -> list[dict]:
    """High-volume accumulation areas: HVN clusters of the composite profile and
    consolidation ranges with elevated volume.

    Args:
        frames: timeframe -> candles (ascending, closed; ``open_time``, ``high``, ``low``,
            ``close``, ``volume``).
        atr: timeframe -> current ATR(14) in price units.
        profile: the composite volume profile (:func:`composite_profile`); volume shares,
            densities and HVNs come from it.
        last_close: latest close; with it, zones whose nearer edge is more than
            ``max_distance_atr`` reference ATRs away are dropped, and distances are reported.
        tf_nodes: timeframe -> :func:`volume_nodes` of that timeframe's own profile (used to
            decide which timeframes "show" a zone); computed here when omitted (needs
            ``tick``, else one row = ATR/10 without tick rounding).
        profile_nodes: :func:`volume_nodes` of ``profile`` if already computed.
        reference_tf: timeframe whose ATR scales distances (default: the longest one with
            an ATR, as in :func:`key_levels`).
        min_bars, band_atr: consolidation rule (:func:`consolidations`), per timeframe with
            that timeframe's ATR.
        min_rel_volume: a consolidation qualifies when its mean bar volume is at least this
            multiple of its timeframe's mean bar volume.
        min_density_ratio: a zone qualifies when its volume per price unit in the composite
            profile is at least this multiple of the profile's mean ...
        min_volume_share: ... and it holds at least this share of the profile's volume, and
            at least one timeframe shows it (see ``timeframes`` below).
        max_width_atr: a zone is at most this many ATRs of its own timeframe wide (an HVN
            cluster's timeframe is the reference one, a consolidation's the timeframe it was
            found on); a wider candidate is cut to its densest ``max_width_atr`` window of the
            composite profile (:func:`p9cli.analysis.profile.densest_window`).
        max_zones: at most this many zones are returned.
        distance_atr: the ATR ``distance_atr`` is measured in (the document's
            ``atr_timeframe``); default: the reference ATR.

    Zones:
        * ``hvn_cluster``: high-volume nodes of the composite profile (:func:`volume_nodes`)
          whose extents touch or overlap (gap <= one row) are joined into one range.
        * ``consolidation``: consolidation ranges (:func:`consolidations`) with elevated volume
          on any timeframe; ranges on different timeframes that overlap both in time and in
          price (by at least half of the narrower one) are one zone, whose price bounds are
          those of its tightest member (most time per unit of price height).

    Distinct zones: candidates are taken strongest first; one that overlaps a zone already
    taken is merged into it when the union stays within that zone's width bound, else
    dropped; taking stops at ``max_zones``.

    Returns:
        a list of dicts, sorted by ``mid`` descending::

            kind            "hvn_cluster" | "consolidation"
            timeframe       the timeframe whose ATR bounds the width
            low, high, mid  price bounds and midpoint
            width_atr       (high - low) / ATR(timeframe); <= max_width_atr
            max_width       the bound in price units (max_width_atr * ATR(timeframe))
            volume          composite-profile volume inside [low, high]
            volume_share    volume / profile total (0..1)
            density_ratio   (volume / (high - low)) / (profile total / profile height)
            time_spent_ms   total duration of the composite-coverage candles (finest
                            timeframe for each period, no double counting) whose close lies
                            inside [low, high]
            time_spent_bars number of those candles
            time_share      time_spent_ms / duration of the whole coverage (0..1)
            first_open_ms, last_open_ms  open time of the first/last such candle (None if none)
            timeframes      timeframes that show the zone (their own profile has an HVN
                            overlapping it, or they have a qualifying consolidation
                            overlapping it in price), longest first
            consolidation   for kind "consolidation": {"timeframe", "start_ms", "end_ms"
                            (close of the last bar), "bars", "volume_ratio" (mean bar volume over the
                            timeframe's mean)} of the tightest
                            member; None for hvn clusters
            distance_pct, distance_atr   (mid - last_close) in % of last_close and in
                            ``distance_atr`` units (None without last_close)
            strength        0..1 = 0.4*D + 0.3*F + 0.3*T with D = r/(1+r) for
                            r = density_ratio, F = 1 - prod(1 - evidence_weight) over the
                            zone's timeframes, T = s/(s + 0.05) for s = time_share
    """
    frames = {tf: df for tf, df in frames.items() if tf in TIMEFRAME_MS and len(df) > 0}
    if not frames or profile.total <= 0:
        return []
    ref = reference_tf or reference_timeframe(frames, atr)
    atr_ref = float(atr[ref])
    has_close = last_close is not None and math.isfinite(last_close)
    reach = max_distance_atr * atr_ref

    # --- which timeframes show what
    if tf_nodes is None:
        tf_nodes = {}
        for tf, df in frames.items():
            a = atr.get(tf)
            if a is None or not (math.isfinite(a) and a > 0):
                continue
            hi_, lo_ = column(df, "high"), column(df, "low")
            rng = float(np.nanmax(hi_) - np.nanmin(lo_))
            rs = row_size_for(tick, a, price_range=rng) if tick else max(a / 10.0, rng / 2000.0)
            tf_nodes[tf] = volume_nodes(frame_profile(df, rs))
    # --- consolidation ranges with elevated volume, per timeframe
    cons = []  # (tf, start_ms, end_ms, low, high, bars, rel_volume)
    for tf, df in frames.items():
        a = atr.get(tf)
        if a is None or not (math.isfinite(a) and a > 0):
            continue
        h, lo = column(df, "high"), column(df, "low")
        found = consolidations(h, lo, a, min_bars=min_bars, band_atr=band_atr)
        if not found:
            continue
        v = np.nan_to_num(column(df, "volume"))
        cum_v = np.concatenate(([0.0], np.cumsum(v)))
        mean_v = cum_v[-1] / v.size
        if not mean_v > 0:
            continue
        ot = column(df, "open_time")
        width = TIMEFRAME_MS[tf]
        for s, e in found:
            rel = (cum_v[e] - cum_v[s]) / (e - s) / mean_v
            if rel < min_rel_volume:
                continue
            c_lo, c_hi = float(lo[s:e].min()), float(h[s:e].max())
            cons.append((tf, int(ot[s]), int(ot[e - 1]) + width, c_lo, c_hi, e - s, float(rel)))

    candidates: list[dict] = []
    # --- HVN clusters of the composite profile (the reference timeframe's zones)
    hvn = (profile_nodes if profile_nodes is not None else volume_nodes(profile))["hvn"]
    cores = [node_core(profile, n, max_width_atr * atr_ref) for n in hvn]
    for low, high in _merge_intervals(
        [c[0] for c in cores], [c[1] for c in cores], profile.row_size * 1.0001
    ):
        candidates.append(
            {"kind": "hvn_cluster", "timeframe": ref, "low": low, "high": high, "consolidation": None}
        )

    # --- consolidations, merged across timeframes (time and price overlap)
    if cons:
        k = len(cons)
        st = np.array([c[1] for c in cons])
        en = np.array([c[2] for c in cons])
        pl = np.array([c[3] for c in cons])
        ph = np.array([c[4] for c in cons])
        t_ov = (st[:, None] < en[None, :]) & (st[None, :] < en[:, None])
        inter = np.minimum(ph[:, None], ph[None, :]) - np.maximum(pl[:, None], pl[None, :])
        narrow = np.minimum((ph - pl)[:, None], (ph - pl)[None, :])
        linked = t_ov & (inter >= 0.5 * narrow)
        # connected components: every range takes the smallest label among its neighbours
        # until nothing changes (as many rounds as the longest chain, usually 1-3)
        label = np.arange(k)
        while True:
            nxt = np.where(linked, label[None, :], k).min(axis=1)
            nxt = np.minimum(nxt, label)
            if np.array_equal(nxt, label):
                break
            label = nxt
        groups: dict[int, list[int]] = {}
        for i, g in enumerate(label.tolist()):
            groups.setdefault(g, []).append(i)
        for members in groups.values():
            # the member with the most time per unit of price height: the box as the finest
            # timeframe that saw all of it draws it, not a coarse bar's wicks around it
            base = max(
                members, key=lambda i: ((cons[i][2] - cons[i][1]) / max(cons[i][4] - cons[i][3], 1e-300), -i)
            )
            tf, s_ms, e_ms, low, high, bars, rel = cons[base]
            candidates.append(
                {
                    "kind": "consolidation",
                    "timeframe": tf,
                    "low": low,
                    "high": high,
                    "consolidation": {
                        "timeframe": tf,
                        "start_ms": s_ms,
                        "end_ms": e_ms,
                        "bars": int(bars),
                        "volume_ratio": rel,
                    },
                }
            )
    if not candidates:
        return []
    # --- narrow: at most max_width_atr ATRs of the zone's own timeframe, around its densest part
    for c in candidates:
        c["max_width"] = max_width_atr * float(atr.get(c["timeframe"]) or atr_ref)
        low, high = densest_window(profile, c["low"], c["high"], c["max_width"])
        if tick:  # edges on the tick, inward: the bound holds after rounding
            lo_t, hi_t = math.ceil(low / tick - 1e-9) * tick, math.floor(high / tick + 1e-9) * tick
            low, high = (lo_t, hi_t) if hi_t > lo_t else (low, high)
        c["low"], c["high"] = low, high

    unit = float(distance_atr) if distance_atr and distance_atr > 0 else atr_ref
    ctx = _ZoneContext(frames, profile, tf_nodes, cons, last_close if has_close else None, unit, atr)
    zones = ctx.measure(candidates)
    keep = [
        z
        for z in zones
        if z["density_ratio"] >= min_density_ratio
        and z["volume_share"] >= min_volume_share
        and z["timeframes"]
        and (not has_close or max(z["low"] - last_close, last_close - z["high"], 0.0) <= reach)
    ]
    chosen = distinct_zones(keep, max_zones)
    merged = [z for z in chosen if z.pop("merged", False)]
    final = ctx.measure(chosen) if merged else chosen
    return sorted(final, key=lambda z: -z["mid"])


def distinct_zones(zones: list[dict], max_zones: int) -> list[dict]:
    """Non-overlapping zones, strongest first: a zone overlapping one already taken is merged
    into it (``low``/``high`` become the union, ``merged`` is set) when the union is no wider
    than the taken zone's ``max_width``, else dropped; at most ``max_zones`` are taken.
    Each zone needs ``low``, ``high``, ``strength`` and ``max_width``; the input is not changed.
    """
    chosen: list[dict] = []
    for z in sorted(zones, key=lambda z: (-z["strength"], z["low"])):
        hit = next((c for c in chosen if z["low"] < c["high"] and z["high"] > c["low"]), None)
        if hit is None:
            if len(chosen) < max_zones:
                chosen.append(dict(z))
            continue
        low, high = min(hit["low"], z["low"]), max(hit["high"], z["high"])
        if high - low <= hit["max_width"] + 1e-12:
            hit["low"], hit["high"], hit["merged"] = low, high, True
    # a merge can make a taken zone reach another one: fold those too (rare, small lists)
    out: list[dict] = []
    for z in chosen:
        hit = next((c for c in out if z["low"] < c["high"] and z["high"] > c["low"]), None)
        if hit is None:
            out.append(z)
        elif max(hit["high"], z["high"]) - min(hit["low"], z["low"]) <= hit["max_width"] + 1e-12:
            hit["low"], hit["high"], hit["merged"] = (
                min(hit["low"], z["low"]),
                max(hit["high"], z["high"]),
                True,
            )
    return out


class _ZoneContext:
    """What zone measurements need: frames, the composite profile, every timeframe's HVNs and
    consolidations, the last close and the ATRs."""

    def __init__(self, frames, profile, tf_nodes, cons, last_close, atr_ref, atr):
        self.profile = profile
        self.total = profile.total
        height = profile.price_high - profile.price_low
        self.mean_density = self.total / height if height > 0 else 0.0
        self.last_close = last_close
        self.atr_ref = atr_ref
        self.atr = atr
        spans = [(tf, n["low"], n["high"]) for tf, nodes in tf_nodes.items() for n in nodes.get("hvn", [])]
        spans += [(c[0], c[3], c[4]) for c in cons]
        self.span_tf = [s[0] for s in spans]
        self.span_lo = np.array([s[1] for s in spans], dtype=np.float64)
        self.span_hi = np.array([s[2] for s in spans], dtype=np.float64)
        self.cov = _coverage(frames)
        self.cov_total = float(self.cov["ms"].sum())

    def measure(self, candidates: list[dict]) -> list[dict]:
        """Each candidate ({"kind", "timeframe", "low", "high", "max_width", "consolidation"})
        as a zone dict with its volume, density, time spent, timeframes and strength."""
        if not candidates:
            return []
        lows = np.array([c["low"] for c in candidates])
        highs = np.array([c["high"] for c in candidates])
        vols = np.asarray(self.profile.volume_between(lows, highs), dtype=np.float64)
        widths = np.maximum(highs - lows, self.profile.row_size)
        ratio = (vols / widths) / self.mean_density if self.mean_density > 0 else np.zeros(len(candidates))
        shows = np.zeros((len(candidates), len(TIMEFRAMES)), dtype=bool)
        tf_col = {tf: i for i, tf in enumerate(TIMEFRAMES)}
        if self.span_tf:
            ov = (self.span_lo[None, :] < highs[:, None]) & (self.span_hi[None, :] > lows[:, None])
            cols = np.array([tf_col[t] for t in self.span_tf])
            for j in range(len(TIMEFRAMES)):
                sel = cols == j
                if sel.any():
                    shows[:, j] |= ov[:, sel].any(axis=1)
        for z, c in enumerate(candidates):
            if c["consolidation"] is not None:
                shows[z, tf_col[c["consolidation"]["timeframe"]]] = True
        cov = self.cov
        inside = (cov["close"][None, :] >= lows[:, None]) & (cov["close"][None, :] <= highs[:, None])
        spent_ms = (inside * cov["ms"][None, :]).sum(axis=1)
        spent_bars = inside.sum(axis=1)
        sw = ZONE_STRENGTH_WEIGHTS
        out = []
        for z, c in enumerate(candidates):
            low, high = float(lows[z]), float(highs[z])
            mid = (low + high) / 2.0
            tfs = [TIMEFRAMES[j] for j in np.flatnonzero(shows[z]).tolist()]
            share_t = float(spent_ms[z]) / self.cov_total if self.cov_total > 0 else 0.0
            r = float(ratio[z])
            strength = (
                sw["density"] * r / (1.0 + r)
                + sw["timeframes"] * combined_timeframe_score(tfs)
                + sw["time"] * share_t / (share_t + 0.05)
            )
            where = np.flatnonzero(inside[z])
            tf_atr = float(self.atr.get(c["timeframe"]) or self.atr_ref)
            lc = self.last_close
            out.append(
                {
                    "kind": c["kind"],
                    "timeframe": c["timeframe"],
                    "low": low,
                    "high": high,
                    "mid": mid,
                    "width_atr": (high - low) / tf_atr,
                    "max_width": c["max_width"],
                    "volume": float(vols[z]),
                    "volume_share": float(vols[z]) / self.total if self.total > 0 else 0.0,
                    "density_ratio": r,
                    "time_spent_ms": int(spent_ms[z]),
                    "time_spent_bars": int(spent_bars[z]),
                    "time_share": share_t,
                    "first_open_ms": int(cov["open_time"][where].min()) if where.size else None,
                    "last_open_ms": int(cov["open_time"][where].max()) if where.size else None,
                    "timeframes": tfs,
                    "consolidation": c["consolidation"],
                    "distance_pct": (100.0 * (mid - lc) / lc) if lc else None,
                    "distance_atr": ((mid - lc) / self.atr_ref) if lc is not None else None,
                    "strength": float(min(max(strength, 0.0), 1.0)),
                }
            )
        return out


def profile_summary(
    profile: VolumeProfile, *, value_area_share: float = 0.70, nodes: dict | None = None
) -> dict:
    """JSON-ready summary of a profile: grid, POC, value area and nodes.

    Returns ``{"row_size", "rows", "price_low", "price_high", "total_volume", "poc",
    "val", "vah", "value_area_target_share" (requested), "value_area_share" (achieved),
    "hvn": [...], "lvn": [...]}`` (nodes as in :func:`volume_nodes`, ``share`` named
    ``volume_share``, without the internal ``row``), plus ``"sources": [{"timeframe",
    "first_open_ms", "last_open_ms", "candles"}]`` for a composite profile.
    """
    va = value_area(profile, value_area_share)
    nodes = nodes if nodes is not None else volume_nodes(profile)

    def clean(n: dict) -> dict:
        return {("volume_share" if k == "share" else k): v for k, v in n.items() if k != "row"}

    out = {
        "row_size": profile.row_size,
        "rows": profile.n_rows,
        "price_low": profile.price_low,
        "price_high": profile.price_high,
        "total_volume": profile.total,
        "poc": va.poc,
        "val": va.val,
        "vah": va.vah,
        "value_area_target_share": value_area_share,
        "value_area_share": va.share,
        "hvn": [clean(n) for n in nodes["hvn"]],
        "lvn": [clean(n) for n in nodes["lvn"]],
    }
    if profile.sources:
        out["sources"] = [
            {"timeframe": tf, "first_open_ms": a, "last_open_ms": b, "candles": n}
            for tf, a, b, n in profile.sources
        ]
    return out


def structure_sections(
    frames: Mapping[str, Any],
    atr: Mapping[str, float],
    last_close: float,
    tick: float,
    *,
    now_ms: int | None = None,
    value_area_share: float = 0.70,
    pivot_bars: int = 2,
    nearest_levels_per_side: int = 3,
    strongest_levels: int = 4,
    max_zones: int = 4,
    closed_by_ms: int | None = None,
    atr_timeframe: str | None = None,
) -> dict:
    """The price-structure sections of the ``p9.structure/2`` document, in one call.

    Args:
        frames: timeframe -> candles (DataFrame or Candles; ascending, closed candles).
        atr: timeframe -> current ATR(14) (price units) for those timeframes.
        last_close: the latest close (e.g. of the finest timeframe).
        tick: price increment (e.g. :func:`p9cli.analysis.candles.tick_size`).
        now_ms: the time the developing sessions hold and level recency is measured from
            (default: latest candle close in frames).
        value_area_share: value-area fraction for every profile.
        pivot_bars: fractal bars each side (left = right).
        nearest_levels_per_side, strongest_levels: the level selection rule (key_levels).
        max_zones: at most this many liquidity zones.
        closed_by_ms: the time the daily candle of the floor pivots must have closed by (a
            live caller passing a still-forming 1d candle gets the pivots of the day before);
            None: the frames hold closed candles only (the stored history).
        atr_timeframe: the timeframe whose ATR every ``*_distance_atr``/``distance_atr`` is
            measured in (default :func:`distance_timeframe`).

    Returns::

        {
          "atr_timeframe": "1h",
          "levels": [...],                  # key_levels(...)
          "floor_pivots": {...} | None,     # floor_pivots(last closed 1d candle), with
                                            #   "from_open_ms": that candle's open_time
          "sessions": {...},                # session_profiles(...)["sessions"]
          "naked_pocs": [...],              # session_profiles(...)["naked_pocs"]
          "composite_profile": {...},       # profile_summary of the all-history composite
          "liquidity_zones": [...],         # liquidity_zones(...)
        }

    Row sizes: composite ``row_size_for(tick, ATR_ref)`` with the reference timeframe's ATR;
    per timeframe ``row_size_for(tick, ATR_tf)`` (their HVNs decide which timeframes show a
    zone); both capped at 2000 rows. A timeframe without a finite positive ATR gets no
    per-timeframe profile and no consolidations, but its pivots and candles still count.

    Raises:
        ValueError: no timeframe with candles has a finite positive ATR, or ``tick`` is not a
            positive number.
    """
    frames = {tf: _Arrays(df) for tf, df in frames.items() if tf in TIMEFRAME_MS and len(df) > 0}
    ref = reference_timeframe(frames, atr)
    atr_ref = float(atr[ref])
    dist_tf = atr_timeframe or distance_timeframe(atr)
    dist_atr = float(atr[dist_tf]) if dist_tf in atr and atr[dist_tf] else atr_ref
    if now_ms is None:
        now_ms = max(int(f.open_time[-1]) + TIMEFRAME_MS[tf] for tf, f in frames.items())
    lows = [float(np.nanmin(f.low)) for f in frames.values()]
    highs = [float(np.nanmax(f.high)) for f in frames.values()]
    composite = composite_profile(frames, row_size_for(tick, atr_ref, price_range=max(highs) - min(lows)))
    composite_nodes = volume_nodes(composite)

    tf_nodes: dict[str, dict] = {}
    for tf, lo, hi in zip(list(frames), lows, highs, strict=True):
        a = atr.get(tf)
        if a is None or not (math.isfinite(a) and a > 0):
            continue
        f = frames[tf]
        prof = volume_profile(f.high, f.low, f.volume, row_size_for(tick, a, price_range=hi - lo))
        tf_nodes[tf] = volume_nodes(prof)

    levels = key_levels(
        frames,
        atr,
        last_close,
        tick,
        left=pivot_bars,
        right=pivot_bars,
        nearest_per_side=nearest_levels_per_side,
        strongest=strongest_levels,
        profile=composite,
        now_ms=now_ms,
        distance_atr=dist_atr,
    )
    zones = liquidity_zones(
        frames,
        atr,
        composite,
        last_close=last_close,
        tf_nodes=tf_nodes,
        profile_nodes=composite_nodes,
        tick=tick,
        max_zones=max_zones,
        distance_atr=dist_atr,
    )
    sessions = session_profiles(
        frames, atr, last_close, tick, now_ms=now_ms, atr_ref=dist_atr, value_area_share=value_area_share
    )
    floor = None
    if "1d" in frames:
        d = frames["1d"]
        i = len(d) - 1  # the last CLOSED daily candle
        if closed_by_ms is not None:
            while i >= 0 and int(d.open_time[i]) + TIMEFRAME_MS["1d"] > closed_by_ms:
                i -= 1
        if i >= 0:
            floor = floor_pivots({"high": d.high[i], "low": d.low[i], "close": d.close[i]})
            floor["from_open_ms"] = int(d.open_time[i])
    return {
        "atr_timeframe": dist_tf,
        "levels": levels,
        "floor_pivots": floor,
        "sessions": sessions["sessions"],
        "naked_pocs": sessions["naked_pocs"],
        "composite_profile": profile_summary(
            composite, value_area_share=value_area_share, nodes=composite_nodes
        ),
        "liquidity_zones": zones,
    }


def distance_timeframe(atr: Mapping[str, float]) -> str:
    """The timeframe distances are measured in: 1h when it has an ATR, else the shortest
    timeframe of at least 1h that has one, else the longest that has one."""
    usable = [tf for tf in TIMEFRAMES if _ok(atr.get(tf))]
    if not usable:
        raise ValueError("no timeframe has a finite positive ATR")
    if "1h" in usable:
        return "1h"
    longer = [tf for tf in reversed(usable) if TIMEFRAME_MS[tf] >= TIMEFRAME_MS["1h"]]
    return longer[0] if longer else usable[0]


def _ok(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x)) and float(x) > 0
    except (TypeError, ValueError):
        return False


class _Arrays:
    """The candle columns of one frame as numpy arrays, extracted once (see :func:`column`)."""

    __slots__ = ("open_time", "open", "high", "low", "close", "volume", "_n")

    def __init__(self, frame: Any):
        for name in ("open_time", "open", "high", "low", "close", "volume"):
            setattr(self, name, column(frame, name))
        self._n = int(self.open_time.size)

    def __len__(self) -> int:
        return self._n
