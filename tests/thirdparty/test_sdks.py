"""The exchanges' own Python SDKs against `p9 sim`, configured the one documented way each is
pointed at another host:

* Binance: ``binance-sdk-spot`` (the current official SDK; ``ConfigurationRestAPI(base_path=)``,
  ``ConfigurationWebSocketStreams(stream_url=)``) and the older ``binance-connector``
  (``Spot(base_url=)``, ``SpotWebsocketStreamClient(stream_url=)``);
* Bybit: ``pybit`` (``HTTP(...).endpoint``; the WebSocket URL template
  ``pybit.unified_trading.PUBLIC_WSS``: its domain/tld arguments cannot carry a port);
* OKX: ``python-okx`` (``MarketAPI(domain=)``; ``WsPublicAsync(url=)`` over ``wss://`` on the
  simulator's own TLS, ``p9 sim --tls``, the CA trusted through ``SSL_CERT_FILE``, because it
  always passes an ``ssl=`` context that ``websockets`` refuses for ``ws://``).

REST: klines / candles rows must be byte-for-byte the exchange rows of the simulator's truth
(closed bars), order books must equal the true book at the state they name. WebSocket: the
trades each SDK delivers (BTC and ETH) must equal the simulator's trades over a window during
which it was surely subscribed. The simulator runs at :data:`SPEED` x: the market model has
quiet spells of up to a minute, so a few wall seconds cover about half a simulated minute.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import time
from decimal import Decimal

import pytest
from thirdparty_harness import TF_MS, running_sim_process

pytestmark = pytest.mark.timeout(120)

WS_SECONDS = 3.0  # wall seconds each WebSocket client listens inside its window (12 s of sim time)
SPEED = 4.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with running_sim_process(seed=777, speed=SPEED, tls=True, workdir=tmp_path_factory.mktemp("sim")) as s:
        yield s


def assert_rows_match(
    sim, exchange: str, symbol: str, timeframe: str, rows: list[list], closed_by: int
) -> int:
    """Every row of a bar that had closed by ``closed_by`` (the simulator's time read just
    before the SDK's call) is exactly the exchange row of the true bar. Returns how many."""
    tf = TF_MS[timeframe]
    opens = [int(r[0]) for r in rows]
    truth = {
        r["open_time"]: r["row"]
        for r in sim.truth_candle_rows(exchange, symbol, timeframe, min(opens), max(opens))
    }
    compared = 0
    for row in rows:
        t = int(row[0])
        if t + tf <= closed_by:
            assert t in truth, f"{exchange} {symbol} {timeframe} {t}: no such true bar"
            assert list(row) == truth[t], f"{exchange} {symbol} {timeframe} {t}: {row} != {truth[t]}"
            compared += 1
    assert compared >= len(rows) - 1, f"only {compared} of {len(rows)} rows are closed bars"
    return compared


def assert_window_trades(sim, exchange: str, got: dict[str, list], window: tuple[int, int]) -> None:
    """Per symbol, the trades received inside ``window`` are exactly the true trades; at least
    one trade was compared overall."""
    compared = sum(
        sim.assert_trades_equal_truth(exchange, sym, trades, *window) for sym, trades in got.items()
    )
    assert compared >= 1, f"{exchange}: no trade inside the window {window}"


def listen(sim, seconds: float) -> tuple[int, int]:
    """Sleep ``seconds`` (wall) after a 1 s settling time; the simulated-time window between,
    with 0.5 s for frames in flight at the end."""
    time.sleep(1.0)
    start = sim.now_ms()
    time.sleep(seconds)
    end = sim.now_ms()
    time.sleep(0.5)
    return start, end


async def alisten(sim, seconds: float) -> tuple[int, int]:
    await asyncio.sleep(1.0)
    start = await asyncio.to_thread(sim.now_ms)
    await asyncio.sleep(seconds)
    end = await asyncio.to_thread(sim.now_ms)
    await asyncio.sleep(0.5)
    return start, end


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
    sdk = importlib.import_module("binance_sdk_spot.spot")
    from binance_common.configuration import ConfigurationRestAPI
    from binance_sdk_spot.rest_api.models import KlinesIntervalEnum

    client = sdk.Spot(config_rest_api=ConfigurationRestAPI(base_path=sim.rest_url("binance")))
    now = sim.now_ms()
    resp = client.rest_api.klines(symbol="BTCUSDT", interval=KlinesIntervalEnum.INTERVAL_1h, limit=48)
    assert resp.status == 200
    assert any(r.rateLimitType == "REQUEST_WEIGHT" and r.count > 0 for r in resp.rate_limits), (
        "no X-MBX-USED-WEIGHT"
    )
    rows = resp.data()
    assert len(rows) == 48
    assert_rows_match(sim, "binance", "btc", "1h", rows, now)

    book = client.rest_api.depth(symbol="ETHUSDT", limit=100).data()
    truth = sim.truth_book("binance", "eth", update_id=book.last_update_id, depth=100)
    assert [(Decimal(p), Decimal(q)) for p, q in book.bids] == truth["bids"]
    assert [(Decimal(p), Decimal(q)) for p, q in book.asks] == truth["asks"]


def test_binance_connector_rest_klines_and_depth(sim):
    spot = importlib.import_module("binance.spot")
    client = spot.Spot(base_url=sim.rest_url("binance"))
    now = client.time()["serverTime"]
    tf = TF_MS["15m"]
    start = (now // tf - 300) * tf
    rows = client.klines("SOLUSDT", "15m", startTime=start, limit=200)
    assert len(rows) == 200 and rows[0][0] == start
    assert_rows_match(sim, "binance", "sol", "15m", rows, now)
    book = client.depth("BTCUSDT", limit=50)
    truth = sim.truth_book("binance", "btc", update_id=book["lastUpdateId"], depth=50)
    assert [(Decimal(p), Decimal(q)) for p, q in book["bids"]] == truth["bids"]
    assert [(Decimal(p), Decimal(q)) for p, q in book["asks"]] == truth["asks"]


async def test_binance_sdk_spot_websocket_trade_stream(sim):
    sdk = importlib.import_module("binance_sdk_spot.spot")
    from binance_common.configuration import ConfigurationWebSocketStreams

    client = sdk.Spot(config_ws_streams=ConfigurationWebSocketStreams(stream_url=sim.ws_url("binance")))
    connection = await client.websocket_streams.create_connection()
    events: list = []
    try:
        streams = [await connection.trade(symbol=s) for s in ("btcusdt", "ethusdt")]
        for stream in streams:
            stream.on("message", events.append)
        window = await alisten(sim, WS_SECONDS)
        for stream in streams:
            await stream.unsubscribe()
    finally:
        await connection.close_connection(close_session=True)
    got: dict[str, list] = {"btc": [], "eth": []}
    for ev in events:
        d = ev.model_dump() if hasattr(ev, "model_dump") else ev
        assert d["e"] == "trade" and d["s"] in ("BTCUSDT", "ETHUSDT")
        got[d["s"][:3].lower()].append(binance_trade(d))
    assert_window_trades(sim, "binance", got, window)


def test_binance_connector_websocket_trade_stream(sim):
    ws_mod = importlib.import_module("binance.websocket.spot.websocket_stream")
    messages: list[str] = []
    client = ws_mod.SpotWebsocketStreamClient(
        stream_url=sim.ws_url("binance"), on_message=lambda _ws, msg: messages.append(msg)
    )
    try:
        client.trade(symbol="btcusdt", id=7)
        client.trade(symbol="ethusdt", id=8)
        window = listen(sim, WS_SECONDS)
    finally:
        client.stop()
    frames = [json.loads(m) for m in messages]
    acks = [f for f in frames if "result" in f]
    assert acks == [{"result": None, "id": 7}, {"result": None, "id": 8}], acks
    got: dict[str, list] = {"btc": [], "eth": []}
    for e in frames:
        if "result" not in e:
            assert e["e"] == "trade" and e["s"] in ("BTCUSDT", "ETHUSDT")
            got[e["s"][:3].lower()].append(binance_trade(e))
    assert_window_trades(sim, "binance", got, window)


# ------------------------------------------------------------------------------ Bybit


def pybit_http(sim):
    unified = importlib.import_module("pybit.unified_trading")
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
    now = sim.now_ms()
    kl = session.get_kline(category="spot", symbol="BTCUSDT", interval="60", limit=48)
    assert kl["retCode"] == 0 and kl["result"]["symbol"] == "BTCUSDT" and kl["result"]["category"] == "spot"
    rows = kl["result"]["list"]
    assert len(rows) == 48 and [int(r[0]) for r in rows] == sorted((int(r[0]) for r in rows), reverse=True)
    assert_rows_match(sim, "bybit", "btc", "1h", rows, now)
    ob = session.get_orderbook(category="spot", symbol="ETHUSDT", limit=50)["result"]
    truth = sim.truth_book("bybit", "eth", update_id=ob["seq"], depth=50)
    assert [(Decimal(p), Decimal(q)) for p, q in ob["b"]] == truth["bids"]
    assert [(Decimal(p), Decimal(q)) for p, q in ob["a"]] == truth["asks"]


def test_pybit_websocket_trades_and_orderbook(sim, monkeypatch):
    unified = importlib.import_module("pybit.unified_trading")
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
    # KeyError. The simulator's default reply delay (ws_reply_latency_ms, a network round
    # trip) removes the race as the real exchange's distance does: pybit runs on defaults.
    faults = sim.control("/state")["exchanges"]["bybit"]["faults"]
    assert faults["latency_ms"] == 0 and faults["ws_reply_latency_ms"] > 0
    ws = unified.WebSocket(testnet=False, channel_type="spot")
    try:
        ws.trade_stream(symbol=["BTCUSDT", "ETHUSDT"], callback=on_trade)
        ws.orderbook_stream(depth=50, symbol="SOLUSDT", callback=on_book)
        window = listen(sim, WS_SECONDS)
    finally:
        closer = threading.Thread(target=ws.exit, daemon=True)  # exit() can wait forever on a dead socket
        closer.start()
        closer.join(10)
    got: dict[str, list] = {"btc": [], "eth": []}
    with lock:
        for t in trades:
            assert t["s"] in ("BTCUSDT", "ETHUSDT")
            got[t["s"][:3].lower()].append((t["T"], t["i"], Decimal(t["p"]), Decimal(t["v"]), t["S"].lower()))
        samples = list(books)
    assert_window_trades(sim, "bybit", got, window)
    assert len(samples) >= 10
    us = [u for _, u, _, _ in samples]
    assert us == list(range(us[0], us[0] + len(us))), "orderbook u is not consecutive"
    for seq, _, bids, asks in samples[-5:]:
        truth = sim.truth_book("bybit", "sol", update_id=seq, depth=50)
        assert sorted(((Decimal(p), Decimal(q)) for p, q in bids), reverse=True) == truth["bids"]
        assert sorted((Decimal(p), Decimal(q)) for p, q in asks) == truth["asks"]


# ------------------------------------------------------------------------------ OKX


def okx_market_api(sim):
    market = importlib.import_module("okx.MarketData")
    return market.MarketAPI(flag="0", domain=sim.rest_url("okx"))


def test_python_okx_candles_history_and_books(sim):
    api = okx_market_api(sim)
    now = sim.now_ms()
    res = api.get_candlesticks(instId="BTC-USDT", bar="1H", limit="48")
    assert res["code"] == "0"
    rows = res["data"]
    assert len(rows) == 48 and rows[0][8] == "0" and all(r[8] == "1" for r in rows[1:])
    assert_rows_match(sim, "okx", "btc", "1h", rows, now)

    now = sim.now_ms()
    tf = TF_MS["1m"]
    after = (now // tf - 2000) * tf  # older than the 1440 bars /market/candles serves
    hist = api.get_history_candlesticks(instId="ETH-USDT", bar="1m", after=str(after), limit="100")
    assert hist["code"] == "0"
    rows = hist["data"]
    assert len(rows) == 100 and int(rows[0][0]) == after - tf and int(rows[-1][0]) == after - 100 * tf
    assert assert_rows_match(sim, "okx", "eth", "1m", rows, now) == 100

    before = sim.truth_book("okx", "sol", depth=1)["update_id"]
    book = api.get_orderbook(instId="SOL-USDT", sz="50")["data"][0]
    last = sim.truth_book("okx", "sol", depth=1)["update_id"]
    bids = [(Decimal(level[0]), Decimal(level[1])) for level in book["bids"]]
    asks = [(Decimal(level[0]), Decimal(level[1])) for level in book["asks"]]
    assert len(bids) == 50 and len(asks) == 50
    assert sim.book_state_between("okx", "sol", bids, asks, before, last) is not None


async def test_python_okx_websocket_trades(sim, monkeypatch):
    ws_mod = importlib.import_module("okx.websocket.WsPublicAsync")
    monkeypatch.setenv("SSL_CERT_FILE", str(sim.bundle_file))  # trust the simulator's CA, as a user would
    frames: list[dict] = []
    client = ws_mod.WsPublicAsync(url=sim.wss_url("okx") + "/ws/v5/public")
    await client.start()
    assert client.websocket is not None, "python-okx could not connect"
    try:
        args = [{"channel": "trades", "instId": "BTC-USDT"}, {"channel": "trades", "instId": "ETH-USDT"}]
        await client.subscribe(args, callback=lambda m: frames.append(json.loads(m)))
        window = await alisten(sim, WS_SECONDS)
    finally:
        await client.stop()
    acks = [f["arg"] for f in frames if f.get("event") == "subscribe"]
    assert acks == args, acks
    assert not [f for f in frames if f.get("event") == "error"]
    got: dict[str, list] = {"btc": [], "eth": []}
    for f in frames:
        for d in f.get("data", []):
            assert f["arg"]["instId"] == d["instId"] in ("BTC-USDT", "ETH-USDT")
            got[d["instId"][:3].lower()].append(
                (int(d["ts"]), d["tradeId"], Decimal(d["px"]), Decimal(d["sz"]), d["side"])
            )
    assert_window_trades(sim, "okx", got, window)
