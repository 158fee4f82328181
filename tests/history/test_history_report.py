"""The report: plain timestamped lines without colour for cron (failures on stderr), a
summary table with the issue's columns, and the Rich mode for terminals."""

from __future__ import annotations

import io
import re

from p9cli.history.planner import SeriesKey
from p9cli.history.report import Reporter, SeriesStats
from p9cli.rest.client import RequestCounters
from p9cli.services.fetch_history import ExchangeRun

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ fetch-history: ")


def runs() -> list[ExchangeRun]:
    ok = SeriesStats(
        SeriesKey("binance", "btc", "1h"),
        ok=True,
        new_candles=7,
        holes=1,
        requests=2,
        retries=1,
        rate_limited=1,
    )
    bad = SeriesStats(
        SeriesKey("okx", "btc", "1h"),
        ok=False,
        error="okx: HTTP 400 code 51001 - Instrument ID doesn't exist",
    )
    return [
        ExchangeRun("binance", [ok], RequestCounters(requests=1), seconds=1.25),
        ExchangeRun("okx", [bad], RequestCounters(requests=1, retries=2), seconds=0.5),
    ]


def replay(rep: Reporter, full: bool) -> None:
    """What a run tells its reporter, for the two exchanges of :func:`runs`."""
    rep.start({"binance": 1, "okx": 1}, full, "data/history")
    r = runs()
    for run in r:
        for s in run.series:
            rep.series_done(s)
        rep.exchange_done(run)
    rep.finish(r)


def test_plain_mode_lines_table_and_stderr_for_failures():
    out, err = io.StringIO(), io.StringIO()
    replay(Reporter(False, out, err), full=False)
    text, errors = out.getvalue(), err.getvalue()
    assert "\x1b[" not in text + errors
    for line in text.splitlines()[:3]:
        assert STAMP.match(line), line
    assert "incremental of 2 series (binance 1, okx 1) into data/history" in text
    assert "binance: 1/1 series ok, 7 new candles, 1 hole, 3 requests, 1 retry, 1 rate-limited, 1.2 s" in text
    header = next(line for line in text.splitlines() if "exchange" in line and "series" in line)
    assert header.split() == [
        "exchange",
        "series",
        "short",
        "new",
        "candles",
        "re-downloaded",
        "holes",
        "requests",
        "retries",
        "429s",
        "seconds",
    ]
    rows = {
        line.split()[0]: line.split()
        for line in text.splitlines()
        if line.strip().startswith(("binance", "okx", "total"))
    }
    assert rows["binance"][1:] == ["1/1", "0", "7", "0", "1", "3", "1", "1", "1.2"]
    assert rows["okx"][1:9] == ["0/1", "0", "0", "0", "0", "1", "2", "0"]
    assert rows["total"][1:9] == ["1/2", "0", "7", "0", "1", "4", "3", "1"]
    err_lines = errors.splitlines()
    assert len(err_lines) == 2 and all(STAMP.match(line) for line in err_lines)
    assert err_lines[0].endswith("okx/btc/1h: FAILED: okx: HTTP 400 code 51001 - Instrument ID doesn't exist")
    assert err_lines[1].endswith("1 of 2 series failed; the 1 others were stored")


def test_progress_mode_renders_without_errors():
    out = io.StringIO()
    replay(Reporter(True, out), full=True)
    text = out.getvalue()
    assert "full re-download of 2 series" in text and "fetch-history summary" in text
    assert "okx/btc/1h: FAILED" in text  # failures are shown on the terminal too


def test_counts_are_worded_in_the_singular_and_plural():
    """Issue 8 item 8: "1 new candles"."""
    out, err = io.StringIO(), io.StringIO()
    rep = Reporter(False, out, err)
    one = SeriesStats(SeriesKey("bybit", "sol", "1d"), ok=True, new_candles=1, holes=1, requests=1)
    run = ExchangeRun("bybit", [one], RequestCounters(requests=1, retries=1), seconds=0.1)
    rep.exchange_done(run)
    assert "bybit: 1/1 series ok, 1 new candle, 1 hole, 2 requests, 1 retry, 0 rate-limited" in out.getvalue()


def test_first_fetch_and_short_series_are_said():
    out = io.StringIO()
    rep = Reporter(False, out, out)
    rep.start({"okx": 2}, False, "d/history", stored=0)
    rep.start({"okx": 2}, False, "d/history", stored=1)
    day = 86_400_000
    short = SeriesStats(
        SeriesKey("okx", "sol", "1d"),
        ok=True,
        new_candles=1100,
        wanted=1500,
        history_starts_ms=19_000 * day,
        short_by=400,
    )
    rep.series_done(short)
    rep.exchange_done(ExchangeRun("okx", [short], RequestCounters(), seconds=0.1))
    text = out.getvalue()
    assert "first fetch of 2 series (okx 2) into d/history" in text
    assert "incremental of 2 series (okx 2; 1 not stored yet) into d/history" in text
    assert (
        "okx/sol/1d: short: 1100 of 1500 candles; the exchange's history starts 2022-01-08 "
        "(nothing older exists)"
    ) in text
    assert "okx: 1/1 series ok (1 short: the exchange's history starts later), 1100 new candles" in text
