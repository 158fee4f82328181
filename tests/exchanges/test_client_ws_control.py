"""Classification of WebSocket control frames (acks, pongs, errors, notices) per exchange."""

from __future__ import annotations

import pytest

from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import MalformedResponse


@pytest.mark.parametrize(
    "frame,kind",
    [
        (b'{"result":null,"id":1}', "response"),
        (b'{"result":["btcusdt@aggTrade"],"id":3}', "response"),
        (b'{"code":2,"msg":"Invalid request: unknown variant"}', "error"),
        (b'{"error":{"code":2,"msg":"Invalid request"},"id":7}', "error"),
        (b'{"e":"serverShutdown","E":1770123456789}', "serverShutdown"),
        (
            b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}',
            "bookTicker",
        ),
        (b'{"e":"somethingNew","E":1}', "other"),
        (b"[1,2]", "other"),
    ],
)
def test_binance_control_frames(frame, kind):
    stream, event = binance.unwrap(binance.decode_frame(frame))
    assert stream is None
    assert binance.frame_kind(event) == kind
    assert binance.parse_trade(event) is None
    assert binance.parse_depth(event) is None


def test_binance_combined_shutdown():
    stream, event = binance.unwrap(
        binance.decode_frame(b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}')
    )
    assert (stream, binance.frame_kind(event)) == ("!serverShutdown", "serverShutdown")


@pytest.mark.parametrize(
    "frame,kind",
    [
        (b'{"success":true,"ret_msg":"subscribe","conn_id":"4492c76f","op":"subscribe"}', "ack"),
        (b'{"success":true,"ret_msg":"pong","conn_id":"0970e817","op":"ping"}', "pong"),
        (
            b'{"success":false,"ret_msg":"error:handler not found,topic:orderbook.7.BTCUSDT","conn_id":"c","op":"subscribe"}',
            "error",
        ),
        (b'{"topic":"kline.5.BTCUSDT","data":[],"ts":1,"type":"snapshot"}', "kline"),
        (b'{"topic":"tickers.BTCUSDT","data":{},"ts":1,"type":"snapshot"}', "ticker"),
    ],
)
def test_bybit_control_frames(frame, kind):
    assert bybit.frame_kind(bybit.decode_frame(frame)) == kind


@pytest.mark.parametrize(
    "frame,kind",
    [
        (b'{"event":"subscribe","arg":{"channel":"tickers","instId":"BTC-USDT"}}', "ack"),
        (
            b'{"id":"1512","event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a4d3ae55"}',
            "ack",
        ),
        (
            b'{"id":"1512","event":"error","code":"60012","msg":"Invalid request: {}","connId":"a4d3ae55"}',
            "error",
        ),
        (
            b'{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade.","connId":"a"}',
            "notice",
        ),
        (b'{"arg":{"channel":"candle1Dutc","instId":"BTC-USDT"},"data":[]}', "candle"),
        ("pong", "pong"),
    ],
)
def test_okx_control_frames(frame, kind):
    assert okx.frame_kind(okx.decode_frame(frame)) == kind


@pytest.mark.parametrize("adapter", [binance, bybit, okx], ids=lambda a: a.NAME)
def test_truncated_frames_are_malformed(adapter):
    with pytest.raises(MalformedResponse):
        adapter.decode_frame(b'{"stream":"btcusdt@aggTrade","data":{"e":"aggT')


def test_malformed_payloads_inside_valid_json():
    with pytest.raises(MalformedResponse):
        bybit.parse_trades(
            {
                "topic": "publicTrade.BTCUSDT",
                "data": [{"i": "1", "T": 1, "p": "1", "v": "1", "S": "Maybe", "s": "BTCUSDT"}],
            }
        )
    with pytest.raises(MalformedResponse):
        okx.parse_trades({"arg": {"channel": "trades"}, "data": [{"instId": "BTC-USDT", "px": "1"}]})
    with pytest.raises(MalformedResponse):
        okx.parse_book({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update", "data": []})
    with pytest.raises(MalformedResponse):
        bybit.parse_book(
            {
                "topic": "orderbook.50.BTCUSDT",
                "type": "delta",
                "data": {"s": "BTCUSDT", "b": 5, "a": [], "u": 2},
            }
        )
    with pytest.raises(MalformedResponse):
        binance.parse_depth({"e": "depthUpdate", "s": "BTCUSDT", "U": 1, "u": "x", "b": [], "a": [], "E": 1})
