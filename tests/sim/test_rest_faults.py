"""Injected REST faults: each one is seen by a plain httpx client exactly when predicted,
looks like the exchange's own error, and is counted."""

from __future__ import annotations

import time

import httpx
import pytest

FROZEN = 1e-9
T0 = 1_767_616_441_000
PATHS = {"binance": "/api/v3/time", "bybit": "/v5/market/time", "okx": "/api/v5/public/time"}


def url(handle, exchange: str) -> str:
    return handle.rest_url(exchange) + PATHS[exchange]


@pytest.mark.parametrize("exchange", ["binance", "bybit", "okx"])
def test_rest_429_every(sim_factory, exchange):
    handle = sim_factory(speed=FROZEN, start_ms=T0, faults={exchange: {"rest_429_every": 3}})
    with httpx.Client(timeout=10) as c:
        answers = [c.get(url(handle, exchange)) for _ in range(6)]
    refused = [i for i, r in enumerate(answers, 1) if r.status_code != 200 or '"retCode":10006' in r.text]
    assert refused == [3, 6]
    r = answers[2]
    if exchange == "binance":
        assert r.status_code == 429 and r.json()["code"] == -1003
        assert r.headers["Retry-After"] == "59" and "x-mbx-used-weight-1m" in r.headers
    elif exchange == "bybit":
        assert (
            r.status_code == 200 and r.json()["retCode"] == 10006 and r.json()["retMsg"] == "Too many visits!"
        )
        assert int(r.headers["X-Bapi-Limit-Reset-Timestamp"]) > T0
    else:
        assert r.status_code == 429 and r.json() == {"msg": "Too Many Requests", "code": "50011"}
    counters = handle.sim.exchanges[exchange].counters
    assert counters["fault.rest_429_every"] == 2
    assert counters["limit.violations"] == 0  # injected, not a real limit
    assert counters["rest.requests"] == 6


@pytest.mark.parametrize("exchange", ["binance", "bybit", "okx"])
def test_rest_5xx_every_rotates_503_502_504(sim_factory, exchange):
    handle = sim_factory(speed=FROZEN, start_ms=T0, faults={exchange: {"rest_5xx_every": 2}})
    with httpx.Client(timeout=10) as c:
        statuses = [c.get(url(handle, exchange)).status_code for _ in range(8)]
        body = c.get(url(handle, exchange))  # 9th: served
    assert statuses == [200, 503, 200, 502, 200, 504, 200, 503]
    assert body.status_code == 200
    assert handle.sim.exchanges[exchange].counters["fault.rest_5xx_every"] == 4


def test_server_error_bodies_are_the_exchanges(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0, faults={"all": {"rest_5xx_every": 1}})
    with httpx.Client(timeout=10) as c:
        b = c.get(url(handle, "binance"))
        y = c.get(url(handle, "bybit"))
        o = c.get(url(handle, "okx"))
    assert b.status_code == 503 and b.json()["code"] == -1001
    assert y.status_code == 503 and y.json()["retCode"] == 10016
    assert o.status_code == 503 and o.json()["code"] == "50001" and o.json()["data"] == []


@pytest.mark.parametrize("exchange", ["binance", "bybit", "okx"])
def test_rest_drop_every(sim_factory, exchange):
    handle = sim_factory(speed=FROZEN, start_ms=T0, faults={exchange: {"rest_drop_every": 2}})
    outcomes = []
    for _ in range(4):
        with httpx.Client(timeout=10) as c:  # a fresh connection each time
            try:
                outcomes.append(c.get(url(handle, exchange)).status_code)
            except httpx.RemoteProtocolError:
                outcomes.append("dropped")
    assert outcomes == [200, "dropped", 200, "dropped"]
    assert handle.sim.exchanges[exchange].counters["fault.rest_drop_every"] == 2


def test_rest_timeout_every_hangs_then_drops(sim_factory):
    handle = sim_factory(
        speed=FROZEN, start_ms=T0, faults={"okx": {"rest_timeout_every": 2, "rest_timeout_seconds": 0.5}}
    )
    with httpx.Client(timeout=10) as c:
        assert c.get(url(handle, "okx")).status_code == 200
        t = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(url(handle, "okx"))
        assert time.monotonic() - t >= 0.45
    with httpx.Client(timeout=httpx.Timeout(10, read=0.2)) as c:
        assert c.get(url(handle, "okx")).status_code == 200
        with pytest.raises(httpx.ReadTimeout):  # a client with a shorter read timeout gives up first
            c.get(url(handle, "okx"))
    assert handle.sim.exchanges["okx"].counters["fault.rest_timeout_every"] == 2


def test_latency_ms(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0, faults={"bybit": {"latency_ms": 600}})
    with httpx.Client(timeout=10) as c:
        c.get(url(handle, "binance"))
        t = time.monotonic()
        c.get(url(handle, "binance"))
        fast = time.monotonic() - t
        t = time.monotonic()
        r = c.get(url(handle, "bybit"))
        slow = time.monotonic() - t
    assert r.status_code == 200
    # 600 ms: far above a plain answer even on a loaded 2-core machine
    assert slow >= 0.6 > fast
    assert handle.sim.exchanges["bybit"].counters["fault.latency_ms"] == 1
    assert "fault.latency_ms" not in handle.sim.exchanges["binance"].counters


def test_faults_change_at_run_time_and_validate(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0)
    ctl = handle.control_url
    r = httpx.post(ctl + "/faults/binance", json={"rest_5xx_every": 1})
    assert r.status_code == 200 and r.json()["binance"]["rest_5xx_every"] == 1
    assert httpx.get(url(handle, "binance")).status_code == 503
    bad = httpx.post(ctl + "/faults/binance", json={"rest_5xx_every": 0, "rest_500_every": 1})
    assert bad.status_code == 400
    assert "rest_500_every" in bad.json()["error"] and "rest_5xx_every" in bad.json()["error"]
    assert handle.sim.exchanges["binance"].faults.rest_5xx_every == 1  # all or nothing
    assert httpx.post(ctl + "/faults/all", json={"rest_5xx_every": 0}).status_code == 200
    assert httpx.get(url(handle, "binance")).status_code == 200


def test_geo_block_answers_per_exchange(sim_factory):
    """``rest_geo_block``: Binance HTTP 451 with its JSON body; Bybit HTTP 403 with CloudFront's
    HTML page (not "access too frequent": a client must not wait and retry); OKX has no
    documented form and answers normally. Counted."""
    handle = sim_factory(speed=1e-9, faults={"all": {"rest_geo_block": True}})
    with httpx.Client(timeout=10) as client:
        b = client.get(handle.rest_url("binance") + "/api/v3/time")
        y = client.get(handle.rest_url("bybit") + "/v5/market/time")
        o = client.get(handle.rest_url("okx") + "/api/v5/public/time")
    assert b.status_code == 451 and b.json()["code"] == 0
    assert b.json()["msg"].startswith("Service unavailable from a restricted location")
    assert y.status_code == 403 and y.headers["content-type"].startswith("text/html")
    assert "CloudFront distribution is configured to block access from your country" in y.text
    assert "access too frequent" not in y.text
    assert o.status_code == 200 and o.json()["code"] == "0"
    counters = {ex: handle.sim.exchanges[ex].counters for ex in ("binance", "bybit", "okx")}
    assert counters["binance"]["fault.rest_geo_block"] == counters["bybit"]["fault.rest_geo_block"] == 1
    assert counters["okx"].get("fault.rest_geo_block", 0) == 0
