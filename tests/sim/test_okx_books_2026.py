"""OKX ``books`` as announced for 2026: no in-band snapshot, the client bridges a REST
``/api/v5/market/books`` snapshot (with ``seqId``) to the buffered updates by ``prevSeqId``
(shared/docs/exchange-protocols.md section 4.6), and reaches exactly the true book."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from wsutil import apply_levels, recv_json

from p9cli.sim import ws_okx
from p9cli.sim.instruments import INSTRUMENTS

INST = INSTRUMENTS[("okx", "btc")]


@pytest.fixture(autouse=True)
def _many_connections(monkeypatch):
    monkeypatch.setattr(ws_okx.SETTINGS, "max_new_connections_per_second", 1000)


async def _rest_books(handle, sz: int = 400) -> dict:
    async with httpx.AsyncClient() as client:
        r = await client.get(
            handle.rest_url("okx") + "/api/v5/market/books", params={"instId": "BTC-USDT", "sz": sz, "source": 0}
        )
    assert r.status_code == 200
    return r.json()["data"][0]


async def test_snapshotless_books_bridge_from_rest_to_the_true_book(sim_factory):
    sim = sim_factory(speed=1.0, limits={"okx": {"okx_books_snapshot": False}})
    async with websockets.connect(sim.ws_url("okx") + "/ws/v5/public") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
        ack = await recv_json(ws)
        assert ack["event"] == "subscribe"
        buffered = [await recv_json(ws) for _ in range(3)]
        snap = await _rest_books(sim)
        buffered += [await recv_json(ws) for _ in range(12)]
    assert all(f["action"] == "update" for f in buffered), "no in-band snapshot in this mode"
    assert all(f["data"][0]["checksum"] == 0 for f in buffered)
    first_prev = buffered[0]["data"][0]["prevSeqId"]
    seq = snap["seqId"]
    assert seq >= first_prev, "the REST snapshot is not older than the first buffered update"
    later = [f["data"][0] for f in buffered if f["data"][0]["seqId"] > seq]
    assert later and later[0]["prevSeqId"] <= seq < later[0]["seqId"]
    assert later[0]["prevSeqId"] == seq, "the REST seqId is one of the stream's"
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    apply_levels(bids, snap["bids"], INST.tick, INST.qty_unit)
    apply_levels(asks, snap["asks"], INST.tick, INST.qty_unit)
    for d in later:
        assert d["prevSeqId"] == seq
        seq = d["seqId"]
        apply_levels(bids, d["bids"], INST.tick, INST.qty_unit)
        apply_levels(asks, d["asks"], INST.tick, INST.qty_unit)
    true_bids, true_asks = sim.thread.call(sim.sim.books[("okx", "btc")].book_at, seq)
    assert sorted(bids.items(), reverse=True)[:400] == true_bids[:400]
    assert sorted(asks.items())[:400] == true_asks[:400]


async def test_rest_books_seq_id_is_the_true_book_when_nobody_streams(sim_factory):
    sim = sim_factory(speed=1e-9)  # the book stands still
    snap = await _rest_books(sim, 50)
    async with httpx.AsyncClient() as client:
        truth = (
            await client.get(
                sim.control_url + "/truth/book",
                params={"exchange": "okx", "symbol": "btc", "update_id": snap["seqId"]},
            )
        ).json()
    assert [lv[:2] for lv in snap["bids"]] == truth["bids"][:50]
    assert [lv[:2] for lv in snap["asks"]] == truth["asks"][:50]


async def test_snapshot_mode_can_be_switched_at_run_time(sim_factory):
    sim = sim_factory(speed=1.0)
    async with httpx.AsyncClient() as client:
        r = await client.post(sim.control_url + "/limits/okx", json={"okx_books_snapshot": False})
        assert r.status_code == 200 and r.json()["okx"]["okx_books_snapshot"] is False
    async with websockets.connect(sim.ws_url("okx") + "/ws/v5/public") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT"}]}))
        await recv_json(ws)
        first = await asyncio.wait_for(recv_json(ws), 5)
    assert first["action"] == "update" and first["data"][0]["prevSeqId"] > 0


async def test_sequence_reset_keeps_the_chain_and_the_truth(sim_factory):
    """``okx_seq_reset_every_seconds``: after an OKX maintenance "the sequence can reset, i.e.
    seqId < prevSeqId — still valid as long as prevSeqId matches" (Doc). The chain holds across
    the reset, the book stays true, and /truth/book takes the seqIds the client saw."""
    sim = sim_factory(speed=1.0, faults={"okx": {"okx_seq_reset_every_seconds": 0.6}})
    async with websockets.connect(sim.ws_url("okx") + "/ws/v5/public") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
        await recv_json(ws)
        frames = [await recv_json(ws) for _ in range(16)]
    assert frames[0]["action"] == "snapshot"
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    seq = None
    resets = 0
    checked = []
    async with httpx.AsyncClient() as client:
        for f in frames:
            d = f["data"][0]
            if seq is not None:
                assert d["prevSeqId"] == seq, "prevSeqId always chains"
                resets += d["seqId"] < d["prevSeqId"]
            seq = d["seqId"]
            apply_levels(bids, d["bids"], INST.tick, INST.qty_unit)
            apply_levels(asks, d["asks"], INST.tick, INST.qty_unit)
            truth = (
                await client.get(
                    sim.control_url + "/truth/book", params={"exchange": "okx", "symbol": "btc", "update_id": seq}
                )
            ).json()
            assert "bids" in truth, truth
            want_b = [[INST.price_str(p), INST.qty_str(q)] for p, q in sorted(bids.items(), reverse=True)[:400]]
            want_a = [[INST.price_str(p), INST.qty_str(q)] for p, q in sorted(asks.items())[:400]]
            assert truth["bids"][:400] == want_b and truth["asks"][:400] == want_a, f"book at seqId {seq}"
            checked.append(seq)
    assert resets >= 1 and len(checked) == 16
    assert sim.sim.exchanges["okx"].counters["fault.okx_seq_reset_every_seconds"] == resets
