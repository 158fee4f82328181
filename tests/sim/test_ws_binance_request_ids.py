"""Binance WS request ids: integers, strings of up to 36 characters (Binance's own SDK sends
str(uuid4()) with dashes) or null are accepted; anything else gets the error frame."""

from __future__ import annotations

import asyncio
import json
import uuid

import websockets


async def roundtrip(url: str, message: dict) -> dict:
    async with websockets.connect(url + "/ws") as ws:
        await ws.send(json.dumps(message))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if "id" in frame:
                return frame


async def test_uuid_string_ids_are_accepted_and_echoed(sim):
    rid = str(uuid.uuid4())
    reply = await roundtrip(
        sim.ws_url("binance"), {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": rid}
    )
    assert reply == {"result": None, "id": rid}


async def test_too_long_or_odd_ids_are_refused(sim):
    for bad in ("x" * 37, "a b", 1.5, True):
        reply = await roundtrip(sim.ws_url("binance"), {"method": "LIST_SUBSCRIPTIONS", "id": bad})
        assert "result" not in reply and reply["id"] is None, (bad, reply)
