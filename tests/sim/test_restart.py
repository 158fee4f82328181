"""``p9 sim`` killed (SIGKILL) and restarted on the same ports mid-run: the market goes on
where it was (a function of the seed and the absolute time), trade ids are the ones the
first run gave, the candles of the minutes before the restart are the same, and clients
reconnect to the same URLs and stream again."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import websockets

from p9cli.sim.testing import free_port_base, sim_subprocess, wait_listening

SEED = "31"


def start(base: int):
    proc = sim_subprocess(base, ["--seed", SEED])
    assert all(wait_listening("127.0.0.1", base + i, 30) for i in range(4)), proc.stderr.read()
    return proc


async def trades_over_ws(url: str, n: int) -> list[dict]:
    async with websockets.connect(url + "/ws/btcusdt@trade") as ws:
        return [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(n)]


async def control(base: int, path: str, **params) -> dict:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"http://127.0.0.1:{base}{path}", params=params)
        r.raise_for_status()
        return r.json()


async def test_killed_and_restarted_on_the_same_ports_the_market_goes_on():
    base = free_port_base()
    ws_url = f"ws://127.0.0.1:{base + 1}"
    first = start(base)
    try:
        before = await trades_over_ws(ws_url, 5)
        st1 = await control(base, "/state")
        now1 = (await control(base, "/health"))["now_ms"]
        minute = now1 - now1 % 60_000
        bars1 = await control(base, "/truth/candles", exchange="okx", symbol="eth", interval="1m",
                              start=minute - 10 * 60_000, end=minute - 60_000)  # fmt: skip
        okx_book1 = await control(base, "/truth/book", exchange="okx", symbol="btc")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    second = start(base)  # the same ports, at once
    try:
        st2 = await control(base, "/state")
        assert st2["ports"] == st1["ports"] and st2["seed"] == st1["seed"]
        after = await trades_over_ws(ws_url, 5)
        # trade ids move on from where the first run was, and the first run's trades that are
        # live in the second run (its live start minute on) carry the same ids there
        assert int(after[0]["t"]) > int(before[-1]["t"])
        live2 = st2["live_start_ms"]
        again = await control(base, "/truth/trades", exchange="binance", symbol="btc",
                              start=min(t["T"] for t in before), end=max(t["T"] for t in before) + 1)  # fmt: skip
        by_id = {t["id"]: t for t in again["trades"]}
        for t in before:
            if t["T"] >= live2:
                assert by_id[t["t"]]["time"] == t["T"], "a trade kept its id across the restart"
        # the candles of the minutes before the restart are the same bars
        bars2 = await control(base, "/truth/candles", exchange="okx", symbol="eth", interval="1m",
                              start=minute - 10 * 60_000, end=minute - 60_000)  # fmt: skip
        keys = ("open_time", "open", "high", "low", "close", "volume")
        assert [[b[k] for k in keys] for b in bars2["candles"]] == [[b[k] for k in keys] for b in bars1["candles"]]
        assert len(bars2["candles"]) == 10
        # the books are rebuilt: OKX seqIds keep growing when the restart is in a later 10-s
        # window than the kill; in any case a fresh book is served and streams again
        okx_book2 = await control(base, "/truth/book", exchange="okx", symbol="btc")
        assert okx_book2["bids"] and okx_book2["asks"]
        async with websockets.connect(f"ws://127.0.0.1:{base + 3}/ws/v5/public") as ws:
            await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            snap = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["event"] == "subscribe" and snap["action"] == "snapshot"
        assert okx_book1["update_id"] > 0
    finally:
        second.send_signal(signal.SIGINT)
        second.wait(15)
