"""More than one worker into one Redis: both in the status, no key written by both, ageing out, overlap refused."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest
import redis.asyncio as aioredis
from publish_helpers import Subscriber, sample, wait_until

from p9cli.errors import ConfigError
from p9cli.publish import (
    FUSION_DATA,
    PRECISION9_CONTEXT,
    STATUS,
    WorkerInfo,
    publishing,
    validate_message,
    worker_channel,
)


def _feeds(worker: WorkerInfo):
    return lambda: {
        "feeds": [{"exchange": e, "symbol": s, "state": "live", "stale_sources": [], "messages": 10, "trades": 3,
                   "reconnects": 0, "messages_per_s": 4.0, "book_resyncs": 0, "price": 100.5, "trade_age_ms": 120,
                   "book_age_ms": 40, "structure_age_ms": 30_000, "context_age_ms": 500}
                  for e in worker.exchanges for s in worker.symbols],
        "stale": False,
        "event_ts": 1_796_000_000_000,
    }


class Monitor:
    """Who wrote which key: MONITOR on the server, client addresses mapped to client names."""

    def __init__(self, url: str):
        self.client = aioredis.Redis.from_url(url)
        self.sets: list[tuple[str, str]] = []  # (client addr, key)
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Monitor:
        async def run():
            async with self.client.monitor() as m:
                async for cmd in m.listen():
                    parts = cmd["command"].split(" ", 2)
                    if parts[0] in ("SET", "DEL", "EXPIRE") and len(parts) > 1:
                        self.sets.append((f"{cmd.get('client_address')}:{cmd.get('client_port')}", parts[1]))

        self._task = asyncio.create_task(run())
        await asyncio.sleep(0.2)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        await self.client.aclose()


async def test_two_workers_share_one_redis_without_writing_the_same_key(private_redis):
    server = private_redis()
    url = server.url
    wa = WorkerInfo.create("w-a", ("binance",), ("btcusdt", "ethusdt"))
    wb = WorkerInfo.create("w-b", ("okx", "bybit"), ("btcusdt",))
    names = {}
    async with Monitor(url) as mon, Subscriber(url, [STATUS, worker_channel("w-a"), worker_channel("w-b")]) as sub:
        async with publishing(url, wa, _feeds(wa), status_interval_s=0.2, flush_interval_s=0.05) as pa, \
                publishing(url, wb, _feeds(wb), status_interval_s=0.2, flush_interval_s=0.05) as pb:
            for pub, w in ((pa, wa), (pb, wb)):
                for n in range(3):
                    for e in w.exchanges:
                        for s in w.symbols:
                            for kind in (FUSION_DATA, PRECISION9_CONTEXT):
                                pub.offer(*sample(kind, e, s, n))
                    await asyncio.sleep(0.06)

            def both_listed():
                return any({w["worker_id"] for w in m["workers"]} == {"w-a", "w-b"} for m in sub.messages[STATUS])

            await sub.wait_for(both_listed, 10)
            client = aioredis.Redis.from_url(url)
            for info in await client.client_list():
                names[info["addr"]] = info["name"]
            await client.aclose()
            # every message on the status channels matches its schema
            for ch, msgs in sub.messages.items():
                for m in msgs:
                    validate_message(ch, m)
            merged = next(m for m in reversed(sub.messages[STATUS]) if len(m["workers"]) == 2)
            by_id = {w["worker_id"]: w for w in merged["workers"]}
            assert by_id["w-a"]["exchanges"] == ["binance"] and by_id["w-b"]["exchanges"] == ["okx", "bybit"]
            assert len(by_id["w-b"]["feeds"]) == 2 and by_id["w-a"]["publisher"]["published"]["fusion_data"] >= 1
            writers = {m["writer"] for m in sub.messages[STATUS]}
            assert len(writers) == 1  # one lease holder merges
            keys_a = set(pa.stats.published)
            keys_b = set(pb.stats.published)
            assert not keys_a & keys_b, keys_a & keys_b
            assert (STATUS in keys_a) != (STATUS in keys_b)
            holder, other = (pa, pb) if STATUS in keys_a else (pb, pa)

        # the independent witness: per key, the set of client connections that wrote it
        writers_by_key: dict[str, set[str]] = {}
        for addr, key in mon.sets:
            writers_by_key.setdefault(key, set()).add(names.get(addr, addr))
        shared = {k: v for k, v in writers_by_key.items() if len(v) > 1}
        assert not shared, shared
        assert writers_by_key[worker_channel("w-a")] == {"p9:w-a"}
        assert writers_by_key["fusion_data:okx:btcusdt"] == {"p9:w-b"}
    # a clean exit deletes the worker keys at once
    client = aioredis.Redis.from_url(url)
    assert await client.exists(worker_channel("w-a"), worker_channel("w-b")) == 0
    await client.aclose()
    assert holder is not other


async def test_a_stopped_worker_ages_out_and_the_lease_moves(private_redis):
    server = private_redis()
    url = server.url
    wa = WorkerInfo.create("w-a", ("binance",), ("btcusdt",))
    wb = WorkerInfo.create("w-b", ("okx",), ("btcusdt",))
    async with Subscriber(url, [STATUS]) as sub, \
            publishing(url, wa, _feeds(wa), status_interval_s=0.2, flush_interval_s=0.05) as pa:
        await sub.wait_for(lambda: sub.messages[STATUS], 10)
        kw = dict(status_interval_s=0.2, flush_interval_s=0.05, worker_ttl_s=1)
        async with publishing(url, wb, _feeds(wb), **kw) as pb:
            await sub.wait_for(lambda: len(sub.messages[STATUS][-1]["workers"]) == 2, 10)
            pb.on_close = None  # b "crashes": no goodbye, its key must expire by itself
        await sub.wait_for(lambda: [w["worker_id"] for w in sub.messages[STATUS][-1]["workers"]] == ["w-a"], 10)
        assert sub.messages[STATUS][-1]["writer"] == "w-a"
        n_before = len(sub.messages[STATUS])
        assert pa.stats.published.get(STATUS, 0) >= 1
    # a alone wrote the status; after a stops, a new worker takes the lease at once (a released it)
    wc = WorkerInfo.create("w-c", ("bybit",), ("btcusdt",))
    async with Subscriber(url, [STATUS]) as sub2, \
            publishing(url, wc, _feeds(wc), status_interval_s=0.2, flush_interval_s=0.05):
        await sub2.wait_for(lambda: sub2.messages[STATUS], 5)
        assert sub2.messages[STATUS][-1]["writer"] == "w-c"
        assert [w["worker_id"] for w in sub2.messages[STATUS][-1]["workers"]] == ["w-c"]
    assert n_before >= 2


async def test_a_worker_whose_pairs_a_live_worker_publishes_is_refused(private_redis):
    server = private_redis()
    wa = WorkerInfo.create("w-a", ("binance", "okx"), ("btcusdt", "ethusdt"))
    wx = WorkerInfo.create("w-x", ("okx",), ("ethusdt", "solusdt"))
    async with publishing(server.url, wa, _feeds(wa), status_interval_s=0.2, flush_interval_s=0.05) as pa:
        await wait_until(lambda: pa.stats.published.get(worker_channel("w-a")), 10, "a's status")
        with pytest.raises(ConfigError, match="worker w-a on .* already publishes okx:ethusdt; give each worker"):
            async with publishing(server.url, wx, _feeds(wx)):
                pass
        twin = WorkerInfo("w-a", ("bybit",), ("xrpusdt",), host="elsewhere", pid=4242)
        with pytest.raises(ConfigError, match="worker id 'w-a' is in use by pid .* give this worker another"):
            async with publishing(server.url, twin, _feeds(twin)):
                pass
        wy = WorkerInfo.create("w-y", ("bybit",), ("ethusdt",))  # disjoint: fine
        async with publishing(server.url, wy, _feeds(wy)) as py:
            assert py.stats.connected


async def test_an_outage_is_counted_in_the_worker_status(private_redis):
    server = private_redis()
    port = server.port
    wa = WorkerInfo.create("w-a", ("binance",), ("btcusdt",))
    lines: list[str] = []
    async with publishing(server.url, wa, _feeds(wa), status_interval_s=0.2, flush_interval_s=0.05,
                          flush_timeout_s=0.5, backoff_cap_s=0.3, log=lines.append) as pa:
        await wait_until(lambda: pa.stats.published.get(STATUS), 10, "first status")
        server.proc.kill()
        server.proc.wait()
        await wait_until(lambda: pa.in_outage, 10, "outage")
        restarted = private_redis(port=port)
        await wait_until(lambda: not pa.in_outage, 15, "reconnect")
        client = aioredis.Redis.from_url(restarted.url)

        async def status_shows_outage():
            raw = await client.get(STATUS)
            if not raw:
                return False
            msg = orjson.loads(raw)
            validate_message(STATUS, msg)
            return msg["workers"][0]["publisher"]["outages"] == 1 and msg["workers"][0]["publisher"]["connected"]

        for _ in range(100):
            if await status_shows_outage():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the status never showed the outage")
        await client.aclose()
    assert len(lines) == 2, lines
