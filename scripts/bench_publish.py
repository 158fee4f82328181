#!/usr/bin/env python
"""CPU cost of publishing at full cadence: p9's Publisher vs a naive per-message SET+PUBLISH (same run).

Load (issue 9): 15 pairs (3 exchanges x 5 symbols) x the 4 per-pair channels + the status heartbeat:
fusion_data 4/s, market_context 1/s, precision9_context 1/s, structure once a minute per pair, status
1/s, with payloads of realistic size (fusion_data carries 11 timeframes of candles). A producer task
offers them on that schedule; the publisher flushes every --flush-ms. We measure this process's CPU
time (time.process_time) over --seconds and subtract the same producer loop with nothing behind it,
so the figure is what publishing costs. The peer in the same run is the naive way (await SET, await
PUBLISH for every message: what a simple fire-and-forget publisher does), on the same load.

    python scripts/bench_publish.py                    # private server on a free port, 20 s per case
    python scripts/bench_publish.py --url redis://127.0.0.1:6379/9 --seconds 30
    python scripts/bench_publish.py --burst            # also: every channel offered before every flush

Budget: <= 10 % of one core at full cadence for 15 pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import redis.asyncio as aioredis

from p9cli.publish import (
    FUSION_DATA,
    MARKET_CONTEXT,
    PRECISION9_CONTEXT,
    STRUCTURE,
    WorkerInfo,
    channel,
    envelope,
    publishing,
)
from p9cli.publish.embedded import EmbeddedRedis
from p9cli.universe import TIMEFRAMES

EXCHANGES = ("binance", "bybit", "okx")
SYMBOLS = ("btcusdt", "ethusdt", "solusdt", "bnbusdt", "xrpusdt")
RATES = {FUSION_DATA: 4.0, MARKET_CONTEXT: 1.0, PRECISION9_CONTEXT: 1.0, STRUCTURE: 1 / 60}


def _candle(t: int, closed: bool) -> dict:
    return {"open_time": t, "open": 67012.1, "high": 67100.5, "low": 66950.2, "close": 67055.7,
            "volume": 12.345678, "closed": closed}


def payload(kind: str, ex: str, sym: str) -> dict:
    t = int(time.time() * 1000)
    if kind == FUSION_DATA:
        body = {
            "price": 67055.7,
            "book": {"bid": 67055.6, "ask": 67055.8, "bid_size": 1.2345, "ask_size": 0.5432, "mid": 67055.7,
                     "spread_bps": 0.0298, "update_id": 58_123_456_789,
                     "depth": {"0.1": {"bid": 12.5, "ask": 9.8}, "0.5": {"bid": 80.1, "ask": 77.2},
                               "1": {"bid": 150.3, "ask": 148.9}}, "imbalance": 0.0412},
            "flow": {"vwap": 67040.12, "trades_per_s": {"1s": 31, "10s": 27.4, "60s": 25.9}, "buy_volume": 10.2,
                     "sell_volume": 9.7, "cvd": 0.5, "rv_pct": 38.2},
            "candles": {tf: {"forming": _candle(t, False), "last_closed": _candle(t - 60_000, True)}
                        for tf in TIMEFRAMES},
            "position": {"support": {"price": 66500.0, "distance_pct": -0.83, "distance_atr": {"1h": -1.2, "4h": -0.6,
                                                                                             "1d": -0.3}},
                         "resistance": {"price": 67800.0, "distance_pct": 1.11, "distance_atr": {"1h": 1.6, "4h": 0.8,
                                                                                                 "1d": 0.4}},
                         "value_area": "inside", "above_poc": True, "zone": None},
        }
    elif kind == STRUCTURE:  # a structure document is tens of KB
        body = {"levels": [{"price": 60000.0 + i * 97.5, "kind": "swing", "strength": 0.5, "touches": 3,
                            "timeframes": ["1h", "4h"], "distance_pct": i * 0.1} for i in range(150)],
                "timeframes": {tf: {"candles": 1000, "close": 67055.7, "atr": 250.0, "atr_pct": 0.37}
                               for tf in TIMEFRAMES}}
    else:  # market_context / precision9_context: ~1-3 KB of nested numbers
        body = {"bias": {"sign": 1, "confidence": 0.62, "score": 0.41},
                "atr": {tf: 250.0 for tf in TIMEFRAMES}, "atr_pct": {tf: 0.37 for tf in TIMEFRAMES},
                "regime": {"label": "normal", "rv_pct": 38.2, "percentile_pct": 55.0},
                "levels": {"support": {"price": 66500.0, "distance_pct": -0.83,
                                       "distance_atr": {"1h": -1.2, "4h": -0.6, "1d": -0.3}},
                           "resistance": None},
                "trend": {tf: {"label": "up", "score": 0.5} for tf in TIMEFRAMES}}
        if kind == MARKET_CONTEXT:
            body["live"] = {"trades_per_s": {"1s": 31, "10s": 27.4, "60s": 25.9}, "vwap": 67040.12}
    return envelope(kind, exchange=ex, symbol=sym, event_ts=t, **body)


class Load:
    """The producer: every channel gets a fresh payload at its rate (or before every flush: burst)."""

    def __init__(self, burst: bool, flush_s: float):
        self.items = [(channel(k, e, s), k, e, s) for k in RATES for e in EXCHANGES for s in SYMBOLS]
        self.templates = {ch: payload(k, e, s) for ch, k, e, s in self.items}
        self.burst = burst
        self.flush_s = flush_s
        self.offered = 0

    async def run(self, offer, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        due = {ch: start for ch, *_ in self.items}
        tick = self.flush_s if self.burst else 0.05
        while (now := loop.time()) - start < seconds:
            for ch, kind, *_ in self.items:
                if self.burst or now >= due[ch]:
                    p = dict(self.templates[ch])  # a new dict per offer, like a real producer
                    p["ts"] = int(time.time() * 1000)
                    await offer(ch, p)
                    self.offered += 1
                    due[ch] = now + 1 / RATES[kind]
            await asyncio.sleep(tick)


async def _cpu(coro) -> float:
    t0 = time.process_time()
    await coro
    return time.process_time() - t0


async def case(url: str, seconds: float, flush_ms: int, burst: bool) -> dict:
    # 1. baseline: the producer alone
    base = Load(burst, flush_ms / 1000)

    async def nothing(ch, p):
        return None

    cpu_base = await _cpu(base.run(nothing, seconds))
    # 2. p9 publisher (with its status heartbeat)
    load = Load(burst, flush_ms / 1000)
    worker = WorkerInfo.create("bench", EXCHANGES, SYMBOLS)
    async with publishing(url, worker, flush_interval_s=flush_ms / 1000) as pub:

        async def offer(ch, p):
            pub.offer(ch, p)

        cpu_p9 = await _cpu(load.run(offer, seconds))
        stats = pub.stats
    published = sum(stats.published.values())
    # 3. the naive peer: await SET + await PUBLISH per message, same load
    naive = Load(burst, flush_ms / 1000)
    client = aioredis.Redis.from_url(url, socket_timeout=None, protocol=2)
    import orjson

    async def naive_offer(ch, p):
        data = orjson.dumps(p)
        await client.set(ch, data, ex=10)
        await client.publish(ch, data)

    cpu_naive = await _cpu(naive.run(naive_offer, seconds))
    await client.aclose()
    net_p9 = max(cpu_p9 - cpu_base, 1e-9)
    net_naive = max(cpu_naive - cpu_base, 1e-9)
    return {
        "flush_ms": flush_ms, "burst": burst, "seconds": seconds, "offered": load.offered, "published": published,
        "msgs_s": published / seconds, "bytes_s": stats.bytes / seconds, "flushes": stats.flushes,
        "p9_core_pct": 100 * net_p9 / seconds, "p9_us_msg": 1e6 * net_p9 / max(published, 1),
        "naive_core_pct": 100 * net_naive / seconds, "naive_us_msg": 1e6 * net_naive / max(naive.offered, 1),
        "base_core_pct": 100 * cpu_base / seconds, "errors": stats.errors,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="Redis URL (default: a private server on a free port)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--burst", action="store_true", help="also run: every channel offered before every flush")
    args = ap.parse_args()
    server = None
    url = args.url
    if url is None:
        server = EmbeddedRedis.start()
        url = server.url
        print(f"server: {server.version} ({server.origin}) at {url}")
    try:
        cases = [(250, False), (100, False)] + ([(250, True), (100, True)] if args.burst else [])
        print(f"load: 15 pairs x 4 channels + status; {args.seconds:g} s per case; CPU = this process, "
              "net of the producer alone")
        print(f"{'flush':>6} {'load':>8} {'msgs/s':>7} {'KB/s':>7} {'p9 %core':>9} {'p9 us/msg':>10} "
              f"{'naive %core':>12} {'naive us/msg':>13} {'ratio':>6}")
        for flush_ms, burst in cases:
            r = await case(url, args.seconds, flush_ms, burst)
            ratio = r["naive_us_msg"] / r["p9_us_msg"]
            print(f"{r['flush_ms']:>4}ms {'burst' if burst else 'cadence':>8} {r['msgs_s']:>7.0f} "
                  f"{r['bytes_s'] / 1024:>7.0f} {r['p9_core_pct']:>8.2f}% {r['p9_us_msg']:>10.1f} "
                  f"{r['naive_core_pct']:>11.2f}% {r['naive_us_msg']:>13.1f} {ratio:>5.1f}x"
                  + ("" if r["errors"] == 0 else f"  errors={r['errors']}"))
            verdict = "OK" if r["p9_core_pct"] <= 10 else "OVER BUDGET"
            print(f"       budget <= 10 % of one core: {verdict}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
