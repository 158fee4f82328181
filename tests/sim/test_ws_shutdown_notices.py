"""Announced shutdowns as faults: Binance ``serverShutdown`` and OKX ``notice`` 64008 arrive
once per connection, data keeps flowing during the grace period, then the server closes the
connection (1001); both counted; both can be switched on at run time (POST /faults)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from p9cli.sim import ws_okx


@pytest.fixture(autouse=True)
def _many_connections(monkeypatch):
    monkeypatch.setattr(ws_okx.SETTINGS, "max_new_connections_per_second", 1000)


async def _until_closed(ws, timeout: float = 15.0) -> tuple[list, float]:
    """Every text frame until the server closes; and the (monotonic) time of the close."""
    frames = []
    deadline = time.monotonic() + timeout
    with pytest.raises(websockets.ConnectionClosedOK):
        while time.monotonic() < deadline:
            msg = await asyncio.wait_for(ws.recv(), timeout)
            frames.append((time.monotonic(), msg if msg == "pong" else json.loads(msg)))
    return frames, time.monotonic()


def _notice_index(frames, pred) -> int:
    hits = [i for i, (_, f) in enumerate(frames) if isinstance(f, dict) and pred(f)]
    assert len(hits) == 1, f"one notice per connection, got {len(hits)}"
    return hits[0]


@pytest.mark.parametrize("combined", [False, True])
async def test_binance_server_shutdown(sim_factory, combined):
    faults = {"binance_server_shutdown_every_seconds": 0.5, "binance_server_shutdown_grace_seconds": 1.0}
    sim = sim_factory(speed=5.0, faults={"binance": faults})
    path = "/stream?streams=btcusdt@trade" if combined else "/ws/btcusdt@trade"
    async with websockets.connect(sim.ws_url("binance") + path) as ws:
        frames, closed_at = await _until_closed(ws)
        assert ws.close_code == 1001
    if combined:
        i = _notice_index(frames, lambda f: f.get("stream") == "!serverShutdown")
        event = frames[i][1]["data"]
    else:
        i = _notice_index(frames, lambda f: f.get("e") == "serverShutdown")
        event = frames[i][1]
    assert list(event) == ["e", "E"] and isinstance(event["E"], int)
    assert closed_at - frames[i][0] >= 0.8, "the close comes after the grace period"
    assert len(frames) - i - 1 >= 1, "trades keep flowing during the grace period"
    c = sim.sim.exchanges["binance"].counters
    assert c["fault.binance_server_shutdown_every_seconds"] == 1 and c["ws.notice_closes"] == 1


async def test_okx_service_upgrade_notice_at_run_time(sim_factory):
    sim = sim_factory(speed=5.0)
    async with websockets.connect(sim.ws_url("okx") + "/ws/v5/public") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
        async with httpx.AsyncClient() as client:
            r = await client.post(
                sim.control_url + "/faults/okx",
                json={"okx_notice_every_seconds": 0.2, "okx_notice_grace_seconds": 1.0},
            )
            assert r.status_code == 200
        frames, closed_at = await _until_closed(ws)
        assert ws.close_code == 1001
    i = _notice_index(frames, lambda f: f.get("event") == "notice")
    notice = frames[i][1]
    assert list(notice) == ["event", "code", "msg", "connId"] and notice["code"] == "64008"
    assert notice["connId"] == frames[0][1]["connId"], "the connection's own id (as in its acks)"
    assert closed_at - frames[i][0] >= 0.8
    after = [f for _, f in frames[i + 1 :] if isinstance(f, dict) and f.get("arg", {}).get("channel") == "books"]
    assert after, "book updates keep flowing during the grace period"
    async with httpx.AsyncClient() as client:
        state = (await client.get(sim.control_url + "/state")).json()
    c = state["exchanges"]["okx"]["counters"]
    assert c["fault.okx_notice_every_seconds"] == 1 and c["ws.notice_closes"] == 1


async def test_binance_24h_close_is_announced(sim_factory, monkeypatch):
    """"Before a disconnection either due to maintenance or after 24 hours, a serverShutdown
    event will be sent": the lifetime close comes ``grace`` after its notice (shortened here)."""
    from p9cli.sim import ws_binance

    monkeypatch.setattr(ws_binance.SETTINGS, "lifetime", 1.5)
    sim = sim_factory(speed=5.0, faults={"binance": {"binance_server_shutdown_grace_seconds": 1.0}})
    async with websockets.connect(sim.ws_url("binance") + "/ws/ethusdt@trade") as ws:
        frames, closed_at = await _until_closed(ws)
    i = _notice_index(frames, lambda f: f.get("e") == "serverShutdown")
    assert 0.7 <= closed_at - frames[i][0] <= 3.0
    c = sim.sim.exchanges["binance"].counters
    assert c["ws.lifetime_notices"] == 1 and c.get("fault.binance_server_shutdown_every_seconds", 0) == 0
