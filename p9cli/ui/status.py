"""``p9 status``: health evaluation and the Rich view, pure functions of plain payloads.

A *snapshot* is what ``p9cli.services.status.read_snapshot`` reads from Redis in one go (or what
a test or the README script builds with :func:`snapshot_from_payloads`)::

    {"taken_ms": int,                                   # local wall clock of the read
     "redis": {"url": "redis://***@host:6379/0",        # always redacted
               "ok": bool, "error": str | None, "server": "redis" | "valkey" | None,
               "version": str | None, "ping_ms": float | None,
               "used_memory": int | None, "used_memory_human": str | None},
     "status": {...} | None,                            # precision9_fusion_status (merged)
     "workers": [{...}, ...] | None,                    # every live precision9_fusion_status:{id};
                                                        # None: not readable, use status["workers"]
     "pairs": {"binance:btcusdt": {"fusion_data": {...} | None,
                                   "precision9_context": {...} | None,
                                   "structure": bool}}} # the latest-value keys found

:func:`evaluate` turns a snapshot into the report (the ``--json`` output, documented in
docs/status.md) with the exit code; :func:`status_view` draws the same report.
"""

from __future__ import annotations

import time
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from p9cli.fusion.state import STALE_AFTER_MS
from p9cli.ui.numbers import fmt_age, fmt_price

REPORT_SCHEMA = "p9.status/1"

#: exit codes (also in docs/status.md and ``p9 status --help``)
EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
EXIT_NOTHING = 3

#: a feed whose last trade / last in-sync book update is older than this is stale (the stream's own rule)
TRADE_STALE_MS = STALE_AFTER_MS
BOOK_STALE_MS = STALE_AFTER_MS
#: precision9_context is published every second
CONTEXT_STALE_MS = 5_000
#: a worker refreshes its status key every second (TTL 5 s)
WORKER_SILENT_MS = 3_000

OK, STALE, DOWN = "ok", "stale", "down"
_RANK = {OK: 0, STALE: 1, DOWN: 2}
_COLOR = {OK: "green", STALE: "yellow", DOWN: "red"}
_DOWN_STATES = {"down", "stopped"}
_FINE_STATES = {"live", "stale"}  # "stale" is judged by the ages below


# --------------------------------------------------------------------------- snapshot helpers
def pair_name(exchange: str, symbol: str) -> str:
    return f"{exchange}:{symbol}"


def snapshot_from_payloads(
    status: dict | None,
    pairs: dict[str, dict[str, Any]] | None = None,
    *,
    workers: list[dict] | None = None,
    redis: dict | None = None,
    taken_ms: int | None = None,
) -> dict:
    """A snapshot from payloads already at hand (recorded messages, the README script).

    ``pairs``: ``{"binance:btcusdt": {"fusion_data": payload, "precision9_context": payload,
    "structure": payload-or-bool}}``; workers default to the merged status's ``workers``.
    """
    out_pairs = {}
    for name, kinds in (pairs or {}).items():
        out_pairs[name] = {
            "fusion_data": kinds.get("fusion_data"),
            "precision9_context": kinds.get("precision9_context"),
            "structure": bool(kinds.get("structure")),
        }
    return {
        "taken_ms": int(taken_ms if taken_ms is not None else time.time_ns() // 1_000_000),
        "redis": dict(redis or {"url": None, "ok": True, "error": None}),
        "status": status,
        "workers": workers,
        "pairs": out_pairs,
    }


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _age(base_ms: int | None, at_ms: Any, now_ms: int) -> int | None:
    """An age reported at time ``at_ms`` (``base_ms``), carried forward to ``now_ms``."""
    base, at = _int(base_ms), _int(at_ms)
    if base is None or at is None:
        return None
    return max(0, base) + max(0, now_ms - at)  # a negative age = clocks apart: 0


def _resyncs(v: Any) -> int | None:
    if isinstance(v, dict):
        return sum(int(x) for x in v.values() if isinstance(x, int | float))
    return _int(v)


# --------------------------------------------------------------------------- health (pure)
def evaluate(snapshot: dict, now_ms: int, previous: dict | None = None) -> dict:
    """The health report of a snapshot at ``now_ms``: per worker and per pair the figures, the
    problems in words and the verdict, plus the exit code (0 healthy, 1 some feed stale or down,
    3 nothing publishing / Redis unreachable). ``previous`` (an earlier snapshot) lets messages/s be
    derived from the feed counters when the workers do not report a rate."""
    redis_info = dict(snapshot.get("redis") or {})
    status = snapshot.get("status") or None
    workers_raw = snapshot.get("workers")
    if workers_raw is None:
        workers_raw = list((status or {}).get("workers") or [])
    writer = (status or {}).get("writer")
    prev_feeds = _feed_index(previous) if previous else {}

    workers, by_pair = [], {}
    for w in sorted(workers_raw, key=lambda w: str(w.get("worker_id"))):
        wid = str(w.get("worker_id"))
        ts = _int(w.get("ts"))
        age = None if ts is None else max(0, now_ms - ts)
        started = _int(w.get("started_ms"))
        exchanges, symbols = list(w.get("exchanges") or []), list(w.get("symbols") or [])
        pairs = [pair_name(e, s) for e in exchanges for s in symbols]
        problems = []
        if age is not None and age > WORKER_SILENT_MS:
            problems.append(f"silent {fmt_age(age)}")
        pub = w.get("publisher") or {}
        workers.append({
            "worker_id": wid,
            "host": w.get("host"),
            "pid": w.get("pid"),
            "uptime_s": None if started is None else max(0, (now_ms - started) // 1000),
            "exchanges": exchanges,
            "symbols": symbols,
            "pairs": pairs,
            "status_age_ms": age,
            "writer": wid == writer,
            "publisher": {k: pub.get(k) for k in ("connected", "errors", "outages")},
            "health": STALE if problems else OK,
            "problems": problems,
        })
        feeds = {pair_name(f.get("exchange"), f.get("symbol")): f for f in w.get("feeds") or []}
        for p in pairs:
            by_pair[p] = (w, feeds.get(p))

    keys = snapshot.get("pairs") or {}
    names = sorted(set(by_pair) | set(keys))
    pair_reports = [_pair(name, by_pair.get(name), keys.get(name) or {}, now_ms, prev_feeds) for name in names]

    if not redis_info.get("ok", True):
        verdict, code = "redis unreachable", EXIT_NOTHING
        summary = redis_info.get("error") or "redis unreachable"
    elif not workers:
        verdict, code = "nothing publishing", EXIT_NOTHING
        summary = "nothing publishing: no live p9 stream worker on this Redis"
        if names:
            summary += f" ({len(names)} pair{'s' if len(names) != 1 else ''} left from stopped workers)"
    else:
        bad = [p for p in pair_reports if p["health"] != OK]
        bad_workers = [w for w in workers if w["health"] != OK]
        if bad or bad_workers:
            verdict, code = "degraded", EXIT_UNHEALTHY
            parts = []
            if bad:
                parts.append(f"{len(bad)} of {len(pair_reports)} feeds stale or down")
            if bad_workers:
                parts.append(f"{len(bad_workers)} worker{'s' if len(bad_workers) != 1 else ''} silent")
            summary = "; ".join(parts)
        else:
            verdict, code = "healthy", EXIT_HEALTHY
            summary = f"{len(pair_reports)} feeds live, {len(workers)} worker{'s' if len(workers) != 1 else ''}"
    return {
        "schema": REPORT_SCHEMA,
        "ts": int(now_ms),
        "health": verdict,
        "exit_code": code,
        "summary": summary,
        "redis": {k: redis_info.get(k) for k in
                  ("url", "ok", "error", "server", "version", "ping_ms", "used_memory", "used_memory_human")},
        "writer": writer,
        "workers": workers,
        "pairs": pair_reports,
    }


def _feed_index(snapshot: dict) -> dict[str, tuple[int | None, dict]]:
    workers = snapshot.get("workers")
    if workers is None:
        workers = list((snapshot.get("status") or {}).get("workers") or [])
    out = {}
    for w in workers:
        for f in w.get("feeds") or []:
            out[pair_name(f.get("exchange"), f.get("symbol"))] = (_int(w.get("ts")), f)
    return out


def _pair(name: str, owner: tuple[dict, dict | None] | None, keys: dict, now_ms: int, prev_feeds: dict) -> dict:
    exchange, _, symbol = name.partition(":")
    fusion = keys.get("fusion_data") or None
    ctx = keys.get("precision9_context") or None
    worker, feed = owner if owner else (None, None)
    feed = feed or {}
    wts = _int((worker or {}).get("ts"))
    fresh = (fusion or {}).get("freshness") or {}
    fts = _int((fusion or {}).get("ts"))

    # each figure from the newer of the worker's status entry and the fusion_data twin
    twin_first = fts is not None and (wts is None or fts > wts)

    def pick(field: str) -> int | None:
        a, b = _age(feed.get(field), wts, now_ms), _age(fresh.get(field), fts, now_ms)
        if twin_first:
            a, b = b, a
        return a if a is not None else b

    trade_age, book_age, structure_age = pick("trade_age_ms"), pick("book_age_ms"), pick("structure_age_ms")
    context_age = _age(feed.get("context_age_ms"), wts, now_ms)
    if context_age is None and ctx is not None and _int(ctx.get("ts")) is not None:
        context_age = max(0, now_ms - int(ctx["ts"]))
    prices = [feed.get("price"), (fusion or {}).get("price")]
    price = next((p for p in (prices[::-1] if twin_first else prices) if p is not None), None)
    book_valid = fresh.get("book_valid") if fusion is not None else None
    if fusion is not None and "book" in fusion:
        book_valid = fusion.get("book") is not None
    elif fusion is None and isinstance(feed.get("stale_sources"), list):
        book_valid = "book" not in feed["stale_sources"]
    has_data = fusion is not None or price is not None or trade_age is not None

    rate = feed.get("messages_per_s")
    if rate is None and name in prev_feeds and feed.get("messages") is not None and wts is not None:
        pts, pf = prev_feeds[name]
        if pts is not None and wts > pts and pf.get("messages") is not None:
            rate = max(0.0, (int(feed["messages"]) - int(pf["messages"])) * 1000 / (wts - pts))

    state = str(feed.get("state") or "") or None
    problems: list[str] = []
    health = OK

    def flag(level: str, words: str) -> None:
        nonlocal health
        problems.append(words)
        if _RANK[level] > _RANK[health]:
            health = level

    if worker is None:
        state = "down"
        last = f" (last data {fmt_age(max(0, now_ms - fts))} ago)" if fts is not None else ""
        flag(DOWN, f"no worker publishes it{last}")
    else:
        if state in _DOWN_STATES:
            flag(DOWN, f"feed {state}")
        elif state and state not in _FINE_STATES:
            flag(STALE, f"feed {state}")
        if not has_data:
            flag(DOWN, "no data")
        else:
            if trade_age is None:
                flag(STALE, "no trades")
            elif trade_age > TRADE_STALE_MS:
                flag(STALE, f"trades stale {fmt_age(trade_age)}")
            if book_valid is False:
                flag(STALE, "book out of sync")
            elif book_age is not None and book_age > BOOK_STALE_MS:
                flag(STALE, f"book stale {fmt_age(book_age)}")
            sources = fresh.get("stale_sources") if fusion is not None else feed.get("stale_sources")
            if "structure" in (sources or []):  # the stream's rule (missing, or a closed candle not in it)
                flag(STALE, "no structure" if structure_age is None else f"structure stale {fmt_age(structure_age)}")
        if state == "stale" and not problems:  # the worker's own verdict, when no age above explains it
            why = [str(x) for x in feed.get("stale_sources") or []]
            flag(STALE, "stale: " + (", ".join(why) if why else "reported by its worker"))
        if context_age is None:
            flag(STALE, "no context")
        elif context_age > CONTEXT_STALE_MS:
            flag(STALE, f"context stale {fmt_age(context_age)}")
    return {
        "pair": name,
        "exchange": exchange,
        "symbol": symbol,
        "worker": None if worker is None else worker.get("worker_id"),
        "state": state,
        "health": health,
        "problems": problems,
        "price": price,
        "trade_age_ms": trade_age,
        "book_age_ms": book_age,
        "book_valid": book_valid,
        "context_age_ms": context_age,
        "structure_age_ms": structure_age,
        "messages_per_s": None if rate is None else round(float(rate), 1),
        "book_resyncs": _resyncs(feed.get("book_resyncs")),
        "reconnects": _int(feed.get("reconnects")),
        "data_keys": sorted(k for k in ("fusion_data", "precision9_context", "structure") if keys.get(k)),
    }


# --------------------------------------------------------------------------- rendering (pure)
_NONE = Text("–", style="dim")


def fmt_uptime(s: int | None) -> str:
    if s is None:
        return "–"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _age_cell(ms: int | None, limit: int) -> Text:
    if ms is None:
        return _NONE
    return Text(fmt_age(ms, compact=True), style="yellow" if ms > limit else "")


def _count_cell(v: Any, bad_if_positive: bool = False) -> Text:
    if v is None:
        return _NONE
    return Text(str(v), style="yellow" if bad_if_positive and v else "")


def _header(report: dict, now_ms: int) -> Text:
    verdict = report["health"]
    color = {"healthy": "green", "degraded": "yellow"}.get(verdict, "red")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now_ms / 1000))
    t = Text()
    t.append("p9 status", style="bold")
    t.append(f"  {when} UTC  ")
    t.append(verdict.upper(), style=f"bold {color}")
    t.append(f" (exit {report['exit_code']})\n", style=color)
    t.append(report["summary"], style=color if verdict != "healthy" else "")
    r = report["redis"]
    t.append("\nredis ", style="bold")
    t.append(str(r.get("url") or "?"))
    if r.get("ok", True) and r.get("ping_ms") is not None:
        server = "Valkey" if r.get("server") == "valkey" else "Redis"
        parts = []
        if r.get("version"):
            parts.append(f"{server} {r['version']}")
        parts.append(f"ping {r['ping_ms']:.1f} ms")
        if r.get("used_memory_human"):
            parts.append(f"mem {r['used_memory_human']}")
        t.append("  " + "  ".join(parts), style="green")
    elif not r.get("ok", True):
        t.append("  down", style="bold red")
    if report.get("writer"):
        t.append(f"\nstatus merged by {report['writer']}", style="dim")
    return t


def _workers_table(report: dict) -> Table:
    table = Table(box=box.SIMPLE_HEAD, padding=0, show_edge=False, expand=False)
    table.add_column("worker", overflow="fold", ratio=3)
    table.add_column("host", overflow="fold", ratio=2)
    table.add_column("up", no_wrap=True)
    table.add_column("pairs", overflow="fold", ratio=4)
    for w in report["workers"]:
        by_ex: dict[str, list[str]] = {}
        for p in w["pairs"]:
            ex, _, sym = p.partition(":")
            by_ex.setdefault(ex, []).append(sym)
        pairs = "; ".join(f"{ex} {' '.join(syms)}" for ex, syms in by_ex.items()) or "–"
        name = Text(w["worker_id"] + (" *" if w["writer"] else ""))
        if w["problems"]:
            name.append(" " + ", ".join(w["problems"]), style="yellow")
        table.add_row(name, f"{w['host']}:{w['pid']}", fmt_uptime(w["uptime_s"]), pairs)
    return table


def _pairs_table(report: dict) -> Table:
    # one space between columns (the box's separator): 10 columns fit 80 with the feed state "degraded"
    table = Table(box=box.SIMPLE_HEAD, padding=0, show_edge=False, expand=False)  # the box draws a space
    table.add_column("pair", no_wrap=True)
    table.add_column("feed", overflow="ellipsis", max_width=8)
    table.add_column("price", justify="right", no_wrap=True)
    table.add_column("trade", justify="right", no_wrap=True)
    table.add_column("book", justify="right", no_wrap=True)
    table.add_column("ctx", justify="right", no_wrap=True)
    table.add_column("msg/s", justify="right", no_wrap=True)
    table.add_column("rsync", justify="right", no_wrap=True)
    table.add_column("recon", justify="right", no_wrap=True)
    table.add_column("health", no_wrap=True)
    for p in report["pairs"]:
        color = _COLOR[p["health"]]
        book = _age_cell(p["book_age_ms"], BOOK_STALE_MS)
        if p["book_valid"] is False:
            book = Text("sync", style="yellow")
        rate = p["messages_per_s"]
        table.add_row(
            Text(p["pair"], style="bold" if p["health"] == OK else color),
            Text(p["state"] or "–", style=color if p["state"] not in ("live", None) else ""),
            Text(fmt_price(p["price"])) if p["price"] is not None else Text("no data", style="red"),
            _age_cell(p["trade_age_ms"], TRADE_STALE_MS),
            book,
            _age_cell(p["context_age_ms"], CONTEXT_STALE_MS),
            _NONE if rate is None else Text(f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}"),
            _count_cell(p["book_resyncs"], True),
            _count_cell(p["reconnects"], True),
            Text(p["health"].upper() if p["health"] != OK else "ok", style=f"bold {color}"),
        )
    return table


def _problems(report: dict) -> Text | None:
    lines = [(p["pair"], p["health"], p["problems"]) for p in report["pairs"] if p["problems"]]
    if not lines:
        return None
    t = Text()
    for i, (pair, health, words) in enumerate(lines):
        if i:
            t.append("\n")
        t.append(f"{pair} ", style="bold")
        t.append(f"{health.upper()}: ", style=f"bold {_COLOR[health]}")
        t.append(", ".join(words), style=_COLOR[health])
    return t


def report_view(report: dict) -> RenderableType:
    """The view of an :func:`evaluate` report."""
    parts: list[RenderableType] = [_header(report, report["ts"])]
    if report["workers"]:
        parts += [Text(""), _workers_table(report)]
    if report["pairs"]:
        parts += [Text(""), _pairs_table(report)]
    probs = _problems(report)
    if probs is not None:
        parts += [Text(""), probs]
    return Group(*parts)


def status_view(snapshot: dict, now_ms: int, previous: dict | None = None) -> RenderableType:
    """``p9 status`` as one Rich renderable: header (verdict, Redis health), workers, one row per
    exchange:symbol, then each problem in words. Fits 80 columns."""
    return report_view(evaluate(snapshot, now_ms, previous))


def render_text(snapshot: dict, now_ms: int, width: int = 80, color: bool = False) -> str:
    """The view as plain text (tests, logs)."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system="truecolor" if color else None, force_terminal=color,
            legacy_windows=False).print(status_view(snapshot, now_ms))
    return buf.getvalue()


__all__ = [
    "EXIT_HEALTHY", "EXIT_NOTHING", "EXIT_UNHEALTHY", "EXIT_USAGE", "evaluate", "render_text", "report_view",
    "snapshot_from_payloads", "status_view",
]
