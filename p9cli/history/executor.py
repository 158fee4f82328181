"""Async REST execution (httpx): one client per exchange, rate-limited, retried, measured.

:class:`ExchangeClient` sends :class:`~p9cli.exchanges.base.RestRequest` values built by an
exchange adapter through the exchange's :class:`~p9cli.history.ratelimit.ExchangeLimiter`:

* every request waits for room in its bucket; usage headers (``X-MBX-USED-WEIGHT-1M``)
  adjust the count live;
* 429 / rate-limit codes: the bucket pauses for ``Retry-After`` (or a jittered back-off) and
  the request is retried; 418 / 403 bans pause the whole exchange; a ban longer than
  ``max_ban_wait_s`` fails the exchange's remaining work with a clear line instead of
  hanging a cron run;
* 5xx, timeouts, dropped connections, malformed bodies: full-jitter exponential back-off,
  at most ``max_attempts`` tries per request;
* a refused connection is tried ``connect_attempts`` times, then the exchange is reported
  unreachable.

:func:`fetch_series` fetches every window of a :class:`~p9cli.history.planner.SeriesPlan`
concurrently, keeps closed bars only, asks again once for bars that did not come back, and
returns the bars plus what is still missing.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx

from p9cli.exchanges.base import (
    BadRequest,
    Banned,
    Candles,
    ExchangeError,
    MalformedResponse,
    RateLimited,
    RequestTimeout,
    RestRequest,
    ServerError,
    header,
)
from p9cli.history.planner import SeriesPlan, missing_open_times, windows_for
from p9cli.history.ratelimit import ExchangeLimiter


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
    #: concurrent requests per exchange (HTTP/1.1 keep-alive connections in the pool)
    max_in_flight: dict[str, int] = field(default_factory=lambda: {"binance": 16, "bybit": 32, "okx": 40})
    default_in_flight: int = 16


@dataclass
class RequestCounters:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429-class answers (429, 418, 403 ban, rate-limit codes)

    def add(self, other: RequestCounters) -> None:
        self.requests += other.requests
        self.retries += other.retries
        self.rate_limited += other.rate_limited


#: Added to the clock's error bound: the exchange's kline engine and its time endpoint may
#: disagree by a few ms, and the monotonic clock is read a little after the answer arrived.
CLOCK_GUARD_MS = 50.0
UNSYNCED_CLOCK_ERROR_MS = 5_000.0


class ExchangeUnavailable(ExchangeError):
    """The exchange cannot be used for the rest of this run (unreachable or banned)."""


def _event_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class ExchangeClient:
    """HTTP client + limiter + retries for one exchange. Use as ``async with``."""

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
        # server clock: server_ms = _server_ref_ms + (monotonic - _mono_ref) * 1000
        self._mono_ref = time.monotonic()
        self._server_ref_ms = time.time() * 1000.0
        #: how far the estimate may run ahead of the server (unknown before :meth:`sync_time`)
        self.clock_error_ms = UNSYNCED_CLOCK_ERROR_MS
        self.limiter = ExchangeLimiter(adapter.RATE_BUCKETS, server_ms=self.server_ms_at)
        n = self.options.max_in_flight.get(self.name, self.options.default_in_flight)
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

    def server_ms_at(self, mono: float) -> float:
        return self._server_ref_ms + (mono - self._mono_ref) * 1000.0

    def server_now_ms(self) -> int:
        return int(self.server_ms_at(time.monotonic()))

    def reached_server_ms(self) -> int:
        """A server time the exchange's clock has certainly reached: the estimate minus its
        error bound. Bars closed by then are final at the server; planning from the plain
        estimate could ask for (and, where there is no closed flag, store) a bar that is still
        forming when the answer to the time request was slow on its way back."""
        return int(self.server_ms_at(time.monotonic()) - self.clock_error_ms)

    async def sync_time(self, counters: RequestCounters | None = None) -> int:
        """Ask the exchange for its time; later estimates run from it on the monotonic clock."""
        req = self.adapter.server_time_request()
        body, (sent, done) = await self._send(req, counters or RequestCounters(), with_time=True)
        server_ms = self.adapter.parse_server_time(body)
        # the server read its clock somewhere inside the answered attempt: take its midpoint,
        # wrong by at most half the round trip
        self._mono_ref = (sent + done) / 2
        self._server_ref_ms = float(server_ms)
        self.clock_error_ms = (done - sent) * 500.0 + CLOCK_GUARD_MS
        return server_ms

    # -- sending ------------------------------------------------------------------------------

    async def send(self, req: RestRequest, counters: RequestCounters) -> bytes:
        body, _ = await self._send(req, counters)
        return body

    def _give_up(self, exc: ExchangeUnavailable) -> ExchangeUnavailable:
        """Nothing more is sent to this exchange in this run; waiting requests fail at once."""
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
        """Seconds until a ``X-Bapi-Limit-Reset-Timestamp`` (server ms), when one is sent."""
        raw = header(headers, "X-Bapi-Limit-Reset-Timestamp")
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
        self, req: RestRequest, counters: RequestCounters, with_time: bool = False
    ) -> tuple[bytes, tuple[float, float] | float]:
        if self._http is None:
            raise RuntimeError("ExchangeClient used outside 'async with'")
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


# -- series -----------------------------------------------------------------------------------


@dataclass
class SeriesResult:
    bars: dict[int, tuple] = field(default_factory=dict)
    """open_time -> (open, high, low, close, volume, quote_volume, trades), closed bars only."""
    missing: list[int] = field(default_factory=list)
    """Planned open times that did not come back (after one more request for them)."""
    counters: RequestCounters = field(default_factory=RequestCounters)


def candles_rows(c: Candles, tf_ms: int, server_now_ms: int, first: int, last: int) -> dict[int, tuple]:
    """Closed bars of ``c`` with ``first <= open_time <= last`` as rows."""
    closed = c.closed_mask(tf_ms, server_now_ms)
    out = {}
    for i, t in enumerate(c.open_time):
        if closed[i] and first <= t <= last and t % tf_ms == 0:
            out[t] = (c.open[i], c.high[i], c.low[i], c.close[i], c.volume[i], c.quote_volume[i], c.trades[i])
    return out


def continuation(first: int, last: int, tf_ms: int, got: dict[int, tuple]) -> tuple[int, int] | None:
    """The rest of window ``[first, last]`` to ask for when the answer ``got`` was cut short at
    one end (a page smaller than documented, e.g. OKX history-candles serving 100 rows), or
    ``None`` when the answer is complete, empty, or has gaps only inside (holes, not paging)."""
    if not got:
        return None
    expected = (last - first) // tf_ms + 1
    if len(got) >= expected:
        return None
    lo, hi = min(got), max(got)
    if len(got) != (hi - lo) // tf_ms + 1:
        return None  # bars missing inside the answer: not a short page
    if lo > first:
        return first, lo - tf_ms  # newest-first exchanges cut the oldest bars
    if hi < last:
        return hi + tf_ms, last  # oldest-first exchanges cut the newest bars
    return None


async def fetch_windows(
    client: ExchangeClient, plan: SeriesPlan, windows: list[tuple[int, int]], counters: RequestCounters
) -> dict[int, tuple]:
    """Fetch each window (concurrently), following up on answers cut short at one end."""
    key = plan.key
    tf_ms = plan.tf_ms

    async def page(first: int, last: int) -> dict[int, tuple]:
        req = client.adapter.klines_request(key.symbol, key.timeframe, first, last, client.server_now_ms())
        body = await client.send(req, counters)
        candles = client.adapter.parse_klines(body, key.timeframe)
        return candles_rows(candles, tf_ms, client.server_now_ms(), first, last)

    async def one(first: int, last: int) -> dict[int, tuple]:
        out = await page(first, last)
        rest = continuation(first, last, tf_ms, out)
        while rest is not None:
            more = await page(*rest)
            if not more or not (set(more) - set(out)):
                break  # the exchange has nothing more there
            out.update(more)
            nxt = continuation(rest[0], rest[1], tf_ms, more)
            rest = nxt
        return out

    results = await asyncio.gather(*(one(a, b) for a, b in windows))
    bars: dict[int, tuple] = {}
    for r in results:
        bars.update(r)
    return bars


async def fetch_series(
    client: ExchangeClient,
    plan: SeriesPlan,
    stored_open_times: set[int] | frozenset[int] = frozenset(),
    ask_from_ms: int | None = None,
    split_at: int | None = None,
    result: SeriesResult | None = None,
) -> SeriesResult:
    """Fetch the plan's windows, then ask once more for planned bars that did not come back.
    Pass ``result`` to keep its request counters even when this raises."""
    result = SeriesResult() if result is None else result
    if not plan.windows:
        return result
    result.bars = await fetch_windows(client, plan, plan.windows, result.counters)
    start = plan.first_open_ms if ask_from_ms is None else max(plan.first_open_ms, ask_from_ms)
    skip = set(stored_open_times) | set(plan.known_holes)
    in_windows = set()
    for a, b in plan.windows:
        in_windows.update(range(a, b + 1, plan.tf_ms))
    missing = [
        t
        for t in missing_open_times(start, plan.last_open_ms, plan.tf_ms, result.bars, skip)
        if t in in_windows
    ]
    if missing:
        retry_windows = windows_for(missing, plan.tf_ms, client.adapter.MAX_KLINES_PER_REQUEST, split_at)
        result.bars.update(await fetch_windows(client, plan, retry_windows, result.counters))
        missing = [t for t in missing if t not in result.bars]
    result.missing = missing
    return result
