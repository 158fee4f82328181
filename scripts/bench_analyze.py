#!/usr/bin/env python
"""Benchmark of ``p9 analyze``: the whole universe (15 pairs x 11 timeframes x 1000 candles).

Generates history Parquet files into a temporary data dir (from the simulator's market model,
or a synthetic random walk with ``--synthetic`` / when the model is unavailable), pins the
process to one core, then measures in one run:

1. analytics over the universe: ``build_structure`` for the 15 (exchange, symbol) pairs from
   candles in memory (trend, volatility, volume per timeframe + levels, profiles, zones);
   target <= 1 s;
2. end to end: ``run_analyze`` (read 165 Parquet files, analyse, write 15 JSON files);
3. a single-timeframe recompute, what ``stream`` does when a candle closes: the new candle
   is appended to one timeframe and ``analyze_timeframe`` recomputes its section; target <= 5 ms;
   also the full document refresh with the other 10 sections reused (levels, profiles and zones
   are recomputed because they span every timeframe).

Prints each figure with its ratio to the target (< 1 means within target). Exit code 0 when
both targets are met, 1 otherwise.

    .venv/bin/python scripts/bench_analyze.py [--candles 1000] [--repeat 5] [--synthetic]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from p9cli.analysis.candles import Candles  # noqa: E402
from p9cli.analysis.context import analyze_timeframe, build_structure  # noqa: E402
from p9cli.config import load_settings  # noqa: E402
from p9cli.services.analyze import load_pair  # noqa: E402
from p9cli.services.analyze import run as run_analyze  # noqa: E402
from p9cli.store import DataStore, SeriesMeta, StoredSeries  # noqa: E402
from p9cli.universe import EXCHANGES, SYMBOLS, TIMEFRAME_MS, TIMEFRAMES  # noqa: E402

TARGET_UNIVERSE_S = 1.0
TARGET_RECOMPUTE_S = 0.005
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z



def sim_candles(model, instruments, exchange: str, symbol: str, timeframe: str, count: int) -> Candles:
    tf_ms = TIMEFRAME_MS[timeframe]
    last_open = START_MS // tf_ms * tf_ms - tf_ms
    bars = model.bars(exchange, symbol, tf_ms, 0, last_open - (count - 1) * tf_ms, last_open, START_MS)
    inst = instruments[(exchange, symbol)]
    tick, qty = float(inst.tick), float(inst.qty_unit)
    places = max(0, -inst.tick.as_tuple().exponent)
    keep = np.asarray(bars.closed, dtype=bool)

    def price(x):
        return np.round(np.asarray(x, dtype=np.float64)[keep] * tick, places)

    return Candles.from_arrays(
        np.asarray(bars.open_time)[keep],
        price(bars.open),
        price(bars.high),
        price(bars.low),
        price(bars.close),
        np.asarray(bars.volume, dtype=np.float64)[keep] * qty,
        np.asarray(bars.quote, dtype=np.float64)[keep] * tick * qty,
    )


def synthetic_candles(symbol: str, timeframe: str, count: int, seed: int) -> Candles:
    """A random walk per (symbol, timeframe) on a 0.01 / 0.0001 grid."""
    rng = np.random.default_rng(seed)
    price0 = {"btc": 90_000.0, "eth": 3_000.0, "sol": 150.0, "bnb": 600.0, "xrp": 2.0}[symbol]
    tick = 0.0001 if symbol == "xrp" else 0.01
    places = 4 if symbol == "xrp" else 2
    tf_ms = TIMEFRAME_MS[timeframe]
    step = 0.0015 * np.sqrt(tf_ms / 60_000)
    close = np.round(price0 * np.exp(np.cumsum(rng.normal(0, step, count))) / tick) * tick
    close = np.round(close, places)
    open_ = np.concatenate(([close[0]], close[:-1]))
    wick = np.abs(rng.normal(0, step / 2, (2, count)))
    high = np.round(np.maximum(open_, close) * (1 + wick[0]), places)
    low = np.round(np.minimum(open_, close) * (1 - wick[1]), places)
    vol = rng.lognormal(3, 0.6, count)
    last_open = START_MS // tf_ms * tf_ms - tf_ms
    t = last_open - (count - 1 - np.arange(count)) * tf_ms
    return Candles.from_arrays(t, open_, high, low, close, vol, vol * close)


def generate(data_dir: Path, count: int, synthetic: bool) -> str:
    model = instruments = None
    source = "synthetic random walk"
    if not synthetic:
        try:
            from p9cli.sim.instruments import INSTRUMENTS
            from p9cli.sim.model import MarketModel
            from p9cli.sim.state import SimClock

            model, instruments = MarketModel(9, SimClock(start_ms=START_MS)), INSTRUMENTS
            source = "simulator market model (seed 9)"
        except ImportError:
            pass
    store = DataStore(data_dir)
    for i, ex in enumerate(EXCHANGES):
        for j, sym in enumerate(SYMBOLS):
            for k, tf in enumerate(TIMEFRAMES):
                if model is not None:
                    c = sim_candles(model, instruments, ex, sym, tf, count)
                else:
                    c = synthetic_candles(sym, tf, count, 1000 * i + 100 * j + k)
                meta = SeriesMeta(exchange=ex, symbol=sym, timeframe=tf, source=source)
                store.write_series(ex, sym, tf, StoredSeries(c, meta))
    return source


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    return "not pinned (no sched_setaffinity)"


def best(fn, repeat: int) -> tuple[float, float, float]:
    """(best wall time, median wall time, best CPU time of this process) over ``repeat`` runs.
    CPU time is what the code costs; wall time also counts waiting for a busy core."""
    walls, cpus = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), statistics.median(walls), min(cpus)


def line(name: str, measured: tuple[float, float, float], target: float | None) -> str:
    wall, median, cpu = measured
    ratio = f"  ratio {wall / target:.2f} of the {target * 1000:g} ms target" if target else ""
    return f"{name:<60} wall best {wall * 1000:8.2f} ms (median {median * 1000:8.2f}), cpu {cpu * 1000:8.2f} ms{ratio}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candles", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--synthetic", action="store_true", help="use a random walk instead of the simulator")
    ap.add_argument("--data-dir", type=Path, help="keep the generated data here (default: a temp dir)")
    args = ap.parse_args()

    with contextlib.ExitStack() as stack:
        data_dir = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="p9bench-")))
        t0 = time.perf_counter()
        source = generate(data_dir, args.candles, args.synthetic)
        print(
            f"data: {len(EXCHANGES) * len(SYMBOLS)} pairs x {len(TIMEFRAMES)} timeframes x {args.candles} candles "
            f"from the {source}, generated in {time.perf_counter() - t0:.1f} s into {data_dir}"
        )
        print(f"cpu: {pin_one_core()}; python {sys.version.split()[0]}, numpy {np.__version__}")

        settings = load_settings({"data_dir": str(data_dir)}, env={})
        pairs = [(ex, sym) for ex in EXCHANGES for sym in SYMBOLS]
        candles = {p: load_pair(DataStore(data_dir), *p, TIMEFRAMES) for p in pairs}
        now = START_MS

        def universe():
            for (ex, sym), cs in candles.items():
                build_structure(ex, sym, cs, now_ms=now)

        def end_to_end():
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                code = run_analyze(settings, progress=False)
            if code != 0:
                raise SystemExit("run_analyze failed")

        def sections_only():
            for cs in candles.values():
                for tf, c in cs.items():
                    analyze_timeframe(c, tf)

        universe()  # warm-up (imports, first-call costs)
        u_m = best(universe, args.repeat)
        s_m = best(sections_only, args.repeat)
        e_m = best(end_to_end, max(1, args.repeat // 2))

        # Single-timeframe recompute: the next 1h candle closes (its values: the last candle's),
        # the 1h section is recomputed on the last 1000 candles, the document refreshed.
        ex, sym = "binance", "btc"
        cs = candles[(ex, sym)]
        sections = {tf: analyze_timeframe(c, tf) for tf, c in cs.items()}
        tf = "1h"
        last = cs[tf].tail(1)
        new = Candles(
            last.open_time + TIMEFRAME_MS[tf],
            *(getattr(last, f) for f in Candles.__dataclass_fields__ if f != "open_time"),
        )
        grown = cs[tf].append(new).tail(args.candles)

        def recompute_one():
            analyze_timeframe(grown, tf)

        def refresh_document():
            per_tf = dict(sections)
            per_tf[tf] = analyze_timeframe(grown, tf)
            build_structure(ex, sym, {**cs, tf: grown}, per_timeframe=per_tf, now_ms=now)

        reps = max(50, args.repeat * 20)
        r_m = best(recompute_one, reps)
        d_m = best(refresh_document, max(10, args.repeat * 4))

        print(line("analytics, whole universe (15 pairs, build_structure)", u_m, TARGET_UNIVERSE_S))
        print(line("  of which trend/volatility/volume (165 x analyze_timeframe)", s_m, None))
        print(line("end to end, p9 analyze (read Parquet, analyse, write JSON)", e_m, TARGET_UNIVERSE_S))
        print(line(f"single-timeframe recompute ({tf}, analyze_timeframe)", r_m, TARGET_RECOMPUTE_S))
        print(line("document refresh after one close (10 sections reused)", d_m, None))
        ok = u_m[0] <= TARGET_UNIVERSE_S and r_m[0] <= TARGET_RECOMPUTE_S
        print("targets:", "met" if ok else "NOT met")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
