"""Binance REST adapter on every recorded klines body and the exact recorded query strings."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from exchange_fixture_files import read_bytes, read_json, same_number

from p9cli.exchanges import binance
from p9cli.exchanges.base import BadRequest, KlinesPage, MalformedResponse, bars_in_window
from p9cli.universe import TIMEFRAME_MS

INDEX = read_json("binance/rest/index.json")
KLINE_ENTRIES = [e for e in INDEX if e["path"].endswith("/klines")]


def test_index_lists_all_kline_files():
    assert len(KLINE_ENTRIES) == 10


@pytest.mark.parametrize("entry", KLINE_ENTRIES, ids=lambda e: e["file"])
def test_parse_klines_exact_values(entry):
    body = read_bytes("binance/rest/" + entry["file"])
    raw = read_json("binance/rest/" + entry["file"])
    tf = dict(parse_qsl(entry["query"]))["interval"]
    candles = binance.parse_klines(body, tf)
    assert isinstance(candles, KlinesPage)
    assert len(candles) == entry["rows"] == len(raw)
    for i, row in enumerate(raw):
        assert candles.open_time[i] == row[0] and type(candles.open_time[i]) is int
        assert same_number(candles.open[i], row[1])
        assert same_number(candles.high[i], row[2])
        assert same_number(candles.low[i], row[3])
        assert same_number(candles.close[i], row[4])
        assert same_number(candles.volume[i], row[5])
        assert same_number(candles.quote_volume[i], row[7])
        assert candles.trades[i] == row[8] and type(candles.trades[i]) is int
        assert candles.confirmed[i] is None  # Binance REST has no closed flag
        assert row[6] == row[0] + TIMEFRAME_MS[tf] - 1  # close time, as the doc says
    assert all(a < b for a, b in zip(candles.open_time, candles.open_time[1:], strict=False))
    assert all(type(x) is float for x in candles.close)


@pytest.mark.parametrize(
    "entry",
    [
        e
        for e in KLINE_ENTRIES
        if e["path"] == "/api/v3/klines" and "startTime" in e["query"] and "symbol=BTCUSDT" in e["query"]
    ],
    ids=lambda e: e["file"],
)
def test_klines_request_reproduces_recorded_query(entry):
    q = dict(parse_qsl(entry["query"]))
    limit = int(q["limit"]) if "limit" in q else None
    req = binance.klines_request("btc", q["interval"], int(q["startTime"]), int(q["endTime"]), 0, limit)
    assert req.path == entry["path"]
    assert req.query == entry["query"]
    assert req.method == "GET"
    assert (req.bucket, req.cost) == ("binance:weight", 2)


def test_recorded_windows_follow_inclusive_open_time_rule():
    """Complete windows return exactly the bars with startTime <= open <= endTime (bars_in_window)."""
    checked = 0
    for entry in KLINE_ENTRIES:
        q = dict(parse_qsl(entry["query"]))
        if "startTime" not in q or entry["file"].endswith(("limit24.json", "6rows.json")):
            continue  # limit smaller than the window / window reaching into the future
        first, last, tf = int(q["startTime"]), int(q["endTime"]), q["interval"]
        candles = binance.parse_klines(read_bytes("binance/rest/" + entry["file"]), tf)
        assert len(candles) == bars_in_window(first, last, TIMEFRAME_MS[tf])
        assert first <= candles.open_time[0] and candles.open_time[-1] <= last
        checked += 1
    assert checked == 5


def test_unaligned_start_excludes_containing_bar():
    candles = binance.parse_klines(
        read_bytes("binance/rest/spot_klines_BTCUSDT_1m_unaligned_start_end_60rows.json"), "1m"
    )
    assert candles.open_time[0] == 1588740120000  # not 1588740060000, which contains the start
    assert bars_in_window(1588740088000, 1588743688000, 60_000) == 60


def test_limit_sent_only_when_default_page_is_too_small():
    day = 86_400_000
    small = binance.klines_request("eth", "1d", 0, 499 * day, 0)
    assert "limit" not in dict(small.params)
    big = binance.klines_request("eth", "1d", 0, 500 * day, 0)
    assert dict(big.params)["limit"] == "501"
    capped = binance.klines_request("eth", "1d", 0, 5000 * day, 0)
    assert dict(capped.params)["limit"] == "1000"
    assert dict(capped.params)["symbol"] == "ETHUSDT"


def test_codes():
    assert binance.symbol_code("xrp") == "XRPUSDT"
    assert [binance.interval_code(tf) for tf in ("1d", "12h", "1h", "3m")] == ["1d", "12h", "1h", "3m"]


def test_server_time():
    req = binance.server_time_request()
    assert (req.path, req.params, req.bucket, req.cost) == ("/api/v3/time", (), "binance:weight", 1)
    assert req.target == "/api/v3/time"
    assert binance.parse_server_time(b'{"serverTime":1499827319559}') == 1499827319559


def test_used_weight_header_any_case():
    assert binance.used_weight({"X-MBX-USED-WEIGHT-1M": "42"}) == {"binance:weight": 42}
    assert binance.used_weight({"x-mbx-used-weight-1m": "7"}) == {"binance:weight": 7}
    assert binance.used_weight({"Content-Type": "application/json"}) == {}
    assert binance.used_weight({"X-MBX-USED-WEIGHT-1M": "lots"}) == {}


def test_error_body_in_place_of_klines():
    with pytest.raises(BadRequest) as info:
        binance.parse_klines(b'{"code":-1121,"msg":"Invalid symbol."}', "1m")
    assert info.value.code == "-1121"
    with pytest.raises(MalformedResponse):
        binance.parse_klines(b'{"serverTime":1499827319559}', "1m")


def test_empty_array_is_no_candles():
    assert len(binance.parse_klines(b"[]", "1h")) == 0
