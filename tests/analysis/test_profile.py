"""Volume profile: spreading, conservation, POC, CBOT value area, nodes, composite profile."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_candles import KLINES_1H, recorded_klines
from partb_data import aggregate, multi_timeframe, random_walk_minutes

from p9cli.analysis.candles import tick_size
from p9cli.analysis.profile import (
    VolumeProfile,
    composite_chain,
    composite_profile,
    composite_slices,
    frame_profile,
    poc_index,
    point_of_control,
    row_size_for,
    value_area,
    volume_nodes,
    volume_profile,
)
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES


def profile_of(volumes, row_size=1.0, origin=0.0) -> VolumeProfile:
    return VolumeProfile(origin=origin, row_size=row_size, volume=np.asarray(volumes, dtype=np.float64))


# ---------------------------------------------------------------- spreading candles into rows


def test_one_candle_spread_uniformly_over_whole_rows():
    # low 100, high 110, volume 10, rows of 2.5: 10 * 2.5/10 = 2.5 in each of the rows
    # [100, 102.5) [102.5, 105) [105, 107.5) [107.5, 110); the high 110 opens a 5th row that
    # receives 10 * 0/10 = 0.
    p = volume_profile([110.0], [100.0], [10.0], 2.5)
    assert p.origin == 100.0 and p.n_rows == 5
    np.testing.assert_allclose(p.volume, [2.5, 2.5, 2.5, 2.5, 0.0], rtol=0, atol=1e-12)


def test_partial_rows_get_their_overlap_share():
    # low 101, high 104, volume 6 -> density 2 per price unit; rows of 2 from origin 100:
    # [100,102) overlap 1 -> 2; [102,104) overlap 2 -> 4; [104,106) overlap 0 -> 0
    p = volume_profile([104.0], [101.0], [6.0], 2.0)
    assert p.origin == 100.0
    np.testing.assert_allclose(p.volume, [2.0, 4.0, 0.0], atol=1e-12)
    # low 100.5 high 105.5 volume 10 -> density 2; rows [100,102) 1.5*2=3, [102,104) 2*2=4,
    # [104,106) 1.5*2=3
    p = volume_profile([105.5], [100.5], [10.0], 2.0)
    np.testing.assert_allclose(p.volume, [3.0, 4.0, 3.0], atol=1e-12)


def test_flat_candle_puts_everything_in_its_row():
    # high == low == 103.7 with rows of 0.5: row [103.5, 104.0) gets the whole 7.0
    p = volume_profile([103.7, 105.0], [103.7, 104.0], [7.0, 1.0], 0.5)
    assert p.volume[p.row_of(103.7)] == pytest.approx(7.0 + 0.0)
    assert p.row_low(p.row_of(103.7)) == pytest.approx(103.5)
    assert p.total == pytest.approx(8.0)


def test_price_on_a_row_edge_belongs_to_the_row_above_despite_float_noise():
    # 0.3 is 0.30000000000000004 when computed as 3 * 0.1: still the start of row 3
    p = volume_profile([3 * 0.1], [3 * 0.1], [1.0], 0.1, price_min=0.0)
    assert p.origin == 0.0
    assert int(np.argmax(p.volume)) == 3


def test_volume_is_conserved_exactly_on_random_candles():
    rng = np.random.default_rng(5)
    n = 5000
    low = np.round(rng.uniform(100, 200, n), 2)
    high = low + np.round(rng.exponential(3.0, n), 2)
    high[::7] = low[::7]  # flat candles
    vol = rng.lognormal(2.0, 1.0, n)
    for row in (0.01, 0.37, 1.0, 25.0, 500.0):
        p = volume_profile(high, low, vol, row)
        assert p.total == pytest.approx(vol.sum(), rel=1e-12)
        assert (p.volume >= 0).all()
        assert p.price_low <= low.min() and p.price_high > high.max()
    # and candle by candle
    for i in range(0, n, 97):
        p = volume_profile(high[i : i + 1], low[i : i + 1], vol[i : i + 1], 0.37)
        assert p.total == pytest.approx(vol[i], rel=1e-12)


def test_range_bounds_only_add_empty_rows_and_bad_candles_are_skipped():
    p = volume_profile([105.0, np.nan, 104.0], [101.0, 100.0, 102.0], [4.0, 5.0, -1.0], 1.0, 90.0, 120.0)
    assert p.origin == 90.0 and p.price_high >= 120.0
    assert p.total == pytest.approx(4.0)  # the NaN candle and the negative volume contribute nothing
    np.testing.assert_allclose(p.volume[p.row_of(101.0) : p.row_of(105.0)], [1.0] * 4)
    empty = volume_profile([], [], [], 1.0)
    assert empty.total == 0 and empty.n_rows == 1
    # zero volume: the grid still covers the candles, and the POC (all rows tie) is mid-range
    quiet = volume_profile([110.0, 104.0], [100.0, 101.0], [0.0, 0.0], 1.0)
    assert quiet.total == 0 and (quiet.price_low, quiet.price_high) == (100.0, 111.0)
    assert point_of_control(quiet) == pytest.approx(105.5)
    with pytest.raises(ValueError):
        volume_profile([1.0], [1.0], [1.0], 0.0)
    with pytest.raises(ValueError):
        volume_profile([1.0, 2.0], [1.0], [1.0], 1.0)


def test_profile_of_recorded_binance_candles():
    c = recorded_klines(KLINES_1H)
    tick = tick_size(c)
    assert tick == 0.01
    p = frame_profile(c, row_size_for(tick, float(np.mean(c.high - c.low))))
    assert p.total == pytest.approx(float(c.volume.sum()), rel=1e-12)
    va = value_area(p)
    assert c.low.min() - p.row_size <= va.val < va.poc < va.vah <= c.high.max() + p.row_size
    assert va.share >= 0.70


# ---------------------------------------------------------------- row size


def test_row_size_is_a_multiple_of_the_tick_tied_to_atr():
    # ATR 123.4 with 10 rows per ATR -> 12.34 = 1234 ticks of 0.01
    assert row_size_for(0.01, 123.4) == pytest.approx(12.34)
    # ATR 0.0123 at tick 0.0001: 0.00123 -> round(12.3) = 12 ticks = 0.0012
    assert row_size_for(0.0001, 0.0123) == pytest.approx(0.0012)
    # never below one tick, also for a zero or NaN ATR
    assert row_size_for(0.01, 0.0001) == 0.01
    assert row_size_for(0.01, float("nan")) == 0.01
    # a wide range caps the number of rows: 100,000 / 2000 rows = 50 -> 50.0 (5000 ticks)
    assert row_size_for(0.01, 10.0, price_range=100_000.0, max_rows=2000) == pytest.approx(50.0)
    r = row_size_for(0.01, 77.7, price_range=1e6)
    assert round(r / 0.01) * 0.01 == pytest.approx(r) and 1e6 / r <= 2000
    with pytest.raises(ValueError):
        row_size_for(0.0, 1.0)


# ---------------------------------------------------------------- POC


def test_poc_is_the_row_with_most_volume():
    p = profile_of([1, 3, 9, 4, 2], row_size=0.5, origin=10.0)
    assert poc_index(p) == 2
    assert point_of_control(p) == pytest.approx(10.0 + 2.5 * 0.5)  # mid of row [11.0, 11.5)


def test_poc_ties_broken_toward_the_middle():
    # rows 0 and 4 tie at 5; the middle of 7 rows is index 3: row 4 (distance 1) beats row 0 (3)
    assert poc_index(profile_of([5, 1, 1, 1, 5, 1, 1])) == 4
    # rows 1 and 3 tie and are equally far from the middle index 2: the lower one
    assert poc_index(profile_of([1, 5, 2, 5, 1])) == 1
    # even number of rows: middle is 2.5; rows 0 and 5 tie at distance 2.5 -> row 0; add a tie
    # at row 3 (distance 0.5) which wins
    assert poc_index(profile_of([4, 0, 0, 1, 0, 4])) == 0
    assert poc_index(profile_of([4, 0, 0, 4, 0, 4])) == 3


# ---------------------------------------------------------------- value area (CBOT)


def test_value_area_hand_worked():
    # rows (low -> high): 10 20 30 60 100 80 50 30 15 5 ; total 400 ; 70% = 280
    # POC row 4 (100), VA = 100
    # step 1: above rows 5+6 = 80+50 = 130 vs below rows 3+2 = 60+30 = 90 -> add above: 230
    # step 2: above rows 7+8 = 30+15 = 45 vs below 90 -> add below: 320 >= 280, stop
    # -> rows 2..6, volume 320, share 0.8
    p = profile_of([10, 20, 30, 60, 100, 80, 50, 30, 15, 5], row_size=2.0, origin=100.0)
    va = value_area(p, 0.70)
    assert (va.poc_row, va.low_row, va.high_row) == (4, 2, 6)
    assert va.volume == pytest.approx(320.0)
    assert va.share == pytest.approx(0.8)
    assert va.poc == pytest.approx(109.0)  # mid of row 4 = [108, 110)
    assert va.val == pytest.approx(104.0)  # lower edge of row 2
    assert va.vah == pytest.approx(114.0)  # upper edge of row 6


def test_value_area_tie_adds_the_pair_above():
    # 10 40 50 100 50 40 10 ; total 300 ; target 210 ; POC row 3
    # step 1: above 50+40 = 90, below 50+40 = 90 -> tie -> above: 190, rows 3..5
    # step 2: above row 6 only = 10, below rows 2+1 = 90 -> below: 280 >= 210 -> rows 1..5
    va = value_area(profile_of([10, 40, 50, 100, 50, 40, 10]))
    assert (va.low_row, va.high_row, va.volume) == (1, 5, 280.0)


def test_value_area_at_the_edges():
    # POC on the top row: only pairs below exist. 10 20 30 40 50 ; total 150 ; target 105
    # 50 + (40+30) = 120 >= 105 -> rows 2..4
    va = value_area(profile_of([10, 20, 30, 40, 50]))
    assert (va.low_row, va.high_row, va.volume) == (2, 4, 120.0)
    # one row left above (a "pair" of one): 30 20 100 5 ; total 155 ; target 108.5
    # above = row 3 = 5 ; below = rows 1+0 = 50 -> below: 150 >= 108.5 -> rows 0..2
    va = value_area(profile_of([30, 20, 100, 5]))
    assert (va.low_row, va.high_row, va.volume) == (0, 2, 150.0)
    # 100% takes every row; an empty profile is just its POC row
    va = value_area(profile_of([1, 2, 3, 4, 5, 6, 7]), 1.0)
    assert (va.low_row, va.high_row, va.share) == (0, 6, 1.0)
    va = value_area(profile_of([0, 0, 0]))
    assert va.low_row == va.high_row == 1 and va.share == 0.0
    with pytest.raises(ValueError):
        value_area(profile_of([1, 2]), 0.0)


def brute_force_value_area(vol: list[float], pct: float) -> tuple[int, int]:
    """Independent re-statement of the CBOT rule over a padded list (zeros beyond the edges)."""
    n = len(vol)
    top = max(vol)
    tied = [i for i, x in enumerate(vol) if x == top]
    poc = min(tied, key=lambda i: (abs(i - (n - 1) / 2), i))
    lo = hi = poc
    acc = vol[poc]
    total = sum(vol)

    def at(i):
        return vol[i] if 0 <= i < n else 0.0

    while acc < pct * total and (lo > 0 or hi < n - 1):
        up = at(hi + 1) + at(hi + 2) if hi < n - 1 else -1.0
        down = at(lo - 1) + at(lo - 2) if lo > 0 else -1.0
        if up >= down:
            acc += up
            hi = min(hi + 2, n - 1)
        else:
            acc += down
            lo = max(lo - 2, 0)
    return lo, hi


def test_value_area_matches_an_independent_statement_on_random_profiles():
    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        vol = rng.integers(0, 6, n).astype(float)  # small integers: many ties
        if vol.sum() == 0:
            continue
        pct = float(rng.choice([0.5, 0.68, 0.7, 0.9]))
        va = value_area(profile_of(vol), pct)
        assert (va.low_row, va.high_row) == brute_force_value_area(vol.tolist(), pct)
        assert va.share >= pct - 1e-12
        assert va.low_row <= va.poc_row <= va.high_row


# ---------------------------------------------------------------- nodes


def test_volume_nodes_on_a_planted_bimodal_profile():
    rows = np.arange(100)
    vol = 100 * np.exp(-0.5 * ((rows - 25) / 4.0) ** 2) + 60 * np.exp(-0.5 * ((rows - 70) / 5.0) ** 2) + 1.0
    p = profile_of(vol, row_size=10.0, origin=1000.0)
    nodes = volume_nodes(p)
    hvn_rows = [n["row"] for n in nodes["hvn"]]
    assert hvn_rows == [25, 70]
    assert len(nodes["lvn"]) == 1
    assert 40 <= nodes["lvn"][0]["row"] <= 55  # the valley between the bumps
    a, b = nodes["hvn"]
    # extents at half prominence: about +-1.18 sigma around each bump
    assert a["low"] < p.row_mid(25) < a["high"] and b["low"] < p.row_mid(70) < b["high"]
    assert 1000 + 10 * 18 <= a["low"] <= 1000 + 10 * 22 and 1000 + 10 * 29 <= a["high"] <= 1000 + 10 * 33
    assert a["share"] > b["share"] > 0
    assert a["prominence"] == pytest.approx(1.0, abs=0.05)  # the top peak's prominence ~ its height


def test_volume_nodes_ignore_small_wiggles_and_flat_profiles():
    rows = np.arange(80)
    vol = 50 * np.exp(-0.5 * ((rows - 40) / 8.0) ** 2) + 0.5 * np.sin(rows)  # one bump + tiny wiggles
    nodes = volume_nodes(profile_of(vol + 1))
    assert [n["row"] for n in nodes["hvn"]] == [40]
    assert nodes["lvn"] == []
    flat = volume_nodes(profile_of(np.ones(30)))
    assert len(flat["hvn"]) == 1 and flat["lvn"] == []  # one broad plateau, no trough
    assert volume_nodes(profile_of(np.zeros(10))) == {"hvn": [], "lvn": []}


# ---------------------------------------------------------------- composite


def test_composite_chain_nests_each_timeframe_in_the_next():
    chain = composite_chain(TIMEFRAMES)
    assert chain == ["1m", "3m", "15m", "30m", "1h", "2h", "4h", "12h", "1d"]
    for fine, coarse in zip(chain, chain[1:], strict=False):
        assert TIMEFRAME_MS[coarse] % TIMEFRAME_MS[fine] == 0
    assert composite_chain(["1d", "4h", "1h", "5m"]) == ["5m", "1h", "4h", "1d"]


@pytest.fixture(scope="module")
def minutes():
    return random_walk_minutes(days=40, seed=3)


def test_composite_counts_every_minute_exactly_once(minutes):
    # every timeframe aggregated from the same minutes, each keeping its last 300 bars: the
    # composite must hold exactly the volume of the 1-minute candles over the period it covers
    frames = multi_timeframe(minutes, TIMEFRAMES, count=300)
    slices = composite_slices(frames)
    # contiguous hand-over: each coarser slice ends where the finer one starts
    spans = []
    for tf, a, b in slices:
        ot = frames[tf]["open_time"].to_numpy()
        spans.append((int(ot[a]), int(ot[b - 1]) + TIMEFRAME_MS[tf]))
    for (start_fine, _), (_, end_coarse) in zip(spans, spans[1:], strict=False):
        assert end_coarse == start_fine
    covered_from, covered_to = spans[-1][0], spans[0][1]
    m_ot = minutes["open_time"].to_numpy()
    inside = (m_ot >= covered_from) & (m_ot < covered_to)
    expected = float(minutes["volume"].to_numpy()[inside].sum())
    prof = composite_profile(frames, row_size=5.0)
    assert prof.total == pytest.approx(expected, rel=1e-12)
    assert [s[0] for s in prof.sources] == [tf for tf, _, _ in slices]
    # naive summing of all timeframes would count the recent past many times over
    naive = sum(float(df["volume"].sum()) for df in frames.values())
    assert naive > 3 * expected


def test_composite_with_a_stale_coarse_timeframe_leaves_a_gap_not_an_overlap(minutes):
    frames = multi_timeframe(minutes, ["1m", "1h"], count=None)
    frames["1m"] = frames["1m"].iloc[-600:].reset_index(drop=True)
    stale_end = int(frames["1m"]["open_time"].iloc[0]) - 5 * 3_600_000  # 1h file stops 5 h early
    frames["1h"] = frames["1h"][frames["1h"]["open_time"] + 3_600_000 <= stale_end].reset_index(drop=True)
    prof = composite_profile(frames, row_size=5.0)
    expected = float(frames["1m"]["volume"].sum() + frames["1h"]["volume"].sum())
    assert prof.total == pytest.approx(expected, rel=1e-12)  # all of both, nothing dropped twice


def test_composite_hands_over_on_a_shared_boundary(minutes):
    # the 1m data starts mid-hour: the 1h candle containing its start covers the first minutes,
    # which are dropped, and the rest of the minutes are kept
    one_min = aggregate(minutes, "1m").iloc[-1000:].reset_index(drop=True)
    one_min = one_min.iloc[17:].reset_index(drop=True)  # start 17 minutes into an hour
    frames = {"1m": one_min, "1h": multi_timeframe(minutes, ["1h"], count=None)["1h"]}
    ((tf1, a1, b1), (tf2, _, b2)) = composite_slices(frames)
    assert (tf1, tf2) == ("1m", "1h")
    start_kept = int(one_min["open_time"].iloc[a1])
    assert start_kept % 3_600_000 == 0
    assert int(frames["1h"]["open_time"].iloc[b2 - 1]) + 3_600_000 == start_kept


def test_column_reads_dataframes_candles_and_parquet_timestamps():
    import pandas as pd

    from p9cli.analysis.candles import Candles
    from p9cli.analysis.profile import column

    ms = [1_700_000_000_000, 1_700_000_060_000]
    for ot in (
        ms,
        pd.to_datetime(ms, unit="ms", utc=True),  # what the Parquet timestamp[ms, UTC] reads as
        pd.to_datetime(ms, unit="ms"),
    ):
        df = pd.DataFrame({"open_time": ot, "high": [2, 3], "low": [1, 2]})
        assert column(df, "open_time").tolist() == ms
        assert column(df, "high").dtype == np.float64
    c = Candles.from_arrays(ms, [1.0, 2.0], [2.0, 3.0], [1.0, 2.0], [1.5, 2.5], [5.0, 6.0])
    assert column(c, "open_time") is c.open_time  # no copy
    assert column({"high": [1, 2]}, "high").tolist() == [1.0, 2.0]


def test_node_core_narrows_a_broad_plateau_around_its_peak():
    from p9cli.analysis.profile import node_core

    rows = np.arange(200)
    # a broad plateau (rows 40..160) with a mild bump at row 120 on top
    vol = np.where((rows >= 40) & (rows <= 160), 100.0, 1.0) + 20 * np.exp(-0.5 * ((rows - 120) / 6.0) ** 2)
    p = profile_of(vol, row_size=1.0, origin=0.0)
    (node,) = volume_nodes(p)["hvn"]
    assert node["high"] - node["low"] > 100  # half prominence spans the plateau
    low, high = node_core(p, node, max_width=30.0)
    assert high - low <= 30.0 and low <= p.row_mid(node["row"]) <= high
    # a node that already fits is returned unchanged
    assert node_core(p, node, max_width=500.0) == (node["low"], node["high"])


def test_profile_matches_a_row_by_row_overlap_computation():
    """Independent statement of the spreading rule: each candle gives every row
    volume * overlap(row, [low, high]) / (high - low), or all of it to its row if flat."""
    rng = np.random.default_rng(17)
    n, row = 300, 0.25
    low = np.round(rng.uniform(50, 60, n), 2)
    high = low + np.round(rng.exponential(1.0, n), 2)
    high[::5] = low[::5]
    vol = rng.uniform(0.1, 10.0, n)
    p = volume_profile(high, low, vol, row)
    edges = p.edges()
    expected = np.zeros(p.n_rows)
    for h, lo, v in zip(high, low, vol, strict=True):
        if h == lo:
            expected[int(np.searchsorted(edges, lo, side="right")) - 1] += v
            continue
        overlap = np.clip(np.minimum(edges[1:], h) - np.maximum(edges[:-1], lo), 0.0, None)
        expected += v * overlap / (h - lo)
    np.testing.assert_allclose(p.volume, expected, rtol=1e-9, atol=1e-9)
