"""The publisher against a real Redis (the suite's `redis_url`): twin, channel, seq, coalescing, schemas."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis.asyncio as aioredis
from publish_helpers import Subscriber, n_of, sample, wait_until

from p9cli.publish import (
    FUSION_DATA,
    MARKET_CONTEXT,
    PRECISION9_CONTEXT,
    Publisher,
    SchemaViolation,
    validate_message,
)

KINDS = (MARKET_CONTEXT, FUSION_DATA, PRECISION9_CONTEXT)


async def test_subscriber_gets_every_message_twin_holds_newest_seq_increases(redis_url, redis_token):
    symbol = f"{redis_token}usdt"
    channels = [sample(k, ex, symbol)[0] for k in KINDS for ex in ("binance", "okx")]
    async with Subscriber(redis_url, channels) as sub, Publisher(redis_url, flush_interval_s=0.05) as pub:
        for n in range(6):
            for k in KINDS:
                for ex in ("binance", "okx"):
                    ch, payload = sample(k, ex, symbol, n)
                    pub.offer(ch, payload)
            await wait_until(lambda: pub.pending_count() == 0, what="flush")
        await sub.wait_for(lambda: all(len(m) == 6 for m in sub.messages.values()))
        client = aioredis.Redis.from_url(redis_url)
        try:
            for ch, msgs in sub.messages.items():
                assert [n_of(m) for m in msgs] == list(range(6)), ch
                assert [m["seq"] for m in msgs] == list(range(1, 7)), ch
                for m in msgs:
                    validate_message(ch, m)  # every published message matches its schema
                twin = await client.get(ch)
                assert orjson.loads(twin) == msgs[-1]  # the SET twin holds the newest message
                assert 0 < await client.ttl(ch) <= pub.ttl_s[ch.split(":")[0]]
        finally:
            await client.aclose()
    assert pub.stats.published == {ch: 6 for ch in channels}
    assert pub.stats.errors == 0 and pub.stats.outages == 0
    assert pub.stats.bytes > 0 and pub.stats.flushes >= 6


async def test_offers_between_flushes_coalesce_to_the_newest(redis_url, redis_token):
    symbol = f"{redis_token}usdt"
    ch = sample(FUSION_DATA, "bybit", symbol)[0]
    async with Subscriber(redis_url, [ch]) as sub, Publisher(redis_url, flush_interval_s=0.2) as pub:
        await asyncio.sleep(0.25)
        for n in range(1000):  # far faster than the cadence: only the newest may be sent
            pub.offer(ch, sample(FUSION_DATA, "bybit", symbol, n)[1])
            assert pub.pending_count() == 1
        await sub.wait_for(lambda: sub.messages[ch] and n_of(sub.messages[ch][-1]) == 999)
        await asyncio.sleep(0.3)
    ns = [n_of(m) for m in sub.messages[ch]]
    assert ns[-1] == 999 and len(ns) <= 3, ns  # a flush may have caught an early one, never a backlog
    assert [m["seq"] for m in sub.messages[ch]] == list(range(1, len(ns) + 1))
    assert pub.stats.coalesced >= 997


async def test_every_message_is_set_ex_then_publish_without_transaction(private_redis):
    server = private_redis()
    mon = aioredis.Redis.from_url(server.url)
    seen: list[list[bytes]] = []

    async def monitor():
        async with mon.monitor() as m:
            async for cmd in m.listen():
                seen.append(cmd["command"].split())

    task = asyncio.create_task(monitor())
    await asyncio.sleep(0.2)
    async with Publisher(server.url, flush_interval_s=0.05) as pub:
        for k in KINDS:
            pub.offer(*sample(k, "okx", "btcusdt"))
        await wait_until(lambda: pub.stats.published and sum(pub.stats.published.values()) == 3)
        await asyncio.sleep(0.2)
    task.cancel()
    await mon.aclose()
    writes = [c[:2] + c[3:5] if c[0] == "SET" else c[:2] for c in seen if c and c[0] in ("SET", "PUBLISH")]
    names = [sample(k, "okx", "btcusdt")[0] for k in KINDS]
    expected = []
    for name in names:
        expected += [["SET", name, "EX", "10"], ["PUBLISH", name]]
    assert writes == expected
    assert not any(c and c[0] in ("MULTI", "EXEC") for c in seen)  # not a transaction


def test_validation_rejects_what_bots_could_not_rely_on():
    ch, good = sample(FUSION_DATA, "binance", "btcusdt")
    good["seq"] = 1
    validate_message(ch, orjson.dumps(good))
    bad = orjson.loads(orjson.dumps(good))
    del bad["book"]["update_id"]
    with pytest.raises(SchemaViolation, match="fusion_data:binance:btcusdt: book"):
        validate_message(ch, bad)
    bad = orjson.loads(orjson.dumps(good))
    bad["candles"]["1m"]["forming"]["open_time"] = "2026-01-01"
    with pytest.raises(SchemaViolation, match="open_time"):
        validate_message(ch, bad)
    ch, ctx = sample(PRECISION9_CONTEXT, "okx", "ethusdt")
    ctx["bias"]["sign"] = 2
    with pytest.raises(SchemaViolation, match="bias/sign"):
        validate_message(ch, ctx)
    with pytest.raises(ValueError, match="not a p9 channel"):
        validate_message("fusion_data:binance", good)
