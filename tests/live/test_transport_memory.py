"""Memory stays bounded when a peer floods frames or sends one huge frame: the transport reads
at most ``max_queue`` frames ahead of the consumer (then TCP pushes back on the peer) and
refuses a frame over ``max_size`` (close 1009) without buffering it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from p9cli.live.transport import TransportClosed, TransportOptions, websockets_connector

SERVER = Path(__file__).with_name("flood_server.py")
MiB = 1024 * 1024


@pytest.fixture
def hostile_peer():
    procs = []

    def start(mode: str) -> str:
        p = subprocess.Popen([sys.executable, str(SERVER), mode], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        port = int(p.stdout.readline())
        return f"ws://127.0.0.1:{port}"

    yield start
    for p in procs:
        p.kill()
        p.wait(5)


async def test_a_flood_does_not_grow_memory(hostile_peer):
    url = hostile_peer("flood")
    tracemalloc.start()
    try:
        transport = await websockets_connector(TransportOptions(max_queue=64))(url)
        base = tracemalloc.get_traced_memory()[0]
        await asyncio.sleep(1.5)  # the consumer stalls; the peer keeps sending as fast as it can
        for _ in range(2000):  # then reads on: frames arrive intact
            assert len(await transport.recv()) == 1024
        await asyncio.sleep(0.5)
        _, peak = tracemalloc.get_traced_memory()
        await transport.close()
    finally:
        tracemalloc.stop()
    assert peak - base < 4 * MiB, f"grew {(peak - base) / MiB:.1f} MiB"


async def test_one_huge_frame_is_refused_without_buffering_it(hostile_peer):
    url = hostile_peer("huge")
    tracemalloc.start()
    try:
        transport = await websockets_connector(TransportOptions(max_size=MiB))(url)
        base = tracemalloc.get_traced_memory()[0]
        with pytest.raises(TransportClosed) as info:
            await asyncio.wait_for(transport.recv(), 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009, info.value.reason  # "message too big"
    assert peak - base < 4 * MiB, f"grew {(peak - base) / MiB:.1f} MiB"
