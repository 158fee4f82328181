"""``p9 feeds``: watch the normalized live flow, for debugging.

Prints, as they come: every trade, the top of book of each pair whenever it changes (best bid
and ask with sizes and the exchange's update id; only books that are provably in sync), and
every feed event (connections, switch-overs, books going invalid and back with the cause,
trade gaps, malformed frames, exchange notices). ``--json``: one JSON object per line
(``type`` = ``trade`` / ``book`` / ``event`` / ``stats``). At the end (``--duration`` or
Ctrl-C / SIGTERM) the statistics of each feed.

Exit codes: 0 every feed delivered data, 1 some feed delivered nothing, 2 bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import TextIO

import orjson

from p9cli.config import Settings
from p9cli.errors import EXIT_FAILURE, EXIT_OK, ConfigError
from p9cli.exchanges.venue import Trade
from p9cli.live import BookState, FeedEvent, LiveFeeds

# events not worth a line of their own in the human view (the state line says it)
_QUIET = frozenset({"connected"})


def _clock(ms: int | None) -> str:
    if ms is None:
        return "--:--:--.---"
    t = time.gmtime(ms / 1000)
    return f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ms % 1000:03d}"


class Printer:
    """The handler: one line per trade, per top-of-book change, per feed event."""

    def __init__(self, out: TextIO, as_json: bool):
        self.out = out
        self.as_json = as_json
        self.tops: dict[tuple[str, str], tuple] = {}
        self.lines = 0
        self.broken = False
        #: set when the reader went away (``p9 feeds | head``): the run stops
        self.gone: asyncio.Event | None = None

    def write(self, line: str) -> None:
        if self.broken:
            return
        try:
            self.out.write(line + "\n")
        except (BrokenPipeError, ValueError):  # the reader went away (`| head`), or out closed
            self.broken = True
            if self.gone is not None:
                self.gone.set()
        self.lines += 1

    def __call__(self, event) -> None:
        kind = type(event)
        if kind is Trade:
            self.trade(event)
        elif kind is BookState:
            self.book(event)
        elif kind is FeedEvent:
            self.event(event)

    def trade(self, t: Trade) -> None:
        if self.as_json:
            self.write(
                orjson.dumps(
                    {
                        "type": "trade",
                        "exchange": t.exchange,
                        "symbol": t.symbol,
                        "ts": t.ts_ms,
                        "recv_ts": getattr(t, "recv_ms", None),
                        "price": t.price,
                        "size": t.size,
                        "side": t.side,
                        "trade_id": t.trade_id,
                    }
                ).decode()
            )
        else:
            self.write(
                f"{_clock(t.ts_ms)} {t.exchange:<7} {t.symbol:<4} trade {t.side:<4} {t.size:>14.8g} @ {t.price:<12.10g}"
                f" id {t.trade_id}"
            )

    def book(self, b: BookState) -> None:
        key = (b.exchange, b.symbol)
        top = (b.bid, b.bid_size, b.ask, b.ask_size)
        if self.tops.get(key) == top:
            return
        self.tops[key] = top
        if self.as_json:
            self.write(
                orjson.dumps(
                    {
                        "type": "book",
                        "exchange": b.exchange,
                        "symbol": b.symbol,
                        "ts": b.ts_ms,
                        "recv_ts": b.recv_ms,
                        "update_id": b.update_id,
                        "bid": b.bid,
                        "bid_size": b.bid_size,
                        "ask": b.ask,
                        "ask_size": b.ask_size,
                    }
                ).decode()
            )
        else:
            self.write(
                f"{_clock(b.ts_ms or b.recv_ms)} {b.exchange:<7} {b.symbol:<4} book  "
                f"{b.bid_size:>12.8g} {b.bid:<12.10g} | {b.ask:<12.10g} {b.ask_size:<12.8g} id {b.update_id}"
            )

    def event(self, e: FeedEvent) -> None:
        if self.as_json:
            self.write(
                orjson.dumps(
                    {
                        "type": "event",
                        "exchange": e.exchange,
                        "symbol": e.symbol,
                        "kind": e.kind,
                        "cause": e.cause,
                        "detail": e.detail,
                        "ts": e.ts_ms,
                    }
                ).decode()
            )
            return
        if e.kind in _QUIET:
            return
        what = " ".join(x for x in (e.cause, e.detail) if x)
        self.write(f"{_clock(e.ts_ms)} {e.exchange:<7} {e.symbol or '':<4} ** {e.kind} {what}".rstrip())


def summary_lines(stats: dict[str, dict]) -> list[str]:
    lines = []
    for name, s in stats.items():
        resyncs = ",".join(f"{k}={v}" for k, v in sorted(s["book_resyncs"].items())) or "0"
        lines.append(
            f"{name}: {s['state']}, {s['messages']} messages, {s['trades']} trades "
            f"({s['trades_duplicate']} duplicates dropped, {s['trades_replayed']} replayed, "
            f"{s['trade_ids_missing']} missing), books in sync {s['books_valid']}/{s['books_total']}, "
            f"book resyncs {resyncs}, reconnects {s['reconnects']}, switch-overs {s['switchovers']}, "
            f"malformed {s['malformed']}"
        )
    return lines


def run(
    settings: Settings,
    *,
    duration: float | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    if duration is not None and not duration > 0:
        raise ConfigError(f"--duration must be a number of seconds > 0, got {duration!r}")
    out = out or sys.stdout
    err = err or sys.stderr
    printer = Printer(out, as_json)
    stats = asyncio.run(_watch(settings, printer, duration))
    if printer.broken:
        _quiet_stdout(out)
        return EXIT_OK  # the reader stopped reading: nothing more to say
    if as_json:
        for name, s in stats.items():
            printer.write(orjson.dumps({"type": "stats", "exchange": name, **s}).decode())
    else:
        for line in summary_lines(stats):
            print(line, file=err)
    try:
        out.flush()
    except BrokenPipeError:
        _quiet_stdout(out)
    silent = [name for name, s in stats.items() if s["messages"] == 0]
    if silent:
        print(f"p9 feeds: no data from {', '.join(silent)}", file=err)
        return EXIT_FAILURE
    return EXIT_OK


def _quiet_stdout(out: TextIO) -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush of the
    unwritten buffer does not print an error at exit."""
    if out is sys.stdout:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


async def _watch(settings: Settings, printer: Printer, duration: float | None) -> dict:
    stop = asyncio.Event()
    printer.gone = stop
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with LiveFeeds(settings, printer) as feeds:
        waiter = asyncio.ensure_future(stop.wait())
        runner = asyncio.ensure_future(feeds.wait(duration))
        try:
            done, _ = await asyncio.wait({waiter, runner}, return_when=asyncio.FIRST_COMPLETED)
            if runner in done:
                runner.result()
        finally:
            waiter.cancel()
            runner.cancel()
        return feeds.stats()
