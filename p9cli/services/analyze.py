"""``p9 analyze``: stored history -> structure documents (and charts), through the one store.

What it analyses is what exists: every selected (exchange, symbol) with at least one series
file, with the selected timeframes that have a file; the document names the others
(``missing_timeframes``). A data directory with no history at all for the selection is one
line (``no history under DIR; run p9 fetch-history ...``, exit 2), as is a data directory that
is a file or a context directory that cannot be written.

A pair whose files cannot be used (corrupt, another series, bad values) fails alone: one line
naming the file and the command that re-creates it; its previous document (and chart) are
kept as they were and ``{symbol}.failed.json`` is written beside them, naming the error and
the files that are now stale; the next successful run removes the marker. A chart is redrawn
only with ``--plot``; without it, a chart left by an earlier run no longer matches the new
document and is removed (said in the output). Exit code 1 when any pair failed.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from p9cli.analysis.context import build_structure, to_json
from p9cli.candles import Candles
from p9cli.config import Settings
from p9cli.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ConfigError, P9Error
from p9cli.store import DataStore, StoreError
from p9cli.universe import EXCHANGES, SYMBOLS, TIMEFRAME_MS, TIMEFRAMES


def fetch_hint(
    data_dir: Path, exchanges: tuple[str, ...] = (), symbols: tuple[str, ...] = (), timeframes=()
) -> str:
    """The ``p9 fetch-history`` command that (re)creates the named history."""
    parts = ["p9 fetch-history"]
    for flag, values, every in (
        ("--exchanges", exchanges, EXCHANGES),
        ("--symbols", symbols, SYMBOLS),
        ("--timeframes", timeframes, TIMEFRAMES),
    ):
        if values and tuple(values) != every:
            parts.append(f"{flag} {','.join(values)}")
    if Path(data_dir) != Path("data"):
        parts.append(f"--data-dir {shlex.quote(str(data_dir))}")
    return f"run `{' '.join(parts)}`"


def _one_line(text: object, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class PairResult:
    exchange: str
    symbol: str
    ok: bool
    message: str = ""
    path: Path | None = None
    doc: dict | None = None
    seconds: float = 0.0
    missing_timeframes: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    """Things the user should know about a written pair (chart removed or drawn from another timeframe)."""
    candles: dict[str, Candles] | None = None
    """The candles the document was built from (the chart reuses them)."""


def load_pair(
    store: DataStore, exchange: str, symbol: str, timeframes: tuple[str, ...]
) -> dict[str, Candles]:
    """The candles of the given timeframes of one pair. Raises :class:`StoreError` (one line
    naming the file and the fix) when a file is unusable or holds no candles."""
    hint = fetch_hint(store.data_dir, (exchange,), (symbol,))
    out = {}
    for tf in timeframes:
        try:
            stored = store.read_series(exchange, symbol, tf)
        except StoreError as exc:
            raise StoreError(f"{exc}; {hint}") from None
        path = store.series_path(exchange, symbol, tf)
        if stored is None:
            raise StoreError(f"{path} is missing; {hint}")
        if not len(stored.candles):
            raise StoreError(f"{path} holds no candles; {hint}")
        out[tf] = stored.candles
    return out


def analyze_pair(
    store: DataStore,
    exchange: str,
    symbol: str,
    timeframes: tuple[str, ...],
    wanted: tuple[str, ...],
    now_ms: int | None = None,
) -> PairResult:
    """Read, analyse and write one pair from its ``timeframes`` (those of ``wanted`` that have
    history). Never raises for bad data: the failure is on the result."""
    t0 = time.perf_counter()
    missing = tuple(tf for tf in wanted if tf not in timeframes)
    try:
        candles = load_pair(store, exchange, symbol, timeframes)
        doc = build_structure(exchange, symbol, candles, now_ms=now_ms)
        doc["missing_timeframes"] = list(missing)
        path = store.write_structure(exchange, symbol, to_json(doc))
    except P9Error as exc:
        return PairResult(exchange, symbol, False, str(exc), seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - one pair's bad data must not stop the others
        if os.environ.get("P9_DEBUG"):
            raise
        message = f"analysis failed: {type(exc).__name__}: {_one_line(exc, 120)} (set P9_DEBUG=1 for details)"
        return PairResult(exchange, symbol, False, message, seconds=time.perf_counter() - t0)
    return PairResult(
        exchange, symbol, True, "written", path, doc, time.perf_counter() - t0, missing, candles=candles
    )


def plot_timeframe_for(wanted: str, available: tuple[str, ...]) -> str:
    """``wanted`` when it has history, else the available timeframe closest in length."""
    if wanted in available:
        return wanted
    return min(available, key=lambda tf: (abs(TIMEFRAME_MS[tf] - TIMEFRAME_MS[wanted]), -TIMEFRAME_MS[tf]))


def draw_chart(store: DataStore, r: PairResult, timeframe: str) -> None:
    """Draw the pair's chart (``--plot``). A failure is reported on the result, never raised."""
    from p9cli.analysis.plot import plot_structure

    png = store.chart_path(r.exchange, r.symbol)
    candles = dict(r.candles or {})
    try:
        if timeframe not in candles and store.series_path(r.exchange, r.symbol, timeframe).exists():
            candles |= load_pair(store, r.exchange, r.symbol, (timeframe,))  # not among the analysed
        tf = plot_timeframe_for(timeframe, tuple(candles))
        if tf != timeframe:
            r.notes.append(f"no {timeframe} history, chart drawn from {tf}")
        plot_structure(r.doc, candles[tf], tf, png)
    except StoreError as exc:
        r.ok, r.message = False, f"plot: {exc}"
    except OSError as exc:
        r.ok, r.message = False, f"cannot write {png}: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - a chart must not stop the other pairs
        if os.environ.get("P9_DEBUG"):
            raise
        r.ok = False
        r.message = f"plot failed: {type(exc).__name__}: {_one_line(exc, 120)} (set P9_DEBUG=1 for details)"


def finish_pair(store: DataStore, r: PairResult, plot: bool, plot_timeframe: str) -> None:
    """After the document: the chart (drawn, or an outdated one removed) and the failure marker
    (written for a failed pair, removed for a written one)."""
    if r.ok and plot:
        draw_chart(store, r, plot_timeframe)
    elif r.ok:
        png = store.chart_path(r.exchange, r.symbol)
        if png.is_file():
            try:
                png.unlink()
                r.notes.append(
                    f"removed the outdated chart {png.name} (drawn from the previous document; --plot redraws it)"
                )
            except OSError as exc:
                r.notes.append(f"could not remove the outdated chart {png}: {exc.strerror or exc}")
    r.candles = None  # only the chart needs them
    try:
        if r.ok:
            store.clear_failed(r.exchange, r.symbol)
        else:
            marker = store.mark_failed(r.exchange, r.symbol, r.message, int(time.time() * 1000))
            kept = [n for n in (f"{r.symbol}.json", f"{r.symbol}.png") if (marker.parent / n).exists()]
            if kept:
                r.message += f" (previous {' and '.join(kept)} kept, marked stale by {marker.name})"
    except (OSError, StoreError) as exc:
        r.message += f"; could not update the failure marker: {_one_line(exc, 80)}"


def select(store: DataStore, settings: Settings) -> dict[tuple[str, str], tuple[str, ...]]:
    """The pairs to analyse and their timeframes with history. Raises a one-line error (exit 2)
    when there is nothing to analyse."""
    store.check_dir()
    found = store.inventory(settings.exchanges, settings.symbols, settings.timeframes)
    if found:
        return found
    hint = fetch_hint(store.data_dir, settings.exchanges, settings.symbols, settings.timeframes)
    other = store.inventory(settings.exchanges, settings.symbols, TIMEFRAMES)
    if other:
        have = sorted({tf for tfs in other.values() for tf in tfs}, key=TIMEFRAMES.index)
        raise P9Error(
            f"no {','.join(settings.timeframes)} history under {store.history_dir} (it has {','.join(have)}); {hint}",
            EXIT_USAGE,
        )
    raise P9Error(f"no history under {store.history_dir}; {hint}", EXIT_USAGE)


def run(
    settings: Settings,
    *,
    plot: bool = False,
    plot_timeframe: str = "4h",
    progress: bool | None = None,
    out: TextIO | None = None,
) -> int:
    """Analyse every selected pair with history; return the exit code (0 all written, 1 some
    pair failed)."""
    if plot_timeframe not in TIMEFRAMES:
        raise ConfigError(
            f"unknown plot timeframe {plot_timeframe!r}; valid timeframes: {', '.join(TIMEFRAMES)}"
        )
    store = DataStore(settings.data_dir)
    pairs = select(store, settings)
    store.check_dir(write_into=store.context_dir)
    # a killed run's temporary files (analyze takes no lock: another run's may be in flight)
    store.remove_temp_files(store.context_dir, older_than_s=600)
    out = out or sys.stdout
    interactive = bool(getattr(out, "isatty", lambda: False)()) if progress is None else progress
    wanted = settings.timeframes

    def one(ex: str, sym: str) -> PairResult:
        r = analyze_pair(store, ex, sym, pairs[(ex, sym)], wanted)
        finish_pair(store, r, plot, plot_timeframe)
        return r

    head = ""
    skipped = without_history(settings.exchanges, settings.symbols, pairs)
    if skipped:  # the selection is larger than what was fetched: say what is analysed
        head = f"analyze: {len(pairs)} pair(s) with history under {store.history_dir}; none for {skipped}"
    t0 = time.perf_counter()
    if interactive:
        results = _run_rich(store, list(pairs), one, head)
    else:
        if head:
            print(head, file=out, flush=True)
        results = []
        for ex, sym in pairs:
            r = one(ex, sym)
            results.append(r)
            line = summary_line(r)
            print(line if r.ok else f"p9: {line}", file=out if r.ok else sys.stderr, flush=True)
    failed = [r for r in results if not r.ok]
    if not interactive:
        print(
            f"analyze: {len(results) - len(failed)}/{len(results)} written in {time.perf_counter() - t0:.2f} s"
            + (f", {len(failed)} failed" if failed else ""),
            file=sys.stderr if failed else out,
            flush=True,
        )
    return EXIT_FAILURE if failed else EXIT_OK


def without_history(exchanges: tuple[str, ...], symbols: tuple[str, ...], found) -> str:
    """The selected pairs without history, briefly: ``bybit (any symbol), sol, xrp (any
    exchange), okx eth``; empty when every pair has some."""
    missing = [(ex, sym) for ex in exchanges for sym in symbols if (ex, sym) not in found]
    no_ex = [ex for ex in exchanges if all((ex, sym) in missing for sym in symbols)]
    no_sym = [sym for sym in symbols if all((ex, sym) in missing for ex in exchanges)]
    parts = [f"{', '.join(no_ex)} (any symbol)"] if no_ex else []
    parts += [f"{', '.join(no_sym)} (any exchange)"] if no_sym else []
    parts += [f"{ex} {sym}" for ex, sym in missing if ex not in no_ex and sym not in no_sym]
    return ", ".join(parts)


def summary_line(r: PairResult) -> str:
    if not r.ok:
        return f"{r.exchange} {r.symbol}: {r.message}"
    d = r.doc or {}
    score = (d.get("alignment") or {}).get("score")
    align = "n/a" if score is None else f"{score:+.2f}"
    n = len(d.get("timeframes", {}))
    missing = f", no history for {','.join(r.missing_timeframes)}" if r.missing_timeframes else ""
    notes = "".join(f"; {note}" for note in r.notes)
    return (
        f"{r.exchange} {r.symbol}: wrote {r.path} ({n} timeframe{'' if n == 1 else 's'}{missing}, "
        f"last {d.get('last_price')}, alignment {align}) in {r.seconds * 1000:.0f} ms{notes}"
    )


def _run_rich(
    store: DataStore, pairs: list[tuple[str, str]], one: Callable[[str, str], PairResult], head: str
) -> list[PairResult]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console()
    err = Console(stderr=True)
    if head:
        console.print(head, markup=False, highlight=False)
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
            results.append(one(ex, sym))
            bar.advance(task)
    table = Table(title=f"p9 analyze -> {store.context_dir}", title_justify="left")
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
    for r in results:
        if not r.ok:
            err.print(f"p9: {summary_line(r)}", markup=False, highlight=False, soft_wrap=True)
        elif r.missing_timeframes or r.notes:
            console.print(summary_line(r), markup=False, highlight=False, soft_wrap=True)
    failed = [r for r in results if not r.ok]
    console.print(
        f"{len(results) - len(failed)}/{len(results)} written in {time.perf_counter() - t0:.2f} s"
        + (f", [red]{len(failed)} failed[/]" if failed else "")
    )
    return results
