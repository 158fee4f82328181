"""The one store of the data directory: every command reads and writes its files through here.

Layout under ``DIR`` (``--data-dir``, default ``./data``)::

    history/{exchange}/{symbol}/{tf}.parquet     candle series (fetch-history writes, the rest read)
    context/{exchange}/{symbol}.json             structure document (analyze; stream reads/writes)
    context/{exchange}/{symbol}.png              chart (analyze --plot)
    context/{exchange}/{symbol}.failed.json      the last analyze of this pair failed (see below)

Series files (schema version 1): ``open_time`` timestamp[ms, UTC], ``open high low close volume
quote_volume`` float64, ``trades`` int64 (null where the exchange gives no count); ascending
unique ``open_time``, closed candles only. Key/value metadata: see :class:`SeriesMeta`.

Reading checks everything a consumer relies on and raises :class:`StoreError` (one line naming
the file) otherwise: a Parquet file with the columns, no nulls in the value columns, strictly
ascending open times on the timeframe's UTC grid, the metadata naming the series asked for,
positive finite prices with low <= open, close <= high and non-negative volumes.

Every write goes through :func:`p9cli.fsutil.write_atomic` (temporary file, fsync, rename, mode
from the umask).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from p9cli.candles import COLUMNS, VALUE_COLUMNS, Candles
from p9cli.errors import ConfigError, P9Error
from p9cli.fsutil import remove_temp_files, write_atomic
from p9cli.universe import EXCHANGES, SYMBOLS, TIMEFRAME_MS, TIMEFRAMES

SCHEMA_VERSION = "1"
SCHEMA = pa.schema(
    [pa.field("open_time", pa.timestamp("ms", tz="UTC"), nullable=False)]
    + [pa.field(c, pa.float64(), nullable=False) for c in VALUE_COLUMNS]
    + [pa.field("trades", pa.int64(), nullable=True)]
)
FAILED_SUFFIX = ".failed.json"


class StoreError(P9Error):
    """A file could not be read or written (the message is one line naming it)."""


def _one_line(text: Any, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int_or_none(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


@dataclass(slots=True)
class SeriesMeta:
    """The key/value metadata of a series file."""

    exchange: str = ""
    symbol: str = ""
    exchange_symbol: str = ""
    timeframe: str = ""
    source: str = ""
    """REST base URL the candles came from."""
    fetched_at_ms: int | None = None
    holes: list[int] = field(default_factory=list)
    """Open times (ms) inside the series that the exchange lacks."""
    history_starts_ms: int | None = None
    """The exchange's first bar, when it has fewer than were asked for."""
    gaps_checked_ms: int | None = None
    """When the holes and the history start were last asked for."""
    extra: dict[str, str] = field(default_factory=dict)
    """Keys this version does not know (kept as they are)."""

    KEYS = ("exchange", "symbol", "exchange_symbol", "timeframe", "source")

    def __post_init__(self) -> None:
        self.holes = sorted(self.holes)

    def to_kv(self) -> dict[str, str]:
        fetched = self.fetched_at_ms
        out = {k: getattr(self, k) for k in self.KEYS}
        out |= {
            "fetched_at": ""
            if fetched is None
            else datetime.fromtimestamp(fetched / 1000, tz=UTC).isoformat(timespec="milliseconds"),
            "fetched_at_ms": "" if fetched is None else str(fetched),
            "holes": json.dumps(sorted(self.holes)),
            "history_starts_ms": "" if self.history_starts_ms is None else str(self.history_starts_ms),
            "gaps_checked_ms": "" if self.gaps_checked_ms is None else str(self.gaps_checked_ms),
            "schema_version": SCHEMA_VERSION,
        }
        return {**self.extra, **out}

    @classmethod
    def from_kv(cls, kv: dict[str, str]) -> SeriesMeta:
        try:
            holes = sorted(int(t) for t in json.loads(kv.get("holes") or "[]"))
        except (ValueError, TypeError):
            holes = []
        known = {*cls.KEYS, "fetched_at", "fetched_at_ms", "holes", "history_starts_ms", "gaps_checked_ms"}
        known.add("schema_version")
        return cls(
            **{k: kv.get(k, "") for k in cls.KEYS},
            fetched_at_ms=_int_or_none(kv.get("fetched_at_ms")),
            holes=holes,
            history_starts_ms=_int_or_none(kv.get("history_starts_ms")),
            gaps_checked_ms=_int_or_none(kv.get("gaps_checked_ms")),
            extra={k: v for k, v in kv.items() if k not in known and not k.startswith("ARROW:")},
        )


@dataclass(slots=True)
class StoredSeries:
    """One series file: its candles and its metadata."""

    candles: Candles
    meta: SeriesMeta


# -- series files -------------------------------------------------------------------------------


def _kv(schema: pa.Schema) -> dict[str, str]:
    return {
        k.decode(errors="replace"): v.decode(errors="replace") for k, v in (schema.metadata or {}).items()
    }


def _open_times(table: pa.Table) -> np.ndarray:
    col = table.column("open_time")
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.timestamp("ms")).cast(pa.int64())
    return col.to_numpy().astype(np.int64, copy=False)


def _check_key(path: Path, meta: SeriesMeta, exchange: str, symbol: str, timeframe: str) -> None:
    want = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
    wrong = [f"{k} {getattr(meta, k)!r}" for k, v in want.items() if v and getattr(meta, k) not in ("", v)]
    if wrong:
        raise StoreError(f"{path} holds another series ({', '.join(wrong)})")


def _read_table(path: Path, columns: tuple[str, ...] = COLUMNS) -> tuple[pa.Table, SeriesMeta]:
    """The ``columns`` of a series file (all of :data:`COLUMNS` must exist) and its metadata."""
    try:
        schema = pq.read_schema(path)
        missing = [c for c in COLUMNS if c not in schema.names]
        if missing:
            raise StoreError(f"{path} lacks column(s) {', '.join(missing)}")
        table = pq.read_table(path, columns=list(columns))
    except StoreError:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise StoreError(f"{path} is not a readable Parquet file ({_one_line(exc, 100)})") from None
    return table, SeriesMeta.from_kv(_kv(schema))


def series_problem(c: Candles, timeframe_ms: int | None = None) -> str | None:
    """Why these candles are not a valid series, or None."""
    if len(c) > 1 and not np.all(np.diff(c.open_time) > 0):
        return "open_time is not strictly ascending"
    if timeframe_ms and np.any(c.open_time % timeframe_ms):
        return f"open_time is not on the {timeframe_ms // 60_000}-minute UTC grid"
    prices = np.stack([c.open, c.high, c.low, c.close])
    if not np.all(np.isfinite(prices)) or not np.all(prices > 0):
        return "a price is not a positive number"
    if not (np.all(c.low <= np.minimum(c.open, c.close)) and np.all(c.high >= np.maximum(c.open, c.close))):
        return "a candle has low > open/close or high < open/close"
    vols = np.stack([c.volume, c.quote_volume])
    if not np.all(np.isfinite(vols)) or not np.all(vols >= 0):
        return "a volume is negative or not a number"
    return None


def read_series_file(
    path: Path, exchange: str = "", symbol: str = "", timeframe: str = ""
) -> StoredSeries | None:
    """The series in ``path``, or None when there is no such file. Raises :class:`StoreError`
    when it is not a valid series (see the module docstring); ``exchange``/``symbol``/
    ``timeframe``, when given, must match the file's metadata (where it names them)."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise StoreError(f"{path} is not a file")
        return None
    table, meta = _read_table(path)
    _check_key(path, meta, exchange, symbol, timeframe)
    try:
        cols = {"open_time": _open_times(table)}
        for name in VALUE_COLUMNS:
            col = table.column(name)
            if col.null_count:
                raise ValueError(f"column {name} has {col.null_count} null value(s)")
            cols[name] = col.cast(pa.float64()).to_numpy()
        cols["trades"] = table.column("trades").cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise StoreError(f"{path} has unusable columns ({_one_line(exc)})") from None
    candles = Candles.from_mapping(cols)
    problem = series_problem(candles, TIMEFRAME_MS.get(timeframe or meta.timeframe))
    if problem:
        raise StoreError(f"{path} is corrupt ({problem})")
    return StoredSeries(candles, meta)


def read_series_index(path: Path) -> tuple[np.ndarray, SeriesMeta] | None:
    """Open times and metadata only (what planning a fetch needs, at a fraction of the cost),
    or None when there is no file. Raises :class:`StoreError` like :func:`read_series_file`."""
    path = Path(path)
    if not path.exists():
        return None
    table, meta = _read_table(path, ("open_time",))
    times = _open_times(table)
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        raise StoreError(f"{path} is corrupt (open_time is not strictly ascending)")
    return times, meta


def to_table(series: StoredSeries) -> pa.Table:
    c = series.candles
    arrays = [pa.array(c.open_time, type=pa.int64()).cast(pa.timestamp("ms", tz="UTC"))]
    arrays += [pa.array(getattr(c, name), type=pa.float64()) for name in VALUE_COLUMNS]
    arrays.append(pa.array(c.trades, type=pa.float64(), from_pandas=True).cast(pa.int64()))
    meta = {k.encode(): str(v).encode() for k, v in series.meta.to_kv().items()}
    return pa.Table.from_arrays(arrays, schema=SCHEMA.with_metadata(meta))


def write_series_file(path: Path, series: StoredSeries) -> None:
    """Atomically replace ``path`` with ``series``. Refuses (ValueError, nothing written) open
    times that are not strictly ascending; raises :class:`StoreError` when it cannot write."""
    t = series.candles.open_time
    if len(t) > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("open_time must be strictly ascending")
    table = to_table(series)
    try:
        write_atomic(path, lambda fh: pq.write_table(table, fh, compression="zstd"))
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- the data directory -------------------------------------------------------------------------


class DataStore:
    """The files of one data directory (see the module docstring for the layout)."""

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self.history_dir = self.data_dir / "history"
        self.context_dir = self.data_dir / "context"

    # paths
    def series_path(self, exchange: str, symbol: str, timeframe: str) -> Path:
        return self.history_dir / exchange / symbol / f"{timeframe}.parquet"

    def structure_path(self, exchange: str, symbol: str) -> Path:
        return self.context_dir / exchange / f"{symbol}.json"

    def chart_path(self, exchange: str, symbol: str) -> Path:
        return self.context_dir / exchange / f"{symbol}.png"

    def failure_path(self, exchange: str, symbol: str) -> Path:
        return self.context_dir / exchange / f"{symbol}{FAILED_SUFFIX}"

    # what exists
    def inventory(
        self,
        exchanges: tuple[str, ...] = EXCHANGES,
        symbols: tuple[str, ...] = SYMBOLS,
        timeframes: tuple[str, ...] = TIMEFRAMES,
    ) -> dict[tuple[str, str], tuple[str, ...]]:
        """``(exchange, symbol) -> timeframes`` with a series file (canonical order), for the
        pairs that have at least one."""
        out = {}
        for ex in exchanges:
            for sym in symbols:
                tfs = tuple(tf for tf in timeframes if self.series_path(ex, sym, tf).exists())
                if tfs:
                    out[(ex, sym)] = tfs
        return out

    def check_dir(self, write_into: Path | None = None) -> None:
        """Raise :class:`~p9cli.errors.ConfigError` (exit 2) when the data directory is not a
        directory, or when ``write_into`` (its history or context directory) cannot be created
        or written (created here when missing)."""
        d = self.data_dir
        for p in (d, *d.parents):
            if p.exists():
                if not p.is_dir():
                    where = "" if p == d else f" ({p} is a file)"
                    raise ConfigError(f"data directory {d} is not a directory{where}")
                break
        if write_into is None:
            return
        if write_into.exists() and not write_into.is_dir():
            raise ConfigError(
                f"{write_into} is a file, not a directory; the data directory {d} is not usable"
            )
        try:
            write_into.mkdir(parents=True, exist_ok=True)
            probe = write_atomic(write_into / f".write-test.{os.getpid()}", b"", durable=False)
            probe.unlink()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(f"data directory {d} is not writable: {reason} ({write_into})") from None

    def remove_temp_files(self, directory: Path, older_than_s: float = 0.0) -> int:
        """Temporary files a killed run left in ``directory`` (the history or context one)."""
        return remove_temp_files(directory, older_than_s) if directory.is_dir() else 0

    # series
    def read_series(self, exchange: str, symbol: str, timeframe: str) -> StoredSeries | None:
        return read_series_file(self.series_path(exchange, symbol, timeframe), exchange, symbol, timeframe)

    def read_index(self, exchange: str, symbol: str, timeframe: str) -> tuple[np.ndarray, SeriesMeta] | None:
        return read_series_index(self.series_path(exchange, symbol, timeframe))

    def write_series(self, exchange: str, symbol: str, timeframe: str, series: StoredSeries) -> None:
        write_series_file(self.series_path(exchange, symbol, timeframe), series)

    def set_aside(self, path: Path) -> Path | None:
        """Rename an unusable file to ``{name}.bad`` (kept for the user, out of the way).
        Returns the new name, or None when it could not be moved."""
        target = path.with_name(path.name + ".bad")
        try:
            os.replace(path, target)
        except OSError:
            return None
        return target

    # structure documents, charts, failure markers
    def read_structure(self, exchange: str, symbol: str) -> dict | None:
        path = self.structure_path(exchange, symbol)
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path} is not a readable structure document ({_one_line(exc, 100)})") from None

    def write_structure(self, exchange: str, symbol: str, data: bytes) -> Path:
        return self._write(self.structure_path(exchange, symbol), data)

    def write_chart(self, exchange: str, symbol: str, draw: Any) -> Path:
        """``draw(fh)`` writes the PNG to the open binary file."""
        return self._write(self.chart_path(exchange, symbol), draw)

    def mark_failed(self, exchange: str, symbol: str, error: str, at_ms: int) -> Path:
        """Record that analysing this pair failed: which of its files are now stale, and why."""
        stale = [p.name for p in (self.structure_path(exchange, symbol), self.chart_path(exchange, symbol))]
        stale = [n for n in stale if (self.context_dir / exchange / n).exists()]
        doc = {
            "schema": "p9.analyze-failure/1",
            "exchange": exchange,
            "base": symbol,
            "failed_at_ms": at_ms,
            "failed_at": datetime.fromtimestamp(at_ms / 1000, tz=UTC).isoformat(timespec="seconds"),
            "error": error,
            "stale_files": stale,
        }
        return self._write(self.failure_path(exchange, symbol), json.dumps(doc, indent=2).encode() + b"\n")

    def clear_failed(self, exchange: str, symbol: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.failure_path(exchange, symbol).unlink()

    def _write(self, path: Path, content: bytes | Any) -> Path:
        try:
            return write_atomic(path, content)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "DataStore",
    "SeriesMeta",
    "StoreError",
    "StoredSeries",
    "read_series_file",
    "read_series_index",
    "series_problem",
    "write_series_file",
]
