"""What a fetch-history run tells its user: Rich progress on a terminal, one plain line per
event otherwise (cron: no bars, no colour codes), and a final summary table either way."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TextIO

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from p9cli.history.planner import SeriesKey


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 new candle``, ``2 new candles``, ``1 retry``, ``3 retries``."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def utc_text(ms: int) -> str:
    """``2023-01-07`` at midnight UTC, else ``2023-01-07 04:00 UTC``."""
    t = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return t.strftime("%Y-%m-%d") if ms % 86_400_000 == 0 else t.strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class SeriesStats:
    key: SeriesKey
    ok: bool = False
    new_candles: int = 0
    """Candles stored for the first time."""
    redownloaded: int = 0
    """Candles fetched again that were already stored (``--full``)."""
    trimmed: int = 0
    """Stored candles deleted by ``--trim`` (older than the newest ``--candles``)."""
    trimmed_before_ms: int | None = None
    stored: int = 0
    wanted: int = 0
    """Candles asked for (``--candles``)."""
    history_starts_ms: int | None = None
    """Set when the exchange's history starts inside the wanted range (a short series)."""
    short_by: int = 0
    """How many of the wanted candles do not exist because the history starts later."""
    note: str = ""
    """Something the user should know about this series (a stored file set aside)."""
    holes: int = 0
    """Missing bars in the series (recorded holes + bars not there yet at the end)."""
    new_holes: int = 0
    """Of those, the ones this run asked for and did not get."""
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    seconds: float = 0.0
    error: str = ""


@dataclass
class Totals:
    series: int = 0
    ok: int = 0
    short: int = 0
    new_candles: int = 0
    redownloaded: int = 0
    trimmed: int = 0
    holes: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    seconds: float = 0.0

    def add(self, s: SeriesStats) -> None:
        """Count one series."""
        short = int(s.ok and s.short_by > 0)
        counts = {f.name: getattr(s, f.name) for f in fields(self) if hasattr(s, f.name)}
        self.merge(Totals(**{**counts, "series": 1, "ok": int(s.ok), "short": short}))

    def merge(self, other: Totals) -> None:
        """Sum the counts (the longest ``seconds``)."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            setattr(self, f.name, max(mine, theirs) if f.name == "seconds" else mine + theirs)


def _utc_stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Reporter:
    """``progress=True``: Rich progress bars (one per exchange); ``False``: plain lines."""

    def __init__(self, progress: bool | None = None, out: TextIO | None = None, err: TextIO | None = None):
        self.out = out or sys.stdout
        #: where failures go in plain mode (cron mails stderr; stdout can go to a log file)
        self.err = err or (sys.stderr if out is None else self.out)
        if progress is None:
            progress = bool(getattr(self.out, "isatty", lambda: False)())
        self.progress_mode = progress
        if progress:
            self.console = Console(file=self.out, highlight=False)
        else:
            self.console = Console(
                file=self.out, force_terminal=False, no_color=True, highlight=False, width=110, soft_wrap=True
            )
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._candles: dict[str, int] = {}
        self.started = time.monotonic()

    # -- events -------------------------------------------------------------------------------

    def line(self, message: str, error: bool = False) -> None:
        """One event. Plain mode: a timestamped line, on stderr when it reports a failure."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        elif self.progress_mode:
            self.console.print(message, markup=False, highlight=False)
        else:
            print(
                f"{_utc_stamp()} fetch-history: {message}", file=self.err if error else self.out, flush=True
            )

    def start(
        self, series_per_exchange: dict[str, int], full: bool, history_dir: str, stored: int | None = None
    ) -> None:
        """``stored``: how many of the series already have a file (None: not known)."""
        total = sum(series_per_exchange.values())
        per = ", ".join(f"{ex} {n}" for ex, n in series_per_exchange.items())
        if full:
            mode = "full re-download"
        elif stored == 0:
            mode = "first fetch"
        else:
            mode = "incremental"
            if stored is not None and stored < total:
                per += f"; {total - stored} not stored yet"
        self.line(f"{mode} of {total} series ({per}) into {history_dir}")
        if self.progress_mode:
            self._progress = Progress(
                TextColumn("{task.description:<8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("series  {task.fields[candles]:>7} new candles"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            for ex, n in series_per_exchange.items():
                self._tasks[ex] = self._progress.add_task(ex, total=n, candles=0)
                self._candles[ex] = 0
            self._progress.start()

    def event(self, exchange: str, message: str, error: bool = False) -> None:
        self.line(f"{exchange}: {message}", error)

    def series_done(self, s: SeriesStats, quiet: bool = False) -> None:
        """A series finished. ``quiet``: its failure was already told (whole exchange down)."""
        ex = s.key.exchange
        if self._progress is not None and ex in self._tasks:
            self._candles[ex] += s.new_candles
            self._progress.update(self._tasks[ex], advance=1, candles=self._candles[ex])
        if s.note:
            self.line(f"{s.key}: {s.note}", error=not s.ok)
        if not s.ok and not quiet:
            self.line(f"{s.key}: FAILED: {s.error}", error=True)
            return
        if s.new_holes:
            self.line(
                f"{s.key}: {plural(s.new_holes, 'candle')} missing at the exchange after asking twice "
                f"({plural(s.holes, 'hole')} in the series, recorded in its metadata)"
            )
        if s.ok and s.short_by and s.history_starts_ms is not None:
            self.line(
                f"{s.key}: short: {s.wanted - s.short_by} of {s.wanted} candles; the exchange's history "
                f"starts {utc_text(s.history_starts_ms)} (nothing older exists)"
            )
        if s.trimmed and s.trimmed_before_ms is not None:
            self.line(
                f"{s.key}: --trim removed {plural(s.trimmed, 'stored candle')} "
                f"older than {utc_text(s.trimmed_before_ms)}"
            )

    def exchange_done(self, run) -> None:
        t = exchange_totals(run)
        short = f" ({t.short} short: the exchange's history starts later)" if t.short else ""
        again = f", {t.redownloaded} re-downloaded" if t.redownloaded else ""
        trimmed = f", {plural(t.trimmed, 'candle')} trimmed" if t.trimmed else ""
        self.line(
            f"{run.exchange}: {t.ok}/{t.series} series ok{short}, {plural(t.new_candles, 'new candle')}{again}"
            f"{trimmed}, {plural(t.holes, 'hole')}, {plural(t.requests, 'request')}, "
            f"{plural(t.retries, 'retry', 'retries')}, {t.rate_limited} rate-limited, {run.seconds:.1f} s"
        )

    # -- summary ------------------------------------------------------------------------------

    def finish(self, runs: list) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.console.print(summary_table(runs, time.monotonic() - self.started))
        stats = [s for run in runs for s in run.series]
        failed = [s for s in stats if not s.ok]
        trimmed = [s for s in stats if s.trimmed]
        if trimmed:
            n = sum(s.trimmed for s in trimmed)
            self.line(
                f"--trim removed {plural(n, 'stored candle')} from {plural(len(trimmed), 'series', 'series')} "
                "(older than the newest --candles)"
            )
        if failed:
            kept = len(stats) - len(failed)
            tail = f"; the {kept} others were stored" if kept else ""
            self.line(f"{len(failed)} of {len(stats)} series failed{tail}", error=True)


def exchange_totals(run) -> Totals:
    """Totals of one exchange's run (``service.ExchangeRun``), server-time requests included."""
    t = Totals()
    for s in run.series:
        t.add(s)
    o = run.overhead
    t.merge(Totals(requests=o.requests, retries=o.retries, rate_limited=o.rate_limited))
    t.seconds = run.seconds
    return t


COLUMNS = (
    "exchange",
    "series",
    "short",
    "new candles",
    "re-downloaded",
    "holes",
    "requests",
    "retries",
    "429s",
    "seconds",
)


def summary_table(runs: list, wall_s: float) -> Table:
    table = Table(title="fetch-history summary", box=box.SIMPLE_HEAD, title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "exchange" else "right")
    grand = Totals()
    for run in runs:
        t = exchange_totals(run)
        table.add_row(*_cells(run.exchange, t, t.seconds))
        grand.merge(t)
    table.add_row(*_cells("total", grand, wall_s))
    return table


def _cells(name: str, t: Totals, seconds: float) -> list[str]:
    return [
        name,
        f"{t.ok}/{t.series}",
        str(t.short),
        str(t.new_candles),
        str(t.redownloaded),
        str(t.holes),
        str(t.requests),
        str(t.retries),
        str(t.rate_limited),
        f"{seconds:.1f}",
    ]
