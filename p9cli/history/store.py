"""Parquet store of candle series: ``{data}/history/{exchange}/{symbol}/{tf}.parquet``.

Schema (version 1): ``open_time`` timestamp[ms, UTC], ``open high low close volume
quote_volume`` float64, ``trades`` int64 (nullable), ascending unique ``open_time``, closed
candles only. File metadata (key/value, UTF-8): ``exchange``, ``symbol``, ``exchange_symbol``,
``timeframe``, ``source`` (REST base URL), ``fetched_at`` (ISO 8601 UTC), ``fetched_at_ms``,
``holes`` (JSON list of open times in ms the exchange lacks), ``history_starts_ms`` (the
exchange's first bar when it has fewer than wanted, else empty), ``gaps_checked_ms`` (when
the holes and the history start were last asked for), ``schema_version``.

Writes go to a temporary file in the same directory, are fsynced, renamed over the target
with ``os.replace`` and the directory is fsynced: a reader (or a run killed at any instant)
sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = "1"
PRICE_COLUMNS = ("open", "high", "low", "close", "volume", "quote_volume")
COLUMNS = ("open_time", *PRICE_COLUMNS, "trades")

SCHEMA = pa.schema(
    [pa.field("open_time", pa.timestamp("ms", tz="UTC"), nullable=False)]
    + [pa.field(c, pa.float64(), nullable=False) for c in PRICE_COLUMNS]
    + [pa.field("trades", pa.int64(), nullable=True)]
)


def series_path(history_dir: Path, exchange: str, symbol: str, timeframe: str) -> Path:
    return Path(history_dir) / exchange / symbol / f"{timeframe}.parquet"


@dataclass(slots=True)
class Series:
    """One stored series as plain columns (``open_time`` in epoch ms)."""

    open_time: list[int] = field(default_factory=list)
    open: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)
    volume: list[float] = field(default_factory=list)
    quote_volume: list[float] = field(default_factory=list)
    trades: list[int | None] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.open_time)

    @property
    def holes(self) -> list[int]:
        raw = self.metadata.get("holes") or "[]"
        try:
            return [int(t) for t in json.loads(raw)]
        except (ValueError, TypeError):
            return []

    @property
    def history_starts_ms(self) -> int | None:
        raw = self.metadata.get("history_starts_ms") or ""
        try:
            return int(raw) if raw else None
        except ValueError:
            return None

    @property
    def gaps_checked_ms(self) -> int | None:
        raw = self.metadata.get("gaps_checked_ms") or ""
        try:
            return int(raw) if raw else None
        except ValueError:
            return None

    def rows(self) -> dict[int, tuple]:
        """``open_time -> (open, high, low, close, volume, quote_volume, trades)``."""
        cols = [getattr(self, c) for c in (*PRICE_COLUMNS, "trades")]
        return {t: tuple(c[i] for c in cols) for i, t in enumerate(self.open_time)}

    @classmethod
    def from_rows(cls, rows: dict[int, tuple], metadata: dict[str, str] | None = None) -> Series:
        s = cls(metadata=dict(metadata or {}))
        cols = [getattr(s, c) for c in (*PRICE_COLUMNS, "trades")]
        for t in sorted(rows):
            s.open_time.append(t)
            for col, v in zip(cols, rows[t], strict=True):
                col.append(v)
        return s


class StoreError(Exception):
    """A file could not be read or written (message is one line)."""


def to_table(series: Series) -> pa.Table:
    arrays = [pa.array(series.open_time, type=pa.int64()).cast(pa.timestamp("ms", tz="UTC"))]
    arrays += [pa.array(getattr(series, c), type=pa.float64()) for c in PRICE_COLUMNS]
    arrays.append(pa.array(series.trades, type=pa.int64()))
    meta = {k.encode(): str(v).encode() for k, v in series.metadata.items()}
    return pa.Table.from_arrays(arrays, schema=SCHEMA.with_metadata(meta))


def read_series(path: Path, index_only: bool = False) -> Series | None:
    """The stored series, or ``None`` when the file does not exist. Raises :class:`StoreError`
    when it exists but is not a valid series file. ``index_only``: read ``open_time`` and the
    metadata only (the price columns stay empty) - what planning needs, at a fraction of the cost."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        schema = pq.read_schema(path)
        missing = [c for c in COLUMNS if c not in schema.names]
        if missing:
            raise StoreError(f"{path}: missing columns {', '.join(missing)}")
        table = pq.read_table(path, columns=["open_time"] if index_only else list(COLUMNS))
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(
            f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:160]})"
        ) from None
    meta = {
        k.decode(errors="replace"): v.decode(errors="replace") for k, v in (schema.metadata or {}).items()
    }
    meta = {k: v for k, v in meta.items() if not k.startswith("ARROW:")}
    s = Series(metadata=meta)
    s.open_time = table.column("open_time").cast(pa.int64()).to_pylist()
    if not index_only:
        for c in PRICE_COLUMNS:
            setattr(s, c, table.column(c).cast(pa.float64()).to_pylist())
        s.trades = table.column("trades").cast(pa.int64()).to_pylist()
    t = s.open_time
    if any(t[i] >= t[i + 1] for i in range(len(t) - 1)):
        raise StoreError(f"{path}: open_time is not strictly ascending")
    return s


def write_series(path: Path, series: Series) -> None:
    """Atomically replace ``path`` with ``series`` (see the module docstring)."""
    path = Path(path)
    t = series.open_time
    if any(t[i] >= t[i + 1] for i in range(len(t) - 1)):
        raise ValueError("open_time must be strictly ascending")
    table = to_table(series)
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StoreError(f"cannot write in {directory}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def remove_stale_temp_files(directory: Path) -> int:
    """Delete temporary files a killed run left behind (``.{name}.*.tmp``). Returns how many."""
    n = 0
    for p in Path(directory).rglob(".*.parquet.*.tmp"):
        try:
            p.unlink()
            n += 1
        except OSError:
            pass
    return n


def build_metadata(
    *,
    exchange: str,
    symbol: str,
    exchange_symbol: str,
    timeframe: str,
    source: str,
    fetched_at_ms: int,
    holes: list[int],
    history_starts_ms: int | None,
    gaps_checked_ms: int | None = None,
) -> dict[str, str]:
    return {
        "exchange": exchange,
        "symbol": symbol,
        "exchange_symbol": exchange_symbol,
        "timeframe": timeframe,
        "source": source,
        "fetched_at": datetime.fromtimestamp(fetched_at_ms / 1000, tz=UTC).isoformat(timespec="milliseconds"),
        "fetched_at_ms": str(fetched_at_ms),
        "holes": json.dumps(sorted(holes)),
        "history_starts_ms": "" if history_starts_ms is None else str(history_starts_ms),
        "gaps_checked_ms": str(fetched_at_ms if gaps_checked_ms is None else gaps_checked_ms),
        "schema_version": SCHEMA_VERSION,
    }
