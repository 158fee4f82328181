"""Liquidity zones (consolidations, HVN clusters) and the assembled part-B sections."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from analysis_candles import KLINES_1D, KLINES_1H, recorded_klines
from partb_data import (
    boxed_minutes,
    consolidation_frame,
    multi_timeframe,
    random_walk_minutes,
    true_range_atr,
)

from p9cli.analysis.candles import Candles
from p9cli.analysis.profile import composite_profile, row_size_for
from p9cli.analysis.zones import consolidations, distinct_zones, liquidity_zones, structure_sections
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES

# ---------------------------------------------------------------- consolidation ranges


def test_consolidation_found_where_planted():
    df, box = consolidation_frame(seed=0)
    atr = true_range_atr(df.iloc[:250])
    found = consolidations(df["high"].to_numpy(), df["low"].to_numpy(), atr)
    assert len(found) == 1
    start, stop = found[0]
    # the 60 planted bars, give or take the neighbouring bar that opens/closes at the box edge
    assert abs(start - box.start) <= 2 and abs(stop - box.stop) <= 2


def test_consolidation_rule_hand_worked():
    # 5 bars of range 1 inside [10, 11], then a jump; atr 1, band 1.5 -> window range 1 <= 1.5
    high = np.array([11, 11, 11, 11, 11, 20, 21, 22], dtype=float)
    low = np.array([10, 10, 10, 10, 10, 19, 20, 21], dtype=float)
    assert consolidations(high, low, 1.0, min_bars=3, band_atr=1.5) == [(0, 5)]
    # a band narrower than the bars' own range finds nothing; so does a NaN ATR
    assert consolidations(high, low, 1.0, min_bars=3, band_atr=0.5) == []
    assert consolidations(high, low, float("nan"), min_bars=3) == []
    assert consolidations(high[:2], low[:2], 1.0, min_bars=3) == []


def test_a_bar_taller_than_the_cap_splits_a_stretch():
    # with a huge band every window is tight; the cap (2) cuts the stretch around the 20-tall bar
    high = np.array([1, 1, 1, 1, 10, 1, 1, 1, 1], dtype=float)
    low = np.array([0, 0, 0, 0, -10, 0, 0, 0, 0], dtype=float)
    assert consolidations(high, low, 1.0, min_bars=3, band_atr=100, max_band_atr=2) == [(0, 4), (5, 9)]


def test_a_slow_drift_is_cut_into_ranges_no_taller_than_the_cap():
    # every 12-bar window of a slow drift is tight, but the whole stretch is not a range
    n = 200
    mid = np.linspace(100.0, 120.0, n)
    high, low = mid + 0.5, mid - 0.5
    atr = 1.0
    found = consolidations(high, low, atr, min_bars=12, band_atr=2.5)
    assert found
    for a, b in found:
        assert b - a >= 12
        assert high[a:b].max() - low[a:b].min() <= 1.5 * 2.5 * atr + 1e-9
    # pieces do not overlap and stay in order
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(found, found[1:], strict=False))


# ---------------------------------------------------------------- liquidity zones


@pytest.mark.parametrize("seed", range(3))
def test_zones_on_a_planted_consolidation_with_elevated_volume(seed):
    df, box = consolidation_frame(seed=seed, range_volume_factor=3.0)
    atr = true_range_atr(df.iloc[:250])
    frames = {"1h": df}
    prof = composite_profile(frames, row_size_for(0.01, atr))
    last = float(df["close"].iloc[-1])
    zones = liquidity_zones(frames, {"1h": atr}, prof, last_close=last, tick=0.01, max_distance_atr=1000)
    # the box is both an HVN cluster and a consolidation: the two overlapping candidates are one
    # zone (merged, or the weaker dropped), never two zones on the same prices
    assert len(zones) == 1, zones
    z = zones[0]
    box_lo, box_hi = 150.0, 150.8
    assert box_lo - 0.25 <= z["low"] < z["high"] <= box_hi + 0.25
    assert z["timeframe"] == "1h" and z["high"] - z["low"] <= atr + 1e-9  # width bound: 1 ATR(1h)
    assert z["width_atr"] == pytest.approx((z["high"] - z["low"]) / atr)
    # the box holds 60 of 660 bars at 3x volume: 180/780 of all volume, most of it in the zone
    expected_share = 60 * 3 / (600 + 60 * 3)
    assert expected_share * 0.7 <= z["volume_share"] <= expected_share + 0.03
    # ~60 hourly closes inside the box (plus a few trend bars crossing it)
    assert 30 <= z["time_spent_bars"] <= 70
    assert z["time_spent_ms"] == z["time_spent_bars"] * 3_600_000
    if z["kind"] == "consolidation":
        c = z["consolidation"]
        assert c["timeframe"] == "1h" and abs(c["bars"] - 60) <= 3
        assert c["volume_ratio"] > 2.0  # 3x volume in the box vs a mean that includes the box
        box_start = int(df["open_time"].iloc[box.start])
        assert abs(c["start_ms"] - box_start) <= 2 * 3_600_000
        assert c["end_ms"] - c["start_ms"] == c["bars"] * 3_600_000
    assert z["timeframes"] == ["1h"]
    assert 0 <= z["strength"] <= 1 and 0 < z["volume_share"] <= 1
    assert z["low"] < z["mid"] < z["high"]
    assert z["distance_pct"] == pytest.approx(100 * (z["mid"] - last) / last)


def test_overlapping_zones_are_merged_within_the_bound_else_the_weaker_is_dropped():
    """Hand-built candidates (bounds in price units)."""

    def z(low, high, strength, max_width=2.0):
        return {"low": low, "high": high, "strength": strength, "max_width": max_width}

    # weaker B overlaps A and the union 100..101.5 fits A's bound (2): merged into A
    got = distinct_zones([z(100.8, 101.5, 0.5, max_width=1.0), z(100.0, 101.0, 0.9)], 4)
    assert [(g["low"], g["high"], g.get("merged", False)) for g in got] == [(100.0, 101.5, True)]
    # the other way round the stronger one's bound (1) is too small for the union: dropped
    got = distinct_zones([z(100.8, 101.5, 0.9, max_width=1.0), z(100.0, 101.0, 0.5)], 4)
    assert [(g["low"], g["high"], g.get("merged", False)) for g in got] == [(100.8, 101.5, False)]
    # the stronger one keeps its place; union 99..101.5 = 2.5 > its bound 2: the weaker is dropped
    got = distinct_zones([z(100.0, 101.5, 0.9), z(99.0, 100.5, 0.4)], 4)
    assert [(g["low"], g["high"]) for g in got] == [(100.0, 101.5)]
    # disjoint zones all stay, strongest first, at most max_zones
    many = [z(100.0 + 2 * i, 101.0 + 2 * i, 0.1 * i) for i in range(6)]
    got = distinct_zones(many, 4)
    assert [g["strength"] for g in got] == pytest.approx([0.5, 0.4, 0.3, 0.2])
    # touching edges do not overlap
    assert len(distinct_zones([z(100.0, 101.0, 0.5), z(101.0, 102.0, 0.4)], 4)) == 2
    # the input is not changed
    src = [z(100.0, 101.0, 0.5), z(100.8, 101.5, 0.9, max_width=1.0)]
    distinct_zones(src, 4)
    assert src == [z(100.0, 101.0, 0.5), z(100.8, 101.5, 0.9, max_width=1.0)]


def test_no_consolidation_zone_without_elevated_volume():
    df, _ = consolidation_frame(seed=1, range_volume_factor=0.7)  # quiet box: volume below the mean
    atr = true_range_atr(df.iloc[:250])
    prof = composite_profile({"1h": df}, row_size_for(0.01, atr))
    zones = liquidity_zones({"1h": df}, {"1h": atr}, prof, tick=0.01)
    assert all(z["kind"] != "consolidation" for z in zones)


def test_zones_far_from_price_are_dropped():
    df, _ = consolidation_frame(seed=0)
    atr = true_range_atr(df.iloc[:250])
    prof = composite_profile({"1h": df}, row_size_for(0.01, atr))
    last = float(df["close"].iloc[-1])  # ~200, the box is ~125 ATR below
    assert liquidity_zones({"1h": df}, {"1h": atr}, prof, last_close=last, tick=0.01) == []
    assert liquidity_zones({"1h": df.iloc[:0]}, {"1h": atr}, prof, tick=0.01) == []


@pytest.fixture(scope="module")
def planted_box_minutes():
    return boxed_minutes(seed=8)


def test_planted_consolidation_shows_on_several_timeframes(planted_box_minutes):
    minutes, (box_start, box_end) = planted_box_minutes
    frames = multi_timeframe(minutes, ["1m", "5m", "15m", "1h", "4h"], 1000)
    atr = {tf: true_range_atr(df) for tf, df in frames.items()}
    last = float(frames["1m"]["close"].iloc[-1])
    sections = structure_sections(frames, atr, last, 0.01)
    zones = sections["liquidity_zones"]
    in_box = [z for z in zones if z["low"] < 151.5 and z["high"] > 150.0]
    assert len(in_box) == 1, zones  # distinct zones: one per place
    best = in_box[0]
    assert best["low"] >= 149.8 and best["high"] <= 151.8
    assert len(best["timeframes"]) >= 2 and "1h" in best["timeframes"]
    assert best["width_atr"] <= 1.0 + 1e-9
    if best["kind"] == "consolidation":
        c = best["consolidation"]
        tf_ms = TIMEFRAME_MS[c["timeframe"]]
        # the range runs from the box's first bar to its last (a bar of slack either side)
        assert box_start - tf_ms <= c["start_ms"] <= box_start + 2 * tf_ms
        assert box_end + 60_000 - 2 * tf_ms <= c["end_ms"] <= box_end + 60_000 + 2 * tf_ms


# ---------------------------------------------------------------- assembled sections


def assert_all_finite(obj, path="doc"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert_all_finite(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            assert_all_finite(v, f"{path}[{i}]")
    elif isinstance(obj, float):
        assert math.isfinite(obj), path


@pytest.fixture(scope="module")
def universe_frames():
    minutes = random_walk_minutes(days=60, seed=12)
    return multi_timeframe(minutes, TIMEFRAMES, 1000)


def test_structure_sections_on_every_timeframe(universe_frames):
    frames = universe_frames
    atr = {tf: true_range_atr(df) for tf, df in frames.items()}
    last = float(frames["1m"]["close"].iloc[-1])
    out = structure_sections(frames, atr, last, 0.01, value_area_share=0.7)
    assert set(out) == {
        "atr_timeframe",
        "levels",
        "floor_pivots",
        "sessions",
        "naked_pocs",
        "composite_profile",
        "liquidity_zones",
    }
    orjson.dumps(out)  # plain JSON types only
    assert_all_finite(out)
    comp = out["composite_profile"]
    assert comp["val"] < comp["poc"] < comp["vah"]
    assert comp["value_area_share"] >= 0.7
    # 60 days of data: 1000 two-hour bars already reach the first day, so the composite uses the
    # chain 1m, 3m, 15m, 30m, 1h, 2h and stops there, back at the very first candle
    assert [s["timeframe"] for s in comp["sources"]] == ["1m", "3m", "15m", "30m", "1h", "2h"]
    assert comp["sources"][-1]["first_open_ms"] == int(frames["1d"]["open_time"].iloc[0])
    assert comp["total_volume"] == pytest.approx(float(frames["1d"]["volume"].sum()), rel=1e-12)
    assert len(out["liquidity_zones"]) <= 4
    for z in out["liquidity_zones"]:
        assert z["high"] - z["low"] <= atr[z["timeframe"]] + 1e-9
    d = frames["1d"].iloc[-1]
    assert out["floor_pivots"]["P"] == pytest.approx((d["high"] + d["low"] + d["close"]) / 3)
    assert out["floor_pivots"]["from_open_ms"] == int(d["open_time"])
    prices = [lv["price"] for lv in out["levels"]]
    assert prices == sorted(prices, reverse=True) and len(prices) <= 3 + 3 + 4
    assert out["levels"]


def test_candles_and_dataframes_give_the_same_sections(universe_frames):
    frames = {tf: universe_frames[tf] for tf in ("1d", "4h", "1h", "15m")}
    atr = {tf: true_range_atr(df) for tf, df in frames.items()}
    last = float(frames["15m"]["close"].iloc[-1])
    as_candles = {tf: Candles.from_mapping(df) for tf, df in frames.items()}
    assert structure_sections(frames, atr, last, 0.01) == structure_sections(as_candles, atr, last, 0.01)


def test_structure_sections_on_recorded_candles():
    c1h = recorded_klines(KLINES_1H)
    atr = {"1h": float(np.mean((c1h.high - c1h.low)[-14:]))}
    out = structure_sections({"1h": c1h}, atr, float(c1h.close[-1]), 0.01)
    assert out["floor_pivots"] is None  # no daily candles given
    assert_all_finite(out)
    comp = out["composite_profile"]
    assert comp["total_volume"] == pytest.approx(float(c1h.volume.sum()), rel=1e-12)
    c1d = recorded_klines(KLINES_1D)
    out = structure_sections(
        {"1d": c1d}, {"1d": float(np.mean((c1d.high - c1d.low)[-14:]))}, float(c1d.close[-1]), 0.01
    )
    assert out["floor_pivots"]["P"] == pytest.approx((c1d.high[-1] + c1d.low[-1] + c1d.close[-1]) / 3)
    assert out["levels"]
