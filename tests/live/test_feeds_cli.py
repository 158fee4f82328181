"""`p9 feeds` against the simulator: JSON lines of trades, in-sync books and events, the
statistics at the end; bad input is one line and exit 2; a feed with no data exits 1."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import orjson

from p9cli.universe import EXCHANGES


def _p9(args: list[str], env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("P9_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "p9cli", *args], capture_output=True, text=True, env=full, timeout=timeout
    )


def _sim_env(sim) -> dict:
    env = {"P9_ENDPOINTS": "sim"}
    for ex in EXCHANGES:
        env[f"P9_{ex.upper()}_WS_URL"] = sim.ws_url(ex)
        env[f"P9_{ex.upper()}_REST_URL"] = sim.rest_url(ex)
    return env


async def test_feeds_json_lines_against_the_sim(live_sim):
    sim = live_sim(speed=3.0)
    r = _p9(["feeds", "--symbols", "btc", "--duration", "2.5", "--json"], _sim_env(sim))
    assert r.returncode == 0, r.stderr
    rows = [orjson.loads(line) for line in r.stdout.splitlines()]
    types = {row["type"] for row in rows}
    assert types == {"trade", "book", "event", "stats"}, types
    stats = {row["exchange"]: row for row in rows if row["type"] == "stats"}
    assert set(stats) == set(EXCHANGES) and all(s["state"] == "live" for s in stats.values()), stats
    books = [row for row in rows if row["type"] == "book"]
    assert {b["exchange"] for b in books} == set(EXCHANGES)
    # the top of book printed equals the true book at the update id printed (Binance, OKX: the
    # update id is the simulator's book id)
    async with httpx.AsyncClient() as c:
        for b in [x for x in books if x["exchange"] in ("binance", "okx")][-4:]:
            truth = (
                await c.get(
                    sim.control_url + "/truth/book",
                    params={"exchange": b["exchange"], "symbol": "btc", "update_id": b["update_id"]},
                )
            ).json()
            assert (b["bid"], b["bid_size"]) == tuple(float(x) for x in truth["bids"][0]), b
            assert (b["ask"], b["ask_size"]) == tuple(float(x) for x in truth["asks"][0]), b
    trades = [row for row in rows if row["type"] == "trade"]
    assert trades and all(t["side"] in ("buy", "sell") and t["price"] > 0 for t in trades)
    assert len({(t["exchange"], t["trade_id"]) for t in trades}) == len(trades)


def test_feeds_bad_input_is_one_line_and_exit_2():
    for args in (["--symbols", "doge"], ["--duration", "0"], ["--exchanges", "kraken"]):
        r = _p9(["feeds", *args, "--endpoints", "sim"])
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("p9: "), r.stderr
        assert r.stdout == ""


def test_feeds_with_nothing_answering_exits_1():
    from p9cli.sim.testing import free_port_base

    base = free_port_base()
    env = {f"P9_{ex.upper()}_WS_URL": f"ws://127.0.0.1:{base + i}" for i, ex in enumerate(EXCHANGES)}
    env.update(
        {f"P9_{ex.upper()}_REST_URL": f"http://127.0.0.1:{base + i}" for i, ex in enumerate(EXCHANGES)}
    )
    r = _p9(["feeds", "--symbols", "btc", "--duration", "1.5"], env)
    assert r.returncode == 1, r.stderr
    assert "no data from binance, bybit, okx" in r.stderr
    assert "connect_failed" in r.stdout  # the retries are shown as they happen


async def test_feeds_stops_when_its_reader_goes_away(live_sim):
    sim = live_sim(speed=3.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("P9_")}
    env.update(_sim_env(sim))
    proc = subprocess.Popen(
        [sys.executable, "-m", "p9cli", "feeds", "--symbols", "btc"],  # no --duration: runs until stopped
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout.readline()  # `p9 feeds | head -1`
        proc.stdout.close()
        assert proc.wait(20) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(5)
