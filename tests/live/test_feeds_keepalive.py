"""Keepalive: with the simulator's idle and pong limits shortened to about a second, a client
that does not answer pings (Binance) or sends none (Bybit, OKX) is dropped by the simulator;
the feed layer, keeping each venue's rule (intervals scaled to the shortened limits), is not."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import httpx
import pytest
from feedutil import run_feeds

from p9cli.live import FeedOptions
from p9cli.sim import ws_binance, ws_bybit, ws_okx
from p9cli.universe import EXCHANGES

FROZEN = 1e-9  # the market stands still: no data frames, only keepalive keeps a connection up


@pytest.fixture
def short_idle_limits(monkeypatch):
    monkeypatch.setattr(ws_okx.SETTINGS, "idle_seconds", 1.2)
    monkeypatch.setattr(ws_bybit.SETTINGS, "idle_seconds", 1.2)
    monkeypatch.setattr(ws_binance.SETTINGS, "ping_interval", 0.3)
    monkeypatch.setattr(ws_binance.SETTINGS, "pong_timeout", 1.0)


async def _silent_client(url: str, first: str | None, autoping: bool) -> str:
    """Connect, optionally send one message, then never ping/pong; how the connection ended."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, autoping=autoping, autoclose=False) as ws,
    ):
        if first is not None:
            await ws.send_str(first)
        while True:
            msg = await asyncio.wait_for(ws.receive(), 6.0)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return f"closed {ws.close_code}"


async def test_ours_survive_where_a_silent_client_is_dropped(live_sim, short_idle_limits):
    sim = live_sim(speed=FROZEN)
    sub_bybit = json.dumps({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
    sub_okx = json.dumps({"op": "subscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"}]})
    silent = asyncio.gather(
        _silent_client(sim.ws_url("binance") + "/ws/btcusdt@aggTrade", None, autoping=False),
        _silent_client(sim.ws_url("bybit") + "/v5/public/spot", sub_bybit, autoping=True),
        _silent_client(sim.ws_url("okx") + "/ws/v5/public", sub_okx, autoping=True),
    )
    opts = FeedOptions(keepalive_scale=0.03, silence_s=30.0)
    rec, stats = await run_feeds(sim, 3.5, options=opts)
    assert all(r.startswith("closed") for r in await silent)
    for ex in EXCHANGES:
        s = stats[ex]
        assert s["reconnects"] == 0 and s["connect_failures"] == 0 and s["connections_open"] >= 1, s
        assert not rec.kinds(ex, "disconnected"), rec.kinds(ex, "disconnected")
    async with httpx.AsyncClient() as c:
        state = (await c.get(sim.control_url + "/state")).json()
    for ex in EXCHANGES:
        # exactly the silent client was closed for keepalive, never ours
        assert state["exchanges"][ex]["counters"].get("ws.keepalive_closes", 0) == 1, (
            ex,
            state["exchanges"][ex],
        )
