"""The structure document's staleness and age (p9cli.fusion.state)."""

from __future__ import annotations

from p9cli.fusion.state import STRUCTURE_GRACE_MS, PairState, structure_as_of, structure_stale

M = 60_000
H = 60 * M
NOW = 1_796_393_460_000


def doc(last_1m: int, last_1h: int) -> dict:
    return {"event_ts": last_1m + M,
            "timeframes": {"1m": {"last_open_ms": last_1m, "last_close_ms": last_1m + M},
                           "1h": {"last_open_ms": last_1h, "last_close_ms": last_1h + H}}}  # fmt: skip


def test_stale_when_a_closed_candle_is_missing_for_longer_than_the_grace():
    fresh = doc(NOW - 2 * M, NOW - 2 * H)  # the 1m after the last one closed at NOW: within the grace
    assert not structure_stale(fresh, NOW)
    assert not structure_stale(fresh, NOW + STRUCTURE_GRACE_MS)
    assert structure_stale(fresh, NOW + STRUCTURE_GRACE_MS + 1)  # newest 1m closed > 2 min ago
    # a higher timeframe behind by a whole candle + grace is stale too, even with fresh minutes
    assert structure_stale(doc(NOW - 2 * M, NOW - 3 * H), NOW)
    assert structure_stale(None, NOW) and structure_stale({"timeframes": {}}, NOW)


def test_state_counts_the_structure_age_from_the_exchange_time_it_reflects():
    st = PairState("binance", "btc", "btcusdt")
    d = doc(NOW - 2 * M, NOW - 2 * H)
    st.set_structure(d, NOW)
    assert structure_as_of(d) == NOW - M
    assert st.freshness(NOW + 5_000)["structure_age_ms"] == M + 5_000
    assert not st.structure_stale and "structure" not in st.stale_sources(NOW)
    st.set_structure(doc(NOW - 10 * M, NOW - 2 * H), NOW)  # an old document (no recompute came)
    assert st.structure_stale and "structure" in st.stale_sources(NOW)
