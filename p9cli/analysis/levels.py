"""Key levels: confirmed fractal swing pivots on every timeframe, clustered into price zones,
plus the classic floor pivots.

Pure functions over numpy arrays / pandas DataFrames (no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from p9cli.analysis.pivots import fractal_pivots
from p9cli.analysis.profile import VolumeProfile, column, composite_profile, row_size_for
from p9cli.analysis.trend import timeframe_weight as trend_weight
from p9cli.universe import TIMEFRAME_MS

_DAY_MS = 86_400_000

#: Strength = sum of weight * component, see :func:`key_levels`.
STRENGTH_WEIGHTS = {
    "touches": 0.30,
    "significance": 0.30,
    "timeframes": 0.15,
    "recency": 0.05,
    "volume": 0.20,
}


def floor_pivots(prev_day: Mapping[str, Any] | pd.Series | Any) -> dict[str, float]:
    """Classic floor-trader pivots from one (daily) candle.

    ``P = (H + L + C) / 3``; ``R1 = 2P - L``; ``S1 = 2P - H``; ``R2 = P + (H - L)``;
    ``S2 = P - (H - L)``; ``R3 = H + 2(P - L)``; ``S3 = L - 2(H - P)``.

    Args:
        prev_day: the last closed daily candle: a mapping / pandas row with ``high``,
            ``low``, ``close`` (or an object with those attributes).

    Returns:
        ``{"P", "R1", "R2", "R3", "S1", "S2", "S3"}`` in price units (unrounded floats).
    """

    def get(name: str) -> float:
        if isinstance(prev_day, Mapping | pd.Series):
            return float(prev_day[name])
        return float(getattr(prev_day, name))

    h, lo, c = get("high"), get("low"), get("close")
    p = (h + lo + c) / 3.0
    rng = h - lo
    return {
        "P": p,
        "R1": 2.0 * p - lo,
        "R2": p + rng,
        "R3": h + 2.0 * (p - lo),
        "S1": 2.0 * p - h,
        "S2": p - rng,
        "S3": lo - 2.0 * (h - p),
    }


def evidence_weight(tf: str) -> float:
    """Weight of a timeframe's evidence for a level, in (0, 0.8]: ``0.8 * (1 + log2(minutes)) /
    (1 + log2(1440))`` -- 1m 0.07, 5m 0.23, 1h 0.55, 4h 0.67, 1d 0.8 (the trend alignment
    weight, scaled).
    """
    return _weight_of_ms(TIMEFRAME_MS[tf])


def combined_timeframe_score(tfs: Sequence[str]) -> float:
    """``1 - prod(1 - evidence_weight(tf))``: evidence from several timeframes adds up, in 0..1."""
    q = 1.0
    for tf in tfs:
        q *= 1.0 - evidence_weight(tf)
    return 1.0 - q


def reference_timeframe(frames: Mapping[str, Any], atr: Mapping[str, float]) -> str:
    """The longest timeframe present in both ``frames`` and ``atr`` with a finite positive ATR."""
    usable = [tf for tf in frames if tf in TIMEFRAME_MS and _positive(atr.get(tf))]
    if not usable:
        raise ValueError("key levels need at least one timeframe with a finite positive ATR")
    return max(usable, key=TIMEFRAME_MS.__getitem__)


def _positive(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x)) and float(x) > 0
    except (TypeError, ValueError):
        return False


def _round_to(x: float, tick: float, how: str = "nearest") -> float:
    q = x / tick
    q = math.floor(q + 1e-9) if how == "down" else math.ceil(q - 1e-9) if how == "up" else round(q)
    # round() to the tick's decimals removes float noise such as 0.30000000000000004
    decimals = max(0, -math.floor(math.log10(tick))) + 2 if tick < 1 else 0
    return round(q * tick, decimals)


def collect_pivots(frames: Mapping[str, Any], *, left: int = 2, right: int = 2) -> dict[str, np.ndarray]:
    """Every confirmed pivot of every timeframe as parallel arrays.

    Returns:
        ``{"price": float64, "time": int64 open_time ms, "tf": int index into
        "timeframes", "is_high": bool}`` plus ``"timeframes": list[str]``.
    """
    prices, times, tf_idx, highs = [], [], [], []
    names = [tf for tf in frames if tf in TIMEFRAME_MS]
    for k, tf in enumerate(names):
        df = frames[tf]
        if len(df) == 0:
            continue
        h = column(df, "high")
        lo = column(df, "low")
        ot = column(df, "open_time")
        hi_idx, lo_idx = fractal_pivots(h, lo, left, right)
        prices += [h[hi_idx], lo[lo_idx]]
        times += [ot[hi_idx], ot[lo_idx]]
        tf_idx += [np.full(hi_idx.size + lo_idx.size, k, dtype=np.int64)]
        highs += [np.ones(hi_idx.size, bool), np.zeros(lo_idx.size, bool)]
    if not prices:
        return {
            "price": np.zeros(0),
            "time": np.zeros(0, np.int64),
            "tf": np.zeros(0, np.int64),
            "is_high": np.zeros(0, bool),
            "timeframes": names,
        }
    return {
        "price": np.concatenate(prices),
        "time": np.concatenate(times),
        "tf": np.concatenate(tf_idx),
        "is_high": np.concatenate(highs),
        "timeframes": names,
    }


def _cluster(
    prices: np.ndarray, weights: np.ndarray, width: float, max_clusters: int, min_weight: float = 0.0
) -> np.ndarray:
    """Densest-window-first clustering of sorted prices.

    Repeatedly take the window ``[p - width/2, p + width/2]`` centred on an unassigned
    pivot price ``p`` that holds the most unassigned weight (ties: the lowest price); all
    unassigned pivots inside it form one cluster. Stops after ``max_clusters`` clusters or
    when the best window holds no more than ``min_weight``; pivots never assigned get label -1.
    ``prices`` must be sorted ascending. Window sums are updated locally after each step
    (O(n) to start, then proportional to the windows touched).
    """
    n = prices.size
    labels = np.full(n, -1, dtype=np.int64)
    lo = np.searchsorted(prices, prices - width / 2.0, side="left")
    hi = np.searchsorted(prices, prices + width / 2.0, side="right")
    w = weights.astype(np.float64).copy()
    cum = np.concatenate(([0.0], np.cumsum(w)))
    score = cum[hi] - cum[lo]
    for c in range(max_clusters):
        k = int(np.argmax(score))
        if score[k] <= min_weight or score[k] <= 0:
            break
        a, b = int(lo[k]), int(hi[k])
        free = labels[a:b] == -1
        labels[a:b][free] = c
        w[a:b] = 0.0
        # only windows overlapping [a, b) change: k1 <= k < k2 (lo and hi are non-decreasing)
        k1 = int(np.searchsorted(hi, a, side="right"))
        k2 = int(np.searchsorted(lo, b, side="left"))
        if k2 > k1:
            base = int(lo[k1])
            local = np.concatenate(([0.0], np.cumsum(w[base : int(hi[k2 - 1])])))
            score[k1:k2] = local[hi[k1:k2] - base] - local[lo[k1:k2] - base]
        score[a:b] = -1.0  # assigned pivots no longer centre a window
    return _merge_fragments(labels, prices, weights, width)


def _merge_fragments(labels: np.ndarray, prices: np.ndarray, weights: np.ndarray, width: float) -> np.ndarray:
    """Fold a cluster into an earlier (denser) one whose weighted centre is within ``width``
    of its own, provided the merged price span stays within ``1.5 * width``.

    The densest-window pass can leave the tail of a level's pivots as a small separate
    cluster right next to it; this pass reunites them. Labels are then renumbered
    0..k-1 in order of first creation.
    """
    m = labels >= 0
    if not m.any():
        return labels
    n = int(labels.max()) + 1
    lab = labels[m]
    wsum = np.bincount(lab, weights=weights[m], minlength=n)
    centre = (
        np.bincount(lab, weights=(weights * prices)[m], minlength=n) / np.maximum(wsum, 1e-300)
    ).tolist()
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    np.minimum.at(lo, lab, prices[m])
    np.maximum.at(hi, lab, prices[m])
    lo_l, hi_l = lo.tolist(), hi.tolist()
    target = list(range(n))
    primaries: list[int] = []
    for c in range(n):
        best, best_d = -1, math.inf
        for j in primaries:
            d = abs(centre[c] - centre[j])
            if d <= width and d < best_d and max(hi_l[j], hi_l[c]) - min(lo_l[j], lo_l[c]) <= 1.5 * width:
                best, best_d = j, d
        if best < 0:
            primaries.append(c)
        else:
            target[c] = best
            lo_l[best] = min(lo_l[best], lo_l[c])
            hi_l[best] = max(hi_l[best], hi_l[c])
    renumber = {p: i for i, p in enumerate(primaries)}
    mapping = np.array([renumber[target[c]] for c in range(n)], dtype=np.int64)
    out = labels.copy()
    out[m] = mapping[lab]
    return out


def _distinct_touches(
    labels: np.ndarray,
    tf_ms: np.ndarray,
    times: np.ndarray,
    n_clusters: int,
    now_ms: int | None = None,
    half_life_ms: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Touches per cluster, counting each touch event once across timeframes.

    Returns ``(touches, weighted, decayed)``: the count; the sum of :func:`evidence_weight`
    of the timeframe each counted touch was taken from; and the same sum with each touch
    also multiplied by ``0.5 ** (age / half_life_ms)`` (age = ``now_ms`` - the touch bar's
    open time; equal to ``weighted`` when no half-life is given).

    Pivots are taken from the longest timeframe down; a pivot whose bar interval
    ``[time, time + tf)`` overlaps the bar of an already-counted pivot of the same cluster
    (on the same or a longer timeframe) is the same touch seen at a finer resolution and is
    not counted again. A bar that is both a pivot high and a pivot low counts once.
    """
    key_base = np.int64(1) << np.int64(42)  # > any ms timestamp before year 2109
    # Counted bars, as disjoint intervals [start, end) keyed by cluster: sorted by start, and
    # since they are disjoint, their ends are sorted too.
    acc_start = np.zeros(0, dtype=np.int64)
    acc_end = np.zeros(0, dtype=np.int64)
    touches = np.zeros(n_clusters, dtype=np.int64)
    weighted = np.zeros(n_clusters, dtype=np.float64)
    decayed = np.zeros(n_clusters, dtype=np.float64)
    for width in sorted(set(tf_ms.tolist()), reverse=True):
        sel = np.flatnonzero((tf_ms == width) & (labels >= 0))
        if sel.size == 0:
            continue
        keys = labels[sel] * key_base + times[sel]
        if acc_start.size:
            # the last counted bar starting before this bar ends; overlap iff it ends after
            # this bar starts (any earlier one ends even earlier)
            j = np.searchsorted(acc_start, keys + width, side="left") - 1
            dup = (j >= 0) & (acc_end[np.maximum(j, 0)] > keys)
            keys = keys[~dup]
        ukeys = np.unique(keys)  # a bar that is both a pivot high and a pivot low: once
        cl = (ukeys // key_base).astype(np.int64)
        counts = np.bincount(cl, minlength=n_clusters)
        touches += counts
        w = _weight_of_ms(width)
        weighted += counts * w
        if half_life_ms and now_ms is not None:
            age = np.maximum(now_ms - (ukeys % key_base), 0).astype(np.float64)
            decayed += np.bincount(cl, weights=w * 0.5 ** (age / half_life_ms), minlength=n_clusters)
        else:
            decayed += counts * w
        acc_start = np.concatenate((acc_start, ukeys))
        acc_end = np.concatenate((acc_end, ukeys + width))
        order = np.argsort(acc_start, kind="stable")
        acc_start, acc_end = acc_start[order], acc_end[order]
    return touches, weighted, decayed


def _weight_of_ms(tf_ms: int) -> float:
    """The alignment weight (:func:`p9cli.analysis.trend.evidence_weight`) scaled to 0.8 at 1d."""
    return 0.8 * trend_weight(tf_ms) / trend_weight(TIMEFRAME_MS["1d"])


def key_levels(
    frames: Mapping[str, Any],
    atr: Mapping[str, float],
    last_close: float,
    tick: float,
    *,
    left: int = 2,
    right: int = 2,
    tolerance_atr: float = 0.25,
    max_levels: int = 12,
    max_distance_atr: float = 8.0,
    reference_tf: str | None = None,
    profile: VolumeProfile | None = None,
    now_ms: int | None = None,
    recency_half_life_ms: int = 60 * _DAY_MS,
    min_weighted_touches: float = 1.0,
    min_significance: float = 1.0,
) -> list[dict]:
    """Support and resistance levels: confirmed pivots of every timeframe clustered into zones.

    Args:
        frames: timeframe -> candles: a DataFrame with the Parquet columns or a
            :class:`p9cli.analysis.candles.Candles` (``open_time`` ms, ``high``, ``low``,
            ``volume``; ascending, closed candles only). Keys must be universe timeframes ("1d", "4h", ...).
        atr: timeframe -> ATR(14) in price units (the current value). Only the reference
            timeframe's ATR is required.
        last_close: close of the latest closed candle (decides support vs resistance).
        tick: price increment; level prices are rounded to it, zone edges outward.
        left, right: pivot confirmation bars (see :func:`fractal_pivots`).
        tolerance_atr: cluster width in units of the reference ATR: pivots within
            ``tolerance_atr * ATR_ref`` of each other are one level.
        max_levels: at most this many levels are returned: the strongest
            ``max_levels // 2`` on each side of ``last_close`` (a side with fewer leaves its
            places to the other).
        max_distance_atr: pivots farther than this many reference ATRs from ``last_close``
            are ignored (too far to matter, and keeps clustering cheap).
        reference_tf: timeframe whose ATR scales tolerance and distances; default: the
            longest timeframe present in ``frames`` with a finite positive ATR.
        profile: volume profile used for ``volume_near`` (normally the composite profile
            from :func:`p9cli.analysis.profile.composite_profile`); built from ``frames``
            with ``row_size_for(tick, ATR_ref)`` when omitted.
        now_ms: "now" for recency; default: the latest candle close time in ``frames``.
        recency_half_life_ms: a touch's weight (and the recency component) halves every
            this many ms of age.
        min_weighted_touches, min_significance: evidence a cluster needs to be a level (below).

    Clustering (:func:`_cluster`): pivots sorted by price are grouped densest window first,
    a window being ``tolerance_atr * ATR_ref`` wide and each pivot weighing
    :func:`evidence_weight` of its timeframe; a left-over fragment whose centre is within one
    width of a denser cluster is folded into it if the merged span stays within 1.5 widths.

    Raises:
        ValueError: ``tick`` not a positive number, ``last_close`` not finite, or no usable
            (finite, positive) ATR for the reference timeframe.

    Cost: ~3-4 ms for 11 timeframes x 1000 candles (all pivots of all timeframes).

    Returns:
        a list of dicts sorted by price, highest first::

            price          weighted mean of the member pivots (weights: evidence_weight),
                           rounded to tick
            zone_low/high  min/max member pivot price, widened symmetrically around price to
                           at least half the cluster width; rounded outward to tick
            kind           "resistance" if price > last_close else "support"
            touches        distinct touch events (a pivot seen on several timeframes at the
                           same time counts once, see _distinct_touches)
            timeframes     timeframes with at least one member pivot, longest first
            last_touch_time open_time (ms) of the latest member pivot's bar
            volume_near    profile volume inside [zone_low, zone_high] (base units)
            distance       price - last_close (price units)
            distance_pct   100 * distance / last_close
            distance_atr   distance / ATR_ref
            strength       0..1, see below

        ``strength = 0.30*T + 0.30*S + 0.15*F + 0.05*R + 0.20*V`` with
        ``T = 1 - exp(-w / 2)`` where ``w`` sums, over the distinct touches,
        :func:`evidence_weight` of the touch's timeframe (a daily touch 0.8, a 1-minute one
        0.07) times ``0.5 ** (touch age / recency_half_life_ms)``;
        ``S = clip((significance - 1) / 2, 0, 1)`` where significance is the cluster's
        age-decayed pivot weight over the average weight per cluster width in the 5 widths
        around it (1 = pivots spread evenly, nothing stands out; 5 = every pivot of the
        neighbourhood sits on this level); ``F = evidence_weight(longest confirming
        timeframe) / 0.8`` (1 for a daily pivot, 0.09 for 1-minute only);
        ``R = 0.5 ** (age / recency_half_life_ms)`` with ``age = now - last_touch_time``;
        ``V = d / (1 + d)`` where ``d`` is the zone's volume density (volume_near per price
        unit) over the profile's mean density within ``max_distance_atr`` of the last close
        (V = 0.5 at the local average).

        Clusters whose touches weigh less than ``min_weighted_touches`` (timeframe weights
        without the age factor; default 1.0: e.g. two 1h touches, or one daily and one 15m
        touch), or whose significance is below ``min_significance`` (default 1: no denser than
        their neighbourhood), are not levels and are dropped.
    """
    if not (tick > 0 and math.isfinite(tick)):
        raise ValueError(f"tick must be a positive number, got {tick!r}")
    if not math.isfinite(last_close):
        raise ValueError(f"last_close must be finite, got {last_close!r}")
    frames = {tf: df for tf, df in frames.items() if tf in TIMEFRAME_MS and len(df) > 0}
    if not frames:
        return []
    ref = reference_tf or reference_timeframe(frames, atr)
    atr_ref = float(atr[ref])
    if not _positive(atr_ref):
        raise ValueError(f"ATR of the reference timeframe {ref} must be a finite positive number")
    width = tolerance_atr * atr_ref
    if now_ms is None:
        now_ms = max(int(column(df, "open_time")[-1]) + TIMEFRAME_MS[tf] for tf, df in frames.items())

    piv = collect_pivots(frames, left=left, right=right)
    names = piv["timeframes"]
    price = piv["price"]
    near = np.abs(price - last_close) <= max_distance_atr * atr_ref
    order = np.argsort(price[near], kind="stable")
    idx = np.flatnonzero(near)[order]
    if idx.size == 0:
        return []
    price = price[idx]
    times = piv["time"][idx]
    tf_of = piv["tf"][idx]
    name_weight = np.array([evidence_weight(tf) for tf in names])
    name_ms = np.array([TIMEFRAME_MS[tf] for tf in names], dtype=np.int64)
    weights = name_weight[tf_of]

    labels = _cluster(price, weights, width, 2 * max_levels + 8, min_weight=0.5 * min_weighted_touches)
    n_clusters = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    if n_clusters == 0:
        return []
    # significance: the cluster's (age-decayed) pivot weight against the average weight per
    # cluster width in its neighbourhood (5 widths centred on it): ~1 where pivots are spread
    # evenly (no level stands out), up to 5 when the neighbourhood's pivots all sit on it
    decay = 0.5 ** (np.maximum(now_ms - times, 0).astype(np.float64) / float(recency_half_life_ms))
    dw = weights * decay
    mass = np.bincount(labels[labels >= 0], weights=dw[labels >= 0], minlength=int(labels.max()) + 1)
    cum_dw = np.concatenate(([0.0], np.cumsum(dw)))
    wsum0 = np.bincount(labels[labels >= 0], weights=weights[labels >= 0], minlength=mass.size)
    centre0 = np.bincount(
        labels[labels >= 0], weights=(weights * price)[labels >= 0], minlength=mass.size
    ) / np.maximum(wsum0, 1e-300)
    nb_lo = np.searchsorted(price, centre0 - 2.5 * width, side="left")
    nb_hi = np.searchsorted(price, centre0 + 2.5 * width, side="right")
    neighbourhood = (cum_dw[nb_hi] - cum_dw[nb_lo]) / 5.0
    significance = np.where(neighbourhood > 0, mass / np.maximum(neighbourhood, 1e-300), 0.0)
    touches, weighted_touches, decayed_touches = _distinct_touches(
        labels, name_ms[tf_of], times, n_clusters, now_ms, float(recency_half_life_ms)
    )
    m = labels >= 0
    lab = labels[m]
    wsum = np.bincount(lab, weights=weights[m], minlength=n_clusters)
    centre = np.bincount(lab, weights=(weights * price)[m], minlength=n_clusters) / wsum
    zlo = np.full(n_clusters, np.inf)
    zhi = np.full(n_clusters, -np.inf)
    np.minimum.at(zlo, lab, price[m])
    np.maximum.at(zhi, lab, price[m])
    half = width / 4.0
    zlo = np.minimum(zlo, centre - half)
    zhi = np.maximum(zhi, centre + half)
    last_touch = np.full(n_clusters, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_touch, lab, times[m])
    tf_seen = np.zeros((n_clusters, len(names)), dtype=bool)
    tf_seen[lab, tf_of[m]] = True

    if profile is None:
        profile = composite_profile(frames, row_size_for(tick, atr_ref))
    vol_near = np.asarray(profile.volume_between(zlo, zhi), dtype=np.float64)
    # volume density near price: mean over the band the levels are drawn from
    band_lo, band_hi = last_close - max_distance_atr * atr_ref, last_close + max_distance_atr * atr_ref
    band_lo, band_hi = max(band_lo, profile.price_low), min(band_hi, profile.price_high)
    span = band_hi - band_lo
    mean_density = float(profile.volume_between(band_lo, band_hi)) / span if span > 0 else 0.0
    density = vol_near / np.maximum(zhi - zlo, 1e-300)
    d = density / mean_density if mean_density > 0 else np.zeros(n_clusters)

    t_score = 1.0 - np.exp(-decayed_touches / 2.0)
    f_score = np.max(np.where(tf_seen, name_weight[None, :], 0.0), axis=1) / 0.8
    age = np.maximum(now_ms - last_touch, 0).astype(np.float64)
    r_score = 0.5 ** (age / float(recency_half_life_ms))
    v_score = d / (1.0 + d)
    s_score = np.clip((significance - 1.0) / 2.0, 0.0, 1.0)
    sw = STRENGTH_WEIGHTS
    strength = (
        sw["touches"] * t_score
        + sw["significance"] * s_score
        + sw["timeframes"] * f_score
        + sw["recency"] * r_score
        + sw["volume"] * v_score
    )

    # choose first (on small records), then build the full dicts of the chosen levels only
    candidates = []
    keep = (weighted_touches >= min_weighted_touches) & (significance >= min_significance)
    for c in np.flatnonzero(keep).tolist():
        p = _round_to(float(centre[c]), tick)
        kind = "resistance" if p > last_close else "support"
        candidates.append(
            {"price": p, "kind": kind, "strength": float(strength[c]), "distance": p - last_close, "c": c}
        )
    by_len = sorted(range(len(names)), key=lambda k: -name_ms[k])
    levels = []
    for cand in select_levels(candidates, max_levels):
        c, p, dist = cand["c"], cand["price"], cand["distance"]
        levels.append(
            {
                "price": p,
                "zone_low": _round_to(float(zlo[c]), tick, "down"),
                "zone_high": _round_to(float(zhi[c]), tick, "up"),
                "kind": cand["kind"],
                "touches": int(touches[c]),
                "timeframes": [names[k] for k in by_len if tf_seen[c, k]],
                "last_touch_time": int(last_touch[c]),
                "volume_near": float(vol_near[c]),
                "distance": dist,
                "distance_pct": 100.0 * dist / last_close if last_close else 0.0,
                "distance_atr": dist / atr_ref,
                "strength": float(np.clip(strength[c], 0.0, 1.0)),
            }
        )
    return levels


def select_levels(levels: list[dict], max_levels: int) -> list[dict]:
    """The strongest ``max_levels // 2`` supports and resistances (a side with fewer leaves its
    places to the other; odd ``max_levels`` gives the spare place to the stronger candidate),
    sorted by price descending. Ties in strength go to the level nearer the last close.
    """
    if max_levels <= 0:
        return []

    def rank(lv: dict) -> tuple[float, float]:
        return (-lv["strength"], abs(lv["distance"]))

    sup = sorted((lv for lv in levels if lv["kind"] == "support"), key=rank)
    res = sorted((lv for lv in levels if lv["kind"] == "resistance"), key=rank)
    half = max_levels // 2
    n_sup = min(len(sup), half)
    n_res = min(len(res), half)
    spare = max_levels - n_sup - n_res
    rest = sorted(sup[n_sup:] + res[n_res:], key=rank)[:spare]
    chosen = sup[:n_sup] + res[:n_res] + rest
    return sorted(chosen, key=lambda lv: -lv["price"])
