"""Helpers of the publish tests: a real subscriber, private servers, valid sample payloads."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from p9cli.publish.channels import (
    FUSION_DATA,
    MARKET_CONTEXT,
    PRECISION9_CONTEXT,
    channel,
    envelope,
)


class Subscriber:
    """SUBSCRIBEs on its own connection and keeps every message (decoded) per channel."""

    def __init__(self, url: str, channels: list[str]):
        self.url = url
        self.channels = channels
        self.messages: dict[str, list[dict]] = {c: [] for c in channels}
        self._client = aioredis.Redis.from_url(url)
        self._pubsub = self._client.pubsub()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Subscriber:
        await self._pubsub.subscribe(*self.channels)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (ConnectionError, OSError, aioredis.ConnectionError):
                await asyncio.sleep(0.05)
                continue
            if msg and msg["type"] == "message":
                ch = msg["channel"].decode()
                self.messages[ch].append(orjson.loads(msg["data"]))

    async def wait_for(self, predicate, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got { {ch: len(m) for ch, m in self.messages.items()} }")
            await asyncio.sleep(0.02)

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        with contextlib.suppress(Exception):
            await self._client.aclose()


async def wait_until(predicate, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# ---- valid sample payloads: real recorded ones (tests/publish/recorded_payloads.json) ---------------
# The channel schemas are closed (docs/channels.md), so a sample is a real message of p9 stream
# against p9 sim with its envelope replaced. The sample counter ``n`` is carried in ``event_ts``
# (T0 + n): read it back with ``n_of(message)``.

T0 = 1_796_000_000_000
_RECORDED = orjson.loads((Path(__file__).with_name("recorded_payloads.json")).read_bytes())["payloads"]


def n_of(message: dict) -> int:
    """The sample counter of a message built by ``sample(..., n)``."""
    return message["event_ts"] - T0


def _recorded(kind: str, exchange: str, symbol: str, n: int) -> dict:
    fields = {k: v for k, v in copy.deepcopy(_RECORDED[kind]).items()
              if k not in ("schema", "exchange", "symbol", "ts", "event_ts", "seq", "stale")}  # fmt: skip
    return envelope(kind, exchange=exchange, symbol=symbol, event_ts=T0 + n, **fields)


def fusion_data(exchange: str, symbol: str, n: int = 0) -> dict:
    return _recorded(FUSION_DATA, exchange, symbol, n)


def precision9_context(exchange: str, symbol: str, n: int = 0) -> dict:
    return _recorded(PRECISION9_CONTEXT, exchange, symbol, n)


def market_context(exchange: str, symbol: str, n: int = 0) -> dict:
    return _recorded(MARKET_CONTEXT, exchange, symbol, n)


SAMPLES = {FUSION_DATA: fusion_data, PRECISION9_CONTEXT: precision9_context, MARKET_CONTEXT: market_context}


def sample(kind: str, exchange: str, symbol: str, n: int = 0) -> tuple[str, dict]:
    return channel(kind, exchange, symbol), SAMPLES[kind](exchange, symbol, n)
