"""Benchmark of the simulator's market model (p9cli/sim/model.py).

Targets: construct < 0.5 s; warm_up (15 series, 1100 days) < 20 s on one core; after warm-up
a 1000-bar ``bars()`` call of any timeframe < 20 ms; ``trades()`` for one minute < 2 ms (also
for the busiest minutes, ~2000-5000 trades). Ends with a summary of the live tape per series.

    .venv/bin/python scripts/bench_sim_model.py [--seed 7]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from decimal import Decimal

import numpy as np

from p9cli.sim.instruments import INSTRUMENTS, INTERVALS
from p9cli.sim.model import MarketModel
from p9cli.sim.state import SimClock
from p9cli.universe import EXCHANGES, MINUTE_MS, SYMBOLS


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start-ms", type=int, default=int(time.time() * 1000))
    args = ap.parse_args()

    clock = SimClock(start_ms=args.start_ms, speed=1.0)
    t_ctor, model = timed(lambda: MarketModel(args.seed, clock))
    print(f"construct MarketModel: {t_ctor * 1000:.1f} ms (target < 500 ms)")

    # cold calls (before warm-up)
    now = clock.now_ms()
    t_cold, _ = timed(
        lambda: model.bars("binance", "btc", 60 * MINUTE_MS, 0, now - 1000 * 3600_000, now, now)
    )
    print(f"cold 1000 x 1h bars before warm-up: {t_cold * 1000:.1f} ms")

    t_warm, _ = timed(model.warm_up)
    print(
        f"warm_up (15 series, {(model.live_start_ms - model.history_start_ms) // 86_400_000} days): {t_warm:.2f} s (target < 20 s)"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max RSS after warm-up: {rss:.0f} MB (target < 2048 MB)")

    clock.advance(3 * 3600_000)  # three hours of live market
    now = clock.now_ms()
    worst = []
    for ex in EXCHANGES:
        for code, (tf, off) in INTERVALS[ex].items():
            for label, first in (("recent", now - 999 * tf), ("old", model.history_start_ms + 100 * tf)):
                last = first + 999 * tf
                times = []
                for sym in SYMBOLS:  # first call of each: nothing of this exact request is cached
                    t0 = time.perf_counter()
                    model.bars(ex, sym, tf, off, first, last, now)
                    times.append(time.perf_counter() - t0)
                worst.append((max(times), ex, code, label))
    worst.sort(reverse=True)
    med = statistics.median(w[0] for w in worst)
    print(
        f"1000-bar bars() after warm-up, all codes x symbols x (recent, old): median {med * 1000:.2f} ms, "
        f"worst {worst[0][0] * 1000:.2f} ms ({worst[0][1]} {worst[0][2]} {worst[0][3]}) (target < 20 ms)"
    )
    for w in worst[:5]:
        print(f"   {w[0] * 1000:7.2f} ms  {w[1]} {w[2]} {w[3]}")

    # trades of one minute (fresh minutes, not cached: trades are always regenerated)
    ts = []
    for k in range(1, 60):
        m = now - now % MINUTE_MS - k * MINUTE_MS
        t, tr = timed(lambda m=m: model.trades("binance", "btc", m, m + MINUTE_MS))
        ts.append(t)
    print(
        f"trades() one minute binance btc (~{len(tr)} trades): median {statistics.median(ts) * 1000:.3f} ms, "
        f"max {max(ts) * 1000:.3f} ms (target < 2 ms)"
    )
    t, tr = timed(lambda: model.trades("binance", "btc", now - 3600_000, now))
    print(f"trades() one hour binance btc ({len(tr)} trades): {t * 1000:.1f} ms")
    bench_busy_minutes(model, now)
    tape_summary(model, now)
    t, _ = timed(lambda: model.last_trade_price("okx", "eth", now), 20)
    print(f"last_trade_price(): {t * 1e6:.0f} us")

    # a new live day: the first bars() touching it
    clock.advance(86_400_000)
    now = clock.now_ms()
    t, _ = timed(lambda: model.bars("bybit", "sol", 86_400_000, 0, now - 5 * 86_400_000, now, now))
    print(f"first 1d bars() after the clock crossed into a new day: {t * 1000:.1f} ms")


def bench_busy_minutes(model: MarketModel, now: int) -> None:
    """trades() of the busiest live minutes of binance btc (the < 2 ms target holds at the peak,
    not only on quiet minutes): the 30 minutes with most trades of the live hours, each asked
    once on a fresh model (no cached day), median and max."""
    live = model.bars("binance", "btc", MINUTE_MS, 0, model.live_start_ms, now - MINUTE_MS, now)
    busiest = live.open_time[np.argsort(live.trades)[-30:]]
    fresh = MarketModel(model.seed, model.clock)
    fresh.trades("binance", "btc", int(busiest[0]), int(busiest[0]) + 1)  # the day itself
    ts, ns = [], []
    for m in busiest.tolist():
        t, tr = timed(lambda m=m: fresh.trades("binance", "btc", m, m + MINUTE_MS))
        ts.append(t)
        ns.append(len(tr))
    print(
        f"trades() busiest minutes binance btc ({min(ns)}..{max(ns)} trades): median "
        f"{statistics.median(ts) * 1000:.3f} ms, max {max(ts) * 1000:.3f} ms (target < 2 ms)"
    )


def tape_summary(model: MarketModel, now: int) -> None:
    """Per series over the last hour: trades per minute, per second (median, max), the longest
    silence and the share of trades sharing the previous trade's millisecond."""
    a = now - now % MINUTE_MS - 3600_000
    for ex in EXCHANGES:
        parts = []
        for sym in SYMBOLS:
            t = model.trades(ex, sym, a, a + 3600_000)
            per_s = np.bincount((t.time - a) // 1000, minlength=3600)
            gap = np.diff(np.concatenate(([a], t.time, [a + 3600_000]))).max()
            parts.append(
                f"{sym} {len(t) / 60:.0f}/min {np.median(per_s):.0f}/s (max {per_s.max()}) "
                f"silence {gap / 1000:.1f}s same-ms {(np.diff(t.time) == 0).mean():.2f}"
            )
        print(f"tape last hour {ex}: " + "; ".join(parts))


def _per_call(fn, values) -> float:
    t = time.perf_counter()
    for v in values:
        fn(v)
    return (time.perf_counter() - t) / len(values)


def bench_formatting() -> None:
    """Exchange-style number formatting, ns per call, against formatting a Decimal."""
    values = list(range(9_000_000, 9_200_000))
    for key in (("binance", "btc"), ("bybit", "eth"), ("okx", "xrp")):
        inst = INSTRUMENTS[key]
        tick = inst.tick
        t_dec = _per_call(lambda v, tick=tick: format(Decimal(v) * tick, "f"), values)
        inst._price_cache.clear()
        t_new = _per_call(inst.price_str, values)
        _per_call(inst.price_str, values[:20_000])
        t_hit = _per_call(inst.price_str, values[:20_000] * 5)  # a book's prices repeat
        t_qty = _per_call(inst.qty_str, values)
        t_quote = _per_call(inst.quote_str, [v * 1000 for v in values])
        print(
            f"format {key[0]:7} {key[1]}: price_str {t_new * 1e9:.0f} ns new / {t_hit * 1e9:.0f} ns repeated, "
            f"qty_str {t_qty * 1e9:.0f} ns, quote_str {t_quote * 1e9:.0f} ns; Decimal-based {t_dec * 1e9:.0f} ns "
            f"(ratio {t_dec / t_new:.1f}x)"
        )


if __name__ == "__main__":
    bench_formatting()
    main()
