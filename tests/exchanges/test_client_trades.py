"""Trade parsing on every recorded trade frame and REST trade body of the three exchanges."""

from __future__ import annotations

import pytest
from exchange_fixture_files import capture_frames, jsonl_frames, read_bytes, read_json, same_number

from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import MalformedResponse, Trade, canonical_symbol

BINANCE_SPOT_WS = "binance/spot_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-10-12.capture.txt"
BINANCE_USDM_WS = "binance/usdm_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-07-22.capture.txt"
OKX_2022 = "okx/public_ws_tickers_trades_books_2022-05-13.capture.txt"


def _binance_events(path):
    for _url, text in capture_frames(path):
        stream, event = binance.unwrap(binance.decode_frame(text))
        yield stream, event


@pytest.mark.parametrize("path,count", [(BINANCE_SPOT_WS, 2), (BINANCE_USDM_WS, 91)])
def test_binance_agg_trades(path, count):
    seen = 0
    for stream, event in _binance_events(path):
        trade = binance.parse_trade(event)
        if binance.frame_kind(event) != "aggTrade":
            assert trade is None
            continue
        assert stream.endswith("@aggTrade") and stream.split("@")[0] == event["s"].lower()
        assert isinstance(trade, Trade) and trade.exchange == "binance"
        assert trade.symbol == event["s"]
        assert same_number(trade.price, event["p"]) and same_number(trade.qty, event["q"])
        assert trade.side == ("sell" if event["m"] else "buy")  # m: buyer was the maker
        assert trade.trade_id == str(event["a"]) and trade.time_ms == event["T"]
        seen += 1
    assert seen == count


def test_binance_trade_stream_doc_example_and_sides():
    event = binance.decode_frame(
        b'{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100",'
        b'"T":1672515782136,"m":true,"M":true}'
    )
    assert binance.frame_kind(event) == "trade"
    assert binance.parse_trade(event) == Trade(
        "binance", "BNBBTC", 0.001, 100.0, "sell", "12345", 1672515782136
    )
    event["m"] = False
    assert binance.parse_trade(event).side == "buy"
    with pytest.raises(MalformedResponse):
        binance.parse_trade({"e": "trade", "s": "BNBBTC"})


@pytest.mark.parametrize(
    "path,symbol",
    [
        ("binance/rest/spot_trades_BTCUSDT_limit15.json", "BTCUSDT"),
        ("binance/rest/usdm_trades_BTCUSDT_limit5.json", "BTCUSDT"),
    ],
)
def test_binance_rest_trades(path, symbol):
    raw = read_json(path)
    trades = binance.parse_rest_trades(read_bytes(path), symbol)
    assert len(trades) == len(raw) > 0
    for t, r in zip(trades, raw, strict=True):
        assert same_number(t.price, r["price"]) and same_number(t.qty, r["qty"])
        assert t.side == ("sell" if r["isBuyerMaker"] else "buy")
        assert (t.trade_id, t.time_ms, t.symbol) == (str(r["id"]), r["time"], symbol)


def test_bybit_public_trades():
    frames = [
        bybit.decode_frame(t)
        for t in jsonl_frames("bybit/spot_ws_v5_orderbook200_publicTrade_2023-12-24.jsonl")
    ]
    trade_frames = [f for f in frames if bybit.frame_kind(f) == "trades"]
    assert len(trade_frames) == 2
    got = [t for f in trade_frames for t in bybit.parse_trades(f)]
    assert got == [
        Trade("bybit", "BTCUSDT", 43774.0, 0.0026, "sell", "2290000000090712222", 1703430744102),
        Trade("bybit", "BTCUSDT", 43774.01, 0.009516, "buy", "2290000000090712223", 1703430745370),
    ]
    for f in trade_frames:
        for t, raw in zip(bybit.parse_trades(f), f["data"], strict=True):
            assert same_number(t.price, raw["p"]) and same_number(t.qty, raw["v"])


def test_bybit_rest_recent_trades_oldest_first():
    path = "bybit/testnet_spot_rest_v5_recent_trade_2023-12-23.json"
    raw = read_json(path)["result"]["list"]
    trades = bybit.parse_rest_recent_trades(read_bytes(path))
    assert len(trades) == len(raw)
    for t, r in zip(trades, reversed(raw), strict=True):
        assert (t.trade_id, t.time_ms, t.side) == (r["execId"], int(r["time"]), r["side"].lower())
        assert same_number(t.price, r["price"]) and same_number(t.qty, r["size"])
    assert [t.time_ms for t in trades] == sorted(t.time_ms for t in trades)


def _okx_trade_frames():
    for _url, text in capture_frames(OKX_2022):
        obj = okx.decode_frame(text)
        if okx.frame_kind(obj) == "trades":
            yield obj
    for text in jsonl_frames("okx/spot_ws_trades_BTC-USDT_2025-02-24.jsonl"):
        obj = okx.decode_frame(text)
        assert okx.frame_kind(obj) == "trades"
        yield obj


def test_okx_trades_every_recorded_frame():
    n = 0
    for frame in _okx_trade_frames():
        trades = okx.parse_trades(frame)
        assert len(trades) == len(frame["data"]) >= 1
        for t, raw in zip(trades, frame["data"], strict=True):
            assert t.exchange == "okx" and t.symbol == raw["instId"] == frame["arg"]["instId"]
            assert same_number(t.price, raw["px"]) and same_number(t.qty, raw["sz"])
            assert t.side == raw["side"] and t.side in ("buy", "sell")
            assert t.trade_id == raw["tradeId"] and t.time_ms == int(raw["ts"])
            n += 1
    assert n >= 76


def test_okx_trade_2025_exact():
    frame = okx.decode_frame(jsonl_frames("okx/spot_ws_trades_BTC-USDT_2025-02-24.jsonl")[0])
    assert okx.parse_trades(frame) == [
        Trade("okx", "BTC-USDT", 95634.9, 0.00011186, "buy", "674510826", 1740394561685)
    ]


def test_frame_kinds_of_recorded_streams():
    kinds: dict[str, int] = {}
    for _stream, event in _binance_events(BINANCE_SPOT_WS):
        k = binance.frame_kind(event)
        kinds[k] = kinds.get(k, 0) + 1
    assert kinds == {"depthUpdate": 177, "bookTicker": 84, "kline": 2, "aggTrade": 2}
    okx_kinds: dict[str, int] = {}
    for _url, text in capture_frames(OKX_2022):
        k = okx.frame_kind(okx.decode_frame(text))
        okx_kinds[k] = okx_kinds.get(k, 0) + 1
    assert okx_kinds == {"ack": 18, "ticker": 28, "trades": 74, "book": 290}
    assert okx.frame_kind(okx.decode_frame("pong")) == "pong"
    bybit_kinds = [
        bybit.frame_kind(bybit.decode_frame(t))
        for t in jsonl_frames("bybit/spot_ws_v5_orderbook200_publicTrade_2023-12-24.jsonl")
    ]
    assert bybit_kinds == ["ack", "book", "book", "ack", "trades", "trades"]
    pong = b'{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a","op":"ping"}'
    assert bybit.frame_kind(bybit.decode_frame(pong)) == "pong"


def test_canonical_symbol():
    assert canonical_symbol("BTCUSDT") == "btc"
    assert canonical_symbol("BTC-USDT") == "btc"
    assert canonical_symbol("ethusdt") == "eth"
    assert canonical_symbol("BTC-USDT-SWAP") is None
    assert canonical_symbol("LRCBTC") is None


def test_subscribe_messages():
    assert binance.stream_names("btc") == ("btcusdt@aggTrade", "btcusdt@depth@100ms")
    assert (
        binance.combined_stream_path(binance.stream_names("btc"))
        == "/stream?streams=btcusdt@aggTrade/btcusdt@depth@100ms"
    )
    assert (
        binance.subscribe_message(["btcusdt@aggTrade"], 1)
        == '{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}'
    )
    assert bybit.topics("sol", 50) == ["publicTrade.SOLUSDT", "orderbook.50.SOLUSDT"]
    assert (
        bybit.subscribe_message(["publicTrade.BTCUSDT"])
        == '{"op":"subscribe","args":["publicTrade.BTCUSDT"]}'
    )
    assert bybit.ping_message("100001") == '{"req_id":"100001","op":"ping"}'
    assert okx.subscribe_message(okx.channel_args("btc")) == (
        '{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},{"channel":"books","instId":"BTC-USDT"}]}'
    )
