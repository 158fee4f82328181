"""The one candle representation: :class:`Candles`, closed candles as numpy columns.

Everything that holds candles uses it: the store reads and writes it, ``fetch-history``
merges it, the analytics take it, ``stream`` extends it. The converters to and from the other
shapes candles arrive in (arrays, a DataFrame or dict of columns, ``open_time -> row`` maps)
live here and nowhere else.

Columns: ``open_time`` int64 epoch ms (ascending, unique, the bar's UTC open); ``open high low
close volume quote_volume`` float64 (``volume`` in the base asset); ``trades`` float64, the
exchange's trade count or NaN where it gives none (Bybit, OKX) - NaN rather than a sentinel
so that "no count" cannot be mistaken for a count; the store writes it as a nullable int64.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

#: Every column, in storage order.
COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades")
#: The float64 value columns (``trades`` aside).
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "quote_volume")
#: A row of :meth:`Candles.rows`: ``(open, high, low, close, volume, quote_volume, trades)``
#: with ``trades`` an int or None.
Row = tuple


def _f64(values) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64)


def _trades(values, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return np.ascontiguousarray(values, dtype=np.float64)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class Candles:
    """Closed candles, oldest first (see the module docstring for the columns)."""

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    trades: np.ndarray = None  # type: ignore[assignment]  # None -> all NaN (no counts)

    def __post_init__(self) -> None:
        trades = _trades(self.trades, len(self.open_time))
        if len(trades) != len(self.open_time):
            raise ValueError(f"{len(trades)} trade counts for {len(self.open_time)} candles")
        object.__setattr__(self, "trades", trades)

    def __len__(self) -> int:
        return len(self.open_time)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> Candles:
        return cls.from_arrays([], [], [], [], [], [], [])

    @classmethod
    def from_arrays(
        cls, open_time, open, high, low, close, volume, quote_volume=None, trades=None
    ) -> Candles:
        """From array-likes. ``open_time`` as epoch ms or datetime64; ``quote_volume``
        defaults to volume x close; ``trades`` may hold None (no count)."""
        ot = np.asarray(open_time)
        if np.issubdtype(ot.dtype, np.datetime64):
            ot = ot.astype("datetime64[ms]").astype(np.int64)
        c, v = _f64(close), _f64(volume)
        n = len(ot)
        return cls(
            open_time=np.ascontiguousarray(ot, dtype=np.int64),
            open=_f64(open),
            high=_f64(high),
            low=_f64(low),
            close=c,
            volume=v,
            quote_volume=v * c if quote_volume is None else _f64(quote_volume),
            trades=_trades(trades, n),
        )

    @classmethod
    def from_mapping(cls, data: Mapping) -> Candles:
        """From a DataFrame or a dict of columns (``quote_volume`` and ``trades`` optional)."""
        ot = data["open_time"]
        dt = getattr(ot, "dt", None)  # a pandas Series
        if dt is not None and getattr(dt, "tz", None) is not None:
            ot = dt.tz_convert(None)  # UTC, naive: numpy can hold it as datetime64
        qv, tr = data.get("quote_volume"), data.get("trades")
        return cls.from_arrays(
            np.asarray(ot),
            *(np.asarray(data[c]) for c in ("open", "high", "low", "close", "volume")),
            None if qv is None else np.asarray(qv),
            None if tr is None else np.asarray(tr, dtype=np.float64),
        )

    @classmethod
    def from_rows(cls, rows: Mapping[int, Row]) -> Candles:
        """From ``open_time -> (open, high, low, close, volume, quote_volume, trades)``
        (any order; sorted here)."""
        times = sorted(rows)
        cols = list(zip(*(rows[t] for t in times), strict=True)) if times else [()] * 7
        return cls.from_arrays(times, *cols[:6], trades=cols[6])

    # -- conversion ---------------------------------------------------------------------------

    def rows(self) -> dict[int, Row]:
        """``open_time -> (open, high, low, close, volume, quote_volume, trades)``, trades an
        int or None (for comparisons in tests and small tools)."""
        cols = [getattr(self, c).tolist() for c in VALUE_COLUMNS]
        trades = [None if t != t else int(t) for t in self.trades.tolist()]
        return {t: (*vals, tr) for t, *vals, tr in zip(self.open_time.tolist(), *cols, trades, strict=True)}

    def trade_counts(self) -> list[int | None]:
        return [None if t != t else int(t) for t in self.trades.tolist()]

    # -- selection and combination ------------------------------------------------------------

    def take(self, index) -> Candles:
        """The candles at ``index`` (a slice, a boolean mask or integer positions)."""
        return Candles(*(getattr(self, f)[index] for f in COLUMNS))

    def tail(self, n: int) -> Candles:
        """The last ``n`` candles (all when there are fewer)."""
        if n >= len(self):
            return self
        return self.take(slice(len(self) - max(n, 0), None))

    def between(self, first_ms: int, last_ms: int) -> Candles:
        """The candles with ``first_ms <= open_time <= last_ms``."""
        lo = int(np.searchsorted(self.open_time, first_ms, side="left"))
        hi = int(np.searchsorted(self.open_time, last_ms, side="right"))
        return self.take(slice(lo, hi))

    def append(self, other: Candles) -> Candles:
        """These candles followed by ``other`` (for live updates: the newly closed candle)."""
        return Candles(*(np.concatenate((getattr(self, f), getattr(other, f))) for f in COLUMNS))

    def merge(self, other: Candles) -> Candles:
        """Both sets of candles by open time; where both have a bar, ``other``'s wins."""
        if not len(self):
            return other
        if not len(other):
            return self
        keep = ~np.isin(self.open_time, other.open_time)
        both = self.take(keep).append(other)
        return both.take(np.argsort(both.open_time, kind="stable"))

    def equals(self, other: Candles) -> bool:
        """Same open times and values (NaN trades equal NaN)."""
        return len(self) == len(other) and all(
            np.array_equal(getattr(self, f), getattr(other, f), equal_nan=f != "open_time") for f in COLUMNS
        )


def concat(parts: Iterable[Candles]) -> Candles:
    """Merge several candle sets (later ones win on equal open times)."""
    out = Candles.empty()
    for p in parts:
        out = out.merge(p)
    return out
