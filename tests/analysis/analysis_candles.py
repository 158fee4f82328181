"""Candle sources for the analysis tests: real recorded Binance klines, simulator history, and
History Parquet files with the ``fetch-history`` schema (written here, in tmp dirs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from p9cli.analysis.candles import Candles
from p9cli.universe import TIMEFRAME_MS

FIXTURES = Path(os.environ["P9_FIXTURES"]) / "binance" / "rest"  # set by tests/conftest.py

KLINES_1H = "spot_klines_BTCUSDT_1h_2023-01-01_to_2023-01-08.json"
KLINES_1D = "spot_klines_BTCUSDT_1d_2019_endTime_on_open_time.json"


def recorded_klines(name: str) -> Candles:
    """A recorded Binance klines body: rows ``[open_time, o, h, l, c, v, close_time, qv, ...]``
    with prices as decimal strings."""
    rows = json.loads((FIXTURES / name).read_text())
    return Candles.from_arrays(
        [r[0] for r in rows],
        [float(r[1]) for r in rows],
        [float(r[2]) for r in rows],
        [float(r[3]) for r in rows],
        [float(r[4]) for r in rows],
        [float(r[5]) for r in rows],
        [float(r[7]) for r in rows],
    )


def simulator_candles(
    symbol: str, timeframe: str, count: int, seed: int = 9, exchange: str = "binance", later_ms: int = 0
) -> Candles:
    """The last ``count`` closed candles from the simulator's market model (integers in ticks,
    converted to prices) as of ``later_ms`` after 2026-01-01."""
    from p9cli.sim.model import INSTRUMENTS, MarketModel
    from p9cli.sim.state import SimClock

    start = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    model = MarketModel(seed, SimClock(start_ms=start))
    now = start + later_ms  # the market `later_ms` after the model's start
    tf_ms = TIMEFRAME_MS[timeframe]
    last_open = now // tf_ms * tf_ms - tf_ms
    first_open = last_open - (count - 1) * tf_ms
    bars = model.bars(exchange, symbol, tf_ms, 0, first_open, last_open, now)
    inst = INSTRUMENTS[(exchange, symbol)]
    tick, qty = float(inst.tick), float(inst.qty_unit)
    places = max(0, -inst.tick.as_tuple().exponent)
    keep = np.asarray(bars.closed, dtype=bool)

    def price(ticks):  # the float an exchange's decimal string parses to
        return np.round(np.asarray(ticks, dtype=np.float64)[keep] * tick, places)

    return Candles.from_arrays(
        np.asarray(bars.open_time)[keep],
        price(bars.open),
        price(bars.high),
        price(bars.low),
        price(bars.close),
        np.asarray(bars.volume, dtype=np.float64)[keep] * qty,
        np.asarray(bars.quote, dtype=np.float64)[keep] * tick * qty,
    )


def synthetic_candles(
    timeframe: str,
    count: int = 1000,
    seed: int = 1,
    start_price: float = 50_000.0,
    tick: float = 0.01,
    end_ms: int = 1_767_225_600_000,
) -> Candles:
    """A geometric random walk with realistic candles: prices on the tick grid, low <= open,
    close <= high, lognormal volumes; the last candle closes at ``end_ms``."""
    rng = np.random.default_rng(seed)
    tf_ms = TIMEFRAME_MS[timeframe]
    step = 0.0015 * np.sqrt(tf_ms / 60_000)
    closes = start_price * np.exp(np.cumsum(rng.normal(0.0, step, count)))
    decimals = max(0, round(-np.log10(tick)))

    def on_grid(x):  # like an exchange's decimal string parsed as float
        return np.round(np.round(x / tick) * tick, decimals)

    close = on_grid(closes)
    open_ = np.concatenate((on_grid(np.array([start_price])), close[:-1]))
    wick = np.abs(rng.normal(0.0, step / 2, (2, count)))
    high = on_grid(np.maximum(open_, close) * (1 + wick[0]))
    low = on_grid(np.minimum(open_, close) * (1 - wick[1]))
    volume = rng.lognormal(3.0, 0.6, count)
    last_open = end_ms // tf_ms * tf_ms - tf_ms
    open_time = last_open - (count - 1 - np.arange(count)) * tf_ms
    return Candles.from_arrays(open_time, open_, high, low, close, volume, volume * close)


HISTORY_SCHEMA = pa.schema(
    [pa.field("open_time", pa.timestamp("ms", tz="UTC"), nullable=False)]
    + [
        pa.field(c, pa.float64(), nullable=False)
        for c in ("open", "high", "low", "close", "volume", "quote_volume")
    ]
    + [pa.field("trades", pa.int64(), nullable=True)]
)


def write_history(path: Path, candles: Candles, exchange: str, symbol: str, timeframe: str) -> Path:
    """Write ``candles`` as a fetch-history Parquet file (schema and key/value metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = [pa.array(candles.open_time, type=pa.int64()).cast(pa.timestamp("ms", tz="UTC"))]
    for c in ("open", "high", "low", "close", "volume", "quote_volume"):
        arrays.append(pa.array(getattr(candles, c), type=pa.float64()))
    arrays.append(pa.array([None] * len(candles), type=pa.int64()))
    meta = {b"exchange": exchange.encode(), b"symbol": symbol.encode(), b"timeframe": timeframe.encode()}
    pq.write_table(pa.Table.from_arrays(arrays, schema=HISTORY_SCHEMA.with_metadata(meta)), path)
    return path


def write_universe(
    data_dir: Path, exchanges, symbols, timeframes, count: int = 300, seed: int = 0
) -> dict[tuple[str, str, str], Candles]:
    """Synthetic history for every (exchange, symbol, timeframe) under ``data_dir/history``."""
    out = {}
    prices = {"btc": 60_000.0, "eth": 3_000.0, "sol": 150.0, "bnb": 600.0, "xrp": 0.6}
    for i, ex in enumerate(exchanges):
        for j, sym in enumerate(symbols):
            for k, tf in enumerate(timeframes):
                tick = 0.0001 if sym == "xrp" else 0.01
                c = synthetic_candles(tf, count, seed + 100 * i + 10 * j + k, prices.get(sym, 100.0), tick)
                write_history(data_dir / "history" / ex / sym / f"{tf}.parquet", c, ex, sym, tf)
                out[(ex, sym, tf)] = c
    return out
