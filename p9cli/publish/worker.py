"""Workers and the whole-system heartbeat (``precision9_fusion_status``) for one or many machines.

Each ``p9 stream`` process is a worker with an id (default ``host:pid``). Once a second it
publishes its own status on ``precision9_fusion_status:{worker_id}`` (key with a short TTL, so a
worker that stopped ages out; a clean exit deletes it at once). One worker at a time holds the
status lease (``precision9_fusion_status_lease``, renewed each second, taken over by another live
worker within its TTL when the holder dies); the holder reads every live worker key and publishes
the merged ``precision9_fusion_status``. Workers with disjoint exchanges/symbols therefore never
write the same key at the same time; ``claim`` refuses to start a worker whose pairs a live worker
already publishes.

All Redis commands run on the publisher's one connection (this is its ``on_tick`` hook).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.exceptions import ResponseError

from p9cli.errors import ConfigError
from p9cli.publish.channels import STATUS, WORKER_STATUS, envelope, now_ms, worker_channel
from p9cli.publish.publisher import Publisher

LEASE_KEY = "precision9_fusion_status_lease"
WORKER_PATTERN = worker_channel("*")

# GET the lease; take or renew it when free or already ours. Returns 1 when we hold it.
_LEASE_LUA = """
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: What the stream service reports about its feeds, called once per heartbeat:
#: ``{"feeds": [{"exchange", "symbol", "state", ...}], "stale": bool, "event_ts": int}``.
StatusSource = Callable[[], dict[str, Any]]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    exchanges: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()  # channel symbols: btcusdt
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_ms: int = field(default_factory=now_ms)

    @classmethod
    def create(
        cls, worker_id: str | None = None, exchanges: tuple[str, ...] = (), symbols: tuple[str, ...] = ()
    ) -> WorkerInfo:
        return cls(worker_id or default_worker_id(), tuple(exchanges), tuple(symbols))

    def pairs(self) -> set[str]:
        return {f"{e}:{s}" for e in self.exchanges for s in self.symbols}


class Heartbeat:
    """The publisher's ``on_tick`` hook: worker status, lease, merged system status."""

    def __init__(
        self,
        worker: WorkerInfo,
        source: StatusSource | None = None,
        *,
        interval_s: float = 1.0,
        worker_ttl_s: int = 5,
        lease_ttl_s: float = 3.0,
    ):
        self.worker = worker
        self.source = source
        self.interval_s = interval_s
        self.worker_ttl_s = worker_ttl_s
        self.lease_ttl_ms = int(lease_ttl_s * 1000)
        self.key = worker_channel(worker.worker_id)
        self.holds_lease = False
        self._next = 0.0
        self._lease = None
        self._release = None
        self._client_id: object = None  # HELLO's id of our connection; False: HELLO unsupported

    def worker_status(self, pub: Publisher) -> dict[str, Any]:
        src = self.source() if self.source is not None else {}
        w = self.worker
        return envelope(
            WORKER_STATUS,
            event_ts=int(src.get("event_ts") or now_ms()),
            stale=bool(src.get("stale", False)),
            worker_id=w.worker_id,
            host=w.host,
            pid=w.pid,
            started_ms=w.started_ms,
            exchanges=list(w.exchanges),
            symbols=list(w.symbols),
            feeds=list(src.get("feeds", [])),
            publisher=pub.stats.summary(),
        )

    async def __call__(self, pub: Publisher) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        await self._check_session(pub)
        pub.offer(self.key, self.worker_status(pub), ttl_s=self.worker_ttl_s)
        if not await pub.flush():  # own status visible before anyone merges
            return
        if self._lease is None:
            self._lease = pub.redis.register_script(_LEASE_LUA)
        self.holds_lease = bool(await self._lease(keys=[LEASE_KEY], args=[self.worker.worker_id, self.lease_ttl_ms]))
        if self.holds_lease:
            workers = await live_workers(pub)
            pub.offer(
                STATUS,
                envelope(
                    STATUS,
                    event_ts=max((int(w.get("event_ts", 0)) for w in workers), default=now_ms()),
                    stale=any(bool(w.get("stale")) for w in workers),
                    writer=self.worker.worker_id,
                    workers=workers,
                ),
            )

    async def _check_session(self, pub: Publisher) -> None:
        """Count a new server connection in ``pub.stats.sessions``: redis-py reconnects silently
        when the old socket is dead before a command (a server restarted within milliseconds),
        and a restarted server is empty. ``HELLO 2`` (RESP2, in p9's ACL) answers with our
        connection's client id; a different id is a new connection."""
        if self._client_id is False:
            return
        try:
            reply = await pub.redis.execute_command("HELLO", "2")
        except ResponseError:  # Redis < 6 or a proxy without HELLO: no check
            self._client_id = False
            return
        if isinstance(reply, dict):
            cid = reply.get(b"id", reply.get("id"))
        else:
            items = list(reply or [])
            pairs = dict(zip(items[::2], items[1::2], strict=False))
            cid = pairs.get(b"id", pairs.get("id"))
        if cid is not None and cid != self._client_id:
            if self._client_id is not None:
                pub.stats.sessions += 1
            self._client_id = cid

    async def claim(self, pub: Publisher) -> None:
        """Refuse (ConfigError, exit 2) when a live worker already publishes one of our pairs or
        another live process uses our worker id."""
        mine = self.worker.pairs()
        for other in await live_workers(pub):
            if other.get("worker_id") == self.worker.worker_id:
                if (other.get("host"), other.get("pid")) != (self.worker.host, self.worker.pid):
                    raise ConfigError(
                        f"worker id {self.worker.worker_id!r} is in use by pid {other.get('pid')} on "
                        f"{other.get('host')}; give this worker another --worker-id (a stopped worker's id is "
                        f"free after {self.worker_ttl_s} s)"
                    )
                continue
            theirs = {f"{e}:{s}" for e in other.get("exchanges", []) for s in other.get("symbols", [])}
            both = sorted(mine & theirs)
            if both:
                raise ConfigError(
                    f"worker {other.get('worker_id')} on {other.get('host')} already publishes "
                    f"{', '.join(both[:5])}{' ...' if len(both) > 5 else ''}; give each worker disjoint "
                    "--exchanges or --symbols (or a distinct Redis)"
                )

    async def retire(self, pub: Publisher) -> None:
        """Clean exit: delete our worker key (gone from the status at once), release the lease."""
        if self._release is None:
            self._release = pub.redis.register_script(_RELEASE_LUA)
        await pub.redis.delete(self.key)
        await self._release(keys=[LEASE_KEY], args=[self.worker.worker_id])
        self.holds_lease = False


async def live_workers(pub: Publisher) -> list[dict[str, Any]]:
    """Every live worker's last status (keys that have not expired), sorted by worker id."""
    keys = [k async for k in pub.redis.scan_iter(match=WORKER_PATTERN, count=1000)]
    if not keys:
        return []
    out = []
    for raw in await pub.redis.mget(keys):
        if raw:
            with suppress(orjson.JSONDecodeError):
                out.append(orjson.loads(raw))
    return sorted(out, key=lambda w: str(w.get("worker_id")))


@asynccontextmanager
async def publishing(
    url: str,
    worker: WorkerInfo,
    source: StatusSource | None = None,
    *,
    status_interval_s: float = 1.0,
    worker_ttl_s: int = 5,
    **publisher_kwargs: Any,
) -> AsyncIterator[Publisher]:
    """A started publisher with this worker's heartbeat; on exit: final flush, worker key deleted.

    Raises ServiceUnavailable (exit 69) when Redis does not answer, ConfigError (exit 2) when a live
    worker already publishes one of our pairs.
    """
    beat = Heartbeat(worker, source, interval_s=status_interval_s, worker_ttl_s=worker_ttl_s)
    publisher_kwargs.setdefault("client_name", f"p9:{worker.worker_id}")
    pub = Publisher(url, on_start=beat.claim, on_tick=beat, on_close=beat.retire, **publisher_kwargs)
    await pub.start()
    try:
        yield pub
    finally:
        await pub.close()
