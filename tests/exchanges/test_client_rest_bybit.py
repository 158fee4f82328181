"""Bybit REST adapter on the recorded kline bodies and the recorded request URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from exchange_fixture_files import read_bytes, read_json, same_number

from p9cli.exchanges import bybit

FILES = {
    "bybit/spot_rest_v5_kline_BTCUSDT_15_2023-05-01.json": "15m",
    "bybit/spot_rest_v5_kline_BTCUSDT_1_unaligned_start_2023-05-08.json": "1m",
}
#: The request ro-soku sent for the unaligned-start fixture (issue #3).
ROSOKU_URL = (
    "https://api.bybit.com/v5/market/kline?category=spot&symbol=BTCUSDT&interval=1"
    "&start=1683472808000&end=1683472876000"
)


@pytest.mark.parametrize("path", FILES)
def test_parse_klines_exact_values_reversed(path):
    candles = bybit.parse_klines(read_bytes(path), FILES[path])
    raw = read_json(path)["result"]["list"]
    assert len(candles) == len(raw) == 2
    for i, row in enumerate(reversed(raw)):  # Bybit sends newest first
        assert candles.open_time[i] == int(row[0]) and type(candles.open_time[i]) is int
        for got, text in zip(
            (candles.open, candles.high, candles.low, candles.close, candles.volume, candles.quote_volume),
            row[1:7],
            strict=True,
        ):
            assert same_number(got[i], text)
    assert candles.open_time[0] < candles.open_time[1]
    assert candles.trades == [None, None]
    assert candles.confirmed == [None, None]


def test_newest_bar_is_open_at_recorded_server_time():
    body = read_bytes("bybit/spot_rest_v5_kline_BTCUSDT_15_2023-05-01.json")
    server_now = read_json("bybit/spot_rest_v5_kline_BTCUSDT_15_2023-05-01.json")["time"]
    candles = bybit.parse_klines(body, "15m")
    assert candles.closed_mask(900_000, server_now) == [True, False]
    closed = candles.closed_only(900_000, server_now)
    assert closed.open_time == [1682921700000]


def test_request_matches_recorded_url_shape():
    url = urlsplit(ROSOKU_URL)
    recorded = parse_qsl(url.query)
    # aligned start: exactly the recorded request
    req = bybit.klines_request("btc", "1m", 1683472800000, 1683472876000, 0)
    assert req.path == url.path
    assert req.query == url.query.replace("start=1683472808000", "start=1683472800000")
    assert [k for k, _ in req.params] == [k for k, _ in recorded]
    assert (req.bucket, req.cost, req.method) == ("bybit:ip", 1, "GET")


def test_unaligned_start_is_rounded_up_because_bybit_includes_the_containing_bar():
    # The recorded answer to start=1683472808000 includes the bar opening at 1683472800000 ...
    answered = bybit.parse_klines(
        read_bytes("bybit/spot_rest_v5_kline_BTCUSDT_1_unaligned_start_2023-05-08.json"), "1m"
    )
    assert answered.open_time[0] == 1683472800000 < 1683472808000
    # ... so to get exactly the bars opening at or after first_open the adapter rounds start up.
    req = bybit.klines_request("btc", "1m", 1683472808000, 1683472876000, 0)
    assert dict(req.params)["start"] == "1683472860000"
    assert dict(req.params)["end"] == "1683472876000"


def test_codes_and_limit():
    assert bybit.symbol_code("sol") == "SOLUSDT"
    got = [
        bybit.interval_code(tf)
        for tf in ("1d", "12h", "6h", "4h", "2h", "1h", "30m", "15m", "5m", "3m", "1m")
    ]
    assert got == ["D", "720", "360", "240", "120", "60", "30", "15", "5", "3", "1"]
    minute = 60_000
    assert "limit" not in dict(bybit.klines_request("btc", "1m", 0, 199 * minute, 0).params)
    assert dict(bybit.klines_request("btc", "1m", 0, 200 * minute, 0).params)["limit"] == "201"
    assert dict(bybit.klines_request("btc", "1m", 0, 999 * minute, 0, limit=1000).params)["limit"] == "1000"
    assert dict(bybit.klines_request("btc", "1d", 0, 0, 0).params)["category"] == "spot"


def test_server_time_doc_body():
    body = (
        b'{"retCode":0,"retMsg":"OK","result":{"timeSecond":"1688639403",'
        b'"timeNano":"1688639403423213947"},"retExtInfo":{},"time":1688639403423}'
    )
    assert bybit.parse_server_time(body) == 1688639403423
    req = bybit.server_time_request()
    assert (req.path, req.bucket) == ("/v5/market/time", "bybit:ip")
    assert bybit.used_weight({"X-Bapi-Limit-Status": "99"}) == {}
