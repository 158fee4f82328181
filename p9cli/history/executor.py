"""Fetch the windows of one series through the shared REST client (:mod:`p9cli.rest`).

:func:`fetch_series` fetches every window of a :class:`~p9cli.history.planner.SeriesPlan`
concurrently, keeps closed bars only, asks again once for bars that did not come back, and
returns the bars plus what is still missing. Sending, rate limits, retries and back-off are
:class:`~p9cli.rest.client.ExchangeClient`'s.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from p9cli.exchanges.base import Candles
from p9cli.history.planner import SeriesPlan, missing_open_times, windows_for
from p9cli.rest.client import ExchangeClient, RequestCounters

# -- series -----------------------------------------------------------------------------------


@dataclass
class SeriesResult:
    bars: dict[int, tuple] = field(default_factory=dict)
    """open_time -> (open, high, low, close, volume, quote_volume, trades), closed bars only."""
    missing: list[int] = field(default_factory=list)
    """Planned open times that did not come back (after one more request for them)."""
    counters: RequestCounters = field(default_factory=RequestCounters)


def candles_rows(c: Candles, tf_ms: int, server_now_ms: int, first: int, last: int) -> dict[int, tuple]:
    """Closed bars of ``c`` with ``first <= open_time <= last`` as rows."""
    closed = c.closed_mask(tf_ms, server_now_ms)
    out = {}
    for i, t in enumerate(c.open_time):
        if closed[i] and first <= t <= last and t % tf_ms == 0:
            out[t] = (c.open[i], c.high[i], c.low[i], c.close[i], c.volume[i], c.quote_volume[i], c.trades[i])
    return out


def continuation(first: int, last: int, tf_ms: int, got: dict[int, tuple]) -> tuple[int, int] | None:
    """The rest of window ``[first, last]`` to ask for when the answer ``got`` was cut short at
    one end (a page smaller than documented, e.g. OKX history-candles serving 100 rows), or
    ``None`` when the answer is complete, empty, or has gaps only inside (holes, not paging)."""
    if not got:
        return None
    expected = (last - first) // tf_ms + 1
    if len(got) >= expected:
        return None
    lo, hi = min(got), max(got)
    if len(got) != (hi - lo) // tf_ms + 1:
        return None  # bars missing inside the answer: not a short page
    if lo > first:
        return first, lo - tf_ms  # newest-first exchanges cut the oldest bars
    if hi < last:
        return hi + tf_ms, last  # oldest-first exchanges cut the newest bars
    return None


async def fetch_windows(
    client: ExchangeClient, plan: SeriesPlan, windows: list[tuple[int, int]], counters: RequestCounters
) -> dict[int, tuple]:
    """Fetch each window (concurrently), following up on answers cut short at one end."""
    key = plan.key
    tf_ms = plan.tf_ms

    async def page(first: int, last: int) -> dict[int, tuple]:
        req = client.adapter.klines_request(key.symbol, key.timeframe, first, last, client.server_now_ms())
        body = await client.send(req, counters)
        candles = client.adapter.parse_klines(body, key.timeframe)
        return candles_rows(candles, tf_ms, client.server_now_ms(), first, last)

    async def one(first: int, last: int) -> dict[int, tuple]:
        out = await page(first, last)
        rest = continuation(first, last, tf_ms, out)
        while rest is not None:
            more = await page(*rest)
            if not more or not (set(more) - set(out)):
                break  # the exchange has nothing more there
            out.update(more)
            nxt = continuation(rest[0], rest[1], tf_ms, more)
            rest = nxt
        return out

    results = await asyncio.gather(*(one(a, b) for a, b in windows))
    bars: dict[int, tuple] = {}
    for r in results:
        bars.update(r)
    return bars


async def fetch_series(
    client: ExchangeClient,
    plan: SeriesPlan,
    stored_open_times: set[int] | frozenset[int] = frozenset(),
    ask_from_ms: int | None = None,
    split_at: int | None = None,
    result: SeriesResult | None = None,
) -> SeriesResult:
    """Fetch the plan's windows, then ask once more for planned bars that did not come back.
    Pass ``result`` to keep its request counters even when this raises."""
    result = SeriesResult() if result is None else result
    if not plan.windows:
        return result
    result.bars = await fetch_windows(client, plan, plan.windows, result.counters)
    start = plan.first_open_ms if ask_from_ms is None else max(plan.first_open_ms, ask_from_ms)
    skip = set(stored_open_times) | set(plan.known_holes)
    in_windows = set()
    for a, b in plan.windows:
        in_windows.update(range(a, b + 1, plan.tf_ms))
    missing = [
        t
        for t in missing_open_times(start, plan.last_open_ms, plan.tf_ms, result.bars, skip)
        if t in in_windows
    ]
    if missing:
        retry_windows = windows_for(missing, plan.tf_ms, client.adapter.MAX_KLINES_PER_REQUEST, split_at)
        result.bars.update(await fetch_windows(client, plan, retry_windows, result.counters))
        missing = [t for t in missing if t not in result.bars]
    result.missing = missing
    return result
