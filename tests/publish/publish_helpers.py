"""Helpers of the publish tests: a real subscriber, private servers, valid sample payloads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

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


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


# ---- valid sample payloads (what the stream service will fill with real values) -----------------

def candle(open_time: int, closed: bool) -> dict:
    return {"open_time": open_time, "open": 100.0, "high": 101.5, "low": 99.5, "close": 100.5,
            "volume": 12.25, "closed": closed}


def fusion_data(exchange: str, symbol: str, n: int = 0) -> dict:
    t = 1_796_000_000_000
    return envelope(
        FUSION_DATA, exchange=exchange, symbol=symbol, event_ts=t + n,
        price=100.5 + n,
        book={"bid": 100.4, "ask": 100.6, "bid_size": 1.5, "ask_size": 2.0, "mid": 100.5, "spread_bps": 19.9,
              "update_id": 123456 + n},
        candles={"1m": {"forming": candle(t, False), "last_closed": candle(t - 60_000, True)},
                 "1h": {"forming": candle(t - 3_600_000 + 60_000, False), "last_closed": None}},
        position=None, n=n,
    )


def precision9_context(exchange: str, symbol: str, n: int = 0) -> dict:
    return envelope(
        PRECISION9_CONTEXT, exchange=exchange, symbol=symbol, event_ts=1_796_000_000_000 + n,
        price=100.5,
        bias={"sign": 1, "confidence": 0.62, "score": 0.4, "tf_alignment": {"1h": 1, "4h": 0, "1d": -1}},
        atr={"1h": 0.8, "4h": 1.9, "1d": 4.2}, atr_pct={"1h": 0.8, "4h": 1.89, "1d": 4.18},
        regime={"label": "normal", "rv_pct": 41.0, "percentile_pct": 55.0},
        levels={"support": {"price": 99.0, "distance_pct": -1.49, "distance_atr": {"1h": -1.88, "4h": -0.79, "1d": -0.36},
                            "kind": "swing_low", "strength": 0.7, "timeframes": ["1h", "4h"]},
                "resistance": None},
        value_area={"position": "inside", "poc": 100.2, "vah": 101.0, "val": 99.4, "above_poc": True},
        zone=None,
        hints={"stop": {"atr_mult": 2.0, "atr_timeframe": "1h", "long": 97.4, "short": None},
               "size": {"scalar": 0.39, "target_vol_pct": 16.0, "max_scalar": 1.0}},
        freshness={"trade_age_ms": 120, "book_age_ms": 40, "structure_age_ms": 30_000, "book_valid": True,
                   "stale_sources": []},
        n=n,
    )


def market_context(exchange: str, symbol: str, n: int = 0) -> dict:
    return envelope(
        MARKET_CONTEXT, exchange=exchange, symbol=symbol, event_ts=1_796_000_000_000 + n,
        structure=None, live={"price": 100.5, "trades_per_s": {"1s": 3, "10s": 2.5, "60s": 2.1}}, fusion=None, n=n,
    )


SAMPLES = {FUSION_DATA: fusion_data, PRECISION9_CONTEXT: precision9_context, MARKET_CONTEXT: market_context}


def sample(kind: str, exchange: str, symbol: str, n: int = 0) -> tuple[str, dict]:
    return channel(kind, exchange, symbol), SAMPLES[kind](exchange, symbol, n)
