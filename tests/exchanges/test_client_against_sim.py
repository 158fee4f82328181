"""The REST adapters against the simulator (an independent implementation of the protocols).

Real HTTP on loopback: requests built by the adapters, answers parsed by them. The simulator's
clock is frozen so that windows and the OKX 1,440-bar boundary are exact.
"""

from __future__ import annotations

import httpx
import pytest

from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import BadRequest, RateLimited, RestRequest, ServerError
from p9cli.sim.testing import SimThread
from p9cli.universe import TIMEFRAME_MS

ADAPTERS = (binance, bybit, okx)
START_MS = 1_767_616_496_789  # 2026-01-05 12:34:56.789 UTC
FROZEN = 1e-9


def send(client: httpx.Client, base: str, req: RestRequest) -> httpx.Response:
    return client.request(req.method, base + req.path, params=list(req.params))


def call(client, base, adapter, req):
    resp = send(client, base, req)
    adapter.check_response(resp.status_code, resp.headers, resp.content)
    return resp


@pytest.fixture(scope="module")
def sim():
    thread = SimThread(seed=9, start_ms=START_MS, speed=FROZEN, warm_up=False, with_ws=False, with_feed=False)
    handle = thread.start()
    try:
        yield handle
    finally:
        thread.stop()


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=30) as c:
        yield c


def server_now(client, sim, adapter) -> int:
    resp = call(client, sim.rest_url(adapter.NAME), adapter, adapter.server_time_request())
    return adapter.parse_server_time(resp.content)


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.NAME)
def test_server_time_is_the_simulated_clock(sim, client, adapter):
    now = server_now(client, sim, adapter)
    assert abs(now - START_MS) < 2_000


@pytest.mark.parametrize("tf", ["1m", "15m", "1h", "6h"])
@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.NAME)
def test_window_returns_exactly_the_requested_bars(sim, client, adapter, tf):
    step = TIMEFRAME_MS[tf]
    now = server_now(client, sim, adapter)
    forming = now // step * step
    base = sim.rest_url(adapter.NAME)
    for n, last in ((adapter.MAX_KLINES_PER_REQUEST, forming - step), (7, forming - 1600 * step)):
        first = last - (n - 1) * step
        req = adapter.klines_request("btc", tf, first, last, now)
        candles = adapter.parse_klines(call(client, base, adapter, req).content, tf)
        assert candles.open_time == [first + i * step for i in range(n)], (adapter.NAME, tf, req.target)
        assert all(candles.closed_mask(step, now))
        assert all(
            lo <= min(o, c) and max(o, c) <= hi
            for o, hi, lo, c in zip(candles.open, candles.high, candles.low, candles.close, strict=True)
        )


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.NAME)
def test_forming_bar_is_not_closed(sim, client, adapter):
    step = TIMEFRAME_MS["5m"]
    now = server_now(client, sim, adapter)
    forming = now // step * step
    req = adapter.klines_request("eth", "5m", forming - 2 * step, forming, now)
    candles = adapter.parse_klines(call(client, sim.rest_url(adapter.NAME), adapter, req).content, "5m")
    assert candles.open_time == [forming - 2 * step, forming - step, forming]
    assert candles.closed_mask(step, now) == [True, True, False]
    assert candles.closed_only(step, now).open_time == [forming - 2 * step, forming - step]


def test_okx_candles_endpoint_serves_exactly_the_newest_1440_bars(sim, client):
    step = TIMEFRAME_MS["1m"]
    now = server_now(client, sim, okx)
    oldest_recent = okx.oldest_recent_open(step, now)
    base = sim.rest_url("okx")
    req = okx.klines_request("btc", "1m", oldest_recent, oldest_recent + 9 * step, now)
    assert req.path == okx.CANDLES_PATH
    got = okx.parse_klines(call(client, base, okx, req).content, "1m")
    assert got.open_time == [oldest_recent + i * step for i in range(10)]
    older = okx.klines_request("btc", "1m", oldest_recent - step, oldest_recent + 8 * step, now)
    assert older.path == okx.HISTORY_CANDLES_PATH
    got = okx.parse_klines(call(client, base, okx, older).content, "1m")
    assert got.open_time == [oldest_recent - step + i * step for i in range(10)]
    # the same older window on the recent endpoint misses its first bar: the boundary is real
    forced = RestRequest(okx.CANDLES_PATH, older.params, okx.CANDLES_BUCKET)
    got = okx.parse_klines(call(client, base, okx, forced).content, "1m")
    assert got.open_time[0] == oldest_recent


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.NAME)
def test_unknown_symbol_and_interval_are_bad_requests(sim, client, adapter):
    now = server_now(client, sim, adapter)
    req = adapter.klines_request("btc", "1m", now - 600_000, now - 60_000, now)
    base = sim.rest_url(adapter.NAME)
    for key, value in (("symbol", "DOGEXUSDT"), ("instId", "DOGEX-USDT"), ("interval", "7m"), ("bar", "7m")):
        if key not in dict(req.params):
            continue
        params = tuple((k, value if k == key else v) for k, v in req.params)
        resp = send(client, base, RestRequest(req.path, params, req.bucket))
        with pytest.raises(BadRequest) as info:
            adapter.check_response(resp.status_code, resp.headers, resp.content)
            adapter.parse_klines(resp.content, "1m")
        assert not info.value.retryable and info.value.code is not None


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.NAME)
def test_injected_rate_limit_and_server_errors_are_classified(adapter, client):
    for fault, expected in (("rest_429_every", RateLimited), ("rest_5xx_every", ServerError)):
        thread = SimThread(
            seed=9,
            start_ms=START_MS,
            speed=FROZEN,
            warm_up=False,
            with_ws=False,
            with_feed=False,
            faults={adapter.NAME: {fault: 1}},
        )
        handle = thread.start()
        try:
            resp = send(client, handle.rest_url(adapter.NAME), adapter.server_time_request())
            with pytest.raises(expected) as info:
                adapter.check_response(resp.status_code, resp.headers, resp.content)
                adapter.parse_server_time(resp.content)
            if expected is RateLimited and adapter is binance:
                assert info.value.retry_after_s is not None and info.value.status == 429
        finally:
            thread.stop()


def test_binance_weight_header_counts_klines_at_two(sim, client):
    now = server_now(client, sim, binance)
    base = sim.rest_url("binance")
    req = binance.klines_request("sol", "1m", now - 300_000, now - 60_000, now)
    first = binance.used_weight(call(client, base, binance, req).headers)["binance:weight"]
    second = binance.used_weight(call(client, base, binance, req).headers)["binance:weight"]
    assert second - first == req.cost == 2
