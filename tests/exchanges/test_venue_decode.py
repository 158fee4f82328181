"""Golden replays: every recorded WebSocket capture decoded by ``venue.decode`` into normalized
events, each checked against the raw frame it came from; control frames, frames shaped as the
exchanges send them in 2026, and malformed frames (a counted Malformed, never an exception)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from exchange_fixture_files import FIXTURES, capture_frames, jsonl_frames, read_bytes, read_json, same_number

from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import MalformedResponse, canonical_symbol, timeframe_of
from p9cli.exchanges.venue import (
    ACK,
    ERROR,
    INFO,
    PONG,
    RECONNECT_SOON,
    SUBSCRIBE_FAILED,
    BookDelta,
    BookSnapshot,
    ExchangeCandle,
    Malformed,
    Notice,
    Trade,
)

BINANCE_SPOT_WS = "binance/spot_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-10-12.capture.txt"
BINANCE_USDM_WS = "binance/usdm_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-07-22.capture.txt"
BYBIT_200 = "bybit/spot_ws_v5_orderbook200_publicTrade_2023-12-24.jsonl"
BYBIT_50 = "bybit/spot_ws_v5_orderbook50_snapshot_delta_2024-11-08.jsonl"
OKX_2022 = "okx/public_ws_tickers_trades_books_2022-05-13.capture.txt"
OKX_2025 = "okx/spot_ws_trades_BTC-USDT_2025-02-24.jsonl"

#: every WebSocket capture in the fixtures folder, with the adapter that decodes it
WS_CAPTURES = {
    BINANCE_SPOT_WS: binance,
    BINANCE_USDM_WS: binance,
    BYBIT_200: bybit,
    BYBIT_50: bybit,
    OKX_2022: okx,
    OKX_2025: okx,
}


def _frames(path: str) -> list[str]:
    if path.endswith(".jsonl"):
        return jsonl_frames(path)
    return [text for _url, text in capture_frames(path)]


def _symbol(code: str) -> str:
    return canonical_symbol(code) or code


def test_every_ws_capture_is_covered():
    on_disk = {
        str(p.relative_to(FIXTURES))
        for p in FIXTURES.rglob("*")
        if p.is_file() and ("_ws_" in p.name or p.name.startswith("public_ws"))
    }
    assert on_disk == set(WS_CAPTURES)


@pytest.mark.parametrize("path", sorted(WS_CAPTURES))
def test_every_recorded_frame_decodes_without_malformed(path):
    adapter = WS_CAPTURES[path]
    frames = _frames(path)
    assert frames
    for text in frames:
        events = adapter.decode(text)
        assert all(type(e) is not Malformed for e in events), (text[:200], events)
        assert all(e.exchange == adapter.NAME for e in events)
        # bytes and str frames decode alike
        assert adapter.decode(text.encode()) == events


# ---------------------------------------------------------------------------- Binance


@pytest.mark.parametrize(
    "path,counts",
    [
        (BINANCE_SPOT_WS, {"depthUpdate": 177, "bookTicker": 84, "kline": 2, "aggTrade": 2}),
        (BINANCE_USDM_WS, {"depthUpdate": 764, "bookTicker": 613, "kline": 67, "aggTrade": 91}),
    ],
)
def test_binance_capture_events_match_raw_frames(path, counts):
    seen = Counter()
    for text in _frames(path):
        raw = json.loads(text)
        stream, data = raw["stream"], raw["data"]
        kind = data.get("e", "bookTicker")
        seen[kind] += 1
        events = binance.decode(text)
        if kind == "bookTicker":
            assert events == []  # a stream p9 does not use
            continue
        (ev,) = events
        assert ev.symbol == _symbol(data["s"]) == _symbol(stream.split("@")[0].upper())
        if kind == "aggTrade":
            assert type(ev) is Trade
            assert same_number(ev.price, data["p"]) and same_number(ev.size, data["q"])
            assert ev.side == ("sell" if data["m"] else "buy")  # m: the buyer was the maker
            assert (ev.trade_id, ev.id_first, ev.id_last, ev.ts_ms) == (
                str(data["a"]),
                data["a"],
                data["a"],
                data["T"],
            )
            assert ev.fills == data["l"] - data["f"] + 1
        elif kind == "depthUpdate":
            assert type(ev) is BookDelta
            assert (ev.first_id, ev.update_id, ev.prev_id, ev.ts_ms) == (
                data["U"],
                data["u"],
                data.get("pu"),
                data["E"],
            )
            assert ev.bids == data["b"] and ev.asks == data["a"]
        else:
            k = data["k"]
            assert type(ev) is ExchangeCandle and ev.timeframe == "1m" and stream.endswith("@kline_1m")
            assert (ev.open_time, ev.closed, ev.trades) == (k["t"], k["x"], k["n"]) and k["T"] == k[
                "t"
            ] + 59_999
            for got, key in (
                (ev.open, "o"),
                (ev.high, "h"),
                (ev.low, "l"),
                (ev.close, "c"),
                (ev.volume, "v"),
                (ev.quote_volume, "q"),
            ):
                assert same_number(got, k[key])
    assert seen == counts


def test_binance_agg_trade_fills_count_the_aggregated_trades():
    """A recorded aggTrade covering two fills (f..l): the print is one aggregate (a..a) but two of
    the exchange's trades, the number its klines' ``n`` (our candles' ``trades``) counts."""
    frames = [
        text
        for _url, text in capture_frames(BINANCE_USDM_WS)
        if '"e":"aggTrade"' in text and '"a":14888309,' in text
    ]
    assert len(frames) == 1
    data = json.loads(frames[0])["data"]
    assert (data["f"], data["l"]) == (27931361, 27931362)
    (ev,) = binance.decode(frames[0])
    assert type(ev) is Trade
    assert (ev.id_first, ev.id_last, ev.fills) == (14888309, 14888309, 2)
    # the whole capture: fills is l - f + 1 for every aggregate, and some aggregate several fills
    fills = [
        (ev.fills, json.loads(text)["data"])
        for text in _frames(BINANCE_USDM_WS)
        if '"e":"aggTrade"' in text
        for ev in binance.decode(text)
    ]
    assert all(n == d["l"] - d["f"] + 1 for n, d in fills)
    assert sum(n > 1 for n, _d in fills) == 27


def test_binance_doc_trade_partial_depth_and_raw_streams():
    (t,) = binance.decode(
        b'{"stream":"bnbbtc@trade","data":{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001",'
        b'"q":"100","T":1672515782136,"m":true,"M":true}}'
    )
    assert t == Trade("binance", "BNBBTC", 1672515782136, 0.001, 100.0, "sell", "12345", 12345, 12345)
    (bare,) = binance.decode(
        b'{"e":"aggTrade","E":1,"s":"BTCUSDT","a":7,"p":"2.5","q":"1","f":1,"l":1,"T":5,"m":false,"M":true}'
    )
    assert bare == Trade("binance", "btc", 5, 2.5, 1.0, "buy", "7", 7, 7)
    assert t.fills == bare.fills == 1  # @trade: one trade; aggTrade f == l: one fill
    (snap,) = binance.decode(
        b'{"stream":"bnbbtc@depth20@100ms","data":{"lastUpdateId":160,"bids":[["0.0024","10"]],'
        b'"asks":[["0.0026","100"]]}}'
    )
    assert snap == BookSnapshot("binance", "BNBBTC", 160, [["0.0024", "10"]], [["0.0026", "100"]])


@pytest.mark.parametrize(
    "frame,expected",
    [
        (b'{"result":null,"id":1}', Notice("binance", ACK, request_id="1")),
        (b'{"result":["btcusdt@aggTrade"],"id":3}', Notice("binance", ACK, request_id="3")),
        (
            b'{"code":2,"msg":"Invalid request: unknown variant"}',
            Notice("binance", ERROR, "2", "Invalid request: unknown variant"),
        ),
        (
            b'{"error":{"code":2,"msg":"Invalid request"},"id":7}',
            Notice("binance", ERROR, "2", "Invalid request", "7"),
        ),
        # serverShutdown, combined and raw (reference 2.4)
        (
            b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}',
            Notice("binance", RECONNECT_SOON, None, "serverShutdown", None, 1770123456789),
        ),
        (
            b'{"e":"serverShutdown","E":1770123456789}',
            Notice("binance", RECONNECT_SOON, None, "serverShutdown", None, 1770123456789),
        ),
    ],
)
def test_binance_control_frames(frame, expected):
    assert binance.decode(frame) == [expected]


def test_binance_unused_streams_decode_to_nothing():
    assert (
        binance.decode(
            b'{"stream":"bnbusdt@bookTicker","data":{"u":1,"s":"BNBUSDT","b":"1","B":"1","a":"2","A":"1"}}'
        )
        == []
    )
    assert binance.decode(b'{"e":"somethingNew","E":1}') == []


# ---------------------------------------------------------------------------- Bybit


def test_bybit_captures_match_raw_frames():
    kinds = []
    for path in (BYBIT_200, BYBIT_50):
        for text in _frames(path):
            raw = json.loads(text)
            events = bybit.decode(text)
            if "success" in raw:
                assert events == [Notice("bybit", ACK, None, "subscribe")]
                kinds.append("ack")
                continue
            topic = raw["topic"]
            if topic.startswith("publicTrade."):
                kinds.append("trades")
                assert len(events) == len(raw["data"]) >= 1
                for ev, r in zip(events, raw["data"], strict=True):
                    assert type(ev) is Trade and ev.symbol == "btc"
                    assert same_number(ev.price, r["p"]) and same_number(ev.size, r["v"])
                    assert (ev.side, ev.trade_id, ev.ts_ms) == (r["S"].lower(), r["i"], r["T"])
                    assert ev.id_first is None  # Bybit does not number trades contiguously
            else:
                kinds.append(raw["type"])
                (ev,) = events
                d = raw["data"]
                cls = BookSnapshot if raw["type"] == "snapshot" else BookDelta
                assert type(ev) is cls and ev.symbol == "btc"
                assert (ev.update_id, ev.seq, ev.ts_ms) == (d["u"], d.get("seq"), raw["cts"])
                assert ev.bids == d["b"] and ev.asks == d["a"]
    assert kinds == ["ack", "snapshot", "delta", "ack", "trades", "trades", "snapshot", "delta"]


def test_bybit_trades_exact():
    trades = [e for t in _frames(BYBIT_200) for e in bybit.decode(t) if type(e) is Trade]
    assert trades == [
        Trade("bybit", "btc", 1703430744102, 43774.0, 0.0026, "sell", "2290000000090712222"),
        Trade("bybit", "btc", 1703430745370, 43774.01, 0.009516, "buy", "2290000000090712223"),
    ]


@pytest.mark.parametrize(
    "frame,expected",
    [
        (
            b'{"success":true,"ret_msg":"subscribe","conn_id":"4492c76f","req_id":"10001","op":"subscribe"}',
            Notice("bybit", ACK, None, "subscribe", "10001"),
        ),
        (
            b'{"success":true,"ret_msg":"pong","conn_id":"0970e817","op":"ping"}',
            Notice("bybit", PONG, None, "pong"),
        ),
        (
            b'{"success":true,"ret_msg":"pong","conn_id":"0970e817","req_id":"","op":"ping"}',
            Notice("bybit", PONG, None, "pong"),
        ),
        (
            b'{"success":false,"ret_msg":"error:handler not found,topic:orderbook.7.BTCUSDT","conn_id":"c",'
            b'"op":"subscribe"}',
            Notice("bybit", SUBSCRIBE_FAILED, None, "error:handler not found,topic:orderbook.7.BTCUSDT"),
        ),
    ],
)
def test_bybit_control_frames(frame, expected):
    assert bybit.decode(frame) == [expected]


def test_bybit_kline_doc_push():
    frame = (
        b'{"topic":"kline.5.BTCUSDT","data":[{"start":1672324800000,"end":1672325099999,"interval":"5",'
        b'"open":"16649.5","close":"16677","high":"16677","low":"16608","volume":"2.081","turnover":"34666.4005",'
        b'"confirm":false,"timestamp":1672324988882}],"ts":1672324988882,"type":"snapshot"}'
    )
    assert bybit.decode(frame) == [
        ExchangeCandle(
            "bybit", "btc", "5m", 1672324800000, 16649.5, 16677.0, 16608.0, 16677.0, 2.081, False, 34666.4005
        )
    ]
    (bad,) = bybit.decode(frame.replace(b"kline.5.", b"kline.W."))
    assert type(bad) is Malformed and "timeframes" in bad.reason


# ---------------------------------------------------------------------------- OKX


def test_okx_2022_capture_matches_raw_frames():
    seen = Counter()
    for text in _frames(OKX_2022):
        raw = json.loads(text)
        events = okx.decode(text)
        if "event" in raw:
            seen["ack"] += 1
            assert events == [Notice("okx", ACK, None, "subscribe")]
            continue
        channel = raw["arg"]["channel"]
        seen[channel] += 1
        if channel == "tickers":
            assert events == []
        elif channel == "trades":
            assert len(events) == len(raw["data"]) >= 1
            for ev, r in zip(events, raw["data"], strict=True):
                assert ev.symbol == _symbol(r["instId"]) == _symbol(raw["arg"]["instId"])
                assert same_number(ev.price, r["px"]) and same_number(ev.size, r["sz"])
                assert (ev.side, ev.trade_id, ev.ts_ms) == (r["side"], r["tradeId"], int(r["ts"]))
                assert ev.id_first is None  # 2022 frames have no count: no contiguous span
        else:
            (ev,) = events
            (d,) = raw["data"]
            assert type(ev) is (BookSnapshot if raw["action"] == "snapshot" else BookDelta)
            assert ev.symbol == _symbol(raw["arg"]["instId"])
            assert (ev.update_id, ev.checksum, ev.ts_ms) == (
                None,
                d["checksum"],
                int(d["ts"]),
            )  # no seqId in 2022
            assert ev.bids == d["bids"] and ev.asks == d["asks"]
    assert seen == {"ack": 18, "tickers": 28, "trades": 74, "books": 290}


def test_okx_2025_trades_exact():
    trades = [e for t in _frames(OKX_2025) for e in okx.decode(t)]
    assert trades == [
        Trade("okx", "btc", 1740394561685, 95634.9, 0.00011186, "buy", "674510826", 674510826, 674510826),
        Trade("okx", "btc", 1740394561686, 95635.3, 0.00011194, "sell", "674510827", 674510827, 674510827),
    ]


# 2026 shapes (reference 4.5/4.6): trades with count/source/seqId (a third-party live capture of
# 2026-10-07, quoted in the reference), books with checksum 0 and seqId/prevSeqId.
OKX_2026_TRADE = (
    b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1067468269",'
    b'"px":"83753","sz":"0.000011","side":"sell","ts":"1791369376364","count":"3","source":"0",'
    b'"seqId":82083114838}]}'
)


def test_okx_2026_trade_with_count_source_and_seqid():
    assert okx.decode(OKX_2026_TRADE) == [
        Trade(
            "okx",
            "btc",
            1791369376364,
            83753.0,
            0.000011,
            "sell",
            "1067468269",
            1067468267,
            1067468269,
            82083114838,
            fills=3,
        )
    ]


def okx_books_frame(action: str, seq: int, prev: int, bids, asks, checksum: int | None = 0) -> bytes:
    item = {"asks": asks, "bids": bids, "ts": "1791369376364", "prevSeqId": prev, "seqId": seq}
    if checksum is not None:
        item["checksum"] = checksum
    return json.dumps(
        {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action, "data": [item]}
    ).encode()


def test_okx_2026_books_frames():
    bids, asks = [["83752.9", "0.5", "0", "3"]], [["83753", "0.2", "0", "1"]]
    assert okx.decode(okx_books_frame("snapshot", 100, -1, bids, asks)) == [
        BookSnapshot("okx", "btc", 100, bids, asks, 1791369376364, False, 0)
    ]
    assert okx.decode(okx_books_frame("update", 101, 100, [], [["83753", "0", "0", "0"]])) == [
        BookDelta("okx", "btc", 101, 101, [], [["83753", "0", "0", "0"]], 100, 1791369376364, 0)
    ]


def test_okx_candle_doc_push_on_utc_channel():
    frame = (
        b'{"arg":{"channel":"candle1Dutc","instId":"BTC-USDT"},"data":[["1597026383085","8533.02","8553.74",'
        b'"8527.17","8548.26","45247","529.5858061","5529.5858061","0"]]}'
    )
    assert okx.decode(frame) == [
        ExchangeCandle(
            "okx",
            "btc",
            "1d",
            1597026383085,
            8533.02,
            8553.74,
            8527.17,
            8548.26,
            45247.0,
            False,
            5529.5858061,
        )
    ]
    (bad,) = okx.decode(frame.replace(b"candle1Dutc", b"candle1D"))  # Hong-Kong day: not p9's 1d
    assert type(bad) is Malformed


@pytest.mark.parametrize(
    "frame,expected",
    [
        ("pong", Notice("okx", PONG)),
        (b"pong", Notice("okx", PONG)),
        (
            b'{"id":"1512","event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a4d3ae55"}',
            Notice("okx", ACK, None, "subscribe", "1512"),
        ),
        (
            b'{"id":"1512","event":"error","code":"60012","msg":"Invalid request: {}","connId":"a4d3ae55"}',
            Notice("okx", SUBSCRIBE_FAILED, "60012", "Invalid request: {}", "1512"),
        ),
        (
            b'{"event":"error","code":"60014","msg":"Requests too frequent.","connId":"a4d3ae55"}',
            Notice("okx", ERROR, "60014", "Requests too frequent."),
        ),
        # service upgrade notice (reference 4.4: event "notice", code 64008, ~60 s before the close)
        (
            b'{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. '
            b'Please reconnect.","connId":"a4d3ae55"}',
            Notice(
                "okx",
                RECONNECT_SOON,
                "64008",
                "The connection will soon be closed for a service upgrade. Please reconnect.",
            ),
        ),
        (
            b'{"event":"channel-conn-count","channel":"books","connCount":"2","connId":"a"}',
            Notice("okx", INFO, None, "channel-conn-count"),
        ),
    ],
)
def test_okx_control_frames(frame, expected):
    assert okx.decode(frame) == [expected]


# ---------------------------------------------------------------------------- malformed frames


MALFORMED_FRAMES = {
    binance: [
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggT',  # truncated
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":"x","b":[],"a":[]}}',
        b'{"stream":"btcusdt@kline_1m","data":{"e":"kline","s":"BTCUSDT","k":{"t":1}}}',
        b"[1,2]",
        b"",
        "\ufffd not json",
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","a":1,"p":"x","q":"1","T":1,"m":true}}',
    ],
    bybit: [
        b'{"topic":"publicTrade.BTCUSDT","data":[{"i":"1","T":1,"p":"1","v":"1","S":"Maybe","s":"BTCUSDT"}]}',
        b'{"topic":"orderbook.50.BTCUSDT","type":"delta","data":{"s":"BTCUSDT","b":5,"a":[],"u":2}}',
        b'{"topic":"orderbook.50.BTCUSDT","type":"weird","data":{"s":"BTCUSDT","b":[],"a":[],"u":2}}',
        b'{"topic":"publicTrade.BTC',
        b"{}",
    ],
    okx: [
        b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","px":"1"}]}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[]}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":"x","bids":[]}]}',
        b"ping",
        b"{}",
        b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"1",'
        b'"sz":"1","side":"up","ts":"1"}]}',
    ],
}


@pytest.mark.parametrize("adapter", [binance, bybit, okx], ids=lambda a: a.NAME)
def test_malformed_frames_are_one_counted_event_not_an_exception(adapter):
    for frame in MALFORMED_FRAMES[adapter]:
        events = adapter.decode(frame)
        assert len(events) == 1 and type(events[0]) is Malformed, (frame, events)
        bad = events[0]
        assert bad.exchange == adapter.NAME and bad.reason and "\n" not in bad.reason
        assert len(bad.excerpt) <= 120


@pytest.mark.parametrize("adapter", [binance, bybit, okx], ids=lambda a: a.NAME)
def test_a_huge_frame_gives_a_short_malformed(adapter):
    (bad,) = adapter.decode(b'{"x":"' + b"a" * 5_000_000)
    assert type(bad) is Malformed and len(bad.excerpt) <= 120 and len(bad.reason) <= 200


# ---------------------------------------------------------------------------- REST parsers


@pytest.mark.parametrize(
    "path", ["binance/rest/spot_trades_BTCUSDT_limit15.json", "binance/rest/usdm_trades_BTCUSDT_limit5.json"]
)
def test_binance_rest_trades(path):
    raw = read_json(path)
    trades = binance.parse_rest_trades(read_bytes(path), "btc")
    assert len(trades) == len(raw) > 0
    for t, r in zip(trades, raw, strict=True):
        assert same_number(t.price, r["price"]) and same_number(t.size, r["qty"])
        assert t.side == ("sell" if r["isBuyerMaker"] else "buy")
        assert (t.trade_id, t.ts_ms, t.symbol, t.id_first) == (str(r["id"]), r["time"], "btc", r["id"])


def test_binance_agg_trades_replay_request_and_parser():
    req = binance.VENUE.trade_replay_request("btc", 26129, 26500, 0)
    assert (req.target, req.cost) == ("/api/v3/aggTrades?symbol=BTCUSDT&fromId=26129&limit=1000", 4)
    assert binance.VENUE.trade_replay_request("btc", 26129, 26500, 3) == req  # to_id and page unused
    body = b'[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,"m":true,"M":true}]'
    assert binance.VENUE.parse_trade_replay(body, "btc") == [
        Trade("binance", "btc", 1498793709153, 0.01633102, 4.70443515, "sell", "26129", 26129, 26129)
    ]
    (replayed,) = binance.parse_agg_trades(body.replace(b'"l":27781', b'"l":27784'), "btc")
    assert replayed.fills == 4
    with pytest.raises(MalformedResponse):
        binance.parse_agg_trades(b"<html>", "btc")


def test_bybit_rest_recent_trades_oldest_first():
    path = "bybit/testnet_spot_rest_v5_recent_trade_2023-12-23.json"
    raw = read_json(path)["result"]["list"]
    trades = bybit.parse_rest_recent_trades(read_bytes(path))
    assert len(trades) == len(raw)
    for t, r in zip(trades, reversed(raw), strict=True):
        assert (t.trade_id, t.ts_ms, t.side, t.symbol) == (
            r["execId"],
            int(r["time"]),
            r["side"].lower(),
            "btc",
        )
        assert same_number(t.price, r["price"]) and same_number(t.size, r["size"])


def test_binance_rest_depth_snapshot():
    path = "binance/rest/usdm_depth_BTCUSDT_limit5.json"
    raw = read_json(path)
    snap = binance.VENUE.parse_snapshot(read_bytes(path), "btc")
    assert snap == BookSnapshot(
        "binance", "btc", raw["lastUpdateId"], raw["bids"], raw["asks"], raw["T"], True
    )
    req = binance.VENUE.snapshot_request("btc")
    assert (req.target, req.cost) == ("/api/v3/depth?symbol=BTCUSDT&limit=1000", 50)
    assert binance.depth_request("btc", 100).cost == 5 and binance.depth_request("btc", 5000).cost == 250
    with pytest.raises(MalformedResponse):
        binance.parse_depth_snapshot(b'{"bids":[]}', "btc")
    with pytest.raises(Exception, match="Invalid symbol"):
        binance.parse_depth_snapshot(b'{"code":-1121,"msg":"Invalid symbol."}', "btc")


def test_bybit_rest_orderbook():
    snap = bybit.parse_rest_orderbook(read_bytes("bybit/testnet_spot_rest_v5_orderbook_2023-12-23.json"))
    assert (snap.symbol, snap.update_id, snap.ts_ms, snap.from_rest) == ("btc", 1458765, 1703314210368, True)
    assert snap.bids[0] == ["29714.9", "0.0008"] and snap.asks[0] == ["29727.05", "0.000069"]
    assert (
        bybit.orderbook_request("btc", 200).target
        == "/v5/market/orderbook?category=spot&symbol=BTCUSDT&limit=200"
    )


def test_okx_rest_books_snapshot_with_seqid():
    # shape of GET /api/v5/market/books (reference 4.3) with the seqId of the 2026-02-12 changelog
    body = (
        b'{"code":"0","msg":"","data":[{"asks":[["41006.8","0.60038921","0","1"]],'
        b'"bids":[["41006.3","0.30178218","0","2"]],"ts":"1629966436396","seqId":3235823451}]}'
    )
    snap = okx.VENUE.parse_snapshot(body, "btc")
    assert snap == BookSnapshot(
        "okx",
        "btc",
        3235823451,
        [["41006.3", "0.30178218", "0", "2"]],
        [["41006.8", "0.60038921", "0", "1"]],
        1629966436396,
        True,
    )
    req = okx.VENUE.snapshot_request("btc")
    assert (req.target, req.bucket) == ("/api/v5/market/books?instId=BTC-USDT&sz=400", okx.BOOKS_BUCKET)
    assert okx.BOOKS_BUCKET in {b.name for b in okx.RATE_BUCKETS}
    with pytest.raises(Exception, match="51001"):
        okx.parse_books_snapshot(b'{"code":"51001","msg":"Instrument ID does not exist","data":[]}', "btc")
    with pytest.raises(MalformedResponse):
        okx.parse_books_snapshot(b"<html>", "btc")


def test_canonical_symbol_and_timeframe_of():
    assert canonical_symbol("BTCUSDT") == "btc" and canonical_symbol("BTC-USDT") == "btc"
    assert canonical_symbol("ethusdt") == "eth"
    assert canonical_symbol("BTC-USDT-SWAP") is None and canonical_symbol("LRCBTC") is None
    assert timeframe_of("bybit", "D") == "1d" and timeframe_of("okx", "6Hutc") == "6h"
    assert timeframe_of("okx", "6H") is None and timeframe_of("binance", "1M") is None
