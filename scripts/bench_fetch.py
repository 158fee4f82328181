#!/usr/bin/env python
"""Benchmark ``p9 fetch-history`` against ``p9 sim`` (a separate process) with the real rate
limits on and added latency.

    .venv/bin/python scripts/bench_fetch.py [--latency-ms 50] [--candles 1000] [--settle 5]

Measures, in one run:

* the full fetch of the universe (5 symbols x 3 exchanges x 11 timeframes): wall time,
  requests, candles/s, and the ratio to the *rate-limit floor* — the least time the
  published limits allow for the requests the plan needs (per exchange the slowest bucket:
  ``(ceil(cost / capacity) - 1) * window``; exchanges run in parallel, so the max of them);
* an incremental refresh right after (normally: only the server time, plus any 1m bar that
  closed meanwhile) and one after the simulated market moved on by an hour;
* the simulator's limit violations and bans (must be 0).

Targets (issue 3): full fetch <= 1.2 x floor with zero violations; incremental refresh <= 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p9cli.config import load_settings  # noqa: E402
from p9cli.exchanges.base import RestRequest  # noqa: E402
from p9cli.history.planner import SeriesKey, plan_series, rate_floor_seconds, recent_boundary  # noqa: E402
from p9cli.history.report import Reporter  # noqa: E402
from p9cli.services.fetch_history import FetchOptions, adapter_for, fetch_history  # noqa: E402
from p9cli.sim.testing import free_port_base, sim_subprocess, wait_listening  # noqa: E402
from p9cli.universe import EXCHANGES, SYMBOLS, TIMEFRAME_MS, TIMEFRAMES  # noqa: E402


def planned_costs(exchange: str, server_now_ms: int, candles: int) -> tuple[Counter, int]:
    """Bucket costs of a full fetch of the universe on ``exchange`` (+ the time request)."""
    adapter = adapter_for(exchange)
    costs: Counter = Counter()
    n = 0
    t: RestRequest = adapter.server_time_request()
    costs[t.bucket] += t.cost
    n += 1
    for sym in SYMBOLS:
        for tf in TIMEFRAMES:
            tf_ms = TIMEFRAME_MS[tf]
            split = recent_boundary(server_now_ms, tf_ms, adapter.RECENT_CANDLES_BARS)
            plan = plan_series(
                SeriesKey(exchange, sym, tf),
                tf_ms,
                server_now_ms,
                candles,
                adapter.MAX_KLINES_PER_REQUEST,
                split_at=split,
            )
            for a, b in plan.windows:
                req = adapter.klines_request(sym, tf, a, b, server_now_ms)
                costs[req.bucket] += req.cost
                n += 1
    return costs, n


def sim_counters(control_url: str) -> dict[str, Counter]:
    doc = httpx.get(f"{control_url}/state", timeout=10).json()
    return {ex: Counter(v["counters"]) for ex, v in doc["exchanges"].items()}


async def timed_fetch(settings, full: bool) -> tuple[float, object, str]:
    out = io.StringIO()
    t0, cpu0 = time.monotonic(), time.process_time()
    result = await fetch_history(settings, full, Reporter(False, out), FetchOptions())
    result.client_cpu_s = time.process_time() - cpu0
    return time.monotonic() - t0, result, out.getvalue()


def requests_of(result) -> int:
    return sum(s.requests for s in result.series) + sum(r.overhead.requests for r in result.exchanges)


async def bench(args) -> int:
    port_base = free_port_base()
    proc = sim_subprocess(port_base, [f"--fault=all:latency_ms={args.latency_ms}", "--rate-limits"])
    control = f"http://127.0.0.1:{port_base}"
    try:
        if not all(wait_listening("127.0.0.1", port_base + i, 30) for i in range(4)):
            print("p9 sim did not start", file=sys.stderr)
            return 1
        time.sleep(args.settle)  # let the simulator warm its history aggregates up
        env = {
            "P9_ENDPOINTS": "sim",
            **{
                f"P9_{ex.upper()}_REST_URL": f"http://127.0.0.1:{port_base + i}"
                for i, ex in enumerate(EXCHANGES, 1)
            },
        }
        with tempfile.TemporaryDirectory(prefix="p9-bench-") as data:
            settings = load_settings({"data_dir": data, "candles": args.candles}, env=env, config_path=None)
            now_ms = httpx.get(f"{control}/health", timeout=10).json()["now_ms"]
            floors, planned = {}, 0
            for ex in EXCHANGES:
                costs, n = planned_costs(ex, now_ms, args.candles)
                planned += n
                floors[ex] = rate_floor_seconds(dict(costs), adapter_for(ex).RATE_BUCKETS)
            floor = max(floors.values())

            wall, result, log = await timed_fetch(settings, full=True)
            if args.verbose:
                print(log)
            candles = sum(s.new_candles for s in result.series)
            ok = result.ok
            reqs = requests_of(result)
            c1 = sim_counters(control)

            wall_inc, inc, _ = await timed_fetch(settings, full=False)
            httpx.post(f"{control}/clock/advance", json={"ms": 3_600_000}, timeout=10).raise_for_status()
            wall_hour, hour, _ = await timed_fetch(settings, full=False)
            c2 = sim_counters(control)

        violations = sum(c.get("limit.violations", 0) for c in c2.values())
        bans = sum(c.get("limit.bans", 0) for c in c2.values())
        ratio = wall / floor if floor > 0 else math.inf
        print(
            f"p9 fetch-history benchmark: p9 sim subprocess, latency {args.latency_ms:g} ms, real rate limits"
        )
        print(
            f"  universe                 {len(EXCHANGES)} exchanges x {len(SYMBOLS)} symbols x {len(TIMEFRAMES)} timeframes x {args.candles} candles"
        )
        print(
            f"  full fetch               {wall:7.2f} s   {reqs} requests (planned {planned})   {candles} candles   {candles / wall:,.0f} candles/s   all ok: {ok}"
        )
        per_ex = "  ".join(f"{r.exchange} {r.seconds:.2f} s" for r in result.exchanges)
        print(f"  per exchange             {per_ex}   (client CPU {result.client_cpu_s:.2f} s)")
        print(
            f"  rate-limit floor         {floor:7.2f} s   ({', '.join(f'{ex} {v:.1f} s' for ex, v in floors.items())})"
        )
        print(f"  ratio to floor           {ratio:7.3f}   (target <= 1.2)")
        print(
            f"  incremental (no change)  {wall_inc:7.2f} s   {requests_of(inc)} requests   {sum(s.new_candles for s in inc.series)} new candles"
        )
        print(
            f"  incremental (+1 h)       {wall_hour:7.2f} s   {requests_of(hour)} requests   {sum(s.new_candles for s in hour.series)} new candles   (target <= 3 s)"
        )
        print(
            f"  sim limit violations     {violations}   bans {bans}   (full fetch only: {sum(c.get('limit.violations', 0) for c in c1.values())})"
        )
        good = ok and inc.ok and hour.ok and violations == 0 and bans == 0
        good = good and ratio <= 1.2 and wall_inc <= 3 and wall_hour <= 3
        print(f"  verdict                  {'PASS' if good else 'FAIL'}")
        return 0 if good else 1
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--candles", type=int, default=1000)
    ap.add_argument("--settle", type=float, default=15.0, help="seconds to let the simulator warm up")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the fetch log")
    return asyncio.run(bench(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
