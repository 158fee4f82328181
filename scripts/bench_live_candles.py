"""Cost of the live-candle builder per trade (``p9cli.live.candles.CandleBuilder.on_trade``).

Feeds the same trade tape (a tick-rounded random walk, ~1,500 trades a minute like Binance BTC
in the simulator, with clock calls every 250 ms of exchange time) to:

* p9's builder (only the current minute per trade; 11 timeframes merged once per minute);
* a straightforward reference that updates all 11 timeframes on every trade (what a builder
  without the per-minute merge does), so the ratio is measured in the same run;

checks that both produce the same closed candles, and prints µs per trade and the ratio.

    python scripts/bench_live_candles.py [--trades 600000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import time

from p9cli.live.candles import CandleBuilder
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES

START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC


def tape(n: int, seed: int = 9) -> list[tuple[int, float, float]]:
    rnd = random.Random(seed)
    ticks = 9_500_000  # 95,000.00 at tick 0.01
    ts = START_MS + 17
    out = []
    for _ in range(n):
        ts += int(rnd.expovariate(1 / 40))  # ~1,500 a minute
        ticks += rnd.choice((-2, -1, 0, 0, 1, 2))
        size = float(f"{rnd.randint(1, 200_000) / 100_000:.5f}")
        out.append((ts, float(f"{ticks / 100:.2f}"), size))
    return out


class EveryTimeframe:
    """Reference: one dict per timeframe, updated on every trade."""

    def __init__(self):
        self.bars = {tf: None for tf in TIMEFRAMES}
        self.closed: list[tuple] = []

    def on_trade(self, ts: int, price: float, size: float) -> None:
        for tf in TIMEFRAMES:
            length = TIMEFRAME_MS[tf]
            bo = ts - ts % length
            bar = self.bars[tf]
            if bar is None or bar[0] != bo:
                if bar is not None:
                    self.closed.append((tf, *bar))
                self.bars[tf] = [bo, price, price, price, price, round(size * 1e8), 1]
                continue
            if price > bar[2]:
                bar[2] = price
            if price < bar[3]:
                bar[3] = price
            bar[4] = price
            bar[5] += round(size * 1e8)
            bar[6] += 1


def run_builder(trades) -> tuple[float, list]:
    b = CandleBuilder("bench", "btc")
    closed = b.start(START_MS)
    next_clock = 0
    on_trade, on_clock = b.on_trade, b.on_clock
    t0 = time.perf_counter()
    for ts, price, size in trades:
        ev = on_trade(ts, price, size)
        if ev:
            closed += ev
        if ts >= next_clock:
            next_clock = ts + 250
            ev = on_clock(ts)
            if ev:
                closed += ev
    return time.perf_counter() - t0, closed


def run_reference(trades) -> tuple[float, list]:
    r = EveryTimeframe()
    on_trade = r.on_trade
    t0 = time.perf_counter()
    for ts, price, size in trades:
        on_trade(ts, price, size)
    return time.perf_counter() - t0, r.closed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=600_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    trades = tape(args.trades)
    minutes = (trades[-1][0] - trades[0][0]) / 60_000
    best_b = best_r = float("inf")
    for _ in range(args.repeat):
        tb, closed_b = run_builder(trades)
        tr, closed_r = run_reference(trades)
        best_b, best_r = min(best_b, tb), min(best_r, tr)
    ours = {
        (c.timeframe, c.open_time): (c.open, c.high, c.low, c.close, round(c.volume * 1e8), c.trades)
        for c in closed_b
        if getattr(c, "closed", False) and c.complete
    }
    ref = {(tf, t): (o, h, lo, c, v, n) for tf, t, o, h, lo, c, v, n in closed_r}
    common = ours.keys() & ref.keys()
    same = all(ours[k] == ref[k] for k in common)
    n = len(trades)
    print(f"{n:,} trades over {minutes:,.0f} minutes ({n / minutes:,.0f}/min), best of {args.repeat}")
    print(f"p9 CandleBuilder (11 timeframes, merged per minute): {best_b / n * 1e6:.3f} µs/trade")
    print(f"reference (11 timeframes updated per trade):         {best_r / n * 1e6:.3f} µs/trade")
    print(f"ratio reference / p9: {best_r / best_b:.1f}x; complete closed candles compared: "
          f"{len(common):,}, identical: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
