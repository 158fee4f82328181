"""Binance Spot WebSocket streams of the simulator, with a real client on loopback."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import httpx
import pytest
import websockets
from simutil import start_sim
from wsutil import (
    FIXTURES,
    apply_levels,
    assert_same_shape,
    capture_frames,
    recv_json,
    recv_until,
    ticks,
    units,
)

from p9cli.sim import ws_binance
from p9cli.sim.instruments import INSTRUMENTS

INST = INSTRUMENTS[("binance", "btc")]
CAPTURE = (
    FIXTURES / "binance" / "spot_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-10-12.capture.txt"
)


@pytest.fixture(scope="module")
def fast_sim():
    """A simulator at clock speed 20: the model's trades come in bursts with quiet spells of
    up to a minute, which pass in 3 s here."""
    thread, handle = start_sim(speed=20.0, warm_up=False)
    try:
        yield handle
    finally:
        thread.stop()


def recorded(stream_suffix: str) -> dict:
    for frame in capture_frames(CAPTURE):
        if frame["stream"].endswith(stream_suffix) and (
            frame["data"].get("b") or stream_suffix != "@depth@100ms"
        ):
            return frame
    raise LookupError(stream_suffix)


async def test_combined_frames_match_the_recording(fast_sim):
    url = (
        fast_sim.ws_url("binance") + "/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade/btcusdt@bookTicker"
    )
    want = {
        "btcusdt@depth@100ms": recorded("@depth@100ms"),
        "btcusdt@aggTrade": recorded("@aggTrade"),
        "btcusdt@bookTicker": recorded("@bookTicker"),
    }
    seen: set[str] = set()
    async with websockets.connect(url) as ws:
        while seen != set(want):
            frame = await recv_json(ws, 30)
            ref = want[frame["stream"]]
            assert_same_shape(frame, ref)
            data = frame["data"]
            assert data.get("s", "BTCUSDT") == "BTCUSDT"
            if "e" in data and data["e"] == "depthUpdate":
                assert data["b"] or data["a"]
            seen.add(frame["stream"])


async def test_trade_and_partial_depth_shapes(fast_sim):
    """No recording has @trade or @depthN: compare with the documented payloads."""
    doc_trade = {
        "e": "trade",
        "E": 1672515782136,
        "s": "BNBBTC",
        "t": 12345,
        "p": "0.001",
        "q": "100",
        "T": 1672515782136,
        "m": True,
        "M": True,
    }
    doc_partial = {"lastUpdateId": 160, "bids": [["0.0024", "10"]], "asks": [["0.0026", "100"]]}
    async with websockets.connect(
        fast_sim.ws_url("binance") + "/ws/btcusdt@trade/btcusdt@depth5@100ms"
    ) as ws:
        got_trade = got_partial = None
        while got_trade is None or got_partial is None:
            frame = await recv_json(ws, 30)
            if "e" in frame:
                got_trade = frame
            else:
                got_partial = frame
    assert_same_shape(got_trade, doc_trade)
    assert got_trade["E"] >= got_trade["T"]
    assert_same_shape(got_partial, doc_partial)
    assert len(got_partial["bids"]) == len(got_partial["asks"]) == 5
    bids = [ticks(p, INST.tick) for p, _ in got_partial["bids"]]
    asks = [ticks(p, INST.tick) for p, _ in got_partial["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    # Binance pads prices and quantities to 8 decimals
    assert all(len(p.split(".")[1]) == 8 and len(q.split(".")[1]) == 8 for p, q in got_partial["bids"])


async def test_documented_sync_procedure_and_truth(sim):
    """Buffer diffs, take the REST snapshot, sync as documented, apply with zero gaps; the
    client book equals the simulator's true book at the last update id."""
    async with websockets.connect(sim.ws_url("binance") + "/ws/btcusdt@depth@100ms") as ws:
        buffered = [await recv_json(ws, 5)]
        async with httpx.AsyncClient() as client:
            r = await client.get(
                sim.rest_url("binance") + "/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5000}
            )
        assert r.status_code == 200, r.text
        snap = r.json()
        assert list(snap) == ["lastUpdateId", "bids", "asks"]
        last_id = snap["lastUpdateId"]
        assert last_id >= buffered[0]["U"] - 1, "the snapshot is never older than the stream"
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        apply_levels(bids, snap["bids"], INST.tick, INST.qty_unit)
        apply_levels(asks, snap["asks"], INST.tick, INST.qty_unit)
        book_id = last_id
        applied = 0
        synced = False
        while applied < 25:
            event = buffered.pop(0) if buffered else await recv_json(ws, 5)
            if event["u"] <= book_id:
                continue
            if not synced:
                assert event["U"] <= book_id + 1 <= event["u"], (event["U"], event["u"], book_id)
                synced = True
            else:
                assert event["U"] == book_id + 1, "gap in the diff stream"
            apply_levels(bids, event["b"], INST.tick, INST.qty_unit)
            apply_levels(asks, event["a"], INST.tick, INST.qty_unit)
            book_id = event["u"]
            applied += 1
            assert max(bids) < min(asks)
    engine = sim.sim.books[("binance", "btc")]
    true_bids, true_asks = sim.thread.call(engine.book_at, book_id)
    assert sorted(bids.items(), reverse=True) == true_bids
    assert sorted(asks.items()) == true_asks


async def test_control_messages(sim):
    async with websockets.connect(sim.ws_url("binance") + "/ws") as ws:
        await asyncio.sleep(0.25)  # at most 5 incoming messages a second
        await ws.send(
            json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "ethusdt@depth"], "id": 1})
        )
        assert await recv_json(ws) == {"result": None, "id": 1}
        await asyncio.sleep(0.25)  # at most 5 incoming messages a second
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": "ab3"}))
        reply, _ = await recv_until(ws, lambda f: f.get("id") == "ab3")
        assert reply == {"result": ["btcusdt@aggTrade", "ethusdt@depth"], "id": "ab3"}
        await asyncio.sleep(0.25)  # at most 5 incoming messages a second
        await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["ethusdt@depth"], "id": 312}))
        reply, _ = await recv_until(ws, lambda f: f.get("id") == 312)
        assert reply == {"result": None, "id": 312}
        await asyncio.sleep(0.25)  # at most 5 incoming messages a second
        await ws.send(json.dumps({"method": "GET_PROPERTY", "params": ["combined"], "id": 2}))
        reply, _ = await recv_until(ws, lambda f: f.get("id") == 2)
        assert reply == {"result": False, "id": 2}
        await asyncio.sleep(0.25)  # at most 5 incoming messages a second
        await ws.send(json.dumps({"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}))
        reply, _ = await recv_until(ws, lambda f: f.get("id") == 5)
        assert reply == {"result": None, "id": 5}
        await asyncio.sleep(0.25)  # at most 5 incoming messages a second
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 6}))
        _, before = await recv_until(ws, lambda f: f.get("id") == 6)
        # after SET_PROPERTY combined, frames are wrapped
        frame, _ = await recv_until(ws, lambda f: "stream" in f)
        assert list(frame) == ["stream", "data"] and frame["stream"] in (
            "btcusdt@aggTrade",
            "btcusdt@bookTicker",
        )
        await asyncio.sleep(0.25)  # at most 5 incoming messages a second
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@nonsense"], "id": 7}))
        reply, _ = await recv_until(ws, lambda f: f.get("id") == 7)
        assert reply == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 7}
        await asyncio.sleep(0.25)  # at most 5 incoming messages a second
        await ws.send("{not json")
        reply, _ = await recv_until(ws, lambda f: "error" in f)
        assert reply["error"]["code"] == 3 and reply["error"]["msg"].startswith("Invalid JSON")
        await asyncio.sleep(0.25)  # at most 5 incoming messages a second
        await ws.send(json.dumps({"method": "PUBLISH", "id": 8}))
        reply, _ = await recv_until(ws, lambda f: f.get("id") == 8)
        assert reply["error"]["code"] == 2 and "unknown variant" in reply["error"]["msg"]


async def test_repeated_subscription_sends_no_duplicates(sim):
    async with websockets.connect(sim.ws_url("binance") + "/ws/btcusdt@depth@100ms") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 1}))
        await recv_until(ws, lambda f: f.get("id") == 1)
        last_u = None
        for _ in range(15):
            event = await recv_json(ws)
            if last_u is not None:
                assert event["U"] == last_u + 1, "one copy of each event, no gaps"
            last_u = event["u"]


async def test_trades_equal_model_and_close_into_the_rest_candle(fast_sim):
    """At clock speed 20 a minute passes in 3 s: the trades of a whole minute received over WS
    are exactly the model's, and they aggregate to the REST 1m candle once it has closed."""
    handle = fast_sim
    trades = []
    async with websockets.connect(handle.ws_url("binance") + "/ws/ethusdt@trade") as ws:
        first = await recv_json(ws, 5)
        trades.append(first)
        minute = (first["T"] // 60_000 + 1) * 60_000  # the first minute we see from its start
        while trades[-1]["T"] < minute + 60_000:
            trades.append(await recv_json(ws, 5))
    ids = [t["t"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "consecutive trade ids, nothing lost"
    model = handle.sim.model
    lo, hi = trades[0]["T"], trades[-1]["T"]
    # more trades may share the last millisecond (same-ms fills) and were not read: compare
    # every trade before it (the first one read opens its millisecond: a tick sends [a, now])
    trades = [t for t in trades if t["T"] < hi]
    ids = [t["t"] for t in trades]
    want = handle.thread.call(model.trades, "binance", "eth", lo, hi)
    inst = INSTRUMENTS[("binance", "eth")]
    assert ids == want.id.tolist()
    assert [t["T"] for t in trades] == want.time.tolist()
    assert [ticks(t["p"], inst.tick) for t in trades] == want.price.tolist()
    assert [units(t["q"], inst.qty_unit) for t in trades] == want.qty.tolist()
    assert [not t["m"] for t in trades] == want.taker_buy.tolist()
    feed = handle.sim.feed
    assert handle.thread.call(feed.trades_were_sent, "binance", "eth", lo, hi + 1)
    assert not handle.thread.call(feed.trades_were_sent, "binance", "eth", lo - 3_600_000, hi + 1)
    in_minute = [t for t in trades if minute <= t["T"] < minute + 60_000]
    async with httpx.AsyncClient() as client:
        r = await client.get(
            handle.rest_url("binance") + "/api/v3/klines",
            params={"symbol": "ETHUSDT", "interval": "1m", "startTime": minute, "limit": 1},
        )
    row = r.json()[0]
    assert row[0] == minute
    prices = [ticks(t["p"], inst.tick) for t in in_minute]
    assert ticks(row[1], inst.tick) == prices[0]
    assert ticks(row[2], inst.tick) == max(prices)
    assert ticks(row[3], inst.tick) == min(prices)
    assert ticks(row[4], inst.tick) == prices[-1]
    assert units(row[5], inst.qty_unit) == sum(units(t["q"], inst.qty_unit) for t in in_minute)
    assert row[8] == len(in_minute)


async def test_server_pings_and_closes_without_pong(sim_factory, monkeypatch):
    monkeypatch.setattr(ws_binance.SETTINGS, "ping_interval", 0.3)
    monkeypatch.setattr(ws_binance.SETTINGS, "pong_timeout", 1.5)
    sim = sim_factory(warm_up=False)
    state = sim.sim.exchanges["binance"]
    before = state.counters["ws.keepalive_closes"]
    # a client that answers pings (websockets does, in the background) stays connected
    async with websockets.connect(sim.ws_url("binance") + "/ws") as good:
        await asyncio.sleep(2.0)
        await good.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        assert await recv_json(good) == {"result": [], "id": 1}
    assert state.counters["ws.keepalive_closes"] == before
    # a client that never answers is closed after the pong timeout
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(sim.ws_url("binance") + "/ws", autoping=False) as bad,
    ):
        pings = 0
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while True:
            msg = await asyncio.wait_for(bad.receive(), 5)
            if msg.type == aiohttp.WSMsgType.PING:
                pings += 1
                assert msg.data, "the ping carries a payload"
                continue
            break
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert pings >= 2
        assert 1.4 <= loop.time() - t0 <= 4.0
    assert state.counters["ws.keepalive_closes"] == before + 1


async def test_more_than_five_messages_a_second_closes(sim):
    async with websockets.connect(sim.ws_url("binance") + "/ws") as ws:
        for i in range(7):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        with pytest.raises(websockets.ConnectionClosed) as info:
            for _ in range(20):
                await recv_json(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_stream_cap(sim, monkeypatch):
    monkeypatch.setattr(ws_binance.SETTINGS, "max_streams", 3)
    async with websockets.connect(sim.ws_url("binance") + "/ws") as ws:
        await ws.send(
            json.dumps(
                {
                    "method": "SUBSCRIBE",
                    "params": ["btcusdt@trade", "ethusdt@trade", "solusdt@trade"],
                    "id": 1,
                }
            )
        )
        assert (await recv_until(ws, lambda f: f.get("id") == 1))[0] == {"result": None, "id": 1}
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["xrpusdt@trade"], "id": 2}))
        reply, _ = await recv_until(ws, lambda f: f.get("id") == 2)
        assert reply == {"error": {"code": 4, "msg": "Too many subscriptions"}, "id": 2}


async def test_clock_jump_keeps_streams_consistent(sim_factory):
    """The control API can move the clock on by an hour: diffs stay gap-free and at most a
    minute of trades is sent in one burst."""
    handle = sim_factory(speed=20.0, warm_up=False)
    url = handle.ws_url("binance") + "/stream?streams=btcusdt@trade/btcusdt@depth@100ms"
    # the jump sends a burst; an unbounded client queue keeps the closing handshake quick
    async with websockets.connect(url, max_queue=None) as ws:
        last_u = None
        for _ in range(5):
            frame, _ = await recv_until(ws, lambda f: f["stream"].endswith("depth@100ms"))
            if last_u is not None:
                assert frame["data"]["U"] == last_u + 1
            last_u = frame["data"]["u"]
        jumped_to = handle.thread.call(handle.sim.clock.advance, 3_600_000)
        trades_after = []
        for _ in range(40):
            frame = await recv_json(ws, 10)
            data = frame["data"]
            if data["e"] == "depthUpdate":
                assert data["U"] == last_u + 1, "no gap across the jump"
                last_u = data["u"]
            elif data["T"] >= jumped_to - 3_600_000:
                trades_after.append(data["T"])
    assert all(t >= jumped_to - 61_000 for t in trades_after), "no hour-long burst of old trades"


async def test_depth_cadences(fast_sim):
    """@depth diffs every 1000 ms, @depth@100ms every 100 ms, @depth10 every 1000 ms (simulated
    time; clock speed 20 here, so a feed tick spans 200 ms)."""
    streams = "ethusdt@depth/ethusdt@depth@100ms/ethusdt@depth10@1000ms"
    async with websockets.connect(fast_sim.ws_url("binance") + f"/stream?streams={streams}") as ws:
        times: dict[str, list[int]] = {
            "ethusdt@depth": [],
            "ethusdt@depth@100ms": [],
            "ethusdt@depth10@1000ms": [],
        }
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while min(len(v) for v in times.values()) < 4 and loop.time() < deadline:
            frame = await recv_json(ws)
            data = frame["data"]
            times[frame["stream"]].append(data.get("E") or fast_sim.sim.clock.now_ms())
            if frame["stream"] == "ethusdt@depth10@1000ms":
                assert len(data["bids"]) == len(data["asks"]) == 10
    slow = [b - a for a, b in zip(times["ethusdt@depth"], times["ethusdt@depth"][1:], strict=False)]
    fast = [
        b - a for a, b in zip(times["ethusdt@depth@100ms"], times["ethusdt@depth@100ms"][1:], strict=False)
    ]
    assert slow and min(slow) >= 1000
    # the median, not the max: at clock speed 20 a host stall of 1 s wall skips 20 s of sim time
    assert fast and min(fast) >= 100 and sorted(fast)[len(fast) // 2] < 1000


async def test_kline_stream_matches_recording_and_rest(fast_sim):
    """Forming bars every 2 s, the closed bar (x true) at rollover, equal to /api/v3/klines."""
    ref = recorded("@kline_1m")
    inst = INSTRUMENTS[("binance", "eth")]
    async with websockets.connect(fast_sim.ws_url("binance") + "/stream?streams=ethusdt@kline_1m") as ws:
        first = await recv_json(ws, 10)
        assert_same_shape(first, ref)
        closed, before = await recv_until(ws, lambda f: f["data"]["k"]["x"], timeout=15)
    k = closed["data"]["k"]
    assert k["T"] == k["t"] + 59_999 and k["i"] == "1m" and k["s"] == "ETHUSDT"
    forming = [f["data"]["k"] for f in before if f["data"]["k"]["t"] == k["t"]]
    assert all(not f["x"] for f in forming)
    for a, b in zip(forming, forming[1:], strict=False):
        assert b["n"] >= a["n"], "a forming bar only grows"
    async with httpx.AsyncClient() as client:
        r = await client.get(
            fast_sim.rest_url("binance") + "/api/v3/klines",
            params={"symbol": "ETHUSDT", "interval": "1m", "startTime": k["t"], "limit": 1},
        )
    row = r.json()[0]
    assert [row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10]] == [
        k["t"],
        k["o"],
        k["h"],
        k["l"],
        k["c"],
        k["v"],
        k["T"],
        k["q"],
        k["n"],
        k["V"],
        k["Q"],
    ]
    if k["n"]:
        want = fast_sim.thread.call(fast_sim.sim.model.trades, "binance", "eth", k["t"], k["T"] + 1)
        assert (k["f"], k["L"]) == (int(want.id[0]), int(want.id[-1]))
        assert ticks(k["c"], inst.tick) == int(want.price[-1])


async def test_unknown_kline_interval_is_an_invalid_stream(sim):
    async with websockets.connect(sim.ws_url("binance") + "/ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@kline_7m"], "id": 1}))
        assert (await recv_json(ws))["error"]["code"] == 2
