"""The one REST client against the simulator: clients of one process share an exchange host's
limits (the live side's snapshots and fetch-history's pages count against the same budget),
one client serves many tasks of one loop, and failures arrive as the exchange error classes."""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest

from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import BadRequest, RestRequest
from p9cli.rest import ClientOptions, ExchangeClient, ExchangeUnavailable, rest_host
from p9cli.sim.testing import SimThread

QUICK = ClientOptions(backoff_base_s=0.02, backoff_cap_s=0.1)


def _running(**kwargs):
    kwargs.setdefault("with_ws", False)
    thread = SimThread(seed=9, warm_up=False, **kwargs)
    handle = thread.start()
    try:
        yield handle
    finally:
        thread.stop()


@pytest.fixture
def sim():
    yield from _running(with_feed=False)


@pytest.fixture
def sim_with_books():
    """With the live feed, which keeps the order books the depth endpoints serve."""
    yield from _running(with_feed=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_two_clients_of_one_host_stay_inside_its_limit_together(sim):
    """OKX allows 10 time requests per 2 s. Two clients (say fetch-history and the live side)
    fire 10 each at once: with one shared limiter the second ten wait for the window and the
    simulator refuses none; two separate limiters would send 20 at once and get ten 429s."""
    url = sim.rest_url("okx")
    async with ExchangeClient(okx, url, QUICK) as a, ExchangeClient(okx, url + "/", QUICK) as b:
        assert a.limiter is b.limiter and a.clock is b.clock
        bodies = await asyncio.gather(*(c.send(okx.server_time_request()) for c in (a, b) for _ in range(10)))
    assert all(okx.parse_server_time(body) > 0 for body in bodies)
    counters = sim.sim.exchanges["okx"].counters
    assert counters["limit.violations"] == 0, dict(counters)
    assert a.counters.rate_limited == b.counters.rate_limited == 0
    assert a.counters.requests == b.counters.requests == 10


async def test_a_ban_seen_by_one_client_keeps_every_client_of_the_host_away():
    """Bybit blocks the IP for 10 minutes after its limit (403, lowered to 3 requests here).
    The batch client gives up at once; the live side's client (give_up=False) must not send
    anything into the block (a snapshot storm into a ban), it waits for the shared pause."""
    gen = _running(with_feed=False, limits={"bybit": {"bybit_requests_per_5s": 3}})
    sim = next(gen)
    try:
        url = sim.rest_url("bybit")
        batch = ExchangeClient(bybit, url, QUICK)
        live = ExchangeClient(bybit, url, ClientOptions(give_up=False))
        async with batch, live:
            with pytest.raises(ExchangeUnavailable, match="banned or blocked for 600 s"):
                await asyncio.gather(*(batch.send(bybit.server_time_request()) for _ in range(5)))
            answered = sim.sim.exchanges["bybit"].counters["rest.requests"]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(live.send(bybit.server_time_request()), 1.0)
            assert sim.sim.exchanges["bybit"].counters["rest.requests"] == answered
            assert live.counters.requests == 0
    finally:
        gen.close()


async def test_another_host_has_its_own_limits(sim):
    assert rest_host(okx, sim.rest_url("okx")) is rest_host(okx, sim.rest_url("okx").upper())
    assert rest_host(okx, sim.rest_url("okx")) is not rest_host(okx, "http://127.0.0.1:1")
    assert rest_host(okx, sim.rest_url("okx")) is not rest_host(bybit, sim.rest_url("okx"))


async def test_a_clock_sync_by_one_client_serves_every_client_of_the_host(sim):
    url = sim.rest_url("binance")
    async with ExchangeClient(binance, url, QUICK) as a, ExchangeClient(binance, url, QUICK) as b:
        await a.sync_time()
        assert b.clock_error_ms == a.clock_error_ms < 5_000
        assert abs(b.server_now_ms() - sim.sim.clock.now_ms()) < 2_000


async def test_snapshots_concurrently_from_one_loop(sim_with_books):
    """The live side's call: ``await client.send(request)`` -> body bytes, many at once."""
    async with ExchangeClient(bybit, sim_with_books.rest_url("bybit"), QUICK) as client:
        reqs = [bybit.orderbook_request(sym, 50) for sym in ("btc", "eth", "sol", "bnb", "xrp") * 4]
        bodies = await asyncio.gather(*(client.send(r) for r in reqs))
    for body in bodies:
        doc = orjson.loads(body)
        assert doc["retCode"] == 0 and doc["result"]["b"] and doc["result"]["a"]
    assert client.counters.requests == 20


async def test_a_request_the_exchange_refuses_is_bad_request_without_retries(sim):
    unknown = RestRequest("/api/v3/depth", (("symbol", "DOGEUSDT"), ("limit", "5")), binance.WEIGHT_BUCKET, 5)
    async with ExchangeClient(binance, sim.rest_url("binance"), QUICK) as client:
        with pytest.raises(BadRequest):
            await client.send(unknown)
    assert client.counters.requests == 1 and client.counters.retries == 0


async def test_unreachable_host_is_given_up_for_the_run_by_default():
    url = f"http://127.0.0.1:{free_port()}"
    async with ExchangeClient(okx, url, ClientOptions(backoff_base_s=0.01, connect_attempts=2)) as client:
        with pytest.raises(ExchangeUnavailable, match="unreachable"):
            await client.send(okx.server_time_request())
        tried = client.counters.requests
        assert tried == 2
        with pytest.raises(ExchangeUnavailable):
            await client.send(okx.server_time_request())
        assert client.counters.requests == tried  # nothing more sent


async def test_a_long_running_client_tries_again_after_unreachable():
    """``give_up=False`` (the live side): one failed request does not end the client."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    opts = ClientOptions(backoff_base_s=0.01, connect_attempts=2, give_up=False)
    async with ExchangeClient(okx, url, opts) as client:
        for _ in range(2):
            with pytest.raises(ExchangeUnavailable, match="unreachable"):
                await client.send(okx.server_time_request())
        assert client.unavailable is None
        assert client.counters.requests == 4
