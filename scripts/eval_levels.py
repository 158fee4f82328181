#!/usr/bin/env python
"""Do the key levels matter? A walk-forward test of ``p9cli.analysis.levels.key_levels``.

For each evaluated timeframe, at checkpoints spread over the stored history, the levels are
computed from the candles CLOSED by then (every timeframe that has some, as ``analyze`` does),
then the next ``--horizon`` bars of the evaluated timeframe are watched. Per level:

* untouched: no bar reaches the level;
* reaction: after the first bar that reaches it, price moves >= 1 ATR away from the level on
  the side it came from before it moves >= 1 ATR beyond it (ATR(14) of the evaluated
  timeframe at the checkpoint; the touching bar counts only by its close);
* break: it moves (or the touching bar closes) >= 1 ATR beyond the level first;
* open: neither within the horizon (or both inside one bar: the order is unknown).

The baseline repeats this for random levels at the same distances: each real level's distance
in ATR is applied at a random other checkpoint (``--baseline-draws`` per level), so the baseline
has the same distance distribution and the same market but no structure. The table shows, per
timeframe, the touch rate and the reaction rate (reactions / (reactions + breaks)) of the levels
and of the baseline, the difference with its standard error, and the levels split by strength.

    python scripts/eval_levels.py --data-dir DIR [--exchange binance] [--symbol btc]
    python scripts/eval_levels.py --recorded            # the real klines in $P9_FIXTURES

Exit code 0 when a table was printed, 2 on bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from p9cli.analysis.candles import Candles, tick_size
from p9cli.analysis.indicators import atr as atr_series
from p9cli.analysis.levels import key_levels
from p9cli.errors import P9Error
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES

OUTCOMES = ("untouched", "reaction", "break", "open")
WARMUP_BARS = 120


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    @property
    def decided(self) -> int:
        return self.counts["reaction"] + self.counts["break"]

    def touch_rate(self) -> float:
        return 1.0 - self.counts["untouched"] / self.n if self.n else math.nan

    def reaction_rate(self) -> float:
        return self.counts["reaction"] / self.decided if self.decided else math.nan


def outcome(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, level: float, start_price: float, atr: float
) -> str:
    """What price did at ``level`` over the bars ``high``/``low``/``close`` (see the module doc).
    The bar that first reaches the level counts only by its close (its range before the touch
    is not a reaction); the bars after it count by their high and low."""
    above = level > start_price  # a resistance: price comes from below
    reach = np.flatnonzero(high >= level) if above else np.flatnonzero(low <= level)
    if reach.size == 0:
        return "untouched"
    first = int(reach[0])
    beyond = close[first] - level if above else level - close[first]
    if beyond >= atr:
        return "break"
    h, lo = high[first + 1 :], low[first + 1 :]
    if above:
        react, brk = lo <= level - atr, h >= level + atr
    else:
        react, brk = h >= level + atr, lo <= level - atr
    r = int(np.argmax(react)) if react.any() else None
    b = int(np.argmax(brk)) if brk.any() else None
    if r is None and b is None:
        return "open"
    if b is None or (r is not None and r < b):
        return "reaction"
    if r is None or b < r:
        return "break"
    return "open"  # both in the same bar


def closed_by(c: Candles, tf: str, t_ms: int) -> Candles:
    k = int(np.searchsorted(c.open_time + TIMEFRAME_MS[tf], t_ms, side="right"))
    return Candles.from_arrays(
        c.open_time[:k], c.open[:k], c.high[:k], c.low[:k], c.close[:k], c.volume[:k], c.quote_volume[:k]
    )


def evaluate(
    frames: dict[str, Candles],
    tf: str,
    *,
    horizon: int,
    checkpoints: int,
    draws: int,
    rng: np.random.Generator,
) -> dict | None:
    """Walk forward over ``frames[tf]``; None when it is too short."""
    c = frames[tf]
    n = len(c)
    if n < WARMUP_BARS + horizon + 10:
        return None
    tick = tick_size(*frames.values()) or 0.01
    atr_by_tf = {name: atr_series(f.high, f.low, f.close, 14) for name, f in frames.items()}
    idx = np.unique(np.linspace(WARMUP_BARS, n - horizon - 1, checkpoints).round().astype(int))
    real, base = Tally(), Tally()
    by_strength = {"strong (>= 0.5)": Tally(), "weak (< 0.5)": Tally()}
    distances: list[tuple[int, float]] = []  # (checkpoint, distance in ATR) of every real level
    tf_ms = TIMEFRAME_MS[tf]
    for i in idx.tolist():
        t = int(c.open_time[i]) + tf_ms  # the close of bar i: everything known by then
        sub = {name: closed_by(f, name, t) for name, f in frames.items()}
        sub = {name: f for name, f in sub.items() if len(f) >= 30}
        atr_now = {
            name: float(atr_by_tf[name][len(f) - 1])
            for name, f in sub.items()
            if math.isfinite(atr_by_tf[name][len(f) - 1])
        }
        a = float(atr_by_tf[tf][i])
        if not (math.isfinite(a) and a > 0) or not atr_now:
            continue
        price = float(c.close[i])
        try:
            levels = key_levels(sub, atr_now, price, tick, now_ms=t)
        except ValueError:
            continue
        fut = slice(i + 1, i + 1 + horizon)
        for lv in levels:
            res = outcome(c.high[fut], c.low[fut], c.close[fut], lv["price"], price, a)
            real.add(res)
            by_strength["strong (>= 0.5)" if lv["strength"] >= 0.5 else "weak (< 0.5)"].add(res)
            distances.append((i, (lv["price"] - price) / a))
    # baseline: each real level's distance (in ATR) at random other checkpoints
    for i, d_atr in distances:
        for _ in range(draws):
            j = int(rng.choice(idx))
            while j == i and idx.size > 1:
                j = int(rng.choice(idx))
            a = float(atr_by_tf[tf][j])
            if not (math.isfinite(a) and a > 0):
                continue
            price = float(c.close[j])
            level = price + d_atr * a
            if level == price:
                continue
            fut = slice(j + 1, j + 1 + horizon)
            base.add(outcome(c.high[fut], c.low[fut], c.close[fut], level, price, a))
    return {"checkpoints": int(idx.size), "real": real, "base": base, "by_strength": by_strength}


def load_store(data_dir: Path, exchange: str, symbol: str) -> dict[str, Candles]:
    from p9cli.store import DataStore

    store = DataStore(data_dir)
    out = {}
    for tf in TIMEFRAMES:
        series = store.read_series(exchange, symbol, tf)
        if series is not None and len(series.candles):
            out[tf] = series.candles
    return out


def load_recorded(fixtures: Path) -> dict[str, dict[str, Candles]]:
    """The real Binance BTCUSDT klines recorded in the fixtures (the longest file per
    timeframe), as {label: {timeframe: candles}}: each file is evaluated on its own."""
    rest = fixtures / "binance" / "rest"
    files = {
        "1d": "spot_klines_BTCUSDT_1d_2019_endTime_on_open_time.json",
        "1h": "spot_klines_BTCUSDT_1h_2023-01-01_to_2023-01-08.json",
    }
    out = {}
    for tf, name in files.items():
        path = rest / name
        if not path.is_file():
            continue
        rows = json.loads(path.read_text())
        cols = list(zip(*rows, strict=False))
        out[f"recorded {name}"] = {
            tf: Candles.from_arrays(
                np.array(cols[0], dtype=np.int64),
                np.array(cols[1], dtype=float),
                np.array(cols[2], dtype=float),
                np.array(cols[3], dtype=float),
                np.array(cols[4], dtype=float),
                np.array(cols[5], dtype=float),
                np.array(cols[7], dtype=float),
            )
        }
    return out


def pct(x: float) -> str:
    return "   n/a" if not math.isfinite(x) else f"{100 * x:5.1f}%"


def print_table(title: str, results: dict[str, dict], horizon: int) -> None:
    print(f"\n{title}  (horizon {horizon} bars; reaction rate = reactions / (reactions + breaks))")
    head = (
        f"{'tf':>4} {'ckpts':>5} {'levels':>6} {'touched':>7} {'react':>5} {'break':>5} {'open':>5} "
        f"{'rate':>6} | {'base n':>6} {'touched':>7} {'rate':>6} | {'diff':>6} {'+-se':>5} "
        f"| {'strong rate (n)':>15} {'weak rate (n)':>14}"
    )
    print(head)
    print("-" * len(head))
    for tf, r in results.items():
        real, base = r["real"], r["base"]
        rr, br = real.reaction_rate(), base.reaction_rate()
        se = (
            math.sqrt(
                (rr * (1 - rr) / real.decided if real.decided else 0)
                + (br * (1 - br) / base.decided if base.decided else 0)
            )
            if real.decided and base.decided
            else math.nan
        )
        strong, weak = r["by_strength"].values()
        print(
            f"{tf:>4} {r['checkpoints']:>5} {real.n:>6} {pct(real.touch_rate()):>7} "
            f"{real.counts['reaction']:>5} "
            f"{real.counts['break']:>5} {real.counts['open']:>5} {pct(rr):>6} | {base.n:>6} "
            f"{pct(base.touch_rate()):>7} {pct(br):>6} | {pct(rr - br):>6} {pct(se):>5} "
            f"| {pct(strong.reaction_rate()):>7} ({strong.decided:>5}) "
            f"{pct(weak.reaction_rate()):>6} ({weak.decided:>5})"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, help="a p9 data dir with stored history (fetch-history)")
    ap.add_argument("--exchange", default="binance")
    ap.add_argument("--symbol", default="btc")
    ap.add_argument("--timeframes", default="1d,4h,1h,15m,5m", help="timeframes to evaluate")
    ap.add_argument(
        "--recorded", action="store_true", help="evaluate the recorded real klines ($P9_FIXTURES)"
    )
    ap.add_argument("--fixtures", type=Path, default=None, help="fixtures dir (default $P9_FIXTURES)")
    ap.add_argument("--horizon", type=int, default=24, help="bars watched after each checkpoint")
    ap.add_argument("--checkpoints", type=int, default=60, help="checkpoints per timeframe")
    ap.add_argument("--baseline-draws", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    if not args.data_dir and not args.recorded:
        print("eval_levels: give --data-dir DIR and/or --recorded", file=sys.stderr)
        return 2
    tfs = [t.strip() for t in args.timeframes.split(",") if t.strip()]
    bad = [t for t in tfs if t not in TIMEFRAME_MS]
    if bad:
        print(f"eval_levels: unknown timeframe(s) {', '.join(bad)}", file=sys.stderr)
        return 2
    if args.horizon < 2 or args.checkpoints < 1:
        print("eval_levels: --horizon must be >= 2 and --checkpoints >= 1", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    printed = False
    t0 = time.perf_counter()
    if args.data_dir:
        if not args.data_dir.is_dir():
            print(f"eval_levels: {args.data_dir} is not a directory", file=sys.stderr)
            return 2
        try:
            frames = load_store(args.data_dir, args.exchange, args.symbol)
        except P9Error as exc:
            print(f"eval_levels: {exc}", file=sys.stderr)
            return 2
        if not frames:
            print(
                f"eval_levels: no stored history for {args.exchange} {args.symbol} in {args.data_dir}",
                file=sys.stderr,
            )
            return 2
        results = {}
        for tf in tfs:
            if tf in frames:
                r = evaluate(
                    frames,
                    tf,
                    horizon=args.horizon,
                    checkpoints=args.checkpoints,
                    draws=args.baseline_draws,
                    rng=rng,
                )
                if r:
                    results[tf] = r
        spans = ", ".join(f"{tf} {len(frames[tf])}" for tf in TIMEFRAMES if tf in frames)
        print_table(
            f"{args.exchange} {args.symbol} from {args.data_dir} (candles: {spans})", results, args.horizon
        )
        printed = bool(results)
    if args.recorded:
        fixtures = args.fixtures or (Path(os.environ["P9_FIXTURES"]) if "P9_FIXTURES" in os.environ else None)
        if fixtures is None:
            print("eval_levels: --recorded needs --fixtures or $P9_FIXTURES", file=sys.stderr)
            return 2
        for label, frames in load_recorded(fixtures).items():
            tf = next(iter(frames))
            horizon = min(args.horizon, max(2, len(frames[tf]) // 8))
            r = evaluate(
                frames, tf, horizon=horizon, checkpoints=args.checkpoints, draws=args.baseline_draws, rng=rng
            )
            if r is None:
                print(
                    f"\n{label}: {len(frames[tf])} candles, too short for a "
                    f"{WARMUP_BARS}-bar warm-up + horizon"
                )
                continue
            print_table(f"{label} ({len(frames[tf])} x {tf})", {tf: r}, horizon)
            printed = True
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 0 if printed else 2


if __name__ == "__main__":
    sys.exit(main())
