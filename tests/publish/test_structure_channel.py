"""The structure:{exchange}:{symbol} channel carries the real structure document (built by the analysis
functions from recorded Binance klines) plus the envelope, and every message validates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from publish_helpers import Subscriber, wait_until

from p9cli.analysis.context import build_structure
from p9cli.candles import Candles
from p9cli.publish import STRUCTURE, Publisher, SchemaViolation, channel, validate_message

KLINES = Path(os.environ["P9_FIXTURES"]) / "binance" / "rest"


def _klines(name: str) -> Candles:
    rows = json.loads((KLINES / name).read_text())
    cols = list(zip(*[(r[0], *map(float, (r[1], r[2], r[3], r[4], r[5], r[7]))) for r in rows], strict=True))
    return Candles.from_arrays(*cols)


@pytest.fixture(scope="module")
def document() -> dict:
    c1h = _klines("spot_klines_BTCUSDT_1h_2023-01-01_to_2023-01-08.json")
    return build_structure("binance", "btc", {"1h": c1h})


async def test_structure_document_is_published_with_envelope_and_validates(redis_url, redis_token, document):
    ch = channel(STRUCTURE, "binance", f"{redis_token}usdt")
    async with Subscriber(redis_url, [ch]) as sub, Publisher(redis_url, flush_interval_s=0.05) as pub:
        for n in range(2):
            doc = dict(document, symbol=f"{redis_token}usdt", stale=bool(n))
            pub.offer(ch, doc)
            await wait_until(lambda: pub.pending_count() == 0)
        await sub.wait_for(lambda: len(sub.messages[ch]) == 2)
        client = aioredis.Redis.from_url(redis_url)
        twin = orjson.loads(await client.get(ch))
        ttl = await client.ttl(ch)
        await client.aclose()
    first, second = sub.messages[ch]
    for m in (first, second):
        validate_message(ch, m)
        assert m["schema"] == "p9.structure/2" and m["levels"] == json.loads(json.dumps(document["levels"]))
    assert (first["seq"], second["seq"], second["stale"]) == (1, 2, True)
    assert twin == second and 60 < ttl <= 3600  # the structure twin outlives the 1 s channels


def test_structure_message_needs_the_envelope(document):
    ch = channel(STRUCTURE, "okx", "btcusdt")
    doc = dict(document, seq=1, stale=False)
    validate_message(ch, doc)
    del doc["seq"]
    with pytest.raises(SchemaViolation, match="'seq' is a required property"):
        validate_message(ch, doc)
