"""Liquidity zones (high-volume accumulation areas) and the one-call assembly of part B's
sections of the structure document (levels, floor pivots, volume profiles, zones).

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
    frame_profile,
    node_core,
    row_size_for,
    value_area,
    volume_nodes,
    volume_profile,
)
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
    max_width_atr: float = 2.0,
    max_zones: int = 8,
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
        max_zones: the strongest ``max_zones`` zones are returned.

    Zones:
        * ``hvn_cluster``: high-volume nodes of the composite profile (:func:`volume_nodes`)
          whose extents touch or overlap (gap <= one row) are joined into one range. A node
          wider than ``max_width_atr`` reference ATRs (a broad plateau) is first narrowed to
          its core (:func:`p9cli.analysis.profile.node_core`).
        * ``consolidation``: consolidation ranges (:func:`consolidations`) with elevated volume
          on any timeframe; ranges on different timeframes that overlap both in time and in
          price (by at least half of the narrower one) are one zone, whose price bounds are
          those of its tightest member (most time per unit of price height).

    Returns:
        a list of dicts, sorted by ``mid`` descending::

            kind            "hvn_cluster" | "consolidation"
            low, high, mid  price bounds and midpoint
            volume          composite-profile volume inside [low, high]
            volume_share    volume / profile total (0..1)
            density_ratio   (volume / (high - low)) / (profile total / profile height)
            time_spent_ms   total duration of the composite-coverage candles (finest
                            timeframe for each period, no double counting) whose close lies
                            inside [low, high]
            time_spent_bars number of those candles
            time_share      time_spent_ms / duration of the whole coverage (0..1)
            first_time, last_time  open_time (ms) of the first/last such candle (None if none)
            timeframes      timeframes that show the zone (their own profile has an HVN
                            overlapping it, or they have a qualifying consolidation
                            overlapping it in price), longest first
            consolidation   for kind "consolidation": {"timeframe", "start_time",
                            "end_time" (close of the last bar, ms), "bars", "rel_volume"} of
                            the tightest member; None for hvn clusters
            distance_pct, distance_atr   (mid - last_close) in % of last_close and in
                            reference ATRs (None without last_close)
            strength        0..1 = 0.4*D + 0.3*F + 0.3*T with D = r/(1+r) for
                            r = density_ratio, F = 1 - prod(1 - evidence_weight) over the
                            zone's timeframes, T = s/(s + 0.05) for s = time_share
    """
    frames = {tf: df for tf, df in frames.items() if tf in TIMEFRAME_MS and len(df) > 0}
    if not frames or profile.total <= 0:
        return []
    ref = reference_tf or reference_timeframe(frames, atr)
    atr_ref = float(atr[ref])
    total = profile.total
    height = profile.price_high - profile.price_low
    mean_density = total / height if height > 0 else 0.0
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
    span_tf, span_lo, span_hi = [], [], []  # every HVN of every timeframe's own profile
    for tf, nodes in tf_nodes.items():
        for node in nodes.get("hvn", []):
            span_tf.append(tf)
            span_lo.append(node["low"])
            span_hi.append(node["high"])

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
    # --- HVN clusters of the composite profile
    hvn = (profile_nodes if profile_nodes is not None else volume_nodes(profile))["hvn"]
    cores = [node_core(profile, n, max_width_atr * atr_ref) for n in hvn]
    for low, high in _merge_intervals(
        [c[0] for c in cores], [c[1] for c in cores], profile.row_size * 1.0001
    ):
        candidates.append({"kind": "hvn_cluster", "low": low, "high": high, "consolidation": None})

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
                    "low": low,
                    "high": high,
                    "consolidation": {
                        "timeframe": tf,
                        "start_time": s_ms,
                        "end_time": e_ms,
                        "bars": int(bars),
                        "rel_volume": rel,
                    },
                }
            )
    if not candidates:
        return []

    # --- vectorised filters: density, volume share, distance, shown by a timeframe
    lows = np.array([c["low"] for c in candidates])
    highs = np.array([c["high"] for c in candidates])
    vols = np.asarray(profile.volume_between(lows, highs), dtype=np.float64)
    widths = np.maximum(highs - lows, profile.row_size)
    ratio = (vols / widths) / mean_density if mean_density > 0 else np.zeros(len(candidates))
    keep = (ratio >= min_density_ratio) & (vols >= min_volume_share * total)
    if has_close:
        gap = np.maximum(np.maximum(lows - last_close, last_close - highs), 0.0)
        keep &= gap <= reach
    shows = np.zeros((len(candidates), len(TIMEFRAMES)), dtype=bool)
    tf_col = {tf: i for i, tf in enumerate(TIMEFRAMES)}
    for tfs_, lo_arr, hi_arr in (
        (span_tf, span_lo, span_hi),
        ([c[0] for c in cons], [c[3] for c in cons], [c[4] for c in cons]),
    ):
        if not tfs_:
            continue
        ov = (np.asarray(lo_arr)[None, :] < highs[:, None]) & (np.asarray(hi_arr)[None, :] > lows[:, None])
        cols = np.array([tf_col[t] for t in tfs_])
        for j in range(len(TIMEFRAMES)):
            sel = cols == j
            if sel.any():
                shows[:, j] |= ov[:, sel].any(axis=1)
    for z, c in enumerate(candidates):
        if c["consolidation"] is not None:
            shows[z, tf_col[c["consolidation"]["timeframe"]]] = True
    keep &= shows.any(axis=1)
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return []

    cov = _coverage(frames)
    cov_total = float(cov["ms"].sum())
    inside = (cov["close"][None, :] >= lows[idx, None]) & (cov["close"][None, :] <= highs[idx, None])
    spent_ms = (inside * cov["ms"][None, :]).sum(axis=1)
    spent_bars = inside.sum(axis=1)

    zones = []
    sw = ZONE_STRENGTH_WEIGHTS
    for row, z in enumerate(idx.tolist()):
        c = candidates[z]
        low, high = c["low"], c["high"]
        mid = (low + high) / 2.0
        tfs = [TIMEFRAMES[j] for j in np.flatnonzero(shows[z]).tolist()]
        share_t = float(spent_ms[row]) / cov_total if cov_total > 0 else 0.0
        r = float(ratio[z])
        strength = (
            sw["density"] * r / (1.0 + r)
            + sw["timeframes"] * combined_timeframe_score(tfs)
            + sw["time"] * share_t / (share_t + 0.05)
        )
        where = np.flatnonzero(inside[row])
        zones.append(
            {
                "kind": c["kind"],
                "low": low,
                "high": high,
                "mid": mid,
                "volume": float(vols[z]),
                "volume_share": float(vols[z]) / total,
                "density_ratio": r,
                "time_spent_ms": int(spent_ms[row]),
                "time_spent_bars": int(spent_bars[row]),
                "time_share": share_t,
                "first_time": int(cov["open_time"][where].min()) if where.size else None,
                "last_time": int(cov["open_time"][where].max()) if where.size else None,
                "timeframes": tfs,
                "consolidation": c["consolidation"],
                "distance_pct": (100.0 * (mid - last_close) / last_close)
                if has_close and last_close
                else None,
                "distance_atr": ((mid - last_close) / atr_ref) if has_close else None,
                "strength": float(min(max(strength, 0.0), 1.0)),
            }
        )
    zones.sort(key=lambda z: (-z["strength"], z["low"]))
    return sorted(zones[:max_zones], key=lambda z: -z["mid"])


def profile_summary(
    profile: VolumeProfile, *, value_area_pct: float = 0.70, nodes: dict | None = None
) -> dict:
    """JSON-ready summary of a profile: grid, POC, value area and nodes.

    Returns ``{"row_size", "rows", "price_low", "price_high", "total_volume", "poc",
    "val", "vah", "value_area_pct" (requested), "value_area_share" (achieved), "hvn": [...],
    "lvn": [...]}`` (nodes as in :func:`volume_nodes`, without the internal ``row``), plus
    ``"sources": [{"timeframe", "first_open_ms", "last_open_ms", "candles"}]`` for a
    composite profile.
    """
    va = value_area(profile, value_area_pct)
    nodes = nodes if nodes is not None else volume_nodes(profile)

    def clean(n: dict) -> dict:
        return {k: v for k, v in n.items() if k != "row"}

    out = {
        "row_size": profile.row_size,
        "rows": profile.n_rows,
        "price_low": profile.price_low,
        "price_high": profile.price_high,
        "total_volume": profile.total,
        "poc": va.poc,
        "val": va.val,
        "vah": va.vah,
        "value_area_pct": value_area_pct,
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
    value_area_pct: float = 0.70,
    pivot_bars: int = 2,
    max_levels: int = 12,
    max_zones: int = 8,
    closed_by_ms: int | None = None,
) -> dict:
    """Part B's sections of the ``p9.structure/1`` document, in one call.

    Args:
        frames: timeframe -> candles (DataFrame or Candles; ascending, closed candles).
        atr: timeframe -> current ATR(14) (price units) for those timeframes.
        last_close: the latest close (e.g. of the finest timeframe).
        tick: price increment (e.g. :func:`p9cli.analysis.candles.tick_size`).
        now_ms: reference time for level recency (default: latest candle close in frames).
        value_area_pct: value-area fraction for every profile.
        pivot_bars: fractal bars each side (left = right).
        closed_by_ms: the time the daily candle of the floor pivots must have closed by (a
            live caller passing a still-forming 1d candle gets the pivots of the day before);
            None: the frames hold closed candles only (the stored history).

    Returns::

        {
          "levels": [...],                  # key_levels(...)
          "floor_pivots": {...} | None,     # floor_pivots(last closed 1d candle), with
                                            #   "from_open_ms": that candle's open_time
          "volume_profile": {
              "composite": {...},           # profile_summary of the composite profile
              "timeframes": {tf: {...}},    # profile_summary of each timeframe's own profile
          },
          "liquidity_zones": [...],         # liquidity_zones(...)
        }

    Row sizes: composite ``row_size_for(tick, ATR_ref)`` with the reference (longest)
    timeframe's ATR; per timeframe ``row_size_for(tick, ATR_tf)``; both capped at 2000 rows.
    A timeframe without a finite positive ATR gets no per-timeframe profile and no
    consolidations, but its pivots and candles still count.

    Raises:
        ValueError: no timeframe with candles has a finite positive ATR, or ``tick`` is not a
            positive number.

    Cost: ~9 ms of CPU for 11 timeframes x 1000 candles (one exchange/symbol).
    """
    frames = {tf: _Arrays(df) for tf, df in frames.items() if tf in TIMEFRAME_MS and len(df) > 0}
    ref = reference_timeframe(frames, atr)
    atr_ref = float(atr[ref])
    lows = [float(np.nanmin(f.low)) for f in frames.values()]
    highs = [float(np.nanmax(f.high)) for f in frames.values()]
    composite = composite_profile(frames, row_size_for(tick, atr_ref, price_range=max(highs) - min(lows)))
    composite_nodes = volume_nodes(composite)

    per_tf: dict[str, dict] = {}
    tf_nodes: dict[str, dict] = {}
    for tf, lo, hi in zip(list(frames), lows, highs, strict=True):
        a = atr.get(tf)
        if a is None or not (math.isfinite(a) and a > 0):
            continue
        f = frames[tf]
        prof = volume_profile(f.high, f.low, f.volume, row_size_for(tick, a, price_range=hi - lo))
        tf_nodes[tf] = volume_nodes(prof)
        per_tf[tf] = profile_summary(prof, value_area_pct=value_area_pct, nodes=tf_nodes[tf])
    per_tf = {tf: per_tf[tf] for tf in TIMEFRAMES if tf in per_tf}

    levels = key_levels(
        frames,
        atr,
        last_close,
        tick,
        left=pivot_bars,
        right=pivot_bars,
        max_levels=max_levels,
        profile=composite,
        now_ms=now_ms,
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
        "levels": levels,
        "floor_pivots": floor,
        "volume_profile": {
            "composite": profile_summary(composite, value_area_pct=value_area_pct, nodes=composite_nodes),
            "timeframes": per_tf,
        },
        "liquidity_zones": zones,
    }


class _Arrays:
    """The candle columns of one frame as numpy arrays, extracted once (see :func:`column`)."""

    __slots__ = ("open_time", "open", "high", "low", "close", "volume", "_n")

    def __init__(self, frame: Any):
        for name in ("open_time", "open", "high", "low", "close", "volume"):
            setattr(self, name, column(frame, name))
        self._n = int(self.open_time.size)

    def __len__(self) -> int:
        return self._n
