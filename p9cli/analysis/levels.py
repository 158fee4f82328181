"""Key levels: confirmed fractal swing pivots on every timeframe, clustered into price zones and
ranked by their evidence (reactions, volume, confirming timeframes); plus the classic floor
pivots.

Pure functions over numpy arrays / pandas DataFrames (no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from p9cli.analysis.indicators import atr as atr_series
from p9cli.analysis.pivots import fractal_pivots
from p9cli.analysis.profile import VolumeProfile, column, composite_profile, row_size_for
from p9cli.analysis.trend import timeframe_weight as trend_weight
from p9cli.universe import TIMEFRAME_MS

_DAY_MS = 86_400_000

#: A level's evidence score = sum of weight * component, see :func:`key_levels`.
SCORE_WEIGHTS = {"reactions": 0.60, "volume": 0.25, "timeframes": 0.15}
#: The timeframe whose ATR sets the clustering width and the distance limit, when present.
PREFERRED_REFERENCE = "4h"
#: Bars after a pivot over which its reaction (move away, in ATR) is measured.
REACTION_BARS = 10
#: Reactions are capped at this many ATRs (one spike must not outweigh many touches).
REACTION_CAP_ATR = 4.0


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
    """The timeframe whose ATR scales level clustering and zone distances: 4h when present in
    both ``frames`` and ``atr`` with a finite positive ATR, else the longest such timeframe."""
    usable = [tf for tf in frames if tf in TIMEFRAME_MS and _positive(atr.get(tf))]
    if not usable:
        raise ValueError("key levels need at least one timeframe with a finite positive ATR")
    if PREFERRED_REFERENCE in usable:
        return PREFERRED_REFERENCE
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


def reactions_atr(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    hi_idx: np.ndarray,
    lo_idx: np.ndarray,
    bars: int = REACTION_BARS,
) -> tuple[np.ndarray, np.ndarray]:
    """How far price moved away from each pivot within the next ``bars`` bars, in ATR(14) of the
    same candles at the pivot bar (the last defined ATR during the warm-up), capped at
    :data:`REACTION_CAP_ATR`: ``(high[i] - min(low[i+1 : i+1+bars])) / ATR[i]`` for a pivot high,
    ``(max(high[i+1 : i+1+bars]) - low[i]) / ATR[i]`` for a pivot low."""
    n = high.size
    a = atr_series(high, low, close, 14)
    finite = np.isfinite(a)
    if not finite.any():
        rng = float(np.nanmean(high - low)) if n else 0.0
        a = np.full(n, rng if rng > 0 else np.nan)
    else:
        first = int(np.argmax(finite))
        a = a.copy()
        a[:first] = a[first]
    pad_lo = np.concatenate((low[1:], np.full(bars, np.inf)))
    pad_hi = np.concatenate((high[1:], np.full(bars, -np.inf)))
    fut_min = np.lib.stride_tricks.sliding_window_view(pad_lo, bars).min(axis=1)[:n]
    fut_max = np.lib.stride_tricks.sliding_window_view(pad_hi, bars).max(axis=1)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        r_hi = (high[hi_idx] - fut_min[hi_idx]) / a[hi_idx]
        r_lo = (fut_max[lo_idx] - low[lo_idx]) / a[lo_idx]

    def clean(r: np.ndarray) -> np.ndarray:
        return np.clip(np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0), 0.0, REACTION_CAP_ATR)

    return clean(r_hi), clean(r_lo)


def collect_pivots(frames: Mapping[str, Any], *, left: int = 2, right: int = 2) -> dict[str, np.ndarray]:
    """Every confirmed pivot of every timeframe as parallel arrays.

    Returns:
        ``{"price": float64, "time": int64 open_time ms, "tf": int index into
        "timeframes", "is_high": bool, "reaction_atr": float64 (see :func:`reactions_atr`)}``
        plus ``"timeframes": list[str]``.
    """
    prices, times, tf_idx, highs, reactions = [], [], [], [], []
    names = [tf for tf in frames if tf in TIMEFRAME_MS]
    for k, tf in enumerate(names):
        df = frames[tf]
        if len(df) == 0:
            continue
        h = column(df, "high")
        lo = column(df, "low")
        ot = column(df, "open_time")
        hi_idx, lo_idx = fractal_pivots(h, lo, left, right)
        r_hi, r_lo = reactions_atr(h, lo, column(df, "close"), hi_idx, lo_idx)
        prices += [h[hi_idx], lo[lo_idx]]
        times += [ot[hi_idx], ot[lo_idx]]
        tf_idx += [np.full(hi_idx.size + lo_idx.size, k, dtype=np.int64)]
        highs += [np.ones(hi_idx.size, bool), np.zeros(lo_idx.size, bool)]
        reactions += [r_hi, r_lo]
    if not prices:
        return {
            "price": np.zeros(0),
            "time": np.zeros(0, np.int64),
            "tf": np.zeros(0, np.int64),
            "is_high": np.zeros(0, bool),
            "reaction_atr": np.zeros(0),
            "timeframes": names,
        }
    return {
        "price": np.concatenate(prices),
        "time": np.concatenate(times),
        "tf": np.concatenate(tf_idx),
        "is_high": np.concatenate(highs),
        "reaction_atr": np.concatenate(reactions),
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
    values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Touches per cluster, counting each touch event once across timeframes.

    Returns ``(touches, weighted, decayed)``: the count; the sum of :func:`evidence_weight`
    of the timeframe each counted touch was taken from; and the same sum with each touch
    also multiplied by ``0.5 ** (age / half_life_ms)`` (age = ``now_ms`` - the touch bar's
    open time; equal to ``weighted`` when no half-life is given) and by ``values`` of the
    counted pivot when given (the reaction size, see :func:`key_levels`).

    Pivots are taken from the longest timeframe down; a pivot whose bar interval
    ``[time, time + tf)`` overlaps the bar of an already-counted pivot of the same cluster
    (on the same or a longer timeframe) is the same touch seen at a finer resolution and is
    not counted again. A bar that is both a pivot high and a pivot low counts once.
    """
    key_base = np.int64(1) << np.int64(42)  # > any ms timestamp before year 2109
    acc_start = np.zeros(0, dtype=np.int64)
    acc_end = np.zeros(0, dtype=np.int64)
    touches = np.zeros(n_clusters, dtype=np.int64)
    weighted = np.zeros(n_clusters, dtype=np.float64)
    decayed = np.zeros(n_clusters, dtype=np.float64)
    vals = np.ones(labels.size) if values is None else np.asarray(values, dtype=np.float64)
    for width in sorted(set(tf_ms.tolist()), reverse=True):
        sel = np.flatnonzero((tf_ms == width) & (labels >= 0))
        if sel.size == 0:
            continue
        keys = labels[sel] * key_base + times[sel]
        v = vals[sel]
        if acc_start.size:
            # the last counted bar starting before this bar ends; overlap iff it ends after
            # this bar starts (any earlier one ends even earlier)
            j = np.searchsorted(acc_start, keys + width, side="left") - 1
            dup = (j >= 0) & (acc_end[np.maximum(j, 0)] > keys)
            keys, v = keys[~dup], v[~dup]
        # a bar that is both a pivot high and a pivot low: once (the larger value)
        order = np.lexsort((-v, keys))
        keys, v = keys[order], v[order]
        first = np.concatenate(([True], keys[1:] != keys[:-1])) if keys.size else np.zeros(0, bool)
        ukeys, uv = keys[first], v[first]
        cl = (ukeys // key_base).astype(np.int64)
        counts = np.bincount(cl, minlength=n_clusters)
        touches += counts
        w = _weight_of_ms(width)
        weighted += counts * w
        if half_life_ms and now_ms is not None:
            age = np.maximum(now_ms - (ukeys % key_base), 0).astype(np.float64)
            decayed += np.bincount(cl, weights=w * uv * 0.5 ** (age / half_life_ms), minlength=n_clusters)
        else:
            decayed += np.bincount(cl, weights=w * uv, minlength=n_clusters)
        acc_start = np.concatenate((acc_start, ukeys))
        acc_end = np.concatenate((acc_end, ukeys + width))
        order = np.argsort(acc_start, kind="stable")
        acc_start, acc_end = acc_start[order], acc_end[order]
    return touches, weighted, decayed


def _weight_of_ms(tf_ms: int) -> float:
    """The alignment weight (:func:`p9cli.analysis.trend.evidence_weight`) scaled to 0.8 at 1d."""
    return 0.8 * trend_weight(tf_ms) / trend_weight(TIMEFRAME_MS["1d"])


def rank_strength(scores: np.ndarray) -> np.ndarray:
    """Each score's rank among ``scores`` spread over 0..1: the weakest 0, the strongest 1, equal
    scores share their mean rank; a single score is 1."""
    s = np.asarray(scores, dtype=np.float64)
    n = s.size
    if n == 0:
        return s.copy()
    if n == 1:
        return np.ones(1)
    order = np.argsort(s, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n, dtype=np.float64)
    # ties: the mean rank of the group
    uniq, inverse = np.unique(s, return_inverse=True)
    if uniq.size < n:
        ranks = (np.bincount(inverse, weights=ranks) / np.bincount(inverse))[inverse]
    return ranks / (n - 1)


def key_levels(
    frames: Mapping[str, Any],
    atr: Mapping[str, float],
    last_close: float,
    tick: float,
    *,
    left: int = 2,
    right: int = 2,
    tolerance_atr: float = 0.25,
    confirm_atr: float = 0.25,
    min_reaction_atr: float = 1.0,
    nearest_per_side: int = 3,
    strongest: int = 4,
    max_distance_atr: float = 8.0,
    reference_tf: str | None = None,
    profile: VolumeProfile | None = None,
    now_ms: int | None = None,
    recency_half_life_ms: int = 30 * _DAY_MS,
    distance_atr: float | None = None,
    max_clusters: int = 40,
) -> list[dict]:
    """Support and resistance levels: confirmed pivots of every timeframe clustered into levels
    and ranked by their evidence.

    Args:
        frames: timeframe -> candles (DataFrame or :class:`p9cli.analysis.candles.Candles`;
            ``open_time`` ms, ``high``, ``low``, ``close``, ``volume``; ascending, closed).
        atr: timeframe -> current ATR(14) in price units. Only the reference timeframe's ATR is
            required; a timeframe without one confirms a level within ``confirm_atr`` of its
            own candles' mean range.
        last_close: the latest price (decides support vs resistance, distances).
        tick: price increment; level prices are rounded to it, zone edges outward.
        left, right: pivot confirmation bars (:func:`p9cli.analysis.pivots.fractal_pivots`).
        tolerance_atr: clustering width in reference ATRs (the reference timeframe is 4h when
            present, else the longest: :func:`reference_timeframe`).
        confirm_atr, min_reaction_atr: a pivot of timeframe ``tf`` confirms (touches) a level
            when it lies within ``min(confirm_atr * ATR(tf), clustering width / 2)`` of the
            level's centre and price moved at least ``min_reaction_atr * ATR(tf)`` away from it
            within 10 bars; other pivots of the cluster are ignored (a 1-minute wiggle three
            minute-ATRs away is not a touch of that level).
        nearest_per_side, strongest: the selection rule (see below).
        max_distance_atr: pivots farther than this many reference ATRs from ``last_close``
            are ignored.
        profile: volume profile for the volume evidence (normally the composite profile);
            built from ``frames`` when omitted.
        now_ms: "now" for recency; default: the latest candle close time in ``frames``.
        recency_half_life_ms: a touch's weight halves every this many ms of age.
        distance_atr: the ATR that ``distance_atr`` is measured in (the document's
            ``atr_timeframe``); default: the reference ATR.

    Evidence, per level (each counted touch once across timeframes: ``_distinct_touches``):

    * **reactions** ``E = sum over touches of w(tf) * 0.5 ** (age / half_life) * reaction_atr``
      where ``reaction_atr`` is how far price moved away within 10 bars, in ATR of the touch's
      timeframe, capped at 4 (:func:`reactions_atr`); ``w`` is :func:`evidence_weight` (1d 0.8,
      1h 0.55, 1m 0.07). Component ``R = E / (E + median E of the candidates)``.
    * **volume**: ``d`` = volume per price unit inside the level's zone (composite profile) over
      the mean density within ``max_distance_atr`` of the price. Component ``V = d / (1 + d)``.
    * **timeframes**: the timeframes with a confirming pivot. Component
      ``F = 1 - prod(1 - w(tf))`` (:func:`combined_timeframe_score`).

    ``score = 0.60 R + 0.25 V + 0.15 F`` and ``strength`` = the score's rank among the levels
    returned, spread over 0..1 (:func:`rank_strength`: the strongest 1, the weakest 0).
    ``evidence`` names the component where the level ranks highest among all candidates.

    Selection: the ``nearest_per_side`` nearest supports and resistances, plus the
    ``strongest`` highest-scoring of the remaining candidates (``selected`` says which rule
    kept a level).

    Returns:
        dicts sorted by price, highest first: ``price`` (weighted mean of the confirming
        pivots, on tick), ``zone_low``/``zone_high`` (their span, at least +-0.05 reference
        ATR, rounded outward), ``kind`` ("support"/"resistance"), ``touches``,
        ``reaction_mean_atr`` and ``reaction_max_atr`` (over its confirming pivots, each in ATR
        of its timeframe), ``timeframes`` (confirming, longest first), ``last_touch_ms``,
        ``volume_near`` (profile volume in the zone), ``volume_ratio`` (``d``), ``score``, ``strength``, ``evidence`` ("reactions",
        "volume" or "timeframes"), ``selected`` ("nearest"/"strongest"), ``distance``,
        ``distance_pct``, ``distance_atr``.

    Raises:
        ValueError: ``tick`` not a positive number, ``last_close`` not finite, or no usable
            ATR for the reference timeframe.
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
    dist_unit = distance_atr if _positive(distance_atr) else atr_ref
    width = tolerance_atr * atr_ref
    if now_ms is None:
        now_ms = max(int(column(df, "open_time")[-1]) + TIMEFRAME_MS[tf] for tf, df in frames.items())

    piv = collect_pivots(frames, left=left, right=right)
    names = piv["timeframes"]
    price = piv["price"]
    near = np.abs(price - last_close) <= max_distance_atr * atr_ref
    idx = np.flatnonzero(near)[np.argsort(price[near], kind="stable")]
    if idx.size == 0:
        return []
    price = price[idx]
    times = piv["time"][idx]
    tf_of = piv["tf"][idx]
    reaction = piv["reaction_atr"][idx]
    name_weight = np.array([evidence_weight(tf) for tf in names])
    name_ms = np.array([TIMEFRAME_MS[tf] for tf in names], dtype=np.int64)
    name_atr = np.array(
        [
            float(atr[tf])
            if _positive(atr.get(tf))
            else float(np.mean(column(frames[tf], "high") - column(frames[tf], "low")))
            for tf in names
        ]
    )
    weights = name_weight[tf_of]

    labels = _cluster(price, weights, width, max_clusters)
    if not labels.size or labels.max() < 0:
        return []
    n_all = int(labels.max()) + 1
    m = labels >= 0
    wsum = np.bincount(labels[m], weights=weights[m], minlength=n_all)
    centre = np.bincount(labels[m], weights=(weights * price)[m], minlength=n_all) / np.maximum(wsum, 1e-300)
    # only pivots within confirm_atr of their own timeframe's ATR touch the level
    tol = np.minimum(confirm_atr * name_atr[tf_of], width / 2.0)
    confirms = m & (np.abs(price - centre[np.maximum(labels, 0)]) <= tol) & (reaction >= min_reaction_atr)
    labels = np.where(confirms, labels, -1)
    m = confirms
    if not m.any():
        return []
    # renumber the clusters that kept a confirming pivot
    keep_ids = np.unique(labels[m])
    remap = np.full(n_all, -1, dtype=np.int64)
    remap[keep_ids] = np.arange(keep_ids.size)
    labels = np.where(m, remap[np.maximum(labels, 0)], -1)
    n = int(keep_ids.size)
    lab = labels[m]
    touches, _weighted, evidence = _distinct_touches(
        labels, name_ms[tf_of], times, n, now_ms, float(recency_half_life_ms), values=reaction
    )
    wsum = np.bincount(lab, weights=weights[m], minlength=n)
    centre = np.bincount(lab, weights=(weights * price)[m], minlength=n) / wsum
    zlo = np.full(n, np.inf)
    zhi = np.full(n, -np.inf)
    np.minimum.at(zlo, lab, price[m])
    np.maximum.at(zhi, lab, price[m])
    half = 0.05 * atr_ref
    zlo = np.floor(np.minimum(zlo, centre - half) / tick + 1e-9) * tick  # outward, on the tick
    zhi = np.ceil(np.maximum(zhi, centre + half) / tick - 1e-9) * tick
    last_touch = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_touch, lab, times[m])
    tf_seen = np.zeros((n, len(names)), dtype=bool)
    tf_seen[lab, tf_of[m]] = True
    r_sum = np.bincount(lab, weights=reaction[m], minlength=n)
    r_cnt = np.bincount(lab, minlength=n)
    r_max = np.zeros(n)
    np.maximum.at(r_max, lab, reaction[m])

    if profile is None:
        profile = composite_profile(frames, row_size_for(tick, atr_ref))
    vol_near = np.asarray(profile.volume_between(zlo, zhi), dtype=np.float64)
    band_lo = max(last_close - max_distance_atr * atr_ref, profile.price_low)
    band_hi = min(last_close + max_distance_atr * atr_ref, profile.price_high)
    span = band_hi - band_lo
    mean_density = float(profile.volume_between(band_lo, band_hi)) / span if span > 0 else 0.0
    density = vol_near / np.maximum(zhi - zlo, 1e-300)
    d = density / mean_density if mean_density > 0 else np.zeros(n)

    e_mid = float(np.median(evidence)) if n else 0.0
    comp = {
        "reactions": evidence / (evidence + e_mid) if e_mid > 0 else (evidence > 0).astype(float),
        "volume": d / (1.0 + d),
        "timeframes": np.array(
            [combined_timeframe_score([names[k] for k in np.flatnonzero(tf_seen[c])]) for c in range(n)]
        ),
    }
    score = sum(SCORE_WEIGHTS[k] * comp[k] for k in SCORE_WEIGHTS)
    comp_rank = {k: rank_strength(v) for k, v in comp.items()}
    main = [max(SCORE_WEIGHTS, key=lambda k, c=c: (comp_rank[k][c], SCORE_WEIGHTS[k])) for c in range(n)]

    candidates = []
    for c in range(n):
        p = _round_to(float(centre[c]), tick)
        candidates.append(
            {
                "price": p,
                "kind": "resistance" if p > last_close else "support",
                "score": float(score[c]),
                "distance": p - last_close,
                "c": c,
            }
        )
    by_len = sorted(range(len(names)), key=lambda k: -name_ms[k])
    levels = []
    for cand in select_levels(candidates, nearest_per_side, strongest):
        c, p, dist = cand["c"], cand["price"], cand["distance"]
        levels.append(
            {
                "price": p,
                "zone_low": _round_to(float(zlo[c]), tick, "down"),
                "zone_high": _round_to(float(zhi[c]), tick, "up"),
                "kind": cand["kind"],
                "touches": int(touches[c]),
                "reaction_mean_atr": float(r_sum[c] / max(r_cnt[c], 1)),
                "reaction_max_atr": float(r_max[c]),
                "timeframes": [names[k] for k in by_len if tf_seen[c, k]],
                "last_touch_ms": int(last_touch[c]),
                "volume_near": float(vol_near[c]),
                "volume_ratio": float(d[c]),
                "score": float(score[c]),
                "strength": 0.0,  # the rank among the chosen levels, below
                "evidence": main[c],
                "selected": cand["selected"],
                "distance": dist,
                "distance_pct": 100.0 * dist / last_close if last_close else 0.0,
                "distance_atr": dist / dist_unit,
            }
        )
    for lv, st in zip(levels, rank_strength(np.array([lv["score"] for lv in levels])).tolist(), strict=True):
        lv["strength"] = st
    return levels


def select_levels(levels: list[dict], nearest_per_side: int = 3, strongest: int = 4) -> list[dict]:
    """The ``nearest_per_side`` supports and resistances nearest the price (by ``|distance|``),
    plus the ``strongest`` highest-``score`` levels among the rest; each chosen level gets
    ``selected`` = "nearest" or "strongest". Sorted by price, highest first."""
    sup = sorted((lv for lv in levels if lv["kind"] == "support"), key=lambda lv: abs(lv["distance"]))
    res = sorted((lv for lv in levels if lv["kind"] == "resistance"), key=lambda lv: abs(lv["distance"]))
    near = sup[: max(nearest_per_side, 0)] + res[: max(nearest_per_side, 0)]
    chosen_ids = {id(lv) for lv in near}
    rest = sorted(
        (lv for lv in levels if id(lv) not in chosen_ids), key=lambda lv: (-lv["score"], abs(lv["distance"]))
    )
    out = [dict(lv, selected="nearest") for lv in near]
    out += [dict(lv, selected="strongest") for lv in rest[: max(strongest, 0)]]
    return sorted(out, key=lambda lv: -lv["price"])
