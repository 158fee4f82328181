"""Synthetic candles with known structure for the levels / profile / zones / plot tests.

Every multi-timeframe set is aggregated from ONE 1-minute path on the UTC epoch grid, exactly
as exchanges build their bars, so the timeframes are mutually consistent (a 4h bar's volume is
the sum of its 240 one-minute volumes, its high the max of their highs, ...).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from p9cli.universe import MINUTE_MS, TIMEFRAME_MS

DAY_MS = 86_400_000
T0 = 1_700_006_400_000  # 2023-11-15T00:00:00Z, day aligned


def on_tick(x: np.ndarray, tick: float) -> np.ndarray:
    decimals = max(0, round(-np.log10(tick)))
    return np.round(np.round(np.asarray(x) / tick) * tick, decimals)


def frame(open_time, open_, high, low, close, volume) -> pd.DataFrame:
    """A DataFrame with the Parquet columns (trades filled with a constant)."""
    close = np.asarray(close, dtype=np.float64)
    volume = np.asarray(volume, dtype=np.float64)
    return pd.DataFrame(
        {
            "open_time": np.asarray(open_time, dtype=np.int64),
            "open": np.asarray(open_, dtype=np.float64),
            "high": np.asarray(high, dtype=np.float64),
            "low": np.asarray(low, dtype=np.float64),
            "close": close,
            "volume": volume,
            "quote_volume": volume * close,
            "trades": np.full(close.size, 10, dtype=np.int64),
        }
    )


def minute_candles(closes: np.ndarray, seed: int = 0, tick: float = 0.01, wick: float = 0.0002, t0: int = T0):
    """1-minute candles following ``closes``: open = previous close, small random wicks,
    gamma volumes (more volume on bigger moves)."""
    rng = np.random.default_rng(seed)
    n = closes.size
    c = on_tick(closes, tick)
    o = np.concatenate(([c[0]], c[:-1]))
    h = on_tick(np.maximum(o, c) * (1 + np.abs(rng.normal(0, wick, n))), tick)
    lo = on_tick(np.minimum(o, c) * (1 - np.abs(rng.normal(0, wick, n))), tick)
    ret = np.abs(np.diff(np.log(c), prepend=np.log(c[0])))
    v = rng.gamma(2.0, 5.0, n) * (1 + 200 * ret)
    ot = t0 + np.arange(n, dtype=np.int64) * MINUTE_MS
    return frame(ot, o, h, lo, c, v)


def random_walk_minutes(
    days: int, seed: int = 0, p0: float = 30_000.0, sigma: float = 0.0006, tick: float = 0.01
):
    rng = np.random.default_rng(seed)
    closes = p0 * np.exp(np.cumsum(rng.normal(0.0, sigma, days * 1440)))
    return minute_candles(closes, seed=seed + 1, tick=tick)


def aggregate(minutes: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Bars of ``timeframe`` built from 1-minute candles (complete bars only)."""
    k = TIMEFRAME_MS[timeframe] // MINUTE_MS
    ot = minutes["open_time"].to_numpy()
    first = -(-int(ot[0]) // TIMEFRAME_MS[timeframe]) * TIMEFRAME_MS[timeframe]
    start = int(np.searchsorted(ot, first))
    m = (len(minutes) - start) // k
    sl = slice(start, start + m * k)

    def blocks(name):
        return minutes[name].to_numpy()[sl].reshape(m, k)

    return frame(
        blocks("open_time")[:, 0],
        blocks("open")[:, 0],
        blocks("high").max(axis=1),
        blocks("low").min(axis=1),
        blocks("close")[:, -1],
        blocks("volume").sum(axis=1),
    )


def multi_timeframe(minutes: pd.DataFrame, timeframes, count: int | None = 1000) -> dict[str, pd.DataFrame]:
    """``{tf: last `count` bars}`` aggregated from the same minutes."""
    out = {}
    for tf in timeframes:
        df = aggregate(minutes, tf)
        if count is not None:
            df = df.iloc[-count:].reset_index(drop=True)
        out[tf] = df
    return out


def bounce_closes(
    n: int,
    support: float,
    resistance: float,
    seed: int = 0,
    step: tuple[float, float] = (0.3, 0.9),
    overshoot=0.3,
) -> np.ndarray:
    """A price that bounces between ``support`` and ``resistance``: it moves by a random step in
    its current direction and turns back, just inside the level, whenever it reaches one."""
    rng = np.random.default_rng(seed)
    x, up = (support + resistance) / 2.0, True
    out = np.empty(n)
    for i in range(n):
        x += rng.uniform(*step) if up else -rng.uniform(*step)
        if x >= resistance:
            x, up = resistance - rng.uniform(0.0, overshoot), False
        elif x <= support:
            x, up = support + rng.uniform(0.0, overshoot), True
        out[i] = x
    return out


def bounce_frame(
    n: int = 1000,
    support: float = 100.0,
    resistance: float = 110.0,
    seed: int = 0,
    timeframe: str = "1h",
    noise: float = 0.1,
    t0: int = T0,
) -> pd.DataFrame:
    """Candles of ``timeframe`` bouncing between two planted levels; wicks poke at most
    ``noise`` beyond them."""
    rng = np.random.default_rng(seed + 7)
    c = bounce_closes(n, support, resistance, seed)
    o = np.concatenate(([c[0]], c[:-1]))
    h = np.minimum(np.maximum(o, c) + rng.uniform(0, noise, n), resistance + noise)
    lo = np.maximum(np.minimum(o, c) - rng.uniform(0, noise, n), support - noise)
    v = rng.uniform(10.0, 20.0, n)
    ot = t0 + np.arange(n, dtype=np.int64) * TIMEFRAME_MS[timeframe]
    return frame(ot, on_tick(o, 0.01), on_tick(h, 0.01), on_tick(lo, 0.01), on_tick(c, 0.01), v)


def consolidation_frame(
    seed: int = 0,
    timeframe: str = "1h",
    trend_bars: int = 300,
    range_bars: int = 60,
    box: tuple[float, float] = (150.0, 150.8),
    range_volume_factor: float = 3.0,
    t0: int = T0,
) -> tuple[pd.DataFrame, slice]:
    """Trend up to a box, ``range_bars`` bars inside the box with elevated volume, trend up
    again. Returns the frame and the slice of the consolidation bars."""
    rng = np.random.default_rng(seed)
    lo_box, hi_box = box
    up1 = np.linspace(100.0, lo_box + 0.2, trend_bars) + rng.normal(0, 0.15, trend_bars)
    inside = rng.uniform(lo_box + 0.1, hi_box - 0.1, range_bars)
    up2 = np.linspace(hi_box + 0.2, 200.0, trend_bars) + rng.normal(0, 0.15, trend_bars)
    c = np.concatenate((up1, inside, up2))
    n = c.size
    o = np.concatenate(([c[0]], c[:-1]))
    h = np.maximum(o, c) + rng.uniform(0.0, 0.15, n)
    lo = np.minimum(o, c) - rng.uniform(0.0, 0.15, n)
    sl = slice(trend_bars, trend_bars + range_bars)
    # keep the box's wicks inside the box (the first bar opens from the trend below it)
    h[sl] = np.minimum(h[sl], hi_box)
    lo[sl] = np.maximum(lo[sl], lo_box)
    v = rng.uniform(10.0, 20.0, n)
    v[sl] *= range_volume_factor
    ot = t0 + np.arange(n, dtype=np.int64) * TIMEFRAME_MS[timeframe]
    return frame(ot, on_tick(o, 0.01), on_tick(h, 0.01), on_tick(lo, 0.01), on_tick(c, 0.01), v), sl


def boxed_minutes(seed: int = 8, box=(150.0, 151.5), volume_factor: float = 3.0):
    """A minute path: drift up for 10 days to the box, then 3 days oscillating inside ``box``
    with ``volume_factor`` x volume, then drift up again for 4 days. Returns the minutes and
    the (first, last) open_time of the boxed minutes."""
    rng = np.random.default_rng(seed)
    lo_box, hi_box = box
    mid, half = (lo_box + hi_box) / 2, (hi_box - lo_box) / 2
    up1 = 120.0 * np.exp(np.cumsum(rng.normal(0.00002, 0.0006, 10 * 1440)))
    up1 *= (lo_box + 0.2) / up1[-1]
    t = np.arange(3 * 1440)
    inside = mid + 0.8 * half * np.sin(2 * np.pi * t / 300.0) + rng.normal(0, 0.03, t.size)
    up2 = (hi_box - 0.2) * np.exp(np.cumsum(rng.normal(0.00002, 0.0006, 4 * 1440)))
    closes = np.concatenate((up1, inside, up2))
    minutes = minute_candles(closes, seed=seed, wick=0.0002, t0=T0)
    sl = slice(up1.size, up1.size + inside.size)
    v = minutes["volume"].to_numpy().copy()
    v[sl] *= volume_factor
    minutes["volume"] = v
    return minutes, (int(minutes["open_time"].iloc[sl.start]), int(minutes["open_time"].iloc[sl.stop - 1]))


def true_range_atr(df: pd.DataFrame, period: int = 14) -> float:
    """Plain mean true range of the last ``period`` bars (enough to scale tolerances in tests)."""
    h, lo, c = df["high"].to_numpy(), df["low"].to_numpy(), df["close"].to_numpy()
    prev = np.concatenate(([c[0]], c[:-1]))
    tr = np.maximum(h, prev) - np.minimum(lo, prev)
    return float(tr[-period:].mean())
