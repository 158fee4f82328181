"""Candles as plain numpy arrays: the input of every analysis function.

The Parquet schema written by ``fetch-history`` (open_time as ms timestamps, OHLCV and quote
volume as float64, trades as nullable int64) maps one to one onto :class:`Candles`. ``stream``
builds the same object from live candles, so the analytics never care where candles came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

PRICE_COLUMNS = ("open", "high", "low", "close")
FLOAT_COLUMNS = ("open", "high", "low", "close", "volume", "quote_volume")


@dataclass(frozen=True, slots=True)
class Candles:
    """Closed candles, oldest first. ``open_time`` is int64 epoch ms; the rest float64."""

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time)

    @classmethod
    def from_arrays(cls, open_time, open, high, low, close, volume, quote_volume=None) -> Candles:
        ot = np.asarray(open_time)
        if np.issubdtype(ot.dtype, np.datetime64):
            ot = ot.astype("datetime64[ms]").astype(np.int64)
        c = np.ascontiguousarray(close, dtype=np.float64)
        v = np.ascontiguousarray(volume, dtype=np.float64)
        qv = v * c if quote_volume is None else np.ascontiguousarray(quote_volume, dtype=np.float64)
        return cls(
            open_time=np.ascontiguousarray(ot, dtype=np.int64),
            open=np.ascontiguousarray(open, dtype=np.float64),
            high=np.ascontiguousarray(high, dtype=np.float64),
            low=np.ascontiguousarray(low, dtype=np.float64),
            close=c,
            volume=v,
            quote_volume=qv,
        )

    @classmethod
    def from_mapping(cls, data: Mapping) -> Candles:
        """From a DataFrame, a pyarrow Table converted with ``to_pydict``, or a dict of arrays."""
        qv = data.get("quote_volume")
        ot = data["open_time"]
        dt = getattr(ot, "dt", None)  # a pandas Series
        if dt is not None and getattr(dt, "tz", None) is not None:
            ot = dt.tz_convert(None)  # UTC, naive: numpy can hold it as datetime64
        return cls.from_arrays(
            np.asarray(ot),
            np.asarray(data["open"]),
            np.asarray(data["high"]),
            np.asarray(data["low"]),
            np.asarray(data["close"]),
            np.asarray(data["volume"]),
            None if qv is None else np.asarray(qv),
        )

    def tail(self, n: int) -> Candles:
        """The last ``n`` candles (all when there are fewer)."""
        if n >= len(self):
            return self
        start = len(self) - max(n, 0)
        return Candles(*(getattr(self, f)[start:] for f in self.__dataclass_fields__))

    def append(self, other: Candles) -> Candles:
        """These candles followed by ``other`` (for live updates: the newly closed candle)."""
        return Candles(
            *(np.concatenate((getattr(self, f), getattr(other, f))) for f in self.__dataclass_fields__)
        )


def tick_size(*series: Candles) -> float | None:
    """The price increment seen in the data: the greatest common divisor of all prices, at a
    resolution of 1e-8 (exchanges quote these spot pairs in multiples of their tick, so the GCD
    of the prices is the tick, or a multiple of it when the data is too sparse to show it).
    None when no candle is given."""
    arrays = [np.concatenate([getattr(s, c) for c in PRICE_COLUMNS]) for s in series if len(s)]
    if not arrays:
        return None
    prices = np.concatenate(arrays)
    prices = prices[np.isfinite(prices)]
    if len(prices) == 0:
        return None
    g = int(np.gcd.reduce(np.rint(prices * 1e8).astype(np.int64)))
    if g == 0:
        return None
    return round(g * 1e-8, 8)
