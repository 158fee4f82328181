"""Bybit V5 spot public WebSocket of the simulator, with a real client on loopback."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from simutil import start_sim
from wsutil import (
    FIXTURES,
    apply_levels,
    assert_same_shape,
    assert_shape_extends,
    jsonl_frames,
    recv_json,
    recv_until,
    ticks,
    units,
)

from p9cli.sim import ws_bybit
from p9cli.sim.instruments import INSTRUMENTS

REC_200 = jsonl_frames(FIXTURES / "bybit" / "spot_ws_v5_orderbook200_publicTrade_2023-12-24.jsonl")
REC_50 = jsonl_frames(FIXTURES / "bybit" / "spot_ws_v5_orderbook50_snapshot_delta_2024-11-08.jsonl")
INST = INSTRUMENTS[("bybit", "btc")]


@pytest.fixture(scope="module")
def fast_sim():
    """A simulator at clock speed 20: the model's trades come in bursts with quiet spells of
    up to a minute, which pass in 3 s here."""
    thread, handle = start_sim(speed=20.0, warm_up=False)
    try:
        yield handle
    finally:
        thread.stop()


def spot_url(handle) -> str:
    return handle.ws_url("bybit") + "/v5/public/spot"


async def test_ack_and_pong_match_the_recording_and_docs(sim):
    async with websockets.connect(spot_url(sim)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]}))
        ack = await recv_json(ws)
        assert_same_shape(ack, REC_200[0])
        assert ack["success"] is True and ack["ret_msg"] == "subscribe" and ack["op"] == "subscribe"
        await ws.send(json.dumps({"req_id": "100001", "op": "ping"}))
        pong, _ = await recv_until(ws, lambda f: f.get("op") == "ping")
        assert pong == {"success": True, "ret_msg": "pong", "conn_id": ack["conn_id"], "op": "ping"}
        await ws.send(json.dumps({"req_id": "10001", "op": "subscribe", "args": ["orderbook.1.ETHUSDT"]}))
        ack2, _ = await recv_until(ws, lambda f: f.get("op") == "subscribe")
        assert list(ack2) == ["success", "ret_msg", "conn_id", "req_id", "op"]
        assert ack2["req_id"] == "10001" and ack2["conn_id"] == ack["conn_id"]
        await ws.send(json.dumps({"op": "unsubscribe", "args": ["orderbook.1.ETHUSDT"], "req_id": "u1"}))
        unack, _ = await recv_until(ws, lambda f: f.get("op") == "unsubscribe")
        assert unack["success"] is True and unack["req_id"] == "u1"


async def test_orderbook_frames_match_the_recordings(sim):
    async with websockets.connect(spot_url(sim)) as ws:
        await ws.send(
            json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT", "orderbook.200.BTCUSDT"]})
        )
        await recv_json(ws)
        want = {
            ("orderbook.50.BTCUSDT", "snapshot"): REC_50[0],
            ("orderbook.50.BTCUSDT", "delta"): REC_50[1],
            ("orderbook.200.BTCUSDT", "snapshot"): REC_200[1],
            ("orderbook.200.BTCUSDT", "delta"): REC_200[2],
        }
        seen = set()
        while seen != set(want):
            frame = await recv_json(ws)
            key = (frame["topic"], frame["type"])
            if key[1] == "delta" and not (frame["data"]["b"] and frame["data"]["a"]):
                continue  # compare level shapes on a delta with both sides
            assert_same_shape(frame, want[key])
            if key[1] == "snapshot":
                depth = int(frame["topic"].split(".")[1])
                assert len(frame["data"]["b"]) == len(frame["data"]["a"]) == depth
            seen.add(key)


async def test_public_trade_frames(fast_sim):
    async with websockets.connect(spot_url(fast_sim)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]}))
        await recv_json(ws)
        frame = await recv_json(ws, 30)
    ref = REC_200[4]
    assert list(frame) == list(ref) == ["topic", "ts", "type", "data"]
    assert frame["type"] == "snapshot" and frame["topic"] == "publicTrade.BTCUSDT"
    for item in frame["data"]:
        # the recorded spot fields in the recorded order, then the newer RPI and seq
        assert_shape_extends(item, ref["data"][0], ["RPI", "seq"])
        assert item["S"] in ("Buy", "Sell") and item["s"] == "BTCUSDT" and item["i"].isdigit()
        assert frame["ts"] >= item["T"]
    times = [t["T"] for t in frame["data"]]
    assert times == sorted(times)


async def test_orderbook_sequence_and_truth(sim):
    """Snapshot then deltas with u + 1 each; the client's 50-level book equals the top 50 of
    the true book at ``seq``."""
    async with websockets.connect(spot_url(sim)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}))
        await recv_json(ws)
        snap = await recv_json(ws)
        assert snap["type"] == "snapshot"
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        apply_levels(bids, snap["data"]["b"], INST.tick, INST.qty_unit)
        apply_levels(asks, snap["data"]["a"], INST.tick, INST.qty_unit)
        u, seq = snap["data"]["u"], snap["data"]["seq"]
        for _ in range(30):
            delta = await recv_json(ws)
            assert delta["type"] == "delta"
            assert delta["data"]["u"] == u + 1, "u grows by exactly one per message"
            assert delta["data"]["seq"] > seq and delta["cts"] <= delta["ts"]
            u, seq = delta["data"]["u"], delta["data"]["seq"]
            apply_levels(bids, delta["data"]["b"], INST.tick, INST.qty_unit)
            apply_levels(asks, delta["data"]["a"], INST.tick, INST.qty_unit)
            assert len(bids) == len(asks) == 50
    true_bids, true_asks = sim.thread.call(sim.sim.books[("bybit", "btc")].book_at, seq)
    assert sorted(bids.items(), reverse=True) == true_bids[:50]
    assert sorted(asks.items()) == true_asks[:50]


async def test_level1_sends_snapshots_only(sim):
    async with websockets.connect(spot_url(sim)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.1.BTCUSDT"]}))
        await recv_json(ws)
        last_u = None
        for _ in range(5):
            frame = await recv_json(ws)
            assert frame["type"] == "snapshot"
            assert len(frame["data"]["b"]) == len(frame["data"]["a"]) == 1
            if last_u is not None:
                assert frame["data"]["u"] in (last_u, last_u + 1)
            last_u = frame["data"]["u"]


async def test_level1_resends_the_same_snapshot_after_3s_unchanged(sim_factory):
    handle = sim_factory(speed=1e-9, warm_up=False)  # the clock stands still: the book never changes
    async with websockets.connect(spot_url(handle)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.1.BTCUSDT"]}))
        await recv_json(ws)
        first = await recv_json(ws)
        again = await recv_json(ws, 5)
        assert again["type"] == "snapshot"
        assert again["data"]["u"] == first["data"]["u"]
        assert again["data"]["b"] == first["data"]["b"] and again["data"]["a"] == first["data"]["a"]


async def test_subscription_errors_and_repeats(sim):
    async with websockets.connect(spot_url(sim)) as ws:
        args = [f"publicTrade.{s}USDT" for s in ("BTC", "ETH", "SOL", "BNB", "XRP")]
        args += [f"orderbook.50.{s}USDT" for s in ("BTC", "ETH", "SOL", "BNB", "XRP")]
        await ws.send(json.dumps({"op": "subscribe", "args": [*args, "orderbook.1.BTCUSDT"], "req_id": "a"}))
        reply, _ = await recv_until(ws, lambda f: f.get("op") == "subscribe")
        assert reply["success"] is False and reply["req_id"] == "a", "spot: at most 10 args"
        assert reply["ret_msg"] == "args size >10"
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.7.BTCUSDT"]}))
        reply, _ = await recv_until(ws, lambda f: f.get("op") == "subscribe")
        assert reply["success"] is False
        assert (
            reply["ret_msg"] == "error:handler not found,topic:orderbook.7.BTCUSDT"
        )  # sieblyio/bybit-api #561
        assert "req_id" not in reply
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.50.ETHUSDT"]}))
        reply, _ = await recv_until(ws, lambda f: f.get("op") == "subscribe")
        assert reply["success"] is True
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.50.ETHUSDT"]}))
        reply, before = await recv_until(ws, lambda f: f.get("op") == "subscribe")
        assert reply["success"] is False
        assert (
            reply["ret_msg"] == "error:already subscribed,topic:orderbook.50.ETHUSDT"
        )  # sieblyio/bybit-api #477
        # still exactly one stream: u grows by one per frame, one snapshot only
        frames = before + [await recv_json(ws) for _ in range(20)]
        book = [f for f in frames if f.get("topic") == "orderbook.50.ETHUSDT"]
        assert sum(f["type"] == "snapshot" for f in book) == 1
        us = [f["data"]["u"] for f in book]
        assert us == list(range(us[0], us[0] + len(us)))


async def test_a_request_with_a_repeated_topic_subscribes_nothing(fast_sim):
    """Real Bybit refuses the whole batch when one topic is already subscribed (ccxt #30284):
    the new topic in that batch streams nothing; a later request with only it works."""
    async with websockets.connect(spot_url(fast_sim)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"], "req_id": "1"}))
        reply, _ = await recv_until(ws, lambda f: f.get("op") == "subscribe")
        assert reply["success"] is True
        batch = ["orderbook.50.BTCUSDT", "orderbook.50.ETHUSDT"]
        await ws.send(json.dumps({"op": "subscribe", "args": batch, "req_id": "2"}))
        reply, _ = await recv_until(ws, lambda f: f.get("op") == "subscribe")
        assert reply == {
            "success": False,
            "ret_msg": "error:already subscribed,topic:orderbook.50.BTCUSDT",
            "conn_id": reply["conn_id"],
            "req_id": "2",
            "op": "subscribe",
        }
        # a subscription sends its snapshot right after the ack; BTC deltas come every 20 ms
        await asyncio.sleep(0.5)
        await ws.send(json.dumps({"op": "ping"}))
        _, between = await recv_until(ws, lambda f: f.get("op") == "ping")
        topics = {f.get("topic") for f in between}
        assert "orderbook.50.BTCUSDT" in topics and "orderbook.50.ETHUSDT" not in topics
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.50.ETHUSDT"], "req_id": "3"}))
        reply, _ = await recv_until(ws, lambda f: f.get("op") == "subscribe")
        assert reply["success"] is True and reply["req_id"] == "3"
        snapshot, _ = await recv_until(ws, lambda f: f.get("topic") == "orderbook.50.ETHUSDT")
        assert snapshot["type"] == "snapshot"


async def test_idle_connection_is_cut(sim_factory, monkeypatch):
    monkeypatch.setattr(ws_bybit.SETTINGS, "idle_seconds", 1.5)
    handle = sim_factory(warm_up=False)
    state = handle.sim.exchanges["bybit"]
    async with websockets.connect(spot_url(handle)) as ws:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await ws.wait_closed()
        assert 1.4 <= loop.time() - t0 <= 4.0
    assert state.counters["ws.keepalive_closes"] == 1
    # a connection that pings stays
    async with websockets.connect(spot_url(handle)) as ws:
        for _ in range(7):  # 2.1 s > idle_seconds
            await ws.send(json.dumps({"op": "ping"}))
            assert (await recv_json(ws))["ret_msg"] == "pong"
            await asyncio.sleep(0.3)
    assert state.counters["ws.keepalive_closes"] == 1


async def test_trades_equal_the_model(fast_sim):
    sim = fast_sim
    async with websockets.connect(spot_url(sim)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]}))
        await recv_json(ws)
        items = []
        while len(items) < 3:
            items += (await recv_json(ws, 30))["data"]
    inst = INST
    want = sim.thread.call(sim.sim.model.trades, "bybit", "btc", items[0]["T"], items[-1]["T"] + 1)
    assert [int(t["i"]) for t in items] == want.id.tolist()
    assert [ticks(t["p"], inst.tick) for t in items] == want.price.tolist()
    assert [units(t["v"], inst.qty_unit) for t in items] == want.qty.tolist()
    assert [t["S"] == "Buy" for t in items] == want.taker_buy.tolist()


async def test_push_intervals(fast_sim):
    """orderbook.50 pushes at most every 20 ms and orderbook.200 every 100 ms (simulated time)."""
    async with websockets.connect(spot_url(fast_sim)) as ws:
        await ws.send(
            json.dumps({"op": "subscribe", "args": ["orderbook.50.ETHUSDT", "orderbook.200.ETHUSDT"]})
        )
        await recv_json(ws)
        ts: dict[str, list[int]] = {"orderbook.50.ETHUSDT": [], "orderbook.200.ETHUSDT": []}
        while min(len(v) for v in ts.values()) < 6:
            frame = await recv_json(ws)
            if frame["type"] == "delta":
                ts[frame["topic"]].append(frame["ts"])
    for topic, interval in (("orderbook.50.ETHUSDT", 20), ("orderbook.200.ETHUSDT", 100)):
        gaps = [b - a for a, b in zip(ts[topic], ts[topic][1:], strict=False)]
        assert min(gaps) >= interval, (topic, gaps)


async def test_kline_topic_matches_rest(fast_sim):
    doc = {
        "topic": "kline.5.BTCUSDT",
        "data": [
            {
                "start": 1672324800000,
                "end": 1672325099999,
                "interval": "5",
                "open": "16649.5",
                "close": "16677",
                "high": "16677",
                "low": "16608",
                "volume": "2.081",
                "turnover": "34666.4005",
                "confirm": False,
                "timestamp": 1672324988882,
            }
        ],
        "ts": 1672324988882,
        "type": "snapshot",
    }
    async with websockets.connect(spot_url(fast_sim)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["kline.1.ETHUSDT"]}))
        await recv_json(ws)
        first = await recv_json(ws)
        assert_same_shape(first, doc)
        closed, _ = await recv_until(ws, lambda f: f["data"][0]["confirm"], timeout=15)
    bar = closed["data"][0]
    assert bar["end"] == bar["start"] + 59_999 and bar["interval"] == "1"
    async with httpx.AsyncClient() as client:
        r = await client.get(
            fast_sim.rest_url("bybit") + "/v5/market/kline",
            params={
                "category": "spot",
                "symbol": "ETHUSDT",
                "interval": "1",
                "start": bar["start"],
                "end": bar["start"],
            },
        )
    row = r.json()["result"]["list"][0]
    assert row == [
        str(bar["start"]),
        bar["open"],
        bar["high"],
        bar["low"],
        bar["close"],
        bar["volume"],
        bar["turnover"],
    ]
