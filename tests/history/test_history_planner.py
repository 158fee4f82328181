"""Planner: wanted ranges, windows, gap classification, rate-limit floor (pure functions)."""

from __future__ import annotations

import bisect
import random

import pytest

from p9cli.exchanges import binance, bybit, okx
from p9cli.history.planner import (
    SeriesKey,
    last_closed_open,
    missing_open_times,
    plan_series,
    rate_floor_seconds,
    recent_boundary,
    split_gaps,
    wanted_range,
    windows_for,
)
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES

H = TIMEFRAME_MS["1h"]
M = TIMEFRAME_MS["1m"]


def test_last_closed_open_is_the_newest_bar_whose_close_is_not_after_now():
    t = 1_700_000_000_000 - 1_700_000_000_000 % H  # an hour boundary
    assert last_closed_open(t, H) == t - H  # the bar opening at t has just started
    assert last_closed_open(t + 1, H) == t - H
    assert last_closed_open(t + H - 1, H) == t - H
    assert last_closed_open(t + H, H) == t  # the bar [t, t+H) closed exactly now


@pytest.mark.parametrize("tf", TIMEFRAMES)
def test_wanted_range_holds_exactly_n_aligned_closed_bars(tf):
    tf_ms = TIMEFRAME_MS[tf]
    now = 1_763_950_123_456
    first, last = wanted_range(now, tf_ms, 1000)
    assert first % tf_ms == 0 and last % tf_ms == 0
    assert (last - first) // tf_ms + 1 == 1000
    assert last + tf_ms <= now < last + 2 * tf_ms


def test_windows_never_exceed_max_bars_and_cover_every_missing_time():
    rng = random.Random(5)
    for _ in range(200):
        n = rng.randint(0, 3000)
        times = sorted(rng.sample(range(0, 5000), n))
        missing = [t * M for t in times]
        max_bars = rng.choice([1, 7, 300, 1000])
        wins = windows_for(missing, M, max_bars)
        covered = []
        for a, b in wins:
            assert a <= b
            assert (b - a) // M + 1 <= max_bars
            lo, hi = bisect.bisect_left(missing, a), bisect.bisect_right(missing, b)
            covered += missing[lo:hi]
        assert covered == missing  # every missing time exactly once, in order
        # windows are disjoint and ascending
        assert all(wins[i][1] < wins[i + 1][0] for i in range(len(wins) - 1))


def test_windows_for_contiguous_runs_use_the_fewest_requests():
    missing = list(range(0, 1000 * M, M))
    assert windows_for(missing, M, 1000) == [(0, 999 * M)]
    assert len(windows_for(missing, M, 300)) == 4  # 300 + 300 + 300 + 100
    assert windows_for(missing, M, 300)[-1] == (900 * M, 999 * M)


def test_windows_break_at_split_point():
    missing = list(range(0, 100 * M, M))
    wins = windows_for(missing, M, 300, split_at=40 * M)
    assert wins == [(0, 39 * M), (40 * M, 99 * M)]


def test_full_plan_for_each_exchange_page_size():
    now = 1_763_950_123_456
    for adapter, per_series in ((binance, 1), (bybit, 1), (okx, 4)):
        for tf in TIMEFRAMES:
            key = SeriesKey(adapter.NAME, "btc", tf)
            plan = plan_series(key, TIMEFRAME_MS[tf], now, 1000, adapter.MAX_KLINES_PER_REQUEST)
            assert len(plan.windows) == per_series
            assert plan.windows[0][0] == plan.first_open_ms
            assert plan.windows[-1][1] == plan.last_open_ms
            assert plan.wanted_count == 1000


def test_incremental_plan_asks_only_for_bars_after_the_last_stored_one():
    now = 1_763_950_123_456
    first, last = wanted_range(now, H, 1000)
    stored = list(range(first - 5 * H, last - 3 * H + 1, H))  # 3 bars behind, 5 too old
    plan = plan_series(SeriesKey("binance", "btc", "1h"), H, now, 1000, 1000, stored)
    assert plan.windows == [(last - 2 * H, last)]


def test_incremental_plan_is_empty_when_up_to_date_and_skips_known_holes():
    now = 1_763_950_123_456
    first, last = wanted_range(now, H, 1000)
    hole = first + 10 * H
    stored = [t for t in range(first, last + 1, H) if t != hole]
    plan = plan_series(SeriesKey("okx", "eth", "1h"), H, now, 1000, 300, stored, known_holes=[hole])
    assert plan.windows == []
    assert plan.known_holes == frozenset({hole})
    # without the record the hole is asked for, alone
    plan = plan_series(SeriesKey("okx", "eth", "1h"), H, now, 1000, 300, stored)
    assert plan.windows == [(hole, hole)]


def test_history_start_limits_what_is_asked():
    now = 1_763_950_123_456
    first, last = wanted_range(now, H, 1000)
    starts = first + 600 * H
    plan = plan_series(SeriesKey("bybit", "sol", "1h"), H, now, 1000, 1000, history_starts_ms=starts)
    assert plan.windows == [(starts, last)]


def test_okx_boundary_keeps_recent_windows_on_the_candles_endpoint():
    now = 1_763_950_123_456
    for tf in TIMEFRAMES:
        tf_ms = TIMEFRAME_MS[tf]
        boundary = recent_boundary(now, tf_ms, okx.RECENT_CANDLES_BARS)
        plan = plan_series(
            SeriesKey("okx", "btc", tf), tf_ms, now, 2000, okx.MAX_KLINES_PER_REQUEST, split_at=boundary
        )
        paths = [okx.klines_request("btc", tf, a, b, now).path for a, b in plan.windows]
        recent = [a >= boundary for a, _ in plan.windows]
        for (a, b), path, is_recent in zip(plan.windows, paths, recent, strict=True):
            assert not (a < boundary <= b)  # no window straddles the boundary
            assert path.endswith("/history-candles") != is_recent
        # the recent part is the newest 1440 bars minus the margin (forming bar included)
        n_recent = sum((b - a) // tf_ms + 1 for (a, b), r in zip(plan.windows, recent, strict=True) if r)
        assert okx.RECENT_CANDLES_BARS - 1 - 4 <= n_recent <= okx.RECENT_CANDLES_BARS - 1
    assert recent_boundary(now, H, binance.RECENT_CANDLES_BARS) is None
    assert recent_boundary(now, H, bybit.RECENT_CANDLES_BARS) is None


def test_missing_and_split_gaps():
    have = [0, M, 3 * M, 4 * M]
    assert missing_open_times(0, 6 * M, M, have) == [2 * M, 5 * M, 6 * M]
    assert missing_open_times(0, 6 * M, M, have, skip=[5 * M]) == [2 * M, 6 * M]
    lead, inner, trail = split_gaps([0, 5 * M, 9 * M], M, 8 * M)
    assert (lead, inner, trail) == ([0], [5 * M], [9 * M])
    assert split_gaps([M], None, None) == ([M], [], [])


def test_rate_floor_from_published_limits():
    # 220 OKX candle requests at 40 per 2 s: 6 windows, the last opens 10 s after the first
    assert rate_floor_seconds({"okx:candles": 220}, okx.RATE_BUCKETS) == 10.0
    assert rate_floor_seconds({"okx:candles": 40}, okx.RATE_BUCKETS) == 0.0
    assert rate_floor_seconds({"okx:candles": 41, "okx:history-candles": 61}, okx.RATE_BUCKETS) == 6.0
    assert rate_floor_seconds({"binance:weight": 111}, binance.RATE_BUCKETS) == 0.0
    assert rate_floor_seconds({"bybit:ip": 1201}, bybit.RATE_BUCKETS) == 10.0


def test_continuation_of_short_pages():
    from p9cli.history.executor import continuation

    got = {t: () for t in range(200 * M, 300 * M, M)}  # newest 100 of a 300-bar window
    assert continuation(0, 299 * M, M, got) == (0, 199 * M)
    got = {t: () for t in range(0, 100 * M, M)}  # oldest 100 (ascending exchange)
    assert continuation(0, 299 * M, M, got) == (100 * M, 299 * M)
    assert continuation(0, 299 * M, M, {}) is None  # nothing there: not a paging matter
    full = {t: () for t in range(0, 300 * M, M)}
    assert continuation(0, 299 * M, M, full) is None
    holey = {t: () for t in range(0, 300 * M, M) if t != 50 * M}
    assert continuation(0, 299 * M, M, holey) is None  # a gap inside is a hole, not a short page
