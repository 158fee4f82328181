"""Session volume profiles (UTC day / week / month) and naked POCs on hand-built candles whose
profile is known row by row."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from p9cli.analysis.candles import Candles
from p9cli.analysis.sessions import session_end, session_profiles, session_start

H = 3_600_000
DAY = 24 * H
D0 = int(datetime(2026, 3, 10, tzinfo=UTC).timestamp() * 1000)  # a Tuesday


def flat_hours(start_ms: int, prices, volumes) -> Candles:
    """Hourly candles with high == low == the price: each candle's volume lands in one row."""
    p = np.asarray(prices, dtype=np.float64)
    t = start_ms + np.arange(p.size, dtype=np.int64) * H
    return Candles.from_arrays(t, p, p, p, p, np.asarray(volumes, dtype=np.float64))


def joined(*parts: Candles) -> Candles:
    out = parts[0]
    for p in parts[1:]:
        out = out.append(p)
    return out


# 24 hours of day D0: volume per price 100.5: 50, 101.5: 30, 99.5: 10, 102.5: 5, 98.5: 5
DAY0_PRICES = [100.5] * 10 + [101.5] * 6 + [99.5] * 4 + [102.5, 98.5] + [100.5, 101.5]
DAY0_VOLUMES = [4.0] * 10 + [4.0] * 6 + [2.5] * 4 + [5.0, 5.0] + [10.0, 6.0]


def test_session_bounds():
    t = D0 + 13 * H + 5
    assert session_start("day", t) == D0 and session_end("day", D0) == D0 + DAY
    monday = int(datetime(2026, 3, 9, tzinfo=UTC).timestamp() * 1000)
    assert session_start("week", t) == monday and session_end("week", monday) == monday + 7 * DAY
    assert session_start("week", monday) == monday and session_start("week", monday - 1) == monday - 7 * DAY
    march = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
    april = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp() * 1000)
    assert session_start("month", t) == march and session_end("month", march) == april
    dec = int(datetime(2025, 12, 1, tzinfo=UTC).timestamp() * 1000)
    assert session_end("month", dec) == int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    with pytest.raises(ValueError):
        session_start("year", t)


def test_previous_day_profile_has_the_known_poc_and_value_area():
    assert sum(DAY0_VOLUMES) == pytest.approx(100.0)
    day0 = flat_hours(D0, DAY0_PRICES, DAY0_VOLUMES)
    day1 = flat_hours(D0 + DAY, [104.5] * 5, [1.0] * 5)  # the developing day: 5 hours so far
    frames = {"1h": joined(day0, day1)}
    # ATR(1h) = 10 -> rows of 1.0 on the grid of whole numbers: row [100, 101) holds 100.5
    out = session_profiles(frames, {"1h": 10.0}, 104.5, 0.01, now_ms=D0 + DAY + 5 * H, atr_ref=2.0)
    prev = out["sessions"]["day"]["previous"]
    assert (prev["start_ms"], prev["end_ms"], prev["complete"]) == (D0, D0 + DAY, True)
    assert prev["row_size"] == 1.0 and prev["volume"] == pytest.approx(100.0)
    # POC row 100..101 (50); the pair above (30 + 5) beats the pair below (10 + 5): VA 100..103
    assert prev["poc"] == 100.5 and prev["val"] == 100.0 and prev["vah"] == 103.0
    assert prev["value_area_share"] == pytest.approx(0.85)
    assert (prev["low"], prev["high"]) == (98.5, 102.5)
    assert prev["position"] == "above"  # 104.5 is above the value area
    assert prev["poc_distance_pct"] == pytest.approx(round(100 * (100.5 - 104.5) / 104.5, 4))
    assert prev["poc_distance_atr"] == pytest.approx(-2.0)  # atr_ref = 2
    dev = out["sessions"]["day"]["developing"]
    assert dev["complete"] is False and dev["candles"] == 5 and dev["poc"] == 104.5
    assert dev["position"] == "inside"
    # the week holds both days (Monday 9 March .. ): the day-0 POC dominates
    week = out["sessions"]["week"]["developing"]
    assert week["poc"] == 100.5 and week["volume"] == pytest.approx(105.0)
    assert out["sessions"]["week"]["previous"] is None  # nothing stored before Monday


def test_a_naked_poc_until_price_revisits_it():
    day0 = flat_hours(D0, DAY0_PRICES, DAY0_VOLUMES)  # POC 100.5
    day1 = flat_hours(D0 + DAY, [110.5] * 24, [1.0] * 24)  # far away all day: POC 110.5
    day2 = flat_hours(D0 + 2 * DAY, [112.5, 111.5, 109.5], [1.0] * 3)
    frames = {"1h": joined(day0, day1, day2)}
    now = D0 + 2 * DAY + 3 * H
    out = session_profiles(frames, {"1h": 10.0}, 109.5, 0.01, now_ms=now, atr_ref=2.0)
    naked = [(n["session"], n["poc"], n["start_ms"]) for n in out["naked_pocs"]]
    # day 2's flat candles at 112.5, 111.5 and 109.5 never trade at 110.5 (day 1's POC), and
    # nothing after day 0 came back to 100.5: both are naked
    assert ("day", 100.5, D0) in naked
    assert ("day", 110.5, D0 + DAY) in naked
    assert out["naked_pocs"][0]["poc"] == 110.5  # nearest first
    assert out["naked_pocs"][0]["distance"] == pytest.approx(1.0)
    assert out["naked_pocs"][0]["distance_atr"] == pytest.approx(0.5)
    # a candle on day 2 that spans 100..111 trades both POCs: neither is naked any more
    sweep = Candles.from_arrays([D0 + 2 * DAY + 3 * H], [110.0], [111.0], [100.0], [100.2], [5.0])
    frames = {"1h": joined(day0, day1, day2, sweep)}
    out = session_profiles(frames, {"1h": 10.0}, 100.2, 0.01, now_ms=now + H, atr_ref=2.0)
    assert [n for n in out["naked_pocs"] if n["session"] == "day"] == []


def test_sessions_use_the_finest_timeframe_for_each_moment():
    """A day covered by 1h candles and, for its last 3 hours, by 15-minute candles: the profile
    takes those 3 hours from the 15m candles and the rest from 1h, each moment once."""
    hours = flat_hours(D0, [100.5] * 24, [4.0] * 24)
    q = 12
    t15 = D0 + 21 * H + np.arange(q, dtype=np.int64) * 900_000
    p15 = np.full(q, 101.5)
    fifteen = Candles.from_arrays(t15, p15, p15, p15, p15, np.full(q, 1.0))
    out = session_profiles(
        {"1h": hours, "15m": fifteen}, {"1h": 10.0, "15m": 5.0}, 101.0, 0.01, now_ms=D0 + DAY + 1, atr_ref=2.0
    )
    prev = out["sessions"]["day"]["previous"]
    assert prev["timeframes"] == ["15m", "1h"]
    assert prev["candles"] == 12 + 21 and prev["volume"] == pytest.approx(12 * 1.0 + 21 * 4.0)
    assert prev["poc"] == 100.5


def test_no_usable_atr_gives_empty_sessions():
    day0 = flat_hours(D0, DAY0_PRICES, DAY0_VOLUMES)
    out = session_profiles({"1h": day0}, {}, 100.0, 0.01, now_ms=D0 + DAY)
    assert out["naked_pocs"] == [] and all(
        v == {"previous": None, "developing": None} for v in out["sessions"].values()
    )
