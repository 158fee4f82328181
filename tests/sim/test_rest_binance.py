"""The simulator's Binance Spot REST against the recorded payloads and the model's truth.

Structure and JSON types are compared field for field with the recorded bodies in
``shared/fixtures/exchanges/binance``; values are checked against ``/truth/candles``.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from resthelp import FIXTURES as ALL_FIXTURES
from resthelp import shape as json_shape
from resthelp import truth_candles

from p9cli.universe import TIMEFRAME_MS

FIXTURES = ALL_FIXTURES / "binance"
REST = FIXTURES / "rest"
MIN = 60_000
DAY = 86_400_000

DEC8 = re.compile(r"^\d+\.\d{8}$")


def _binance_str(value: str) -> str:
    if value == "0":
        return "zero"
    return "dec8" if DEC8.match(value) else "str"


def shape(value):
    """Structure of a JSON value: types, and for strings Binance's number format."""
    return json_shape(value, _binance_str)


def fixture(name: str):
    return json.loads((REST / name).read_text())


def get(handle, path: str, **params) -> httpx.Response:
    return httpx.get(handle.rest_url("binance") + path, params=params, timeout=10)


def truth(handle, symbol: str, interval: str, start: int, end: int) -> list[dict]:
    return truth_candles(handle, "binance", symbol, interval, start, end)


def now_ms(handle) -> int:
    return httpx.get(handle.rest_url("binance") + "/api/v3/time", timeout=10).json()["serverTime"]


# ------------------------------------------------------------------------------ klines


def test_kline_rows_have_the_recorded_layout(sim):
    recorded = fixture("spot_klines_BTCUSDT_1m_startTime_eq_endTime.json")
    start = (now_ms(sim) // MIN - 30) * MIN
    r = get(sim, "/api/v3/klines", symbol="BTCUSDT", interval="1m", startTime=start, endTime=start)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    rows = r.json()
    assert len(rows) == len(recorded) == 1
    assert shape(rows[0]) == shape(recorded[0])
    assert [type(v) for v in rows[0]] == [type(v) for v in recorded[0]]
    assert rows[0][0] == start and rows[0][6] == start + MIN - 1 and rows[0][11] == "0"


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"])
def test_klines_equal_the_models_bars(sim, symbol):
    now = now_ms(sim)
    end = (now // (4 * 3600_000) - 1) * 4 * 3600_000
    start = end - 99 * 4 * 3600_000
    rows = get(sim, "/api/v3/klines", symbol=symbol, interval="4h", startTime=start, endTime=end).json()
    expected = truth(sim, symbol, "4h", start, end)
    assert len(rows) == 100
    assert rows == [c["row"] for c in expected]
    for row, c in zip(rows, expected, strict=True):
        assert c["closed"]
        assert (
            float(row[3])
            <= min(float(row[1]), float(row[4]))
            <= max(float(row[1]), float(row[4]))
            <= float(row[2])
        )


def test_unaligned_start_excludes_the_containing_bar_and_end_is_inclusive(sim):
    # recorded: start 28 s into a minute, end = start + 1 h -> 60 rows, the first opening on the next minute
    recorded = fixture("spot_klines_BTCUSDT_1m_unaligned_start_end_60rows.json")
    minute = (now_ms(sim) // MIN - 200) * MIN
    start = minute + 28_000
    end = start + 3600_000
    rows = get(sim, "/api/v3/klines", symbol="BTCUSDT", interval="1m", startTime=start, endTime=end).json()
    assert len(rows) == len(recorded) == 60
    assert rows[0][0] == minute + MIN
    assert rows[-1][0] <= end < rows[-1][0] + MIN
    assert [r[0] for r in rows] == list(range(minute + MIN, minute + 61 * MIN, MIN))
    assert shape(rows) == shape(recorded)


def test_end_time_is_inclusive_on_the_open_time(sim):
    # recorded: 2019 daily bars, endTime 1 s before the 2020-01-01 open -> 365 rows, on it -> 366
    before = fixture("spot_klines_BTCUSDT_1d_2019_endTime_1ms_before_open.json")
    on = fixture("spot_klines_BTCUSDT_1d_2019_endTime_on_open_time.json")
    start = (now_ms(sim) // DAY - 500) * DAY
    r1 = get(
        sim,
        "/api/v3/klines",
        symbol="BTCUSDT",
        interval="1d",
        startTime=start,
        endTime=start + 365 * DAY - 1000,
        limit=1000,
    )
    r2 = get(
        sim,
        "/api/v3/klines",
        symbol="BTCUSDT",
        interval="1d",
        startTime=start,
        endTime=start + 365 * DAY,
        limit=1000,
    )
    assert len(r1.json()) == len(before) == 365
    assert len(r2.json()) == len(on) == 366
    assert r2.json()[-1][0] == start + 365 * DAY


def test_start_time_with_small_limit_returns_the_oldest_bars(sim):
    recorded = fixture("spot_klines_BTCUSDT_5m_startTime_limit24.json")
    start = (now_ms(sim) // (5 * MIN) - 1000) * 5 * MIN
    rows = get(
        sim,
        "/api/v3/klines",
        symbol="BTCUSDT",
        interval="5m",
        startTime=start,
        endTime=start + 30 * DAY,
        limit=24,
    ).json()
    assert len(rows) == len(recorded) == 24
    assert [r[0] for r in rows] == [start + i * 5 * MIN for i in range(24)]


def test_no_times_returns_the_newest_bars_ascending_with_the_forming_one_last(sim):
    recorded = fixture("spot_klines_BTCUSDT_5m_limit24_no_times.json")
    before = now_ms(sim)
    rows = get(sim, "/api/v3/klines", symbol="BTCUSDT", interval="5m", limit=24).json()
    after = now_ms(sim)
    assert len(rows) == len(recorded) == 24
    opens = [r[0] for r in rows]
    assert opens == sorted(opens) and opens[1] - opens[0] == 5 * MIN
    assert before // (5 * MIN) * 5 * MIN <= opens[-1] <= after
    assert rows[-1][6] >= before  # closeTime not yet passed: the forming bar
    assert shape(rows) == shape(recorded)


def test_end_time_only_returns_the_newest_bars_up_to_it(sim):
    end = (now_ms(sim) // 3600_000 - 10) * 3600_000 + 1234
    rows = get(sim, "/api/v3/klines", symbol="ETHUSDT", interval="1h", endTime=end, limit=5).json()
    assert [r[0] for r in rows] == [end - 1234 - i * 3600_000 for i in range(4, -1, -1)]


def test_default_and_max_limit(sim):
    assert len(get(sim, "/api/v3/klines", symbol="BTCUSDT", interval="1m").json()) == 500
    assert len(get(sim, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=5000).json()) == 1000


def test_every_timeframe_is_aligned(sim):
    for tf, ms in TIMEFRAME_MS.items():
        rows = get(sim, "/api/v3/klines", symbol="SOLUSDT", interval=tf, limit=3).json()
        assert len(rows) == 3, tf
        assert all(r[0] % ms == 0 and r[6] == r[0] + ms - 1 for r in rows), tf


def test_a_start_before_history_begins_at_the_first_bar(sim):
    state = httpx.get(sim.control_url + "/state", timeout=10).json()
    first = state["history_start_ms"]
    rows = get(sim, "/api/v3/klines", symbol="BTCUSDT", interval="1d", startTime=0, limit=3).json()
    assert rows[0][0] == first


@pytest.mark.parametrize(
    ("params", "code", "msg"),
    [
        ({"symbol": "BTCUSD", "interval": "1m"}, -1121, "Invalid symbol."),
        ({"symbol": "BTCUSDT", "interval": "2m"}, -1120, "Invalid interval."),
        ({"symbol": "BTCUSDT", "interval": "1M"}, -1120, "Invalid interval."),
        (
            {"interval": "1m"},
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        ),
        (
            {"symbol": "BTCUSDT"},
            -1102,
            "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.",
        ),
        ({"symbol": "btcusdt", "interval": "1m"}, -1100, None),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": "yesterday"}, -1100, None),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": 2, "endTime": 1}, -1023, None),
    ],
)
def test_bad_parameters_answer_the_binance_error(sim, params, code, msg):
    r = get(sim, "/api/v3/klines", **params)
    assert r.status_code == 400
    body = r.json()
    assert list(body) == ["code", "msg"] and body["code"] == code
    if msg:
        assert body["msg"] == msg
    assert int(r.headers["x-mbx-used-weight-1m"]) >= 2


def test_unknown_path_is_a_404_with_the_weight_header(sim):
    r = get(sim, "/api/v3/nothing")
    assert r.status_code == 404
    assert "x-mbx-used-weight-1m" in r.headers


# ------------------------------------------------------------------------------ other endpoints


def _recorded_depth_snapshot() -> dict:
    line = (
        (FIXTURES / "spot_rest_depth_limit1000_snapshots_2021-10-12.capture.txt").read_text().splitlines()[0]
    )
    return json.loads(line.split(": ", 1)[1])


def test_depth_matches_the_recorded_snapshot_layout(sim):
    recorded = _recorded_depth_snapshot()
    r = get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=1000)
    assert r.status_code == 200
    body = r.json()
    assert list(body) == list(recorded) == ["lastUpdateId", "bids", "asks"]
    assert isinstance(body["lastUpdateId"], int)
    assert 900 <= len(body["bids"]) <= 1000 and 900 <= len(body["asks"]) <= 1000
    assert {shape(tuple_) == ["dec8", "dec8"] for tuple_ in body["bids"] + body["asks"]} == {True}
    assert shape(recorded["bids"][0]) == shape(body["bids"][0])
    bids = [float(p) for p, _ in body["bids"]]
    asks = [float(p) for p, _ in body["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert bids[0] < asks[0]


@pytest.mark.parametrize(("limit", "rows"), [(None, 100), (5, 5), (5000, None)])
def test_depth_limit(sim, limit, rows):
    params = {"symbol": "ETHUSDT"} if limit is None else {"symbol": "ETHUSDT", "limit": limit}
    body = get(sim, "/api/v3/depth", **params).json()
    if rows is not None:
        assert len(body["bids"]) == len(body["asks"]) == rows
    else:
        assert len(body["bids"]) >= 900 and len(body["asks"]) >= 900


def test_depth_weight_follows_the_limit(sim_factory):
    handle = sim_factory(speed=1e-9, start_ms=1_767_616_440_000 + 1000)
    used = []
    for limit in (100, 500, 1000, 5000):
        used.append(
            int(get(handle, "/api/v3/depth", symbol="BTCUSDT", limit=limit).headers["x-mbx-used-weight-1m"])
        )
    assert used == [5, 30, 80, 330]


def test_trades_match_the_recorded_layout_and_the_model(sim):
    recorded = fixture("spot_trades_BTCUSDT_limit15.json")
    body = get(sim, "/api/v3/trades", symbol="BTCUSDT", limit=15).json()
    assert 1 <= len(body) <= 15
    assert set(body[0]) == set(recorded[0])
    assert list(body[0]) == ["id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"]
    assert {k: shape(v) for k, v in body[0].items()} == {k: shape(v) for k, v in recorded[0].items()}
    ids = [t["id"] for t in body]
    assert ids == sorted(ids) and ids == list(range(ids[0], ids[0] + len(ids)))
    tr = httpx.get(
        sim.control_url + "/truth/trades",
        params={
            "exchange": "binance",
            "symbol": "btc",
            "start": body[0]["time"],
            "end": body[-1]["time"] + 1,
        },
        timeout=10,
    ).json()["trades"]
    by_id = {t["id"]: t for t in tr}
    for t in body:
        assert by_id[t["id"]]["price"] == t["price"] and by_id[t["id"]]["qty"] == t["qty"]
        assert t["isBuyerMaker"] == (by_id[t["id"]]["taker_side"] == "sell")


def test_ping_and_time(sim):
    assert get(sim, "/api/v3/ping").json() == {}
    before = sim.simulator.clock.now_ms()
    t = get(sim, "/api/v3/time").json()
    assert list(t) == ["serverTime"] and before <= t["serverTime"] <= sim.simulator.clock.now_ms()


def test_exchange_info_forms(sim):
    full = get(sim, "/api/v3/exchangeInfo").json()
    assert list(full)[:5] == ["timezone", "serverTime", "rateLimits", "exchangeFilters", "symbols"]
    assert [s["symbol"] for s in full["symbols"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"]
    weight = [x for x in full["rateLimits"] if x["rateLimitType"] == "REQUEST_WEIGHT"]
    assert weight == [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}
    ]
    raw = [x for x in full["rateLimits"] if x["rateLimitType"] == "RAW_REQUESTS"]
    # 300,000 per 5 minutes since 2026-04-02 (Binance CHANGELOG 2026-03-27; was 61,000)
    assert raw == [{"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300_000}]
    btc = full["symbols"][0]
    price_filter = next(f for f in btc["filters"] if f["filterType"] == "PRICE_FILTER")
    assert price_filter["tickSize"] == "0.01000000"
    one = get(sim, "/api/v3/exchangeInfo", symbol="ETHUSDT").json()
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]
    two = get(sim, "/api/v3/exchangeInfo", symbols='["XRPUSDT","BTCUSDT"]').json()
    assert [s["symbol"] for s in two["symbols"]] == ["XRPUSDT", "BTCUSDT"]
    assert len(get(sim, "/api/v3/exchangeInfo", permissions="SPOT").json()["symbols"]) == 5
    assert get(sim, "/api/v3/exchangeInfo", permissions='["LEVERAGED"]').json()["symbols"] == []
    bad = get(sim, "/api/v3/exchangeInfo", symbol="DOGEUSDT")
    assert bad.status_code == 400 and bad.json()["code"] == -1121


def _recorded_ws_agg_trade() -> dict:
    path = FIXTURES / "spot_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-10-12.capture.txt"
    for line in path.read_text().splitlines():
        if '"e":"aggTrade"' in line:
            return json.loads(line.split(": ", 1)[1])["data"]
    raise AssertionError("no aggTrade frame in the capture")


def test_agg_trades_layout_and_selection(sim):
    event = _recorded_ws_agg_trade()
    recorded = {
        k: v for k, v in event.items() if k not in ("e", "E", "s")
    }  # the REST row = the event's trade part
    newest = get(sim, "/api/v3/aggTrades", symbol="BTCUSDT", limit=20).json()
    assert 1 <= len(newest) <= 20
    assert list(newest[0]) == list(recorded) == ["a", "p", "q", "f", "l", "T", "m", "M"]
    assert shape(newest[0]) == shape(recorded)
    trades = get(sim, "/api/v3/trades", symbol="BTCUSDT", limit=20).json()
    first_id = newest[0]["a"]
    from_id = get(sim, "/api/v3/aggTrades", symbol="BTCUSDT", fromId=first_id, limit=5).json()
    assert [t["a"] for t in from_id] == list(range(first_id, first_id + len(from_id)))
    assert all(t["a"] == t["f"] == t["l"] for t in from_id)
    by_id = {t["id"]: t for t in trades}
    for t in from_id:
        if t["a"] in by_id:
            assert (t["p"], t["q"], t["T"], t["m"]) == (
                by_id[t["a"]]["price"],
                by_id[t["a"]]["qty"],
                by_id[t["a"]]["time"],
                by_id[t["a"]]["isBuyerMaker"],
            )
    t0 = from_id[0]["T"]
    by_time = get(
        sim, "/api/v3/aggTrades", symbol="BTCUSDT", startTime=t0, endTime=t0 + 60_000, limit=5
    ).json()
    assert by_time[0]["T"] >= t0 and [t["a"] for t in by_time] == sorted(t["a"] for t in by_time)
    too_long = get(sim, "/api/v3/aggTrades", symbol="BTCUSDT", startTime=t0, endTime=t0 + 3_600_001)
    assert too_long.status_code == 400 and too_long.json()["code"] == -1127


def test_kline_window_equals_the_documented_rule_by_brute_force():
    import random

    from p9cli.sim.rest_binance import kline_window

    rng = random.Random(5)
    tf, offset = 300_000, 0
    oldest, newest = 1_000 * tf, 1_060 * tf
    opens = list(range(oldest, newest + tf, tf))
    for _ in range(3000):
        start = rng.choice([None, rng.randrange(oldest - 5 * tf, newest + 5 * tf)])
        end = rng.choice([None, rng.randrange(oldest - 5 * tf, newest + 5 * tf)])
        if start is not None and end is not None and start > end:
            continue
        limit = rng.randrange(1, 80)
        chosen = [t for t in opens if (start is None or t >= start) and (end is None or t <= end)]
        expected = chosen[:limit] if start is not None else chosen[-limit:]
        got = kline_window(start, end, limit, tf, offset, oldest, newest)
        assert (list(range(got[0], got[1] + tf, tf)) if got else []) == expected, (start, end, limit)


def test_agg_trades_pages_equal_the_model_by_id_and_by_time(sim):
    """fromId jumps to the trade's minute; startTime pages grow from one minute: either way a
    full page (spanning many minutes of the dense tape) is exactly the model's trades."""
    model = sim.simulator.model
    now = get(sim, "/api/v3/time").json()["serverTime"]
    first = model.first_trade_id("binance", "btc")
    from_id = first + 123
    page = get(sim, "/api/v3/aggTrades", symbol="BTCUSDT", fromId=from_id, limit=1000).json()
    # the clock runs: the page may reach past `now` (read before it)
    now = max(now, page[-1]["T"])
    truth = model.trades("binance", "btc", model.live_start_ms, now + 1)
    lo = int((truth.id >= from_id).argmax())
    assert [t["a"] for t in page] == truth.id[lo : lo + len(page)].tolist()
    assert [t["T"] for t in page] == truth.time[lo : lo + len(page)].tolist()
    assert len(page) == min(1000, len(truth.id) - lo)

    start = model.live_start_ms + 17_000
    end = min(start + 3_599_999, now)
    by_time = get(sim, "/api/v3/aggTrades", symbol="BTCUSDT", startTime=start, endTime=end, limit=1000).json()
    window = model.trades("binance", "btc", start, end + 1)
    assert [t["a"] for t in by_time] == window.id[:1000].tolist()
