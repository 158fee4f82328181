"""The coalescing Redis publisher: one dedicated connection, one pipeline per flush, newest value only.

``offer(channel, payload)`` is synchronous and O(1): it replaces whatever payload of that channel
is still waiting and wakes the flush loop. The loop flushes as soon as something waits (offers made
in the same event-loop turn, or while a flush is in flight, coalesce into the next pipeline;
``flush_interval_s`` is only the longest the loop sleeps when nothing is offered, the cadence of
its ``on_tick`` hook). A flush numbers the waiting payloads (``seq`` per channel), encodes them
with orjson and sends them as ONE non-transactional pipeline in which every message is ``SET
channel value EX ttl`` followed by ``PUBLISH channel value`` (the twin first, so a bot that
SUBSCRIBEs and then GETs never misses the newest value).

A slow or absent Redis never builds a backlog: while a flush is stuck or Redis is down, the
waiting dict holds at most one payload per channel. An outage prints one line when it starts and
one when it ends (never one per message), is counted, and reconnects with capped exponential
backoff and jitter. No secret of the URL is ever printed: every text goes through ``redact``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError

from p9cli.errors import ServiceUnavailable
from p9cli.publish.channels import DEFAULT_TTL_S, kind_of
from p9cli.publish.redact import redact, redact_url, url_secrets

Log = Callable[[str], None]


def log_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class PublisherStats:
    """Counters of one publisher (read them any time; the status heartbeat carries them)."""

    published: dict[str, int] = field(default_factory=dict)  # per channel name
    flushes: int = 0  # pipelines that Redis answered
    bytes: int = 0  # payload bytes published (each payload counted once, not twice for its twin)
    errors: int = 0  # commands Redis refused + flushes that failed
    outages: int = 0  # times the connection was lost (or never came back after a stall)
    outage_ms: int = 0  # total time without Redis, finished outages
    coalesced: int = 0  # payloads replaced by a newer one before they were sent
    connected: bool = False
    #: thread CPU seconds spent in flushes (encoding + pipeline + replies; ``time.thread_time``
    #: deltas on the publisher's task: the pipeline's await may include other coroutines' CPU that
    #: ran meanwhile on the same thread, so this is an upper bound)
    cpu_s: float = 0.0
    #: distinct server connections seen by the heartbeat (a changed HELLO client id): a silent
    #: reconnect (e.g. the server restarted within milliseconds) bumps it, an outage may not
    sessions: int = 0

    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ch, n in self.published.items():
            k = kind_of(ch)
            out[k] = out.get(k, 0) + n
        return out

    def summary(self) -> dict[str, Any]:
        """The counters as the worker status carries them (published per channel kind)."""
        return {
            "connected": self.connected,
            "flushes": self.flushes,
            "published": self.by_kind(),
            "bytes": self.bytes,
            "errors": self.errors,
            "outages": self.outages,
            "outage_ms": self.outage_ms,
            "coalesced": self.coalesced,
        }


Hook = Callable[["Publisher"], Awaitable[None]]


class Publisher:
    """Latest-value publisher to one Redis (see the module docstring).

    ``url``               redis://, rediss:// or unix:// (password and ACL username allowed).
    ``flush_interval_s``  longest wait between two flushes when nothing is offered (an offer wakes the
                          loop at once); also the cadence of ``on_tick``.
    ``ttl_s``             per-kind overrides of the twins' expiry (``channels.DEFAULT_TTL_S``).
    ``on_start``          optional coroutine run once after the first PING, before the loop starts
                          (the worker heartbeat refuses overlapping workers there).
    ``on_tick``           optional coroutine run before every flush on the publisher's task (the
                          worker heartbeat uses it to offer statuses and read worker keys on the
                          same connection).
    ``on_close``          optional coroutine run at close after the final flush, before the
                          connection closes (the heartbeat deletes the worker's key there).
    ``log``               where the outage lines go (stderr by default).
    ``on_flushed``        optional ``callable(stamped, done)`` called after every pipeline Redis
                          answered: ``stamped`` = ``[(channel, stamp)]`` of the messages in it that
                          were offered with a ``stamp``, ``done`` = ``time.perf_counter()`` when
                          the pipeline completed (the stream measures its latency with it).
    """

    def __init__(
        self,
        url: str,
        *,
        flush_interval_s: float = 0.25,
        ttl_s: dict[str, int] | None = None,
        on_start: Hook | None = None,
        on_tick: Hook | None = None,
        on_close: Hook | None = None,
        log: Log = log_stderr,
        on_flushed: Callable[[list[tuple[str, Any]], float], None] | None = None,
        client_name: str = "p9-publish",
        connect_timeout_s: float = 3.0,
        flush_timeout_s: float = 2.0,
        backoff_initial_s: float = 0.1,
        backoff_cap_s: float = 5.0,
    ):
        if not 0.01 <= flush_interval_s <= 5:
            raise ValueError("flush_interval_s must be between 0.01 and 5 seconds")
        self.url = url
        self.safe_url = redact_url(url)
        self.flush_interval_s = flush_interval_s
        self.ttl_s = {**DEFAULT_TTL_S, **(ttl_s or {})}
        self.on_start = on_start
        self.on_tick = on_tick
        self.on_close = on_close
        self.on_flushed = on_flushed
        self.stats = PublisherStats()
        self._log = log
        self._secrets = url_secrets(url)
        self._connect_timeout_s = connect_timeout_s
        self._flush_timeout_s = flush_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_cap_s = backoff_cap_s
        self._pending: dict[str, tuple[dict[str, Any], int, Any]] = {}
        self._in_flight: dict[str, tuple[dict[str, Any], int, Any]] = {}
        self._waiter: asyncio.Future | None = None  # the flush loop waiting for an offer
        self._seq: dict[str, int] = {}
        self._ttl_by_channel: dict[str, int] = {}
        self._seen_errors: set[str] = set()
        self._outage_since: float | None = None
        self._failures = 0
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._closing = False
        no_retry = Retry(NoBackoff(), 0)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=1,  # ONE dedicated connection: every command of the publisher runs on it
            timeout=None,
            socket_timeout=None,  # no per-read timer (costly); each flush has its own deadline
            socket_connect_timeout=connect_timeout_s,
            retry=no_retry,
            protocol=2,  # RESP2: replies here are OK/integers; works with Redis < 6 and RESP2-only proxies
            client_name=_client_name(client_name),
        )
        self.redis = aioredis.Redis(connection_pool=pool, retry=no_retry)

    # ---- life cycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect and PING; raise :class:`ServiceUnavailable` (one redacted line, exit 69) if that
        fails, then start the flush loop."""
        try:
            await asyncio.wait_for(self.redis.ping(), self._connect_timeout_s + 2)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes one line
            await self._disconnect()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ServiceUnavailable(self.describe_failure(exc)) from None
        self.stats.connected = True
        if self.on_start is not None:
            try:
                await asyncio.wait_for(self.on_start(self), self._connect_timeout_s + 2)
            except (TimeoutError, RedisError, OSError) as exc:
                await self._disconnect()
                raise ServiceUnavailable(self.describe_failure(exc)) from None
            except BaseException:
                await self._disconnect()
                raise
        self._task = asyncio.create_task(self._run(), name="p9-publisher")

    async def close(self, final_flush: bool = True) -> None:
        """Stop the loop; send what is waiting (if Redis answers) and close the connection."""
        self._closing = True
        self._wake.set()
        self._wake_flush()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if final_flush and self._pending and self._outage_since is None:
            with contextlib.suppress(Exception):
                await self.flush()
        if self.on_close is not None and self._outage_since is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.on_close(self), self._flush_timeout_s)
        await self._disconnect()
        self.stats.connected = False

    def describe_failure(self, exc: BaseException, waited_s: float | None = None) -> str:
        """One line for a connection failure; never contains a secret."""
        what = _error_text(exc)
        if any(t in what for t in ("NOAUTH", "Authentication required", "HELLO must be called with the client")):
            line = (
                f"redis at {self.safe_url} requires authentication; put the user and password in "
                "P9_REDIS_URL (redis://USER:PASSWORD@HOST:PORT/DB)"
            )
        elif isinstance(exc, AuthenticationError) or "WRONGPASS" in what:
            line = (
                f"redis at {self.safe_url} refused authentication ({what}); "
                "check the user and password in P9_REDIS_URL"
            )
        elif isinstance(exc, NoPermissionError) or "NOPERM" in what:
            line = (
                f"redis at {self.safe_url} refused a command to this user ({what}); "
                "see docs/redis.md for the ACL p9 needs"
            )
        elif isinstance(exc, TimeoutError):
            waited = self._connect_timeout_s if waited_s is None else waited_s
            line = f"redis at {self.safe_url} did not answer within {waited:g} s"
        else:
            line = f"redis at {self.safe_url} is not reachable ({what})"
            if self.url.startswith("rediss:"):
                line += "; rediss:// needs a server that speaks TLS on that port"
        return redact(line, self._secrets)

    # ---- producing ----------------------------------------------------------------------------

    def offer(self, channel: str, payload: dict[str, Any], ttl_s: int | None = None, stamp: Any = None) -> None:
        """Queue ``payload`` as the newest value of ``channel`` (replaces a waiting one) and wake the
        flush loop (it flushes at once, or right after the flush in flight).

        The publisher owns ``payload`` from now on: it writes ``seq`` into it when sending.
        ``stamp``: anything; handed back to ``on_flushed`` once the message is in Redis.
        """
        if ttl_s is None:
            ttl_s = self._ttl_by_channel.get(channel)
            if ttl_s is None:
                ttl_s = self._ttl_by_channel[channel] = self.ttl_s[kind_of(channel)]
        if channel in self._pending:
            self.stats.coalesced += 1
        self._pending[channel] = (payload, ttl_s, stamp)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _wake_flush(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def pending_count(self) -> int:
        """Payloads waiting for the next flush: at most one per channel, whatever Redis does."""
        return len(self._pending)

    def held_count(self) -> int:
        """Payloads held in memory (waiting or in a flush that has not returned): at most two per
        channel, whatever Redis does."""
        return len(self._pending) + len(self._in_flight)

    def last_seq(self, channel: str) -> int:
        return self._seq.get(channel, 0)

    @property
    def in_outage(self) -> bool:
        return self._outage_since is not None

    # ---- flushing -----------------------------------------------------------------------------

    async def flush(self) -> bool:
        """Send every waiting payload in one pipeline now. True when Redis answered.

        On failure the unsent payloads wait again (unless a newer one arrived meanwhile).
        """
        if not self._pending:
            return True
        thread_time = time.thread_time
        cpu0 = thread_time()
        batch, self._pending = self._pending, {}
        self._in_flight = batch
        pipe = self.redis.pipeline(transaction=False)
        sent: list[tuple[str, int, Any]] = []
        seqs = self._seq
        dumps = orjson.dumps
        for ch, (payload, ttl, stamp) in batch.items():
            seq = seqs.get(ch, 0) + 1
            seqs[ch] = seq  # a number is used once, even if this flush fails: a gap is honest
            payload["seq"] = seq
            data = dumps(payload)
            pipe.set(ch, data, ex=ttl)
            pipe.publish(ch, data)
            sent.append((ch, len(data), stamp))
        try:
            async with asyncio.timeout(self._flush_timeout_s):  # no extra task (wait_for makes one)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            self._restore(batch)
            raise
        except (TimeoutError, RedisError, OSError) as exc:
            self._restore(batch)
            await self._on_failure(exc)
            self.stats.cpu_s += thread_time() - cpu0
            return False
        finally:
            self._in_flight = {}
            with contextlib.suppress(Exception):
                await pipe.reset()
        done = time.perf_counter()
        self.stats.flushes += 1
        published = self.stats.published
        stamped = []
        for i, (ch, size, stamp) in enumerate(sent):
            r_set, r_pub = replies[2 * i], replies[2 * i + 1]
            if isinstance(r_set, Exception) or isinstance(r_pub, Exception):
                self._command_error(ch, r_set if isinstance(r_set, Exception) else r_pub)
                continue
            published[ch] = published.get(ch, 0) + 1
            self.stats.bytes += size
            if stamp is not None:
                stamped.append((ch, stamp))
        self._on_success()
        self.stats.cpu_s += thread_time() - cpu0
        if stamped and self.on_flushed is not None:
            self.on_flushed(stamped, done)
        return True

    def _restore(self, batch: dict[str, tuple[dict[str, Any], int, Any]]) -> None:
        newer = self._pending
        self._pending = batch
        for ch, item in newer.items():
            if ch in batch:
                self.stats.coalesced += 1
            batch[ch] = item

    def _command_error(self, channel: str, exc: Exception) -> None:
        self.stats.errors += 1
        text = redact(_error_text(exc), self._secrets)
        key = f"{type(exc).__name__}:{text[:40]}"
        if key not in self._seen_errors:  # one line per kind of refusal, not per message
            self._seen_errors.add(key)
            self._log(f"p9: redis at {self.safe_url} refused a write to {channel}: {text} (counted in status)")

    async def _on_failure(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self._failures += 1
        await self._disconnect()  # a stuck or broken connection is never reused
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            self.stats.outages += 1
            self.stats.connected = False
            line = self.describe_failure(exc, self._flush_timeout_s)
            self._log(f"p9: {line}; keeping the newest payload per channel and reconnecting")

    def _on_success(self) -> None:
        if self._outage_since is not None:
            took = time.monotonic() - self._outage_since
            self.stats.outage_ms += int(took * 1000)
            self._outage_since = None
            self._log(
                f"p9: redis at {self.safe_url} is back after {took:.1f} s "
                f"(outage {self.stats.outages}; {self.stats.coalesced} payloads coalesced so far)"
            )
        self._failures = 0
        self.stats.connected = True

    def backoff_s(self) -> float:
        """Delay before the next attempt after ``_failures`` failed ones: capped, with full jitter
        between half and all of the exponential step."""
        step = min(self._backoff_cap_s, self._backoff_initial_s * (2 ** min(self._failures - 1, 20)))
        return step * random.uniform(0.5, 1.0)

    async def _run(self) -> None:
        while not self._closing:
            # In an outage only a PING goes out until Redis answers: payloads written into a stalled
            # server's socket could be executed late, after newer ones.
            if self._outage_since is not None and not await self._probe():
                await self._sleep(self.backoff_s())
                continue
            # what waits goes first: the heartbeat's round trips (1/s) never delay an offered payload
            if not await self.flush():
                await self._sleep(self.backoff_s())
                continue
            if self.on_tick is not None:
                try:
                    async with asyncio.timeout(self._flush_timeout_s):
                        await self.on_tick(self)
                except asyncio.CancelledError:
                    raise
                except ResponseError as exc:  # a command refused (ACL, OOM): the connection is fine
                    self._command_error("the status heartbeat", exc)
                except (TimeoutError, RedisError, OSError) as exc:
                    await self._on_failure(exc)
                if self._outage_since is not None:
                    await self._sleep(self.backoff_s())
                    continue
            await self._wait_offer(self.flush_interval_s)

    async def _wait_offer(self, seconds: float) -> None:
        """Sleep until something is offered (or ``seconds`` at most): a future + a timer handle,
        cheaper than ``wait_for`` on an Event (which makes a task every time)."""
        if self._pending or self._closing:
            return
        loop = asyncio.get_running_loop()
        fut = self._waiter = loop.create_future()
        timer = loop.call_later(seconds, _resolve, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._waiter = None

    async def _probe(self) -> bool:
        try:
            await asyncio.wait_for(self.redis.ping(), self._flush_timeout_s)
        except (TimeoutError, RedisError, OSError) as exc:
            await self._on_failure(exc)
            return False
        self._on_success()
        return True

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0 or self._closing:
            return
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _disconnect(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.connection_pool.disconnect(inuse_connections=True)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, ResponseError | AuthenticationError):
        return text.splitlines()[0]
    return text.splitlines()[0] if text else type(exc).__name__


def _client_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_:.@" else "_" for c in name)[:100] or "p9"
