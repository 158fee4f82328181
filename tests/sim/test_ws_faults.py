"""Every WebSocket fault of the simulator is observable by a real client and counted."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from wsutil import recv_json

from p9cli.sim import ws_okx
from p9cli.sim.instruments import INSTRUMENTS
from p9cli.sim.okx_checksum import okx_checksum
from p9cli.sim.server import build_simulator, parse_overrides
from p9cli.sim.state import FaultSettings


@pytest.fixture(autouse=True)
def _many_connections(monkeypatch):
    monkeypatch.setattr(ws_okx.SETTINGS, "max_new_connections_per_second", 1000)


def counters(handle, exchange):
    return handle.sim.exchanges[exchange].counters


async def test_drop_after_n_frames(sim_factory):
    handle = sim_factory(warm_up=False, faults={"binance": {"ws_drop_every_messages": 5}})
    got = []
    async with websockets.connect(handle.ws_url("binance") + "/ws/btcusdt@depth@100ms") as ws:
        with pytest.raises(websockets.ConnectionClosedError) as info:
            while True:
                got.append(await asyncio.wait_for(ws.recv(), 5))
    assert len(got) == 5
    assert info.value.rcvd is None, "aborted: no close frame"
    assert counters(handle, "binance")["fault.ws_drop_every_messages"] == 1


async def test_drop_after_t_seconds(sim_factory):
    handle = sim_factory(warm_up=False, faults={"bybit": {"ws_drop_every_seconds": 1.0}})
    async with websockets.connect(handle.ws_url("bybit") + "/v5/public/spot") as ws:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}))
        with pytest.raises(websockets.ConnectionClosedError):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert 0.9 <= loop.time() - t0 <= 4.0
    assert counters(handle, "bybit")["fault.ws_drop_every_seconds"] == 1


async def test_stall_keeps_the_socket_open(sim_factory):
    handle = sim_factory(warm_up=False, faults={"bybit": {"ws_stall_after_messages": 3}})
    async with websockets.connect(handle.ws_url("bybit") + "/v5/public/spot") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}))
        frames = [await recv_json(ws) for _ in range(3)]
        assert frames[0]["op"] == "subscribe" and frames[1]["type"] == "snapshot"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.recv(), 1.5)
        # the socket is alive: a protocol ping is answered
        pong = await ws.ping()
        await asyncio.wait_for(pong, 2)
    assert counters(handle, "bybit")["fault.ws_stall_after_messages"] == 1, "once per connection"


async def test_malformed_every_nth_data_frame(sim_factory):
    handle = sim_factory(warm_up=False, faults={"okx": {"ws_malformed_every": 4}})
    async with websockets.connect(handle.ws_url("okx") + "/ws/v5/public") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
        ack = await recv_json(ws)  # control frames are never malformed
        assert ack["event"] == "subscribe"
        bad = []
        for i in range(1, 13):
            text = await asyncio.wait_for(ws.recv(), 5)
            try:
                json.loads(text)
            except json.JSONDecodeError:
                bad.append(i)
                assert text.startswith('{"arg":')
    assert bad == [4, 8, 12]
    assert counters(handle, "okx")["fault.ws_malformed_every"] >= 3


async def test_binance_depth_gap(sim_factory):
    handle = sim_factory(warm_up=False, faults={"binance": {"depth_gap_every": 4}})
    async with websockets.connect(handle.ws_url("binance") + "/ws/ethusdt@depth@100ms") as ws:
        events = [await recv_json(ws) for _ in range(8)]
    gaps = [b["U"] - a["u"] - 1 for a, b in zip(events, events[1:], strict=False)]
    assert any(g > 0 for g in gaps), gaps
    assert all(g >= 0 for g in gaps)
    assert counters(handle, "binance")["fault.depth_gap_every"] >= 2


async def test_bybit_u_gap(sim_factory):
    handle = sim_factory(warm_up=False, faults={"bybit": {"depth_gap_every": 3}})
    async with websockets.connect(handle.ws_url("bybit") + "/v5/public/spot") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}))
        await recv_json(ws)
        frames = [await recv_json(ws) for _ in range(8)]
    us = [f["data"]["u"] for f in frames]
    steps = [b - a for a, b in zip(us, us[1:], strict=False)]
    assert 2 in steps and set(steps) <= {1, 2}
    assert counters(handle, "bybit")["fault.depth_gap_every"] >= 2


async def test_okx_bad_checksum_fault_needs_legacy_checksums(sim_factory):
    """Since 2026-06-23 the checksum is 0 (never checked): the fault has nothing to corrupt."""
    handle = sim_factory(warm_up=False, faults={"okx": {"okx_bad_checksum_every": 2}})
    async with websockets.connect(handle.ws_url("okx") + "/ws/v5/public") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT"}]}))
        await recv_json(ws)
        frames = [await recv_json(ws) for _ in range(6)]
    assert [f["data"][0]["checksum"] for f in frames] == [0] * 6
    assert counters(handle, "okx").get("fault.okx_bad_checksum_every", 0) == 0


async def test_okx_seq_gap_and_bad_checksum(sim_factory):
    handle = sim_factory(
        warm_up=False,
        faults={"okx": {"depth_gap_every": 5, "okx_bad_checksum_every": 3}},
        limits={"okx": {"okx_legacy_checksum": True}},
    )
    inst = INSTRUMENTS[("okx", "eth")]
    async with websockets.connect(handle.ws_url("okx") + "/ws/v5/public") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT"}]}))
        await recv_json(ws)
        frames = [await recv_json(ws) for _ in range(12)]
    assert frames[0]["action"] == "snapshot"
    book: dict[str, dict] = {"bids": {}, "asks": {}}
    chain_breaks = bad_checksums = 0
    last_seq = None
    for frame in frames:
        d = frame["data"][0]
        if last_seq is not None and d["prevSeqId"] != last_seq:
            chain_breaks += 1
        last_seq = d["seqId"]
        for side in ("bids", "asks"):
            for px, sz, _, _ in d[side]:
                key = int(round(float(px) / float(inst.tick)))
                if sz == "0":
                    book[side].pop(key, None)
                else:
                    book[side][key] = (px, sz)
        top_b = [book["bids"][p] for p in sorted(book["bids"], reverse=True)[:25]]
        top_a = [book["asks"][p] for p in sorted(book["asks"])[:25]]
        if okx_checksum(top_b, top_a) != d["checksum"]:
            bad_checksums += 1
    assert chain_breaks >= 1
    assert bad_checksums >= 2  # wrong checksums (and the books after a skipped update)
    c = counters(handle, "okx")
    assert c["fault.depth_gap_every"] >= 1 and c["fault.okx_bad_checksum_every"] >= 2


async def test_bybit_restart_sends_u1_snapshot(sim_factory):
    handle = sim_factory(warm_up=False)
    async with websockets.connect(handle.ws_url("bybit") + "/v5/public/spot") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.50.ETHUSDT"]}))
        await recv_json(ws)
        snap = await recv_json(ws)
        assert snap["data"]["u"] > 1
        handle.sim.exchanges["bybit"].faults.bybit_reset_every_seconds = 0.5  # at run time
        while True:
            frame = await recv_json(ws)
            if frame["type"] == "snapshot":
                break
        assert frame["data"]["u"] == 1
        following = await recv_json(ws)
        assert following["data"]["u"] == 2 or (
            following["type"] == "snapshot" and following["data"]["u"] == 1
        )
    assert counters(handle, "bybit")["fault.bybit_reset_every_seconds"] >= 1


async def test_latency_delays_every_frame(sim_factory):
    handle = sim_factory(warm_up=False, faults={"binance": {"latency_ms": 800}})
    async with websockets.connect(handle.ws_url("binance") + "/ws") as ws:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        assert await recv_json(ws) == {"result": [], "id": 1}
        assert loop.time() - t0 >= 0.79
        handle.sim.exchanges["binance"].faults.latency_ms = 0.0
        await asyncio.sleep(0.3)
        t0 = loop.time()
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        assert await recv_json(ws) == {"result": [], "id": 2}
        assert loop.time() - t0 < 0.5
    assert counters(handle, "binance")["fault.latency_ms"] >= 1


async def test_ws_counters(sim_factory):
    handle = sim_factory(warm_up=False)
    async with websockets.connect(handle.ws_url("okx") + "/ws/v5/public") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "bbo-tbt", "instId": "BTC-USDT"}]}))
        for _ in range(5):
            await recv_json(ws)
        c = counters(handle, "okx")
        for _ in range(40):  # the server counts a frame once its send returned: a moment after we read it
            if c["ws.frames_sent"] >= 5:
                break
            await asyncio.sleep(0.05)
            c = counters(handle, "okx")
        assert c["ws.connections"] == 1 and c["ws.open"] == 1
        assert c["ws.frames_sent"] >= 5 and c["ws.messages_received"] == 1
    for _ in range(60):  # the server notices the close within a moment
        if counters(handle, "okx")["ws.open"] == 0:
            break
        await asyncio.sleep(0.05)
    assert counters(handle, "okx")["ws.open"] == 0


GARBAGE = [
    "",
    "null",
    "[]",
    "123",
    '"text"',
    "{",
    '{"op": 5, "method": [], "args": "x", "params": {}}',
    '{"op": "subscribe", "args": [null, 5, {"channel": 7}], "method": "SUBSCRIBE", "params": [null]}',
    "\u00e9\u4e2d" * 100,
]


@pytest.mark.parametrize(
    ("exchange", "path"), [("binance", "/ws"), ("bybit", "/v5/public/spot"), ("okx", "/ws/v5/public")]
)
async def test_garbage_from_a_client_gets_an_error_reply_not_a_crash(sim, exchange, path, caplog):
    async with websockets.connect(sim.ws_url(exchange) + path) as ws:
        for text in GARBAGE:
            await ws.send(text)
            reply = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(json.loads(reply), dict), (text, reply)
            if exchange == "binance":
                await asyncio.sleep(0.25)  # Binance: at most 5 incoming messages a second
        await ws.send(b"\x00\x01binary")
        await asyncio.sleep(0.3)
        # still serving
        if exchange == "okx":
            await ws.send("ping")
            # (one error per bad arg may still be queued before the pong)
            while (reply := await asyncio.wait_for(ws.recv(), 5)) != "pong":
                assert json.loads(reply)["event"] == "error"
        elif exchange == "bybit":
            await ws.send(json.dumps({"op": "ping"}))
            assert (await recv_json(ws))["ret_msg"] == "pong"
        else:
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
            reply = await recv_json(ws)
            while reply.get("id") != 1:
                reply = await recv_json(ws)
            assert reply["result"] == []
    assert "websocket handler failed" not in caplog.text


async def test_ws_faults_switched_on_and_off_from_the_control_api_on_an_open_connection(sim_factory):
    """A client already streaming sees a fault the control API turns on, and stops seeing it
    once turned off; each fired fault is counted and readable from /state."""
    handle = sim_factory(warm_up=False)
    ctl = handle.control_url
    async with (
        httpx.AsyncClient(timeout=10) as http,
        websockets.connect(handle.ws_url("binance") + "/ws/btcusdt@depth@100ms") as ws,
    ):
        clean = [await recv_json(ws) for _ in range(3)]
        assert all(b["U"] == a["u"] + 1 for a, b in zip(clean, clean[1:], strict=False))
        r = await http.post(ctl + "/faults/binance", json={"depth_gap_every": 2})
        assert r.status_code == 200 and r.json()["binance"]["depth_gap_every"] == 2
        faulty = [await recv_json(ws) for _ in range(6)]
        gaps = [b["U"] - a["u"] - 1 for a, b in zip(faulty, faulty[1:], strict=False)]
        assert sum(g > 0 for g in gaps) >= 2, gaps
        state = (await http.get(ctl + "/state")).json()
        fired = state["exchanges"]["binance"]["counters"]["fault.depth_gap_every"]
        assert fired >= 2
        assert (await http.post(ctl + "/faults/binance", json={"depth_gap_every": 0})).status_code == 200
        await recv_json(ws)  # an event possibly produced before the switch
        after = [await recv_json(ws) for _ in range(4)]
        assert all(b["U"] == a["u"] + 1 for a, b in zip(after, after[1:], strict=False))
    assert counters(handle, "binance")["fault.depth_gap_every"] <= fired + 1


def test_every_fault_is_settable_from_a_flag_and_from_the_control_api(sim_factory):
    """Each FaultSettings field: ``--fault all:<name>=V`` reaches every exchange's state, and
    ``POST /faults/<exchange>`` changes it on the running simulator."""
    def other(default):
        if isinstance(default, bool):
            return not default
        return 3 if isinstance(default, int) else 2.5

    values = {name: other(default) for name, default in FaultSettings().as_dict().items()}
    flags = [f"all:{name}={value}" for name, value in values.items()]
    sim = build_simulator(faults=parse_overrides(flags, FaultSettings, "--fault"))
    for exchange in sim.exchanges.values():
        assert exchange.faults.as_dict() == values
    handle = sim_factory(speed=1e-9, with_feed=False, warm_up=False)
    for name, value in values.items():
        r = httpx.post(handle.control_url + "/faults/okx", json={name: value})
        assert r.status_code == 200, r.text
        assert getattr(handle.sim.exchanges["okx"].faults, name) == value
    state = httpx.get(handle.control_url + "/state").json()
    assert state["exchanges"]["okx"]["faults"] == values
    assert state["exchanges"]["bybit"]["faults"] == FaultSettings().as_dict()
