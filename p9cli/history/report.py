"""What a fetch-history run tells its user: Rich progress on a terminal, one plain line per
event otherwise (cron: no bars, no colour codes), and a final summary table either way."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from p9cli.history.planner import SeriesKey


@dataclass
class SeriesStats:
    key: SeriesKey
    ok: bool = False
    new_candles: int = 0
    stored: int = 0
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
    new_candles: int = 0
    holes: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    seconds: float = 0.0

    def add(self, s: SeriesStats) -> None:
        self.series += 1
        self.ok += int(s.ok)
        self.new_candles += s.new_candles
        self.holes += s.holes
        self.requests += s.requests
        self.retries += s.retries
        self.rate_limited += s.rate_limited
        self.seconds = max(self.seconds, s.seconds)


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

    def start(self, series_per_exchange: dict[str, int], full: bool, history_dir: str) -> None:
        total = sum(series_per_exchange.values())
        mode = "full fetch" if full else "incremental"
        self.line(
            f"{mode} of {total} series ({', '.join(f'{ex} {n}' for ex, n in series_per_exchange.items())}) into {history_dir}"
        )
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
        if not s.ok and not quiet:
            self.line(f"{s.key}: FAILED: {s.error}", error=True)
        elif s.new_holes:
            self.line(
                f"{s.key}: {s.new_holes} candle(s) missing at the exchange after asking twice "
                f"({s.holes} hole(s) in the series, recorded in its metadata)"
            )

    def exchange_done(self, run) -> None:
        t = exchange_totals(run)
        self.line(
            f"{run.exchange}: {t.ok}/{t.series} series ok, {t.new_candles} new candles, {t.holes} holes, "
            f"{t.requests} requests, {t.retries} retries, {t.rate_limited} rate-limited, {run.seconds:.1f} s"
        )

    # -- summary ------------------------------------------------------------------------------

    def finish(self, runs: list) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.console.print(summary_table(runs, time.monotonic() - self.started))
        stats = [s for run in runs for s in run.series]
        failed = [s for s in stats if not s.ok]
        if failed:
            kept = len(stats) - len(failed)
            tail = f"; the {kept} others were stored" if kept else ""
            self.line(f"{len(failed)} of {len(stats)} series failed{tail}", error=True)


def exchange_totals(run) -> Totals:
    """Totals of one exchange's run (``service.ExchangeRun``), server-time requests included."""
    t = Totals()
    for s in run.series:
        t.add(s)
    t.requests += run.overhead.requests
    t.retries += run.overhead.retries
    t.rate_limited += run.overhead.rate_limited
    t.seconds = run.seconds
    return t


def summary_table(runs: list, wall_s: float) -> Table:
    table = Table(title="fetch-history summary", box=box.SIMPLE_HEAD, title_justify="left")
    for col in ("exchange", "series", "new candles", "holes", "requests", "retries", "429s", "seconds"):
        table.add_column(col, justify="left" if col == "exchange" else "right")
    grand = Totals()
    for run in runs:
        t = exchange_totals(run)
        table.add_row(*_cells(run.exchange, t, t.seconds))
        grand.series += t.series
        grand.ok += t.ok
        grand.new_candles += t.new_candles
        grand.holes += t.holes
        grand.requests += t.requests
        grand.retries += t.retries
        grand.rate_limited += t.rate_limited
    table.add_row(*_cells("total", grand, wall_s))
    return table


def _cells(name: str, t: Totals, seconds: float) -> list[str]:
    return [
        name,
        f"{t.ok}/{t.series}",
        str(t.new_candles),
        str(t.holes),
        str(t.requests),
        str(t.retries),
        str(t.rate_limited),
        f"{seconds:.1f}",
    ]
