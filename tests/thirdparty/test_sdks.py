"""The exchanges' own Python SDKs against `p9 sim`, configured the one documented way each is
pointed at another host:

* Binance: ``binance-sdk-spot`` (the current official SDK; ``ConfigurationRestAPI(base_path=)``,
  ``ConfigurationWebSocketStreams(stream_url=)``) and the older ``binance-connector``
  (``Spot(base_url=)``, ``SpotWebsocketStreamClient(stream_url=)``);
* Bybit: ``pybit`` (``HTTP(...).endpoint``; the WebSocket URL template
  ``pybit.unified_trading.PUBLIC_WSS``: its domain/tld arguments cannot carry a port);
* OKX: ``python-okx`` (``MarketAPI(domain=)``; ``WsPublicAsync(url=)`` over wss through the
  local TLS front door, the CA trusted through ``SSL_CERT_FILE``, because it always passes an
  ``ssl=`` context that ``websockets`` refuses for ``ws://``).

REST: klines / candles rows must be byte-for-byte the exchange rows of the simulator's truth
(closed bars), order books must equal the true book at the state they name. WebSocket: the
trades each SDK delivers must equal the simulator's trades for the period.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from decimal import Decimal

import pytest
from thirdparty_harness import TF_MS, TlsFrontDoor, running_sim_process

pytestmark = pytest.mark.timeout(120)

WS_SECONDS = 8.0


@pytest.fixture(scope="module")
def sim():
    with running_sim_process(seed=777) as s:
        yield s


@pytest.fixture(scope="module")
def tls(sim):
    door = TlsFrontDoor(sim).start()
    yield door
    door.stop()


def closed_truth_rows(
    sim, exchange: str, symbol: str, timeframe: str, first_open: int, last_open: int
) -> dict:
    rows = sim.truth_candle_rows(exchange, symbol, timeframe, first_open, last_open)
    return {r["open_time"]: r["row"] for r in rows if r["closed"]}


def assert_rows_match(sim, exchange: str, symbol: str, timeframe: str, rows: list[list], open_index=0) -> int:
    """Every closed row the SDK returned is exactly the exchange row of the true bar."""
    opens = [int(r[open_index]) for r in rows]
    truth = closed_truth_rows(sim, exchange, symbol, timeframe, min(opens), max(opens))
    compared = 0
    for row in rows:
        t = int(row[open_index])
        if t in truth:
            assert list(row) == truth[t], f"{exchange} {symbol} {timeframe} {t}: {row} != {truth[t]}"
            compared += 1
    assert compared >= len(rows) - 1, f"only {compared} of {len(rows)} rows are closed true bars"
    return compared


def binance_trade(event: dict) -> tuple:
    return (
        event["T"],
        str(event["t"]),
        Decimal(event["p"]),
        Decimal(event["q"]),
        "sell" if event["m"] else "buy",
    )


# ------------------------------------------------------------------------------ Binance


def test_binance_sdk_spot_rest_klines_and_depth(sim):
    sdk = pytest.importorskip("binance_sdk_spot.spot")
    from binance_common.configuration import ConfigurationRestAPI
    from binance_sdk_spot.rest_api.models import KlinesIntervalEnum

    client = sdk.Spot(config_rest_api=ConfigurationRestAPI(base_path=sim.rest_url("binance")))
    resp = client.rest_api.klines(symbol="BTCUSDT", interval=KlinesIntervalEnum.INTERVAL_1h, limit=48)
    assert resp.status == 200
    assert any(r.rateLimitType == "REQUEST_WEIGHT" and r.count > 0 for r in resp.rate_limits), (
        "no X-MBX-USED-WEIGHT"
    )
    rows = resp.data()
    assert len(rows) == 48
    assert_rows_match(sim, "binance", "btc", "1h", rows)

    book = client.rest_api.depth(symbol="ETHUSDT", limit=100).data()
    truth = sim.truth_book("binance", "eth", update_id=book.last_update_id, depth=100)
    assert [(Decimal(p), Decimal(q)) for p, q in book.bids] == truth["bids"]
    assert [(Decimal(p), Decimal(q)) for p, q in book.asks] == truth["asks"]


def test_binance_connector_rest_klines_and_depth(sim):
    spot = pytest.importorskip("binance.spot")
    client = spot.Spot(base_url=sim.rest_url("binance"))
    now = client.time()["serverTime"]
    tf = TF_MS["15m"]
    start = (now // tf - 300) * tf
    rows = client.klines("SOLUSDT", "15m", startTime=start, limit=200)
    assert len(rows) == 200 and rows[0][0] == start
    assert_rows_match(sim, "binance", "sol", "15m", rows)
    book = client.depth("BTCUSDT", limit=50)
    truth = sim.truth_book("binance", "btc", update_id=book["lastUpdateId"], depth=50)
    assert [(Decimal(p), Decimal(q)) for p, q in book["bids"]] == truth["bids"]
    assert [(Decimal(p), Decimal(q)) for p, q in book["asks"]] == truth["asks"]


async def test_binance_sdk_spot_websocket_trade_stream(sim):
    sdk = pytest.importorskip("binance_sdk_spot.spot")
    from binance_common.configuration import ConfigurationWebSocketStreams

    client = sdk.Spot(config_ws_streams=ConfigurationWebSocketStreams(stream_url=sim.ws_url("binance")))
    connection = await client.websocket_streams.create_connection()
    events: list = []
    try:
        stream = await connection.trade(symbol="btcusdt")
        stream.on("message", events.append)
        await asyncio.sleep(WS_SECONDS)
        await stream.unsubscribe()
    finally:
        await connection.close_connection(close_session=True)
    assert events, "no trade event delivered"
    got = []
    for ev in events:
        d = ev.model_dump() if hasattr(ev, "model_dump") else ev
        assert d["e"] == "trade" and d["s"] == "BTCUSDT"
        got.append(binance_trade(d))
    sim.assert_trades_equal_truth("binance", "btc", got)


def test_binance_connector_websocket_trade_stream(sim):
    ws_mod = pytest.importorskip("binance.websocket.spot.websocket_stream")
    messages: list[str] = []
    client = ws_mod.SpotWebsocketStreamClient(
        stream_url=sim.ws_url("binance"), on_message=lambda _ws, msg: messages.append(msg)
    )
    try:
        client.trade(symbol="btcusdt", id=7)
        time.sleep(WS_SECONDS)
    finally:
        client.stop()
    frames = [json.loads(m) for m in messages]
    assert frames and frames[0] == {"result": None, "id": 7}, frames[:1]
    events = frames[1:]
    assert events and all(e["e"] == "trade" and e["s"] == "BTCUSDT" for e in events)
    sim.assert_trades_equal_truth("binance", "btc", [binance_trade(e) for e in events])


# ------------------------------------------------------------------------------ Bybit


def pybit_http(sim):
    unified = pytest.importorskip("pybit.unified_trading")
    session = unified.HTTP(testnet=False)
    session.endpoint = sim.rest_url("bybit")
    return session


def test_pybit_http_kline_orderbook_instruments(sim):
    session = pybit_http(sim)
    server = session.get_server_time()
    assert server["retCode"] == 0 and int(server["result"]["timeSecond"]) > 0
    info = session.get_instruments_info(category="spot", symbol="XRPUSDT")
    (inst,) = info["result"]["list"]
    assert inst["symbol"] == "XRPUSDT" and inst["status"] == "Trading"
    kl = session.get_kline(category="spot", symbol="BTCUSDT", interval="60", limit=48)
    assert kl["retCode"] == 0 and kl["result"]["symbol"] == "BTCUSDT" and kl["result"]["category"] == "spot"
    rows = kl["result"]["list"]
    assert len(rows) == 48 and [int(r[0]) for r in rows] == sorted((int(r[0]) for r in rows), reverse=True)
    assert_rows_match(sim, "bybit", "btc", "1h", rows)
    ob = session.get_orderbook(category="spot", symbol="ETHUSDT", limit=50)["result"]
    truth = sim.truth_book("bybit", "eth", update_id=ob["seq"], depth=50)
    assert [(Decimal(p), Decimal(q)) for p, q in ob["b"]] == truth["bids"]
    assert [(Decimal(p), Decimal(q)) for p, q in ob["a"]] == truth["asks"]


def test_pybit_websocket_trades_and_orderbook(sim, monkeypatch):
    unified = pytest.importorskip("pybit.unified_trading")
    monkeypatch.setattr(unified, "PUBLIC_WSS", sim.ws_url("bybit") + "/v5/public/{CHANNEL_TYPE}")
    trades: list = []
    books: list = []
    lock = threading.Lock()

    def on_trade(msg):
        with lock:
            trades.extend(msg["data"])

    def on_book(msg):
        data = msg["data"]
        with lock:  # pybit hands out its merged book: keep a copy with the ids it was built from
            books.append((data["seq"], data["u"], [list(b) for b in data["b"]], [list(a) for a in data["a"]]))

    # pybit stores a subscription only after sending it, and its reader thread looks the ack
    # up by req_id: an ack faster than that (loopback, zero latency) kills the stream with a
    # KeyError. The real exchange is tens of ms away; give the simulator the same latency.
    sim.control_post("/faults/bybit", {"latency_ms": 20})
    ws = unified.WebSocket(testnet=False, channel_type="spot")
    try:
        ws.trade_stream(symbol="BTCUSDT", callback=on_trade)
        ws.orderbook_stream(depth=50, symbol="SOLUSDT", callback=on_book)
        time.sleep(WS_SECONDS)
    finally:
        sim.control_post("/faults/bybit", {"latency_ms": 0})
        closer = threading.Thread(target=ws.exit, daemon=True)  # exit() can wait forever on a dead socket
        closer.start()
        closer.join(10)
    with lock:
        got = [(t["T"], t["i"], Decimal(t["p"]), Decimal(t["v"]), t["S"].lower()) for t in trades]
        samples = list(books)
    assert all(t["s"] == "BTCUSDT" for t in trades)
    sim.assert_trades_equal_truth("bybit", "btc", got)
    assert len(samples) >= 10
    us = [u for _, u, _, _ in samples]
    assert us == list(range(us[0], us[0] + len(us))), "orderbook u is not consecutive"
    for seq, _, bids, asks in samples[-5:]:
        truth = sim.truth_book("bybit", "sol", update_id=seq, depth=50)
        assert sorted(((Decimal(p), Decimal(q)) for p, q in bids), reverse=True) == truth["bids"]
        assert sorted((Decimal(p), Decimal(q)) for p, q in asks) == truth["asks"]


# ------------------------------------------------------------------------------ OKX


def okx_market_api(sim):
    market = pytest.importorskip("okx.MarketData")
    return market.MarketAPI(flag="0", domain=sim.rest_url("okx"))


def test_python_okx_candles_history_and_books(sim):
    api = okx_market_api(sim)
    res = api.get_candlesticks(instId="BTC-USDT", bar="1H", limit="48")
    assert res["code"] == "0"
    rows = res["data"]
    assert len(rows) == 48 and rows[0][8] == "0" and all(r[8] == "1" for r in rows[1:])
    assert_rows_match(sim, "okx", "btc", "1h", rows)

    now = sim.now_ms()
    tf = TF_MS["1m"]
    after = (now // tf - 2000) * tf  # older than the 1440 bars /market/candles serves
    hist = api.get_history_candlesticks(instId="ETH-USDT", bar="1m", after=str(after), limit="100")
    assert hist["code"] == "0"
    rows = hist["data"]
    assert len(rows) == 100 and int(rows[0][0]) == after - tf and int(rows[-1][0]) == after - 100 * tf
    assert assert_rows_match(sim, "okx", "eth", "1m", rows) == 100

    before = sim.truth_book("okx", "sol", depth=1)["update_id"]
    book = api.get_orderbook(instId="SOL-USDT", sz="50")["data"][0]
    last = sim.truth_book("okx", "sol", depth=1)["update_id"]
    bids = [(Decimal(level[0]), Decimal(level[1])) for level in book["bids"]]
    asks = [(Decimal(level[0]), Decimal(level[1])) for level in book["asks"]]
    assert len(bids) == 50 and len(asks) == 50
    assert sim.book_state_between("okx", "sol", bids, asks, before, last) is not None


async def test_python_okx_websocket_trades(sim, tls, monkeypatch):
    ws_mod = pytest.importorskip("okx.websocket.WsPublicAsync")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))  # trust the front door's CA, as a user would
    frames: list[dict] = []
    client = ws_mod.WsPublicAsync(url=tls.wss_url("okx") + "/ws/v5/public")
    await client.start()
    assert client.websocket is not None, "python-okx could not connect"
    try:
        await client.subscribe(
            [{"channel": "trades", "instId": "BTC-USDT"}], callback=lambda m: frames.append(json.loads(m))
        )
        await asyncio.sleep(WS_SECONDS)
    finally:
        await client.stop()
    acks = [f for f in frames if f.get("event") == "subscribe"]
    assert acks and acks[0]["arg"] == {"channel": "trades", "instId": "BTC-USDT"}
    assert not [f for f in frames if f.get("event") == "error"]
    data = [d for f in frames if "data" in f for d in f["data"]]
    got = [(int(d["ts"]), d["tradeId"], Decimal(d["px"]), Decimal(d["sz"]), d["side"]) for d in data]
    assert all(d["instId"] == "BTC-USDT" for d in data)
    sim.assert_trades_equal_truth("okx", "btc", got)
