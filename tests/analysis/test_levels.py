"""Key levels: fractal pivots (no repainting), floor pivots, planted support/resistance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_candles import KLINES_1D, recorded_klines, synthetic_candles
from partb_data import bounce_closes, bounce_frame, minute_candles, multi_timeframe, true_range_atr

from p9cli.analysis.candles import Candles
from p9cli.analysis.indicators import atr as atr_series
from p9cli.analysis.levels import (
    _distinct_touches,
    collect_pivots,
    evidence_weight,
    floor_pivots,
    key_levels,
    select_levels,
)
from p9cli.analysis.pivots import fractal_pivots
from p9cli.analysis.profile import composite_profile

# ---------------------------------------------------------------- fractal pivots


def test_fractal_pivots_hand_worked():
    #        0  1  2  3  4  5  6  7  8  9
    high = [1, 2, 5, 3, 2, 4, 6, 6, 5, 1]
    low = [5, 4, 1, 3, 4, 2, 3, 3, 2, 9]
    hi, lo = fractal_pivots(high, low, 2, 2)
    # high: bar 2 (5 > 2,1 and >= 3,2); bar 6 (6 > 4,2 and >= 6,5): first bar of the flat top;
    # bar 7 is not (6 is not strictly above bar 6)
    assert hi.tolist() == [2, 6]
    # low: bar 2 (1 < 4,5 and <= 3,4); bar 5 (2 < 4,3 and <= 3,3); bar 8 would need 2 bars after
    assert lo.tolist() == [2, 5]
    # left=1, right=1
    hi, lo = fractal_pivots(high, low, 1, 1)
    assert hi.tolist() == [2, 6]
    assert lo.tolist() == [2, 5, 8]


def test_flat_plateau_gives_exactly_one_pivot_at_its_first_bar():
    high = [1, 2, 7, 7, 7, 7, 3, 2, 1]
    hi, _ = fractal_pivots(high, [0] * 9, 2, 2)
    assert hi.tolist() == [2]
    # a plateau longer than `right` still pivots at its first bar only
    hi, _ = fractal_pivots([1, 2, 7, 7, 7, 7, 7, 7, 3], [0] * 9, 2, 2)
    assert hi.tolist() == [2]


def test_short_or_bad_input():
    hi, lo = fractal_pivots([1, 2, 1], [1, 0, 1], 2, 2)
    assert hi.size == 0 and lo.size == 0
    hi, lo = fractal_pivots([1, 2, np.nan, 2, 1, 5, 1], [1, 0, np.nan, 0, 1, 0, 1], 1, 1)
    assert 2 not in hi.tolist() and 2 not in lo.tolist()
    with pytest.raises(ValueError):
        fractal_pivots([1, 2], [1, 2], 0, 2)
    with pytest.raises(ValueError):
        fractal_pivots([1, 2, 3], [1, 2], 1, 1)


@pytest.mark.parametrize(("left", "right"), [(2, 2), (3, 1), (1, 4), (5, 5)])
def test_pivots_never_use_bars_beyond_right(left, right):
    """No repainting: the pivots found on any prefix of the series are exactly the pivots of the
    full series that are at least `right` bars before the prefix's end; the last `right` bars of
    a prefix never hold one, and changing later bars never changes an earlier pivot."""
    c = synthetic_candles("1h", 400, seed=21, tick=1.0)  # coarse tick: many equal highs/lows
    h, lo = c.high, c.low
    full_hi, full_lo = fractal_pivots(h, lo, left, right)
    rng = np.random.default_rng(0)
    for k in range(left + right + 1, len(h) + 1, 7):
        hi_k, lo_k = fractal_pivots(h[:k], lo[:k], left, right)
        assert hi_k.tolist() == [i for i in full_hi.tolist() if i <= k - 1 - right]
        assert lo_k.tolist() == [i for i in full_lo.tolist() if i <= k - 1 - right]
        # scramble everything after bar k - 1 + ... : pivots up to k-1-right must not move
        h2, lo2 = h.copy(), lo.copy()
        h2[k:] = rng.uniform(h.min(), h.max(), len(h) - k)
        lo2[k:] = h2[k:] - rng.uniform(0, 50, len(h) - k)
        hi2, lo2_idx = fractal_pivots(h2, lo2, left, right)
        assert [i for i in hi2.tolist() if i <= k - 1 - right] == hi_k.tolist()
        assert [i for i in lo2_idx.tolist() if i <= k - 1 - right] == lo_k.tolist()


def test_pivots_brute_force_on_recorded_daily_candles():
    c = recorded_klines(KLINES_1D)
    h, lo = c.high.tolist(), c.low.tolist()
    hi, lw = fractal_pivots(c.high, c.low, 2, 2)
    n = len(h)
    want_hi = [
        i
        for i in range(2, n - 2)
        if all(h[i] > h[i - k] for k in (1, 2)) and all(h[i] >= h[i + k] for k in (1, 2))
    ]
    want_lo = [
        i
        for i in range(2, n - 2)
        if all(lo[i] < lo[i - k] for k in (1, 2)) and all(lo[i] <= lo[i + k] for k in (1, 2))
    ]
    assert hi.tolist() == want_hi and lw.tolist() == want_lo
    assert len(want_hi) > 20 and len(want_lo) > 20


# ---------------------------------------------------------------- floor pivots


def test_floor_pivots_hand_worked():
    # H 110, L 90, C 100: P = 300/3 = 100; R1 = 200-90 = 110; S1 = 200-110 = 90;
    # R2 = 100+20 = 120; S2 = 100-20 = 80; R3 = 110 + 2*(100-90) = 130; S3 = 90 - 2*(110-100) = 70
    fp = floor_pivots({"high": 110.0, "low": 90.0, "close": 100.0})
    assert fp == {"P": 100.0, "R1": 110.0, "R2": 120.0, "R3": 130.0, "S1": 90.0, "S2": 80.0, "S3": 70.0}


def test_floor_pivots_of_a_recorded_daily_candle():
    c = recorded_klines(KLINES_1D)
    # 2019-01-01: H 3810.16 L 3642.00 C 3797.14 -> P = 11249.30 / 3 = 3749.7666...
    row = {"high": c.high[0], "low": c.low[0], "close": c.close[0]}
    assert (row["high"], row["low"], row["close"]) == (3810.16, 3642.0, 3797.14)
    fp = floor_pivots(row)
    p = (3810.16 + 3642.0 + 3797.14) / 3
    assert fp["P"] == pytest.approx(p, rel=1e-15)
    assert fp["R1"] == pytest.approx(2 * p - 3642.0) and fp["S1"] == pytest.approx(2 * p - 3810.16)
    assert fp["S3"] < fp["S2"] < fp["S1"] < fp["P"] < fp["R1"] < fp["R2"] < fp["R3"]

    class Row:  # attribute access works too (e.g. a namedtuple from itertuples)
        high, low, close = 3810.16, 3642.0, 3797.14

    assert floor_pivots(Row()) == fp


# ---------------------------------------------------------------- touches


def test_a_touch_seen_on_several_timeframes_counts_once():
    h = 3_600_000
    m = 60_000
    # cluster 0: a 4h pivot at 0; a 1h pivot at 1h (inside that 4h bar: same touch); a 1h pivot
    # at 5h (new touch); a 1m pivot at 5h30m (inside the 1h bar at 5h: same touch); a 1m pivot
    # at 9h (new touch). cluster 1: a 1h pivot high and a 1h pivot low on the same bar (once).
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    tf_ms = np.array([4 * h, h, h, m, m, h, h])
    times = np.array([0, h, 5 * h, 5 * h + 30 * m, 9 * h, 2 * h, 2 * h])
    touches, weighted, decayed = _distinct_touches(labels, tf_ms, times, 2, now_ms=9 * h, half_life_ms=4 * h)
    assert touches.tolist() == [3, 1]
    assert weighted[0] == pytest.approx(evidence_weight("4h") + evidence_weight("1h") + evidence_weight("1m"))
    assert weighted[1] == pytest.approx(evidence_weight("1h"))
    # ages at 9h with a 4h half-life: the 4h touch is 9h old, the 1h touch 4h, the 1m touch 0
    assert decayed[0] == pytest.approx(
        evidence_weight("4h") * 0.5 ** (9 / 4) + evidence_weight("1h") * 0.5 + evidence_weight("1m")
    )
    assert decayed[1] == pytest.approx(evidence_weight("1h") * 0.5 ** (7 / 4))


def test_timeframe_weights():
    assert evidence_weight("1d") == pytest.approx(0.8)
    assert evidence_weight("1m") == pytest.approx(0.8 / (1 + math.log2(1440)))
    ws = [evidence_weight(tf) for tf in ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")]
    assert ws == sorted(ws)


# ---------------------------------------------------------------- planted levels


def check_level_dict(lv: dict, tick: float, last_close: float):
    assert lv["zone_low"] <= lv["price"] <= lv["zone_high"]
    for key in ("price", "zone_low", "zone_high"):
        assert abs(lv[key] / tick - round(lv[key] / tick)) < 1e-6
    assert lv["kind"] == ("resistance" if lv["price"] > last_close else "support")
    assert 0.0 <= lv["strength"] <= 1.0 and 0.0 <= lv["score"] <= 1.0
    assert lv["touches"] >= 1 and lv["timeframes"]
    assert lv["volume_near"] >= 0
    assert lv["distance"] == pytest.approx(lv["price"] - last_close)
    assert 1.0 <= lv["reaction_mean_atr"] <= lv["reaction_max_atr"] <= 4.0
    assert lv["evidence"] in ("reactions", "volume", "timeframes")
    assert lv["selected"] in ("nearest", "strongest")


@pytest.mark.parametrize("seed", range(4))
def test_planted_levels_single_timeframe(seed):
    """Hourly candles bouncing between 100 and 110 (wicks up to 0.1 beyond, turns up to 0.3
    inside): exactly two levels, at the two planted prices, correctly labelled."""
    df = bounce_frame(1000, 100.0, 110.0, seed=seed, timeframe="1h")
    atr = true_range_atr(df)
    last = float(df["close"].iloc[-1])
    # the planted touches spread over ~0.4 = ~0.6 ATR: use a tolerance that covers that band
    levels = key_levels({"1h": df}, {"1h": atr}, last, 0.01, tolerance_atr=0.6, max_distance_atr=50)
    assert len(levels) == 2
    res, sup = levels  # highest price first
    assert res["kind"] == "resistance" and sup["kind"] == "support"
    assert abs(res["price"] - 110.0) <= 0.3 and abs(sup["price"] - 100.0) <= 0.3
    assert res["zone_low"] <= 110.0 <= res["zone_high"] + 0.1
    assert sup["zone_low"] - 0.1 <= 100.0 <= sup["zone_high"]
    for lv in levels:
        check_level_dict(lv, 0.01, last)
        assert lv["touches"] >= 10 and lv["timeframes"] == ["1h"]


@pytest.fixture(scope="module")
def planted_multi():
    closes = bounce_closes(30 * 1440, 100.0, 110.0, seed=4, step=(0.01, 0.07), overshoot=0.2)
    minutes = minute_candles(closes, seed=4, wick=0.0003)
    frames = multi_timeframe(minutes, ["1m", "5m", "15m", "1h", "4h"], 1000)
    atr = {tf: true_range_atr(df) for tf, df in frames.items()}
    return frames, atr


def test_planted_levels_across_timeframes(planted_multi):
    frames, atr = planted_multi
    last = float(frames["1m"]["close"].iloc[-1])
    levels = key_levels(frames, atr, last, 0.01, max_distance_atr=50)
    tol = 0.25 * atr["4h"]  # default tolerance with the reference (4h) timeframe's ATR
    # the two planted levels are the two strongest; turns inside the range rank below them
    res, sup = sorted(levels, key=lambda lv: -lv["score"])[:2]
    if res["kind"] == "support":
        res, sup = sup, res
    assert res["kind"] == "resistance" and abs(res["price"] - 110.0) <= tol
    assert sup["kind"] == "support" and abs(sup["price"] - 100.0) <= tol
    assert sorted([res["strength"], sup["strength"]]) == [pytest.approx(1 - 1 / (len(levels) - 1)), 1.0]
    for lv in levels:
        check_level_dict(lv, 0.01, last)
    for lv in (res, sup):
        # the planted levels show on every timeframe, the longest first
        assert lv["timeframes"] == ["4h", "1h", "15m", "5m", "1m"]
    # touches are counted once across timeframes: a 4h swing high is usually also a 1h, 15m,
    # 5m and 1m swing high, so there are fewer touches than pivots in the zone, and at least
    # one per 4h pivot (the longest timeframe is counted first, never merged away)
    piv = collect_pivots(frames)
    in_zone = (piv["price"] >= res["zone_low"]) & (piv["price"] <= res["zone_high"])
    assert res["touches"] < int(in_zone.sum())
    n_4h = int((in_zone & (piv["tf"] == piv["timeframes"].index("4h"))).sum())
    assert res["touches"] >= n_4h > 0
    profile = composite_profile(frames, 0.05)
    again = key_levels(frames, atr, last, 0.01, max_distance_atr=50, profile=profile)
    assert [lv["price"] for lv in again] == [lv["price"] for lv in levels]
    res_again = next(lv for lv in again if lv["price"] == res["price"])
    assert res_again["volume_near"] == pytest.approx(
        profile.volume_between(res["zone_low"], res["zone_high"])
    )


def test_levels_respect_distance_and_count_limits(planted_multi):
    frames, atr = planted_multi
    last = float(frames["1m"]["close"].iloc[-1])
    for dist in (0.01, 0.3, 1.0):
        near = key_levels(frames, atr, last, 0.01, max_distance_atr=dist)
        # a level's price is a weighted mean of pivots that are all within the distance
        assert all(abs(lv["distance"]) <= dist * atr["4h"] + 0.01 for lv in near)
    one = key_levels(frames, atr, last, 0.01, max_distance_atr=50, nearest_per_side=0, strongest=1)
    assert len(one) == 1 and one[0]["selected"] == "strongest" and one[0]["strength"] == 1.0
    every = key_levels(frames, atr, last, 0.01, max_distance_atr=50, nearest_per_side=99, strongest=0)
    assert one[0]["score"] == max(lv["score"] for lv in every)
    assert key_levels({}, {}, 100.0, 0.01) == []
    with pytest.raises(ValueError):
        key_levels(frames, atr, last, 0.0)
    with pytest.raises(ValueError):
        key_levels(frames, {"1m": float("nan")}, last, 0.01)


def test_select_levels_keeps_the_nearest_per_side_plus_the_strongest():
    def lv(price, kind, score):
        return {"price": price, "kind": kind, "score": score, "distance": price - 50}

    levels = [
        lv(60, "resistance", 0.2),
        lv(70, "resistance", 0.9),
        lv(80, "resistance", 0.7),
        lv(45, "support", 0.1),
        lv(30, "support", 0.8),
        lv(20, "support", 0.3),
    ]
    got = select_levels(levels, nearest_per_side=1, strongest=2)
    assert [(x["price"], x["selected"]) for x in got] == [
        (70, "strongest"),
        (60, "nearest"),
        (45, "nearest"),
        (30, "strongest"),
    ]
    got = select_levels(levels, nearest_per_side=2, strongest=0)
    assert [x["price"] for x in got] == [70, 60, 45, 30]
    assert select_levels(levels, 0, 0) == []


def zigzag_hours(points, step=0.5, seed=0):
    """Hourly candles walking linearly (``step`` per bar) through the turning ``points``."""
    closes = [points[0]]
    for a, b in zip(points, points[1:], strict=False):
        n = max(1, round(abs(b - a) / step))
        closes += list(np.linspace(a, b, n + 1)[1:])
    c = np.array(closes)
    rng = np.random.default_rng(seed)
    o = np.concatenate(([c[0]], c[:-1]))
    h = np.round(np.maximum(o, c) + rng.uniform(0.02, 0.08, c.size), 2)
    lo = np.round(np.minimum(o, c) - rng.uniform(0.02, 0.08, c.size), 2)
    t = 1_700_006_400_000 + np.arange(c.size, dtype=np.int64) * 3_600_000
    return Candles.from_arrays(t, np.round(o, 2), h, lo, np.round(c, 2), np.full(c.size, 10.0))


def test_a_level_with_many_large_reactions_ranks_above_one_touched_once():
    """110 is hit four times and each time price falls 7-10 points (capped at 4 ATR); 104 is a
    single swing high from which price moved ~1.8 ATR. The first must rank above the second."""
    c = zigzag_hours([100, 110, 102, 110, 101, 110, 103, 110, 100, 104, 103, 108, 105])
    atr_1h = float(atr_series(c.high, c.low, c.close, 14)[-1])
    levels = key_levels(
        {"1h": c},
        {"1h": atr_1h},
        float(c.close[-1]),
        0.01,
        max_distance_atr=100,
        nearest_per_side=99,
        strongest=0,
    )
    strong = min(levels, key=lambda lv: abs(lv["price"] - 110.05))
    weak = min(levels, key=lambda lv: abs(lv["price"] - 104.05))
    assert abs(strong["price"] - 110.05) < 0.1 and abs(weak["price"] - 104.05) < 0.1
    assert strong["touches"] == 4 and weak["touches"] == 1
    assert strong["reaction_max_atr"] == 4.0 and weak["reaction_max_atr"] < 2.5
    assert strong["score"] > weak["score"] and strong["strength"] > weak["strength"]
    assert weak["strength"] == 0.0  # the weakest of the levels listed
    assert strong["kind"] == "resistance" and weak["kind"] == "support"


def test_levels_on_recorded_daily_candles():
    """Real BTCUSDT 2019 daily candles: levels are sane and deterministic."""
    c = recorded_klines(KLINES_1D)
    frames = {"1d": c}
    atr = {"1d": float(np.mean((c.high - c.low)[-14:]))}
    last = float(c.close[-1])
    levels = key_levels(frames, atr, last, 0.01, max_distance_atr=20)
    assert levels and levels == key_levels(frames, atr, last, 0.01, max_distance_atr=20)
    assert any(lv["kind"] == "support" for lv in levels) and any(lv["kind"] == "resistance" for lv in levels)
    for lv in levels:
        check_level_dict(lv, 0.01, last)
        assert c.low.min() - atr["1d"] <= lv["price"] <= c.high.max() + atr["1d"]
    strengths = sorted(lv["strength"] for lv in levels)
    assert strengths[0] == 0.0 and strengths[-1] == 1.0  # a rank over the levels listed
