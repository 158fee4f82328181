"""Rate limits of the simulated exchanges: the pure limiters, then the real servers tripping
exactly at the documented numbers (a clock that stands still keeps the windows put)."""

from __future__ import annotations

import httpx
import pytest

from p9cli.sim.ratelimit import (
    BANNED,
    LIMITED,
    OK,
    BinanceLimiter,
    BybitLimiter,
    OkxLimiter,
    binance_depth_weight,
)
from p9cli.sim.state import LimitSettings

FROZEN = 1e-9
MINUTE_START = 1_767_616_440_000  # 2026-01-05 12:34:00.000 UTC, on a minute boundary
T0 = MINUTE_START + 1_000  # one second into that minute


# ------------------------------------------------------------------------------ pure limiters


def test_binance_weight_window_429_then_escalating_418():
    limits = LimitSettings(binance_weight_per_minute=10, binance_ban_seconds=120)
    lim = BinanceLimiter(limits)
    assert [lim.check(T0, 2).outcome for _ in range(5)] == [OK] * 5
    v = lim.check(T0 + 500, 1)  # the 11th weight unit
    assert v.outcome == LIMITED and v.used_weight == 11
    assert v.retry_after_seconds == 59  # 58.5 s to the next minute, rounded up
    ban = lim.check(T0 + 600, 1)  # ignored the Retry-After
    assert ban.outcome == BANNED and ban.until_ms == T0 + 600 + 120_000 and ban.retry_after_seconds == 120
    assert lim.check(T0 + 60_000, 1).outcome == BANNED  # still banned in the next window
    after_ban = T0 + 600 + 120_000
    assert lim.check(after_ban, 1).outcome == OK  # ban over, fresh window
    for _ in range(9):
        lim.check(after_ban, 1)
    assert lim.check(after_ban, 1).outcome == LIMITED
    second = lim.check(after_ban + 1, 1)
    assert second.outcome == BANNED and second.retry_after_seconds == 240  # doubled


def test_binance_ban_is_capped_at_three_days():
    lim = BinanceLimiter(LimitSettings(binance_weight_per_minute=1, binance_ban_seconds=120))
    lim.bans = 20
    lim.check(T0, 2)
    assert lim.check(T0, 1).retry_after_ms == 3 * 86_400_000


def test_binance_waiting_for_the_next_window_avoids_the_ban():
    lim = BinanceLimiter(LimitSettings(binance_weight_per_minute=4))
    lim.check(T0, 4)
    assert lim.check(T0, 1).outcome == LIMITED
    assert lim.check(MINUTE_START + 60_000, 1).outcome == OK
    assert lim.used(MINUTE_START + 60_000) == 1


def test_binance_raw_request_limit():
    lim = BinanceLimiter(LimitSettings(binance_raw_requests_per_5m=3))
    assert [lim.check(T0, 1).outcome for _ in range(4)] == [OK, OK, OK, LIMITED]
    assert lim.check(T0, 1).outcome == BANNED


def test_binance_limits_off():
    lim = BinanceLimiter(LimitSettings(rate_limits=False, binance_weight_per_minute=1))
    assert {lim.check(T0, 50).outcome for _ in range(10)} == {OK}
    assert lim.used(T0) == 500


def test_depth_weights():
    assert [binance_depth_weight(n) for n in (1, 100, 101, 500, 501, 1000, 1001, 5000)] == [
        5,
        5,
        25,
        25,
        50,
        50,
        250,
        250,
    ]


def test_bybit_sliding_window_and_block():
    lim = BybitLimiter(LimitSettings(bybit_requests_per_5s=3, bybit_block_seconds=10))
    assert [lim.check(T0 + i).outcome for i in range(3)] == [OK] * 3
    v = lim.check(T0 + 4_000)
    assert v.outcome == LIMITED and v.until_ms == T0 + 4_000 + 10_000
    assert lim.check(T0 + 9_000).outcome == LIMITED  # the window has moved on, the block has not
    assert lim.check(T0 + 14_000).outcome == OK


def test_bybit_window_slides():
    lim = BybitLimiter(LimitSettings(bybit_requests_per_5s=2))
    assert lim.check(T0).outcome == OK
    assert lim.check(T0 + 3_000).outcome == OK
    assert lim.check(T0 + 5_000).outcome == OK  # the first one left the window
    assert lim.check(T0 + 5_001).outcome == LIMITED


def test_okx_per_endpoint_windows():
    lim = OkxLimiter(LimitSettings(okx_candles_per_2s=2, okx_history_candles_per_2s=1))
    assert [lim.check(T0, "market/candles").outcome for _ in range(3)] == [OK, OK, LIMITED]
    assert lim.check(T0, "market/history-candles").outcome == OK
    assert lim.check(T0, "market/history-candles").outcome == LIMITED
    assert lim.check(T0 + 1_999, "market/candles").outcome == LIMITED
    assert lim.check(T0 + 2_000, "market/candles").outcome == OK
    assert lim.check(T0, "public/nothing-limited").outcome == OK
    assert [lim.check(T0, "market/trades").outcome for _ in range(101)][-2:] == [OK, LIMITED]
    assert [lim.check(T0, "market/history-trades").outcome for _ in range(21)][-2:] == [OK, LIMITED]
    assert lim.check(T0 + 2_000, "market/history-trades").outcome == OK


# ------------------------------------------------------------------------------ over HTTP


def test_binance_default_6000_weight_trips_on_the_6001st_unit(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0)
    base = handle.rest_url("binance")
    with httpx.Client(timeout=10) as c:
        for i in range(24):  # 24 x 250 = 6000
            r = c.get(base + "/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5000})
            assert r.status_code == 200, (i, r.text)
        assert r.headers["x-mbx-used-weight-1m"] == "6000"
        over = c.get(base + "/api/v3/ping")  # the 6001st unit
        assert over.status_code == 429
        assert over.json() == {
            "code": -1003,
            "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
            "Please use WebSocket Streams for live updates to avoid polling the API.",
        }
        assert over.headers["Retry-After"] == "59"
        assert over.headers["x-mbx-used-weight-1m"] == "6001"
        banned = c.get(base + "/api/v3/time")
        assert banned.status_code == 418
        assert banned.json()["code"] == -1003 and "IP banned until" in banned.json()["msg"]
        assert banned.headers["Retry-After"] == "120"
    counters = handle.sim.exchanges["binance"].counters
    assert counters["limit.violations"] == 1 and counters["limit.bans"] == 1
    assert counters["rest.requests"] == 26


def test_binance_window_resets_on_the_clock(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0, limits={"binance": {"binance_weight_per_minute": 4}})
    base = handle.rest_url("binance")
    with httpx.Client(timeout=10) as c:
        assert [
            c.get(
                base + "/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m", "limit": 1}
            ).status_code
            for _ in range(3)
        ] == [200, 200, 429]
        httpx.post(handle.control_url + "/clock/advance", json={"ms": 60_000}).raise_for_status()
        r = c.get(base + "/api/v3/time")
        assert r.status_code == 200 and r.headers["x-mbx-used-weight-1m"] == "1"


def test_bybit_default_600_per_5s_trips_on_the_601st(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0)
    url = handle.rest_url("bybit") + "/v5/market/time"
    with httpx.Client(timeout=10) as c:
        codes = [c.get(url).status_code for _ in range(600)]
        over = c.get(handle.rest_url("bybit") + "/v5/market/kline", params={"category": "spot"})
    assert set(codes) == {200}
    assert over.status_code == 403 and over.text == "access too frequent"
    assert handle.sim.exchanges["bybit"].counters["limit.violations"] == 1


def test_bybit_block_outlasts_the_window(sim_factory):
    handle = sim_factory(
        speed=FROZEN, start_ms=T0, limits={"bybit": {"bybit_requests_per_5s": 5, "bybit_block_seconds": 30}}
    )
    url = handle.rest_url("bybit") + "/v5/market/time"
    with httpx.Client(timeout=10) as c:
        assert [c.get(url).status_code for _ in range(6)] == [200] * 5 + [403]
        httpx.post(handle.control_url + "/clock/advance", json={"ms": 10_000}).raise_for_status()
        assert c.get(url).status_code == 403  # the window is empty again, the IP is still blocked
        httpx.post(handle.control_url + "/clock/advance", json={"ms": 20_000}).raise_for_status()
        assert c.get(url).status_code == 200
    assert handle.sim.exchanges["bybit"].counters["limit.violations"] == 2


def test_okx_default_40_candles_per_2s_trips_on_the_41st(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0)
    base = handle.rest_url("okx")
    params = {"instId": "BTC-USDT", "limit": 1}
    with httpx.Client(timeout=10) as c:
        codes = [c.get(base + "/api/v5/market/candles", params=params).status_code for _ in range(41)]
        assert codes == [200] * 40 + [429]
        over = c.get(base + "/api/v5/market/candles", params=params)
        assert over.status_code == 429 and over.json() == {"msg": "Too Many Requests", "code": "50011"}
        assert list(over.json()) == ["msg", "code"]
        # other endpoints have their own windows
        assert c.get(base + "/api/v5/market/history-candles", params=params).status_code == 200
        assert [c.get(base + "/api/v5/public/time").status_code for _ in range(11)] == [200] * 10 + [429]
        httpx.post(handle.control_url + "/clock/advance", json={"ms": 2_000}).raise_for_status()
        assert c.get(base + "/api/v5/market/candles", params=params).status_code == 200
    assert handle.sim.exchanges["okx"].counters["limit.violations"] == 3


@pytest.mark.parametrize("exchange", ["binance", "bybit", "okx"])
def test_rate_limits_off(sim_factory, exchange):
    handle = sim_factory(
        speed=FROZEN,
        start_ms=T0,
        rate_limits=False,
        limits={"all": {"binance_weight_per_minute": 1, "bybit_requests_per_5s": 1, "okx_time_per_2s": 1}},
    )
    path = {"binance": "/api/v3/time", "bybit": "/v5/market/time", "okx": "/api/v5/public/time"}[exchange]
    with httpx.Client(timeout=10) as c:
        assert {c.get(handle.rest_url(exchange) + path).status_code for _ in range(5)} == {200}
    assert handle.sim.exchanges[exchange].counters["limit.violations"] == 0


def test_limits_change_at_run_time(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0)
    r = httpx.post(handle.control_url + "/limits/okx", json={"okx_time_per_2s": 2})
    assert r.status_code == 200 and r.json()["okx"]["okx_time_per_2s"] == 2
    url = handle.rest_url("okx") + "/api/v5/public/time"
    with httpx.Client(timeout=10) as c:
        assert [c.get(url).status_code for _ in range(3)] == [200, 200, 429]
