"""Second opinion from ccxt (an independent client) on the recorded kline rows and codes."""

from __future__ import annotations

import ccxt
import pytest
from exchange_fixture_files import read_bytes, read_json

from p9cli.exchanges import binance, bybit, okx
from p9cli.universe import TIMEFRAMES

CASES = [
    (binance, "binance/rest/spot_klines_BTCUSDT_1h_2023-01-01_to_2023-01-08.json", "1h", lambda raw: raw),
    (binance, "binance/rest/spot_klines_BTCUSDT_1d_2019_endTime_on_open_time.json", "1d", lambda raw: raw),
    (
        bybit,
        "bybit/spot_rest_v5_kline_BTCUSDT_15_2023-05-01.json",
        "15m",
        lambda raw: raw["result"]["list"][::-1],
    ),
    (
        bybit,
        "bybit/spot_rest_v5_kline_BTCUSDT_1_unaligned_start_2023-05-08.json",
        "1m",
        lambda raw: raw["result"]["list"][::-1],
    ),
    (okx, "okx/spot_rest_history_candles_BTC-USDT_1m_2023-05-02.json", "1m", lambda raw: raw["data"][::-1]),
]


@pytest.mark.parametrize("adapter,path,tf,rows_of", CASES, ids=[c[1].split("/")[-1] for c in CASES])
def test_ohlcv_agrees_with_ccxt(adapter, path, tf, rows_of):
    exchange = getattr(ccxt, adapter.NAME)()
    theirs = [exchange.parse_ohlcv(row) for row in rows_of(read_json(path))]
    ours = adapter.parse_klines(read_bytes(path), tf)
    mine = [list(r[:6]) for r in ours.rows()]
    assert mine == theirs


def test_interval_codes_agree_with_ccxt():
    assert [bybit.interval_code(tf) for tf in TIMEFRAMES] == [
        ccxt.bybit().timeframes[tf] for tf in TIMEFRAMES
    ]
    assert [binance.interval_code(tf) for tf in TIMEFRAMES] == [
        ccxt.binance().timeframes[tf] for tf in TIMEFRAMES
    ]
    # ccxt lists the Hong-Kong-aligned OKX codes and appends "utc" for 6h and longer when fetching
    expected = [
        c + "utc" if tf in ("6h", "12h", "1d") else c
        for tf, c in ((tf, ccxt.okx().timeframes[tf]) for tf in TIMEFRAMES)
    ]
    assert [okx.interval_code(tf) for tf in TIMEFRAMES] == expected
