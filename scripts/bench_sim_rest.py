"""Benchmark the simulator's REST side: start-up time and the latency of big candle pages.

    .venv/bin/python scripts/bench_sim_rest.py [--rounds 50]

Prints, for each exchange, the median and p95 round-trip time of a full candle page
(Binance 1000 rows, Bybit 1000 rows, OKX 300 rows) over loopback with a keep-alive httpx
client, for a cold (first-time) range and a repeated one, plus the time from start until the
three exchanges answer, and the handler-only time of one 1000-row Binance page (the bar
fetch from the model plus formatting and JSON encoding, measured in-process).
The quality bar is a 1000-row klines response in < 30 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from p9cli.sim.http import json_body
from p9cli.sim.instruments import INSTRUMENTS
from p9cli.sim.rest_binance import kline_rows
from p9cli.sim.testing import SimThread

START_MS = 1_767_616_496_789
MIN = 60_000


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()

    t0 = time.perf_counter()
    thread = SimThread(seed=9, start_ms=START_MS, speed=1.0, warm_up=False, rate_limits=False)
    handle = thread.start()
    started = time.perf_counter() - t0
    with httpx.Client(timeout=30) as c:
        for ex, path in (
            ("binance", "/api/v3/ping"),
            ("bybit", "/v5/market/time"),
            ("okx", "/api/v5/public/time"),
        ):
            c.get(handle.rest_url(ex) + path).raise_for_status()
    ready = time.perf_counter() - t0
    print(
        f"start-up: servers listening after {started * 1000:.0f} ms, all three answering after {ready * 1000:.0f} ms"
    )

    newest = START_MS // MIN * MIN
    pages = {
        "binance": ("/api/v3/klines", lambda k: {"symbol": "BTCUSDT", "interval": "1m", "endTime": newest - k * 1000 * MIN, "limit": 1000}, 1000),
        "bybit": ("/v5/market/kline", lambda k: {"category": "spot", "symbol": "BTCUSDT", "interval": "1", "end": newest - k * 1000 * MIN, "limit": 1000}, 1000),
        "okx": ("/api/v5/market/history-candles", lambda k: {"instId": "BTC-USDT", "bar": "1m", "after": newest - k * 300 * MIN, "limit": 300}, 300),
    }  # fmt: skip
    with httpx.Client(timeout=30) as c:
        for ex, (path, params, rows) in pages.items():
            url = handle.rest_url(ex) + path
            cold, warm = [], []
            for k in range(1, args.rounds + 1):
                t = time.perf_counter()
                c.get(url, params=params(k)).raise_for_status()
                cold.append((time.perf_counter() - t) * 1000)
            for _ in range(args.rounds):
                t = time.perf_counter()
                c.get(url, params=params(1)).raise_for_status()
                warm.append((time.perf_counter() - t) * 1000)
            print(
                f"{ex:<8} {rows:>4}-row page: new range median {statistics.median(cold):6.2f} ms p95 {pct(cold, 0.95):6.2f} ms"
                f" | same range median {statistics.median(warm):6.2f} ms p95 {pct(warm, 0.95):6.2f} ms"
            )
    thread.stop()

    # handler work without HTTP: bars from the model + rows + JSON (one process, no server)
    from p9cli.sim.model import MarketModel
    from p9cli.sim.state import SimClock

    model = MarketModel(9, SimClock(START_MS, 1.0))
    inst = INSTRUMENTS[("binance", "btc")]
    times = []
    for k in range(1, args.rounds + 1):
        last = newest - k * 1000 * MIN
        t = time.perf_counter()
        bars = model.bars("binance", "btc", MIN, 0, last - 999 * MIN, last, START_MS)
        body = json_body(kline_rows(bars, inst, MIN))
        times.append((time.perf_counter() - t) * 1000)
    print(
        f"binance 1000-row page, in-process (model + format + JSON): median {statistics.median(times):.2f} ms, {len(body)} bytes"
    )


async def feed_gap_during_cold_history() -> None:
    """Largest gap between Binance depth frames (100 ms cadence) while a cold 1000-day klines
    request is computed: the model work runs off the event loop, so the feed keeps going."""
    import asyncio

    import aiohttp

    from p9cli.sim.server import running_sim

    async with running_sim(seed=9, start_ms=START_MS, warm_up=False) as h, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(h.ws_url("binance") + "/ws/btcusdt@depth@100ms")
        stamps: list[float] = []

        async def read() -> None:
            async for _ in ws:
                stamps.append(time.perf_counter())

        reader = asyncio.create_task(read())
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(timeout=120) as c:
            t = time.perf_counter()
            r = await c.get(
                h.rest_url("binance") + "/api/v3/klines",
                params={"symbol": "BTCUSDT", "interval": "1d", "limit": 1000},
            )
            cold = time.perf_counter() - t
        await asyncio.sleep(0.5)
        reader.cancel()
        window = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if b > t]
        print(
            f"cold 1000-day klines (before warm-up): {cold:.2f} s, HTTP {r.status_code}; "
            f"largest gap between depth frames meanwhile: {max(window) * 1000:.0f} ms (cadence 100 ms)"
        )


if __name__ == "__main__":
    main()
    import asyncio

    asyncio.run(feed_gap_during_cold_history())
