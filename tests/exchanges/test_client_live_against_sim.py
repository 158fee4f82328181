"""The live-side parsers and order-book sync machines on the simulator's WebSocket streams.

Each test subscribes with the adapters' own messages, parses every frame with the adapters'
parsers and keeps a book with :mod:`p9cli.exchanges.book`: clean streams must stay in sync
(0 gaps, 0 bad checksums), and injected gaps / bad checksums must be caught.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import websockets

from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.book import BinanceBookSync, BybitBookSync, OkxBookSync
from p9cli.sim.testing import SimThread

START_MS = 1_767_616_496_789
LISTEN_S = 2.0


@pytest.fixture
def sim_with(request):
    threads = []

    def make(faults=None):
        thread = SimThread(seed=9, start_ms=START_MS, speed=1.0, warm_up=False, faults=faults or {})
        handle = thread.start()
        threads.append(thread)
        return handle

    yield make
    for t in threads:
        t.stop()


async def _frames(ws, seconds):
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            yield await asyncio.wait_for(ws.recv(), left)
        except TimeoutError:
            return


async def run_binance(handle, seconds=LISTEN_S):
    streams = binance.stream_names("btc")
    sync = BinanceBookSync()
    trades = []
    statuses = []
    url = handle.ws_url("binance") + binance.combined_stream_path(streams)
    async with websockets.connect(url) as ws, httpx.AsyncClient(timeout=10) as http:
        snapshot_task = None
        async for text in _frames(ws, seconds):
            stream, event = binance.unwrap(binance.decode_frame(text))
            kind = binance.frame_kind(event)
            if kind == "aggTrade":
                trades.append(binance.parse_trade(event))
            elif kind == "depthUpdate":
                statuses.append(sync.on_message(binance.parse_depth(event, stream)))
                if snapshot_task is None or (
                    not sync.in_sync and snapshot_task.done() and statuses[-1] == "gap"
                ):
                    req = binance.depth_request("btc", 1000)
                    snapshot_task = asyncio.ensure_future(
                        http.get(handle.rest_url("binance") + req.path, params=list(req.params))
                    )
            if (
                snapshot_task is not None
                and snapshot_task.done()
                and not getattr(snapshot_task, "used", False)
            ):
                snapshot_task.used = True
                resp = snapshot_task.result()
                binance.check_response(resp.status_code, resp.headers, resp.content)
                statuses.append(sync.on_message(binance.parse_depth_snapshot(resp.content, "BTCUSDT")))
    return sync, trades, statuses


async def test_binance_diff_stream_with_rest_snapshot_stays_in_sync(sim_with):
    sync, trades, statuses = await run_binance(sim_with())
    assert sync.in_sync, statuses
    assert sync.stats["snapshots"] == 1 and sync.stats["gaps"] == 0
    assert sync.stats["applied"] >= 5
    assert not sync.book.is_crossed() and len(sync.book.bids) > 0 and len(sync.book.asks) > 0
    assert trades and all(t.symbol == "BTCUSDT" and t.side in ("buy", "sell") and t.price > 0 for t in trades)
    assert [int(t.trade_id) for t in trades] == sorted(int(t.trade_id) for t in trades)


async def test_binance_injected_gaps_are_detected(sim_with):
    sync, _trades, statuses = await run_binance(sim_with({"binance": {"depth_gap_every": 4}}))
    assert sync.stats["gaps"] >= 1 and "gap" in statuses


async def run_bybit(handle, seconds=LISTEN_S, depth=50):
    sync = BybitBookSync()
    trades, statuses = [], []
    async with websockets.connect(handle.ws_url("bybit") + bybit.PUBLIC_WS_PATH) as ws:
        await ws.send(bybit.subscribe_message(bybit.topics("btc", depth), req_id="t1"))
        async for text in _frames(ws, seconds):
            obj = bybit.decode_frame(text)
            kind = bybit.frame_kind(obj)
            assert kind != "error", obj
            if kind == "book":
                statuses.append(sync.on_message(bybit.parse_book(obj)))
                assert len(sync.book.bids) <= depth and len(sync.book.asks) <= depth
            elif kind == "trades":
                trades.extend(bybit.parse_trades(obj))
    return sync, trades, statuses


async def test_bybit_snapshot_and_deltas_stay_in_sync(sim_with):
    sync, trades, statuses = await run_bybit(sim_with())
    assert statuses[0] == "snapshot" and set(statuses) <= {"snapshot", "applied"}
    assert sync.in_sync and sync.stats["gaps"] == 0 and sync.stats["applied"] >= 5
    assert not sync.book.is_crossed()
    assert trades and all(t.symbol == "BTCUSDT" for t in trades)


async def test_bybit_injected_gaps_are_detected(sim_with):
    sync, _trades, statuses = await run_bybit(sim_with({"bybit": {"depth_gap_every": 4}}))
    assert sync.stats["gaps"] >= 1 and "gap" in statuses


async def run_okx(handle, seconds=LISTEN_S):
    sync = OkxBookSync()
    trades, statuses = [], []
    async with websockets.connect(handle.ws_url("okx") + okx.PUBLIC_WS_PATH) as ws:
        await ws.send(okx.subscribe_message(okx.channel_args("btc")))
        async for text in _frames(ws, seconds):
            obj = okx.decode_frame(text)
            kind = okx.frame_kind(obj)
            assert kind != "error", obj
            if kind == "book":
                statuses.append(sync.on_message(okx.parse_book(obj)))
            elif kind == "trades":
                trades.extend(okx.parse_trades(obj))
    return sync, trades, statuses


async def test_okx_books_seq_and_checksum_stay_in_sync(sim_with):
    sync, trades, statuses = await run_okx(sim_with())
    assert statuses[0] == "snapshot" and set(statuses) <= {"snapshot", "applied"}, statuses
    assert sync.stats["bad_checksums"] == 0 and sync.stats["gaps"] == 0 and sync.stats["applied"] >= 5
    assert sync.last_id is not None  # the simulator sends seqId/prevSeqId
    assert trades and all(t.symbol == "BTC-USDT" for t in trades)


async def test_okx_injected_bad_checksums_and_gaps_are_detected(sim_with):
    sync, _t, statuses = await run_okx(sim_with({"okx": {"okx_bad_checksum_every": 3}}))
    assert sync.stats["bad_checksums"] >= 1 and "bad_checksum" in statuses
    sync, _t, statuses = await run_okx(sim_with({"okx": {"depth_gap_every": 3}}))
    assert sync.stats["gaps"] >= 1 and "gap" in statuses
