"""``p9 analyze``: the I/O edge around :mod:`p9cli.analysis`.

Reads ``DIR/history/{exchange}/{symbol}/{tf}.parquet`` (every configured timeframe), builds the
``p9.structure/1`` document and writes ``DIR/context/{exchange}/{symbol}.json`` atomically (a
temporary file in the same directory, fsynced, then ``os.replace``): a reader never sees half a
document and a failed run leaves the previous one in place.

A missing or unreadable Parquet file fails only its (exchange, symbol), with one line that names
the file and says how to fix it; the other symbols are still written and the exit code is 1.
On a terminal a Rich progress bar and a summary table are shown; otherwise one plain line per
symbol (cron-friendly).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from p9cli.analysis.candles import Candles
from p9cli.analysis.context import build_structure, to_json
from p9cli.config import Settings
from p9cli.errors import EXIT_FAILURE, EXIT_OK, ConfigError, P9Error
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES

READ_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "quote_volume")


class HistoryFileError(P9Error):
    """A history file is missing or unusable; the message names it and the fix."""


def history_path(settings: Settings, exchange: str, symbol: str, timeframe: str) -> Path:
    return settings.history_dir / exchange / symbol / f"{timeframe}.parquet"


def context_path(settings: Settings, exchange: str, symbol: str) -> Path:
    return settings.context_dir / exchange / f"{symbol}.json"


def fix_hint(exchange: str, symbol: str, data_dir: Path | None = None) -> str:
    """The command that (re)creates a series' history files."""
    where = f" --data-dir {shlex.quote(str(data_dir))}" if data_dir and Path(data_dir) != Path("data") else ""
    return f"run `p9 fetch-history --exchanges {exchange} --symbols {symbol}{where}`"


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_candles(
    path: Path, exchange: str = "", symbol: str = "", timeframe: str = "", hint: str | None = None
) -> Candles:
    """The candles of one history file. Raises :class:`HistoryFileError` (one line naming the
    file) when it is missing, not Parquet, lacks a column, is empty, was written for another
    series (key/value metadata ``exchange``/``symbol``/``timeframe``, when present), has open
    times off the timeframe's UTC grid or not strictly ascending, or holds prices that are not
    positive finite numbers with low <= open, close <= high."""
    if hint is None:
        hint = fix_hint(exchange, symbol) if exchange else "run `p9 fetch-history`"
    if not path.exists():
        raise HistoryFileError(f"{path} is missing; {hint}")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise HistoryFileError(
            f"{path} is not a readable Parquet file ({_one_line(exc, 100)}); {hint}"
        ) from None
    missing = [c for c in READ_COLUMNS if c not in table.column_names]
    if missing:
        raise HistoryFileError(f"{path} lacks column(s) {', '.join(missing)}; {hint}")
    if table.num_rows == 0:
        raise HistoryFileError(f"{path} holds no candles; {hint}")
    meta = {
        k.decode(errors="replace"): v.decode(errors="replace")
        for k, v in (table.schema.metadata or {}).items()
    }
    expected = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
    wrong = [f"{k} {meta[k]!r}" for k, v in expected.items() if v and meta.get(k) not in (None, "", v)]
    if wrong:
        raise HistoryFileError(f"{path} holds another series ({', '.join(wrong)}); {hint}")
    try:
        ot_col = table.column("open_time")
        if pa.types.is_timestamp(ot_col.type):
            ot_col = ot_col.cast(pa.timestamp("ms")).cast(pa.int64())
        cols = {"open_time": ot_col.to_numpy().astype(np.int64, copy=False)}
        for name in READ_COLUMNS[1:]:
            col = table.column(name)
            if col.null_count:
                raise ValueError(f"column {name} has {col.null_count} null value(s)")
            cols[name] = col.cast(pa.float64()).to_numpy()
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise HistoryFileError(f"{path} has unusable columns ({_one_line(exc)}); {hint}") from None
    candles = Candles.from_mapping(cols)
    problem = candle_problem(candles, TIMEFRAME_MS.get(timeframe))
    if problem:
        raise HistoryFileError(f"{path} is corrupt ({problem}); {hint}")
    return candles


def candle_problem(c: Candles, timeframe_ms: int | None = None) -> str | None:
    """Why these candles cannot be analysed, or None."""
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


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file in the same directory + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@dataclass
class SymbolResult:
    exchange: str
    symbol: str
    ok: bool
    message: str
    path: Path | None = None
    doc: dict | None = None
    seconds: float = 0.0
    candles: dict[str, Candles] | None = None
    """The candles the document was built from (the chart reuses them)."""


def load_symbol(settings: Settings, exchange: str, symbol: str) -> dict[str, Candles]:
    """Every configured timeframe's candles for one (exchange, symbol)."""
    hint = fix_hint(exchange, symbol, settings.data_dir)
    return {
        tf: read_candles(history_path(settings, exchange, symbol, tf), exchange, symbol, tf, hint)
        for tf in settings.timeframes
    }


def analyze_symbol(settings: Settings, exchange: str, symbol: str, now_ms: int | None = None) -> SymbolResult:
    """Read, analyse and write one (exchange, symbol). Never raises for a bad file."""
    t0 = time.perf_counter()
    try:
        candles = load_symbol(settings, exchange, symbol)
        doc = build_structure(exchange, symbol, candles, now_ms=now_ms)
        out = context_path(settings, exchange, symbol)
        try:
            write_atomic(out, to_json(doc))
        except OSError as exc:
            raise P9Error(f"cannot write {out}: {exc.strerror or exc}") from None
    except P9Error as exc:
        return SymbolResult(exchange, symbol, False, str(exc), seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - one symbol's bad data must not stop the others
        if os.environ.get("P9_DEBUG"):
            raise
        message = f"analysis failed: {type(exc).__name__}: {_one_line(exc, 120)} (set P9_DEBUG=1 for details)"
        return SymbolResult(exchange, symbol, False, message, seconds=time.perf_counter() - t0)
    return SymbolResult(exchange, symbol, True, "written", out, doc, time.perf_counter() - t0, candles)


def _summary_line(r: SymbolResult) -> str:
    if not r.ok:
        return f"{r.exchange} {r.symbol}: {r.message}"
    d = r.doc or {}
    score = (d.get("alignment") or {}).get("score")
    align = "n/a" if score is None else f"{score:+.2f}"
    return (
        f"{r.exchange} {r.symbol}: wrote {r.path} ({len(d.get('timeframes', {}))} timeframes, "
        f"last {d.get('last_price')}, alignment {align}) in {r.seconds * 1000:.0f} ms"
    )


def run_analyze(
    settings: Settings, plot: bool = False, plot_timeframe: str = "4h", progress: bool | None = None
) -> int:
    """Analyse every configured (exchange, symbol); return the exit code (0 all written, 1 some
    failed)."""
    if plot_timeframe not in TIMEFRAMES:
        raise ConfigError(
            f"unknown plot timeframe {plot_timeframe!r}; valid timeframes: {', '.join(TIMEFRAMES)}"
        )
    pairs = [(ex, sym) for ex in settings.exchanges for sym in settings.symbols]
    interactive = sys.stdout.isatty() if progress is None else progress
    t0 = time.perf_counter()
    results: list[SymbolResult] = []
    if interactive:
        results = _run_rich(settings, pairs, plot, plot_timeframe)
    else:
        for ex, sym in pairs:
            r = analyze_symbol(settings, ex, sym)
            if r.ok and plot:
                _plot(settings, r, plot_timeframe)
            r.candles = None  # only the chart needs them
            results.append(r)
            print(
                _summary_line(r) if r.ok else f"p9: {_summary_line(r)}",
                file=sys.stdout if r.ok else sys.stderr,
                flush=True,
            )
    failed = [r for r in results if not r.ok]
    elapsed = time.perf_counter() - t0
    if not interactive:
        print(
            f"analyze: {len(results) - len(failed)}/{len(results)} written in {elapsed:.2f} s"
            + (f", {len(failed)} failed" if failed else ""),
            file=sys.stderr if failed else sys.stdout,
            flush=True,
        )
    return EXIT_FAILURE if failed else EXIT_OK


def _plot(settings: Settings, r: SymbolResult, timeframe: str) -> None:
    """Draw the PNG next to the JSON (part of the --plot option). A failure is reported on the
    symbol's result, never raised."""
    from p9cli.analysis.plot import plot_structure

    png = context_path(settings, r.exchange, r.symbol).with_suffix(".png")
    try:
        candles = (r.candles or {}).get(timeframe)
        if candles is None:  # a timeframe the document was not built from
            candles = load_symbol(settings.with_(timeframes=(timeframe,)), r.exchange, r.symbol)[timeframe]
        plot_structure(r.doc, candles, timeframe, png)
    except P9Error as exc:
        r.ok = False
        r.message = f"plot: {exc}"
    except OSError as exc:
        r.ok = False
        r.message = f"cannot write {png}: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - a chart must not stop the other symbols
        if os.environ.get("P9_DEBUG"):
            raise
        r.ok = False
        r.message = f"plot failed: {type(exc).__name__}: {_one_line(exc, 120)} (set P9_DEBUG=1 for details)"


def _run_rich(settings: Settings, pairs, plot: bool, plot_timeframe: str) -> list[SymbolResult]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console()
    err = Console(stderr=True)
    results = []
    t0 = time.perf_counter()
    with Progress(
        TextColumn("[bold]analyze[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=len(pairs))
        for ex, sym in pairs:
            bar.update(task, description=f"{ex} {sym}")
            r = analyze_symbol(settings, ex, sym)
            if r.ok and plot:
                _plot(settings, r, plot_timeframe)
            r.candles = None  # only the chart needs them
            results.append(r)
            bar.advance(task)
    table = Table(title=f"p9 analyze -> {settings.context_dir}", title_justify="left")
    for col, just in (
        ("exchange", "left"),
        ("symbol", "left"),
        ("last", "right"),
        ("alignment", "right"),
        ("1d", "center"),
        ("4h", "center"),
        ("1h", "center"),
        ("ms", "right"),
    ):
        table.add_column(col, justify=just)
    arrows = {"up": "[green]up[/]", "down": "[red]down[/]", "range": "[yellow]range[/]"}
    for r in results:
        if not r.ok:
            table.add_row(r.exchange, r.symbol, "[red]failed[/]", "", "", "", "", "")
            continue
        d = r.doc or {}
        tfs = d.get("timeframes", {})
        score = (d.get("alignment") or {}).get("score")
        cells = [arrows.get(tfs[tf]["trend"]["label"], "") if tf in tfs else "-" for tf in ("1d", "4h", "1h")]
        table.add_row(
            r.exchange,
            r.symbol,
            f"{d.get('last_price')}",
            "n/a" if score is None else f"{score:+.2f}",
            *cells,
            f"{r.seconds * 1000:.0f}",
        )
    console.print(table)
    failed = [r for r in results if not r.ok]
    for r in failed:
        err.print(f"p9: {_summary_line(r)}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"{len(results) - len(failed)}/{len(results)} written in {time.perf_counter() - t0:.2f} s"
        + (f", [red]{len(failed)} failed[/]" if failed else "")
    )
    return results
