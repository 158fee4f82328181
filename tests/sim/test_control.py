"""The control API and the ``p9 sim`` process (real subprocesses for the CLI behaviour)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import websockets

from p9cli.sim.server import parse_overrides, parse_start
from p9cli.sim.state import FaultSettings, LimitSettings
from p9cli.sim.testing import free_port_base, sim_subprocess, wait_listening

FROZEN = 1e-9
T0 = 1_767_616_441_000
MIN = 60_000


def ctl(handle, path: str, **params) -> httpx.Response:
    return httpx.get(handle.control_url + path, params=params, timeout=10)


# ------------------------------------------------------------------------------ control API


def test_health_and_state(sim):
    h = ctl(sim, "/health").json()
    assert h["status"] == "ok" and isinstance(h["now_ms"], int)
    st = ctl(sim, "/state").json()
    assert st["seed"] == sim.simulator.seed
    assert set(st["clock"]) == {"now_ms", "start_ms", "speed"}
    assert st["history_start_ms"] < st["live_start_ms"] <= st["clock"]["now_ms"]
    assert set(st["exchanges"]) == {"binance", "bybit", "okx"}
    for doc in st["exchanges"].values():
        assert doc["faults"] == FaultSettings().as_dict()
        assert set(doc["limits"]) == set(LimitSettings.names())
        assert isinstance(doc["counters"], dict)
    assert st["ports"]["binance"] == int(sim.rest_url("binance").rsplit(":", 1)[1])


def test_counters_count_and_reset(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0)
    for _ in range(3):
        httpx.get(handle.rest_url("okx") + "/api/v5/public/time")
    assert ctl(handle, "/state").json()["exchanges"]["okx"]["counters"]["rest.requests"] == 3
    r = httpx.post(handle.control_url + "/counters/reset", params={"exchange": "okx"})
    assert r.status_code == 200
    assert "rest.requests" not in ctl(handle, "/state").json()["exchanges"]["okx"]["counters"]


def test_clock_advance(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0, with_feed=False)
    before = ctl(handle, "/health").json()["now_ms"]
    r = httpx.post(handle.control_url + "/clock/advance", json={"ms": 3_600_000})
    assert r.status_code == 200 and r.json()["now_ms"] >= before + 3_600_000
    t = httpx.get(handle.rest_url("binance") + "/api/v3/time").json()["serverTime"]
    assert t >= before + 3_600_000
    for bad in ({"ms": -1}, {"ms": "1h"}, {"minutes": 3}, [1]):
        r = httpx.post(handle.control_url + "/clock/advance", json=bad)
        assert r.status_code == 400 and "error" in r.json()


@pytest.mark.parametrize("kind", ["faults", "limits"])
def test_settings_validation(sim_factory, kind):
    handle = sim_factory(speed=FROZEN, start_ms=T0, with_feed=False)
    url = f"{handle.control_url}/{kind}/bybit"
    unknown = httpx.post(url, json={"nope": 1})
    assert unknown.status_code == 400 and "valid:" in unknown.json()["error"]
    assert httpx.post(url, content=b"not json").status_code == 400
    assert httpx.post(f"{handle.control_url}/{kind}/kraken", json={}).status_code == 404
    name = "latency_ms" if kind == "faults" else "bybit_kline_max_limit"
    assert httpx.post(url, json={name: "fast"}).status_code == 400
    assert httpx.post(url, json={name: -5}).status_code == 400
    for bad in ("inf", "nan", True, None, [7]):
        r = httpx.post(url, json={name: bad})
        assert r.status_code == 400 and "\n" not in r.json()["error"], bad
    whole = "rest_5xx_every" if kind == "faults" else "bybit_kline_max_limit"
    assert httpx.post(url, json={whole: 1.5}).status_code == 400, "an integer setting takes whole numbers"
    if kind == "limits":
        assert httpx.post(url, json={"rate_limits": 3}).status_code == 400, "a switch takes true/false"
    ok = httpx.post(url, json={name: 7})
    assert ok.status_code == 200 and ok.json()["bybit"][name] == 7


def test_truth_candles_match_every_exchange(sim):
    now = ctl(sim, "/health").json()["now_ms"]
    end = (now // 3_600_000 - 1) * 3_600_000
    start = end - 9 * 3_600_000
    for exchange, path, params in (
        (
            "binance",
            "/api/v3/klines",
            {"symbol": "BTCUSDT", "interval": "1h", "startTime": start, "endTime": end},
        ),
        (
            "bybit",
            "/v5/market/kline",
            {"category": "spot", "symbol": "BTCUSDT", "interval": "60", "start": start, "end": end},
        ),
        (
            "okx",
            "/api/v5/market/history-candles",
            {"instId": "BTC-USDT", "bar": "1H", "after": end + 1, "before": start - 1},
        ),
    ):
        truth = ctl(
            sim, "/truth/candles", exchange=exchange, symbol="btc", interval="1h", start=start, end=end
        ).json()
        assert truth["interval"] == {"binance": "1h", "bybit": "60", "okx": "1H"}[exchange]
        rows = [c["row"] for c in truth["candles"]]
        assert len(rows) == 10 and all(c["closed"] for c in truth["candles"])
        body = httpx.get(sim.rest_url(exchange) + path, params=params).json()
        served = (
            body
            if exchange == "binance"
            else (body["result"]["list"] if exchange == "bybit" else body["data"])
        )
        assert (served if exchange == "binance" else served[::-1]) == rows
    forming = ctl(
        sim, "/truth/candles", exchange="okx", symbol="BTC-USDT", interval="1Dutc", start=now - 86_400_000
    ).json()
    assert forming["candles"][-1]["closed"] is False and forming["candles"][-1]["row"][8] == "0"


@pytest.mark.parametrize(
    "params",
    [
        {"exchange": "kraken", "symbol": "btc", "interval": "1h", "start": 0},
        {"exchange": "okx", "symbol": "doge", "interval": "1h", "start": 0},
        {"exchange": "okx", "symbol": "btc", "interval": "7m", "start": 0},
        {"exchange": "okx", "symbol": "btc", "interval": "1h"},
        {"exchange": "okx", "symbol": "btc", "interval": "1m", "start": 0},
    ],
)
def test_truth_candles_bad_input(sim, params):
    r = ctl(sim, "/truth/candles", **params)
    assert r.status_code == 400 and r.json()["error"]


def test_truth_trades_and_the_sent_flag(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0)
    tr = ctl(handle, "/truth/trades", exchange="bybit", symbol="ETHUSDT", start=T0 - 1000, end=T0 + 1).json()
    assert tr["sent"] is False  # nobody subscribed: nothing was sent
    assert tr["code"] == "ETHUSDT"
    for t in tr["trades"]:
        assert (
            T0 - 1000 <= t["time"] <= T0 and isinstance(t["id"], str) and t["taker_side"] in ("buy", "sell")
        )
    rest = httpx.get(
        handle.rest_url("bybit") + "/v5/market/recent-trade",
        params={"category": "spot", "symbol": "ETHUSDT", "limit": 60},
    ).json()
    by_id = {
        t["id"]: t
        for t in ctl(
            handle, "/truth/trades", exchange="bybit", symbol="eth", start=T0 - MIN, end=T0 + 1
        ).json()["trades"]
    }
    for row in rest["result"]["list"]:
        assert by_id[row["execId"]]["price"] == row["price"] and by_id[row["execId"]]["qty"] == row["size"]
    assert ctl(handle, "/truth/trades", exchange="bybit", symbol="eth", start=5, end=1).status_code == 400


def test_truth_book_matches_the_rest_snapshot(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0)
    depth = httpx.get(
        handle.rest_url("binance") + "/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 100}
    ).json()
    book = ctl(
        handle, "/truth/book", exchange="binance", symbol="btc", update_id=depth["lastUpdateId"]
    ).json()
    assert book["update_id"] == depth["lastUpdateId"]
    assert book["bids"][:100] == depth["bids"] and book["asks"][:100] == depth["asks"]
    current = ctl(handle, "/truth/book", exchange="binance", symbol="btc").json()
    assert current["update_id"] >= depth["lastUpdateId"]
    too_old = ctl(handle, "/truth/book", exchange="binance", symbol="btc", update_id=1)
    assert too_old.status_code == 404 and "not in the book log" in too_old.json()["error"]


def test_truth_book_without_a_feed(sim_factory):
    handle = sim_factory(speed=FROZEN, start_ms=T0, with_feed=False)
    assert ctl(handle, "/truth/book", exchange="okx", symbol="btc").status_code == 404
    r = httpx.get(handle.rest_url("okx") + "/api/v5/market/books", params={"instId": "BTC-USDT"})
    assert r.status_code == 503 and r.json()["code"] == "50001"


def test_unknown_control_path(sim):
    r = ctl(sim, "/nothing")
    assert r.status_code == 404 and "no such endpoint" in r.json()["error"]


# ------------------------------------------------------------------------------ settings parsing


def test_parse_overrides():
    spec = parse_overrides(["binance:rest_429_every=5", "all:latency_ms=20"], FaultSettings, "--fault")
    assert spec["binance"] == {"rest_429_every": 5, "latency_ms": 20.0}
    assert spec["okx"] == {"latency_ms": 20.0}
    assert parse_overrides(["okx:rate_limits=off"], LimitSettings, "--limit") == {
        "okx": {"rate_limits": False}
    }
    for bad in (
        "binance:nope=1",
        "kraken:latency_ms=1",
        "latency_ms=1",
        "binance:latency_ms=x",
        "binance:latency_ms=-1",
        "binance:latency_ms=inf",
        "binance:latency_ms=nan",
        "binance:rest_5xx_every=1.5",
        "binance:rest_5xx_every=",
    ):
        with pytest.raises(Exception) as info:
            parse_overrides([bad], FaultSettings, "--fault")
        assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_parse_start():
    assert parse_start("1767616441000") == 1767616441000
    assert parse_start("2026-01-05T12:34:01Z") == 1767616441000
    assert parse_start("2026-01-05T13:34:01+01:00") == 1767616441000
    assert parse_start(None) is None
    for bad in ("next tuesday", "0", "99999999999999999", "1767616441", "1969-12-31T00:00:00Z"):
        with pytest.raises(Exception) as info:
            parse_start(bad)
        assert info.value.exit_code == 2 and "\n" not in str(info.value), bad
    with pytest.raises(Exception) as info:
        parse_start("1767616441")
    assert "seconds" in str(info.value), "epoch seconds given for milliseconds: say so"


# ------------------------------------------------------------------------------ the p9 sim process


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "p9cli", "sim", *args], capture_output=True, text=True, timeout=timeout
    )


def test_list_faults():
    r = run_cli("--list-faults")
    assert r.returncode == 0
    for name in FaultSettings.names() + LimitSettings.names():
        assert name in r.stdout
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--fault", "binance:rest_500_every=3"),
        ("--fault", "kraken:latency_ms=3"),
        ("--limit", "okx:candles_per_minute=3"),
        ("--fault", "binance:latency_ms=soon"),
        ("--start", "yesterday"),
        ("--speed", "0"),
        ("--speed", "nan"),
        ("--speed", "inf"),
        ("--start", "99999999999999999"),
    ],
)
def test_bad_options_one_line_exit_2(args):
    r = run_cli(*args, "--port-base", "1")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("p9: ") and "Traceback" not in r.stderr


def test_unknown_name_lists_the_valid_ones():
    r = run_cli("--fault", "binance:rest_500_every=3")
    assert "rest_5xx_every" in r.stderr and "ws_drop_every_messages" in r.stderr


def test_port_in_use_one_line_exit_1():
    base = free_port_base()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base + 2))
        blocker.listen()
        r = run_cli("--port-base", str(base))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(base + 2) in lines[0] and "in use" in lines[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serves_within_3_s_and_stops_cleanly(sig):
    base = free_port_base()
    t = time.monotonic()
    proc = sim_subprocess(
        base, ["--seed", "3", "--start", "2026-01-05T12:00:00Z", "--fault", "okx:latency_ms=1"]
    )
    try:
        assert wait_listening("127.0.0.1", base + 3, timeout=10)
        r = httpx.get(f"http://127.0.0.1:{base + 1}/api/v3/ping", timeout=5)
        ready = time.monotonic() - t
        assert r.status_code == 200 and r.json() == {}
        # 3 s on an idle machine; a loaded box (load average above the core count, e.g. other
        # test suites running) stretches every start-up in proportion, so the budget does too
        budget = 3.0 * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
        assert ready < budget, f"took {ready:.2f} s to serve (budget {budget:.1f} s)"
        state = httpx.get(f"http://127.0.0.1:{base}/state", timeout=5).json()
        assert state["seed"] == 3 and state["exchanges"]["okx"]["faults"]["latency_ms"] == 1.0
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "export P9_ENDPOINTS=sim" in out
    for ex, off in (("BINANCE", 1), ("BYBIT", 2), ("OKX", 3)):
        assert f"export P9_{ex}_REST_URL=http://127.0.0.1:{base + off}" in out
        assert f"export P9_{ex}_WS_URL=ws://127.0.0.1:{base + off}" in out


def test_truth_trades_span_is_bounded(sim):
    r = ctl(sim, "/truth/trades", exchange="okx", symbol="btc", start=0, end=25 * 3_600_000)
    assert r.status_code == 400 and "hours" in r.json()["error"]


def test_sim_thread_call_runs_on_the_simulators_loop(sim_factory):
    import threading

    handle = sim_factory(speed=FROZEN, start_ms=T0)
    main = threading.get_ident()

    async def on_loop():
        return threading.get_ident(), handle.sim.books[("okx", "btc")].update_id

    ident, update_id = handle.thread.call(on_loop)
    assert ident != main and isinstance(update_id, int)
    assert handle.thread.call(lambda: 41 + 1) == 42


async def test_sigterm_with_streaming_clients_closes_them_and_exits_promptly():
    """Clients get a close frame (1001 going away) and the process exits at once, not after
    each server's shutdown timeout in turn."""
    base = free_port_base()
    proc = sim_subprocess(base, ["--start", "2026-01-05T12:00:00Z"])
    try:
        assert wait_listening("127.0.0.1", base + 3, timeout=10)
        clients = [
            await websockets.connect(f"ws://127.0.0.1:{base + 1}/ws/btcusdt@depth@100ms"),
            await websockets.connect(f"ws://127.0.0.1:{base + 2}/v5/public/spot"),
            await websockets.connect(f"ws://127.0.0.1:{base + 3}/ws/v5/public"),
        ]
        await asyncio.wait_for(clients[0].recv(), 10)  # streaming
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        while proc.poll() is None and time.monotonic() - t < 20:
            await asyncio.sleep(0.05)
        took = time.monotonic() - t
        for ws in clients:
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1001, ws.close_code
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert took < 2.5, f"took {took:.2f} s to stop with three clients connected"
