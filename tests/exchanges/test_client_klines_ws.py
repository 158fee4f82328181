"""Live kline/candle channel parsing: every recorded Binance kline frame, the documented Bybit
and OKX pushes."""

from __future__ import annotations

import pytest
from exchange_fixture_files import capture_frames, same_number

from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import MalformedResponse, timeframe_of


@pytest.mark.parametrize(
    "path,count",
    [
        ("binance/spot_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-10-12.capture.txt", 2),
        ("binance/usdm_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-07-22.capture.txt", 67),
    ],
)
def test_binance_kline_frames(path, count):
    n = 0
    for _url, text in capture_frames(path):
        stream, event = binance.unwrap(binance.decode_frame(text))
        if binance.frame_kind(event) != "kline":
            continue
        update = binance.parse_kline(event)
        k = event["k"]
        assert stream.endswith("@kline_1m") and update.timeframe == "1m" and update.symbol == event["s"]
        c = update.candles
        assert c.open_time == [k["t"]] and k["T"] == k["t"] + 59_999
        for got, key in (
            (c.open, "o"),
            (c.high, "h"),
            (c.low, "l"),
            (c.close, "c"),
            (c.volume, "v"),
            (c.quote_volume, "q"),
        ):
            assert same_number(got[0], k[key])
        assert c.trades == [k["n"]] and c.confirmed == [k["x"]]
        n += 1
    assert n == count


def test_bybit_kline_doc_push():
    obj = bybit.decode_frame(
        b'{"topic":"kline.5.BTCUSDT","data":[{"start":1672324800000,"end":1672325099999,"interval":"5",'
        b'"open":"16649.5","close":"16677","high":"16677","low":"16608","volume":"2.081","turnover":"34666.4005",'
        b'"confirm":false,"timestamp":1672324988882}],"ts":1672324988882,"type":"snapshot"}'
    )
    assert bybit.frame_kind(obj) == "kline"
    u = bybit.parse_kline(obj)
    assert (u.exchange, u.symbol, u.timeframe) == ("bybit", "BTCUSDT", "5m")
    assert list(u.candles.rows()) == [
        (1672324800000, 16649.5, 16677.0, 16608.0, 16677.0, 2.081, 34666.4005, None, False)
    ]
    obj["topic"] = "kline.W.BTCUSDT"
    with pytest.raises(MalformedResponse):
        bybit.parse_kline(obj)


def test_okx_candle_doc_push_on_utc_channel():
    obj = okx.decode_frame(
        b'{"arg":{"channel":"candle1Dutc","instId":"BTC-USDT"},"data":[["1597026383085","8533.02","8553.74",'
        b'"8527.17","8548.26","45247","529.5858061","5529.5858061","0"]]}'
    )
    assert okx.frame_kind(obj) == "candle"
    u = okx.parse_candle(obj)
    assert (u.symbol, u.timeframe) == ("BTC-USDT", "1d")
    assert list(u.candles.rows()) == [
        (1597026383085, 8533.02, 8553.74, 8527.17, 8548.26, 45247.0, 5529.5858061, None, False)
    ]
    obj["arg"]["channel"] = "candle1D"  # Hong-Kong-aligned day: not p9's 1d
    with pytest.raises(MalformedResponse):
        okx.parse_candle(obj)


def test_timeframe_of():
    assert timeframe_of("bybit", "D") == "1d" and timeframe_of("okx", "6Hutc") == "6h"
    assert timeframe_of("okx", "6H") is None and timeframe_of("binance", "1M") is None
