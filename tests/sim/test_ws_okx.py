"""OKX V5 public WebSocket of the simulator, with a real client on loopback."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from wsutil import (
    FIXTURES,
    apply_levels,
    assert_same_shape,
    assert_shape_extends,
    capture_frames,
    jsonl_frames,
    recv_json,
    recv_until,
    ticks,
    units,
)

from p9cli.sim import ws_okx
from p9cli.sim.instruments import INSTRUMENTS
from p9cli.sim.okx_checksum import okx_checksum

REC_2022 = capture_frames(FIXTURES / "okx" / "public_ws_tickers_trades_books_2022-05-13.capture.txt")
REC_TRADES = jsonl_frames(FIXTURES / "okx" / "spot_ws_trades_BTC-USDT_2025-02-24.jsonl")
INST = INSTRUMENTS[("okx", "btc")]
#: a trades item as OKX sends it in 2026 (third-party live capture of 2026-10-07, quoted in
#: shared/docs/exchange-protocols.md section 4.5): the 2025 recording plus source and seqId
TRADE_2026 = json.loads(
    '{"instId":"BTC-USDT","tradeId":"1067468269","px":"83753","sz":"0.000011","side":"sell",'
    '"ts":"1791369376364","count":"1","source":"0","seqId":82083114838}'
)


def rec_books(action: str) -> dict:
    return next(
        f
        for f in REC_2022
        if f.get("arg", {}).get("channel") == "books"
        and f.get("action") == action
        and f["arg"]["instId"] == "BTC-USDT"
        and f["data"][0]["asks"]
        and f["data"][0]["bids"]
    )


def public(handle) -> str:
    return handle.ws_url("okx") + "/ws/v5/public"


@pytest.fixture(autouse=True)
def _many_connections(monkeypatch):
    # tests open connections back to back; the 3/s limit has its own test
    monkeypatch.setattr(ws_okx.SETTINGS, "max_new_connections_per_second", 1000)


async def test_acks_and_errors(sim):
    async with websockets.connect(public(sim)) as ws:
        await ws.send(
            json.dumps(
                {
                    "op": "subscribe",
                    "args": [
                        {"channel": "trades", "instId": "BTC-USDT"},
                        {"channel": "books5", "instId": "ETH-USDT"},
                    ],
                }
            )
        )
        a1 = await recv_json(ws)
        a2, _ = await recv_until(ws, lambda f: f.get("event") == "subscribe")
        # the 2022 recording (no connId yet) plus the documented connId
        ref = next(f for f in REC_2022 if f.get("event") == "subscribe")
        assert list(a1) == ["event", "arg", "connId"] and a1["event"] == "subscribe"
        assert_same_shape(a1["arg"], ref["arg"])
        assert a1["arg"] == {"channel": "trades", "instId": "BTC-USDT"}
        assert a2["arg"] == {"channel": "books5", "instId": "ETH-USDT"} and a2["connId"] == a1["connId"]
        await ws.send(
            json.dumps(
                {"id": "1512", "op": "subscribe", "args": [{"channel": "bbo-tbt", "instId": "SOL-USDT"}]}
            )
        )
        a3, _ = await recv_until(ws, lambda f: f.get("event") == "subscribe")
        assert list(a3) == ["id", "event", "arg", "connId"] and a3["id"] == "1512"
        await ws.send(
            json.dumps({"id": "7", "op": "subscribe", "args": [{"channel": "books", "instId": "DOGE-USDT"}]})
        )
        err, _ = await recv_until(ws, lambda f: f.get("event") == "error")
        assert list(err) == ["id", "event", "code", "msg", "connId"]
        assert err["code"] == "60018" and "DOGE-USDT" in err["msg"]
        await ws.send(json.dumps({"op": "bogus", "args": []}))
        err, _ = await recv_until(ws, lambda f: f.get("event") == "error")
        assert err["code"] == "60019"
        await ws.send(
            json.dumps({"op": "unsubscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"}]})
        )
        un, _ = await recv_until(ws, lambda f: f.get("event") == "unsubscribe")
        assert un["arg"] == {"channel": "trades", "instId": "BTC-USDT"}
        await ws.send("ping")
        while (await asyncio.wait_for(ws.recv(), 5)) != "pong":
            pass


async def test_business_url_refuses_public_channels(sim):
    async with websockets.connect(sim.ws_url("okx") + "/ws/v5/business") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
        err = await recv_json(ws)
        assert err["event"] == "error" and err["code"] == "60018"


async def test_trades_match_recording_and_model(sim_factory):
    # clock speed 20: the model's quiet spells between trades (up to a minute) pass quickly
    sim = sim_factory(speed=20.0, warm_up=False)
    async with websockets.connect(public(sim)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"}]}))
        await recv_json(ws)
        frames = [await recv_json(ws, 30) for _ in range(3)]
    for frame in frames:
        assert list(frame) == list(REC_TRADES[0]) and frame["arg"] == REC_TRADES[0]["arg"]
        assert len(frame["data"]) == 1
        assert_shape_extends(frame["data"][0], REC_TRADES[0]["data"][0], ["source", "seqId"])
        assert_same_shape(frame["data"][0], TRADE_2026)
    items = [f["data"][0] for f in frames]
    assert all(t["source"] == "0" for t in items)
    seqs = [t["seqId"] for t in items]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seqId: one more per message"
    want = sim.thread.call(sim.sim.model.trades, "okx", "btc", int(items[0]["ts"]), int(items[-1]["ts"]) + 1)
    # the items read are the model's first trades from the first one's millisecond, in order
    # (more may share the last millisecond: same-ms fills not read yet)
    n = len(items)
    assert len(want.id) >= n
    assert [int(t["tradeId"]) for t in items] == want.id.tolist()[:n]
    assert [int(t["ts"]) for t in items] == want.time.tolist()[:n]
    assert [ticks(t["px"], INST.tick) for t in items] == want.price.tolist()[:n]
    assert [units(t["sz"], INST.qty_unit) for t in items] == want.qty.tolist()[:n]
    assert [t["side"] == "buy" for t in items] == want.taker_buy.tolist()[:n]


async def test_books_checksum_is_zero_by_default(sim):
    """Since 2026-06-23 OKX sends ``checksum: 0`` on every ``books`` push (snapshot and updates)."""
    async with websockets.connect(public(sim)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "SOL-USDT"}]}))
        await recv_json(ws)
        frames = [await recv_json(ws) for _ in range(6)]
    assert frames[0]["action"] == "snapshot"
    assert [f["data"][0]["checksum"] for f in frames] == [0] * 6
    assert all(f["action"] == "update" for f in frames[1:])


async def test_books_legacy_checksum_chain_and_truth(sim_factory):
    """Legacy mode (``okx_legacy_checksum``): 400-level snapshot then 100 ms updates: recorded
    shapes (+ prevSeqId, seqId), the seqId chain, the real checksum of every message on the
    client's own book, and the client book equal to the top 400 of the true book at ``seqId``."""
    sim = sim_factory(speed=1.0, limits={"okx": {"okx_legacy_checksum": True}})
    async with websockets.connect(public(sim)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
        await recv_json(ws)
        snap = await recv_json(ws)
        assert snap["action"] == "snapshot"
        assert list(snap) == ["arg", "action", "data"]
        assert_shape_extends(snap["data"][0], rec_books("snapshot")["data"][0], ["prevSeqId", "seqId"])
        item = snap["data"][0]
        assert len(item["asks"]) == len(item["bids"]) == 400 and item["prevSeqId"] == -1
        bids = {}
        asks = {}
        strings: dict[str, dict] = {"bids": {}, "asks": {}}

        def apply(d):
            apply_levels(bids, d["bids"], INST.tick, INST.qty_unit)
            apply_levels(asks, d["asks"], INST.tick, INST.qty_unit)
            for side in ("bids", "asks"):
                for px, sz, zero, orders in d[side]:
                    assert zero == "0" and orders.isdigit() and (orders == "0") == (sz == "0")
                    known = strings[side].get(ticks(px, INST.tick))
                    assert known is None or known[0] == px, "a level's price is always the same string"
                    if sz == "0":
                        strings[side].pop(ticks(px, INST.tick), None)
                    else:
                        strings[side][ticks(px, INST.tick)] = (px, sz)

        def check(d):
            top_b = [strings["bids"][p] for p in sorted(strings["bids"], reverse=True)[:25]]
            top_a = [strings["asks"][p] for p in sorted(strings["asks"])[:25]]
            assert okx_checksum(top_b, top_a) == d["checksum"]

        apply(item)
        check(item)
        seq = item["seqId"]
        for _ in range(20):
            upd = await recv_json(ws)
            assert upd["action"] == "update"
            d = upd["data"][0]
            if d["asks"] and d["bids"]:
                assert_shape_extends(d, rec_books("update")["data"][0], ["prevSeqId", "seqId"])
            assert d["prevSeqId"] == seq, "prevSeqId chains to the previous seqId"
            assert d["seqId"] > seq
            seq = d["seqId"]
            apply(d)
            check(d)
    true_bids, true_asks = sim.thread.call(sim.sim.books[("okx", "btc")].book_at, seq)
    assert sorted(bids.items(), reverse=True)[:400] == true_bids[:400]
    assert sorted(asks.items())[:400] == true_asks[:400]


async def test_books5_and_bbo(sim):
    async with websockets.connect(public(sim)) as ws:
        await ws.send(
            json.dumps(
                {
                    "op": "subscribe",
                    "args": [
                        {"channel": "books5", "instId": "BTC-USDT"},
                        {"channel": "bbo-tbt", "instId": "BTC-USDT"},
                    ],
                }
            )
        )
        got = {}
        while len(got) < 2:
            frame = await recv_json(ws)
            if "data" in frame:
                got[frame["arg"]["channel"]] = frame["data"][0]
    assert list(got["books5"]) == ["asks", "bids", "instId", "ts", "seqId"]
    assert len(got["books5"]["asks"]) == len(got["books5"]["bids"]) == 5
    assert list(got["bbo-tbt"]) == ["asks", "bids", "ts", "seqId"]
    assert len(got["bbo-tbt"]["asks"]) == len(got["bbo-tbt"]["bids"]) == 1
    for d in got.values():
        assert isinstance(d["ts"], str) and isinstance(d["seqId"], int)
        assert all(isinstance(x, str) for level in d["asks"] + d["bids"] for x in level)


async def test_repeated_subscription_is_harmless(sim):
    async with websockets.connect(public(sim)) as ws:
        arg = {"channel": "books", "instId": "ETH-USDT"}
        await ws.send(json.dumps({"op": "subscribe", "args": [arg]}))
        await recv_json(ws)
        await ws.send(json.dumps({"op": "subscribe", "args": [arg]}))
        frames = [await recv_json(ws) for _ in range(15)]
    acks = [f for f in frames if f.get("event") == "subscribe"]
    books = [f for f in frames if "action" in f]
    assert len(acks) == 1 and acks[0]["arg"] == arg
    assert sum(f["action"] == "snapshot" for f in books) == 1
    seqs = [f["data"][0]["seqId"] for f in books]
    prevs = [f["data"][0]["prevSeqId"] for f in books]
    assert prevs[1:] == seqs[:-1], "one copy of each update"


async def test_keepalive_update_when_the_book_does_not_change(sim_factory, monkeypatch):
    monkeypatch.setattr(ws_okx, "KEEPALIVE_SECONDS", 0.5)
    handle = sim_factory(speed=1e-9, warm_up=False)  # the clock stands still: the book never changes
    async with websockets.connect(public(handle)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
        await recv_json(ws)
        snap = await recv_json(ws)
        keep = await recv_json(ws, 3)
    d = keep["data"][0]
    assert keep["action"] == "update" and d["asks"] == [] and d["bids"] == []
    assert d["seqId"] == d["prevSeqId"] == snap["data"][0]["seqId"]
    assert d["checksum"] == snap["data"][0]["checksum"] == 0


async def test_silent_connection_is_closed_with_4004(sim_factory, monkeypatch):
    monkeypatch.setattr(ws_okx.SETTINGS, "idle_seconds", 1.5)
    sim = sim_factory(warm_up=False)
    async with websockets.connect(public(sim)) as ws:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 6)
        assert 1.4 <= loop.time() - t0 <= 4.0
        assert info.value.rcvd is not None and info.value.rcvd.code == 4004
    assert sim.sim.exchanges["okx"].counters["ws.keepalive_closes"] == 1
    # a client that pings in time stays
    async with websockets.connect(public(sim)) as ws:
        for _ in range(10):
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), 2) == "pong"
            await asyncio.sleep(0.3)
    assert sim.sim.exchanges["okx"].counters["ws.keepalive_closes"] == 1


async def test_new_connection_rate_limit(sim, monkeypatch):
    monkeypatch.setattr(ws_okx.SETTINGS, "max_new_connections_per_second", 3)
    await asyncio.sleep(1.1)
    # five connection attempts at once: three are let in, two refused with HTTP 429
    results = await asyncio.gather(
        *(websockets.connect(public(sim)) for _ in range(5)), return_exceptions=True
    )
    opened = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, websockets.InvalidStatus)]
    for ws in opened:
        await ws.close()
    assert len(opened) == 3 and len(refused) == 2
    assert all(r.response.status_code == 429 for r in refused)


async def test_books_updates_every_100ms(sim_factory):
    sim = sim_factory(speed=5.0, warm_up=False)
    async with websockets.connect(public(sim)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "SOL-USDT"}]}))
        await recv_json(ws)
        await recv_json(ws)  # snapshot
        ts = [int((await recv_json(ws))["data"][0]["ts"]) for _ in range(8)]
    gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
    assert min(gaps) >= 100, gaps


async def test_subscribe_requests_per_hour_limit(sim, monkeypatch):
    monkeypatch.setattr(ws_okx.SETTINGS, "max_subscribes_per_hour", 2)
    async with websockets.connect(public(sim)) as ws:
        for channel in ("bbo-tbt", "books5"):
            await ws.send(
                json.dumps({"op": "subscribe", "args": [{"channel": channel, "instId": "XRP-USDT"}]})
            )
            ack, _ = await recv_until(ws, lambda f: "event" in f)
            assert ack["event"] == "subscribe"
        await ws.send(
            json.dumps(
                {"id": "3", "op": "unsubscribe", "args": [{"channel": "bbo-tbt", "instId": "XRP-USDT"}]}
            )
        )
        err, _ = await recv_until(ws, lambda f: "event" in f)
        assert err["event"] == "error" and err["code"] == "60014" and err["id"] == "3"


async def test_candles_on_the_business_url(sim_factory):
    sim = sim_factory(speed=20.0, warm_up=False)
    async with websockets.connect(public(sim)) as ws:
        await ws.send(
            json.dumps({"op": "subscribe", "args": [{"channel": "candle1m", "instId": "BTC-USDT"}]})
        )
        err = await recv_json(ws)
        assert err["event"] == "error" and err["code"] == "64001"
    async with websockets.connect(sim.ws_url("okx") + "/ws/v5/business") as ws:
        arg = {"channel": "candle1m", "instId": "BTC-USDT"}
        await ws.send(json.dumps({"op": "subscribe", "args": [arg]}))
        ack = await recv_json(ws)
        assert ack["event"] == "subscribe" and ack["arg"] == arg
        first = await recv_json(ws)
        assert list(first) == ["arg", "data"] and first["arg"] == arg
        assert len(first["data"][0]) == 9 and all(isinstance(x, str) for x in first["data"][0])
        closed, _ = await recv_until(ws, lambda f: f["data"][0][8] == "1", timeout=15)
    row = closed["data"][0]
    ts = int(row[0])
    async with httpx.AsyncClient() as client:
        r = await client.get(
            sim.rest_url("okx") + "/api/v5/market/candles",
            params={"instId": "BTC-USDT", "bar": "1m", "after": ts + 1, "before": ts - 1},
        )
    assert r.json()["data"][0] == row
