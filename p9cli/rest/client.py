"""The one REST client of p9 (httpx): per exchange host, rate-limited, retried, measured.

Both halves send through it: ``fetch-history``'s kline pages and the live side's order-book
snapshots. :class:`ExchangeClient` sends :class:`~p9cli.exchanges.base.RestRequest` values
built by an exchange module through the limiter that every client of this process shares
for that exchange host (:func:`p9cli.rest.hosts.rest_host`):

* every request waits for room in its bucket; usage headers (``X-MBX-USED-WEIGHT-1M``)
  adjust the count live;
* rate-limit answers: the bucket pauses for ``Retry-After``, the exchange's reset header
  (``RATE_LIMIT_RESET_HEADER``) or a jittered back-off, and the request is retried; bans
  (418 / 403) pause the whole exchange; a ban longer than ``max_ban_wait_s`` fails with a
  clear line instead of hanging a cron run;
* 5xx, timeouts, dropped connections, malformed bodies: full-jitter exponential back-off,
  at most ``max_attempts`` tries per request;
* a refused connection is tried ``connect_attempts`` times, then the exchange is reported
  unreachable (:class:`ExchangeUnavailable`).

What differs per exchange is declared by its module (``RATE_BUCKETS``, ``REST_MAX_IN_FLIGHT``,
``RATE_LIMIT_RESET_HEADER``, ``used_weight``, ``check_response``, ``server_time_request``,
``parse_server_time``); nothing here branches on an exchange's name.

Use from one asyncio loop, concurrently from many tasks::

    async with ExchangeClient(binance, settings.rest_url("binance")) as client:
        body = await client.send(binance.depth_request("btc", 1000))
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx

from p9cli.exchanges.base import (
    BadRequest,
    Banned,
    ExchangeError,
    MalformedResponse,
    RateLimited,
    RequestTimeout,
    RestRequest,
    ServerError,
    header,
)
from p9cli.rest.hosts import rest_host


@dataclass
class ClientOptions:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    max_attempts: int = 8
    connect_attempts: int = 3
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 8.0
    max_ban_wait_s: float = 90.0
    max_ban_waits: int = 3
    #: concurrent requests of one client (HTTP/1.1 keep-alive connections in its pool);
    #: None: what the exchange module declares (``REST_MAX_IN_FLIGHT``)
    max_in_flight: int | None = None
    #: True (a batch run): once the exchange is unreachable or banned for too long, every later
    #: request of this client fails at once. False (a long-running feed): only the request
    #: that found out fails; the next one tries again (after any pause the limiter holds).
    give_up: bool = True


@dataclass
class RequestCounters:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429-class answers (429, 418, 403 ban, rate-limit codes)

    def add(self, other: RequestCounters) -> None:
        self.requests += other.requests
        self.retries += other.retries
        self.rate_limited += other.rate_limited


class ExchangeUnavailable(ExchangeError):
    """The exchange is unreachable, or banned us for longer than ``max_ban_wait_s``. With
    ``ClientOptions.give_up`` (the default) the client sends nothing more; without, a later
    request tries again, after the ban's pause (which every client of the host honours)."""


def _event_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class ExchangeClient:
    """HTTP client + limiter + retries for one exchange. Use as ``async with``; any number of
    tasks of the client's event loop may :meth:`send` at once. The shared limiter is not
    thread-safe: keep every client of a process in one event loop at a time."""

    def __init__(
        self,
        adapter: ModuleType,
        base_url: str,
        options: ClientOptions | None = None,
        *,
        on_event: Any = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.adapter = adapter
        self.name: str = adapter.NAME
        self.base_url = base_url.rstrip("/")
        self.options = options or ClientOptions()
        self.on_event = on_event or (lambda exchange, message: None)
        self.counters = RequestCounters()
        host = rest_host(adapter, self.base_url)
        #: the exchange's clock, shared by every client of this process for this host
        self.clock = host.clock
        #: the exchange's limits, shared by every client of this process for this host
        self.limiter = host.limiter
        n = self.options.max_in_flight or adapter.REST_MAX_IN_FLIGHT
        self._in_flight = asyncio.Semaphore(n)
        self._pool = n
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self.unavailable: ExchangeUnavailable | None = None
        self._gone = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> ExchangeClient:
        o = self.options
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            http1=True,
            http2=False,
            timeout=httpx.Timeout(
                connect=o.connect_timeout_s, read=o.read_timeout_s, write=o.read_timeout_s, pool=None
            ),
            limits=httpx.Limits(
                max_connections=self._pool, max_keepalive_connections=self._pool, keepalive_expiry=30.0
            ),
            headers={"Accept": "application/json", "User-Agent": "p9cli"},
            transport=self._transport,
            # honour HTTP(S)_PROXY for the real exchanges; never proxy the local simulator
            trust_env=urlsplit(self.base_url).hostname not in ("127.0.0.1", "localhost", "::1"),
        )
        return self

    async def __aexit__(self, *exc) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- server clock -------------------------------------------------------------------------

    @property
    def clock_error_ms(self) -> float:
        """How far :meth:`server_now_ms` may run ahead of the server."""
        return self.clock.error_ms

    def server_ms_at(self, mono: float) -> float:
        return self.clock.ms_at(mono)

    def server_now_ms(self) -> int:
        return self.clock.now_ms()

    def reached_server_ms(self) -> int:
        """A server time the exchange's clock has certainly reached: the estimate minus its
        error bound. Bars closed by then are final at the server; planning from the plain
        estimate could ask for (and, where there is no closed flag, store) a bar that is still
        forming when the answer to the time request was slow on its way back."""
        return self.clock.reached_ms()

    async def sync_time(self, counters: RequestCounters | None = None) -> int:
        """Ask the exchange for its time; later estimates (of every client of this host) run
        from it on the monotonic clock."""
        req = self.adapter.server_time_request()
        body, (sent, done) = await self._send(req, counters, with_time=True)
        server_ms = self.adapter.parse_server_time(body)
        self.clock.synced(server_ms, sent, done)
        return server_ms

    # -- sending ------------------------------------------------------------------------------

    async def send(self, req: RestRequest, counters: RequestCounters | None = None) -> bytes:
        """Send ``req`` within the exchange's limits, retrying what can be retried; the body
        of the successful answer. Raises :class:`~p9cli.exchanges.base.BadRequest` (will not
        change on retry), :class:`ExchangeUnavailable` (unreachable or banned) or
        :class:`~p9cli.exchanges.base.ExchangeError` (gave up after ``max_attempts``).
        ``counters`` (optional) adds this request's tries to a caller's tally; the client's
        own :attr:`counters` always does."""
        body, _ = await self._send(req, counters)
        return body

    def _give_up(self, exc: ExchangeUnavailable) -> ExchangeUnavailable:
        """With ``give_up``: nothing more is sent to this exchange by this client; waiting
        requests fail at once. Without: only the caller's request fails."""
        if not self.options.give_up:
            return exc
        if self.unavailable is None:
            self.unavailable = exc
        self._gone.set()
        return self.unavailable

    async def _acquire(self, req: RestRequest):
        """Room in the request's bucket, or :class:`ExchangeUnavailable` as soon as the
        exchange is given up (a request waiting out a long pause does not hang the run)."""
        if self.unavailable is not None:
            raise self.unavailable
        acquire = asyncio.ensure_future(self.limiter.acquire(req.bucket, req.cost))
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({acquire, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not acquire.done():
                acquire.cancel()
        if acquire.cancelled():
            raise self.unavailable or asyncio.CancelledError()
        slot = acquire.result()  # re-raises what the limiter raised
        if self.unavailable is not None:
            await self.limiter.release(req.bucket, slot)
            raise self.unavailable
        return slot

    def _reset_wait(self, headers: Any) -> float | None:
        """Seconds until the server time (ms) in the exchange's rate-limit reset header
        (``RATE_LIMIT_RESET_HEADER``), when it declares one and the answer carries it."""
        name = self.adapter.RATE_LIMIT_RESET_HEADER
        raw = header(headers, name) if name else None
        if raw is None:
            return None
        try:
            reset_ms = int(str(raw).strip())
        except ValueError:
            return None
        return min(30.0, max(0.05, (reset_ms - self.server_now_ms()) / 1000.0))

    def _backoff(self, attempt: int) -> float:
        o = self.options
        return random.uniform(0, min(o.backoff_cap_s, o.backoff_base_s * (2**attempt))) + 0.01

    async def _send(
        self, req: RestRequest, counters: RequestCounters | None, with_time: bool = False
    ) -> tuple[bytes, tuple[float, float] | float]:
        if self._http is None:
            raise RuntimeError("ExchangeClient used outside 'async with'")
        mine = RequestCounters()
        try:
            return await self._attempts(req, mine, with_time)
        finally:
            self.counters.add(mine)
            if counters is not None:
                counters.add(mine)

    async def _attempts(
        self, req: RestRequest, counters: RequestCounters, with_time: bool
    ) -> tuple[bytes, tuple[float, float] | float]:
        o = self.options
        attempt = 0
        connect_failures = 0
        ban_waits = 0
        last_error: BaseException | None = None
        while True:
            if self.unavailable is not None:
                raise self.unavailable
            if attempt >= o.max_attempts:
                raise ExchangeError(
                    f"gave up after {attempt} attempts: {_event_text(last_error) if last_error else 'no answer'}",
                    exchange=self.name,
                )
            attempt += 1
            async with self._in_flight:
                slot = await self._acquire(req)
                sent_mono = time.monotonic()
                try:
                    response = await self._http.get(req.target)
                    body = response.content
                    status = response.status_code
                    headers = response.headers
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # never reached the server
                    await self.limiter.release(req.bucket, slot)
                    counters.requests += 1
                    connect_failures += 1
                    last_error = exc
                    if connect_failures >= o.connect_attempts:
                        raise self._give_up(
                            ExchangeUnavailable(
                                f"unreachable at {self.base_url} ({_event_text(exc)})", exchange=self.name
                            )
                        ) from None
                    counters.retries += 1
                    await asyncio.sleep(self._backoff(attempt))
                    continue
                except httpx.TimeoutException as exc:
                    # the server may still count it later: keep it counted a while longer
                    await self.limiter.release(req.bucket, slot, hold_s=o.read_timeout_s)
                    counters.requests += 1
                    counters.retries += 1
                    last_error = RequestTimeout(
                        f"no answer in time ({type(exc).__name__})", exchange=self.name
                    )
                    self.on_event(self.name, f"timeout on {req.path}; retrying")
                    await asyncio.sleep(self._backoff(attempt))
                    continue
                except httpx.TransportError as exc:  # dropped connection, protocol error
                    await self.limiter.release(req.bucket, slot)
                    counters.requests += 1
                    counters.retries += 1
                    last_error = exc
                    self.on_event(self.name, f"connection error on {req.path} ({_event_text(exc)}); retrying")
                    await asyncio.sleep(self._backoff(attempt))
                    continue
                done_mono = time.monotonic()
                await self.limiter.release(req.bucket, slot)
            counters.requests += 1
            connect_failures = 0
            used = self.adapter.used_weight(headers)
            if used:
                await self.limiter.observe(used)
            try:
                self.adapter.check_response(status, headers, body)
                if with_time:
                    return body, (sent_mono, done_mono)
                return body, done_mono
            except Banned as exc:
                counters.rate_limited += 1
                wait = exc.retry_after_s if exc.retry_after_s is not None else 60.0
                await self.limiter.pause(wait + 0.25)
                if wait > o.max_ban_wait_s:
                    raise self._give_up(
                        ExchangeUnavailable(
                            f"banned or blocked for {wait:.0f} s ({exc}); not waiting that long",
                            exchange=self.name,
                        )
                    ) from None
                ban_waits += 1
                if ban_waits > o.max_ban_waits:
                    raise self._give_up(
                        ExchangeUnavailable(
                            f"still banned or blocked after {o.max_ban_waits} waits ({exc})",
                            exchange=self.name,
                        )
                    ) from None
                self.on_event(self.name, f"ban/block answer ({exc}); pausing {wait:.1f} s")
                counters.retries += 1
                last_error = exc
                attempt -= 1  # a ban wait is not a failed attempt of this request
                continue
            except RateLimited as exc:
                counters.rate_limited += 1
                counters.retries += 1
                last_error = exc
                wait = exc.retry_after_s
                if wait is None:
                    wait = self._reset_wait(headers)
                if wait is None:
                    wait = self._backoff(attempt) + 0.5
                # Retry-After is absolute: the whole bucket waits (Binance: the whole exchange)
                await self.limiter.pause(wait + 0.05, req.bucket)
                self.on_event(
                    self.name, f"rate limited on {req.path} ({exc}); pausing {req.bucket} {wait:.2f} s"
                )
                continue
            except BadRequest:
                raise
            except (ServerError, RequestTimeout, MalformedResponse) as exc:
                counters.retries += 1
                last_error = exc
                if exc.retry_after_s:
                    await self.limiter.pause(exc.retry_after_s, req.bucket)
                self.on_event(self.name, f"{_event_text(exc)}; retrying")
                await asyncio.sleep(self._backoff(attempt))
                continue
