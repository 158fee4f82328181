"""Fetch the windows of one series through the shared REST client (:mod:`p9cli.rest`).

:func:`fetch_series` fetches every window of a :class:`~p9cli.history.planner.SeriesPlan`
concurrently, keeps closed bars only, asks again once for bars that did not come back, and
returns the bars plus what is still missing. Sending, rate limits, retries and back-off are
:class:`~p9cli.rest.client.ExchangeClient`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from p9cli.candles import Candles, concat
from p9cli.exchanges.base import KlinesPage
from p9cli.history.planner import SeriesPlan, missing_open_times, windows_for
from p9cli.rest.client import ExchangeClient, RequestCounters

# -- series -----------------------------------------------------------------------------------


@dataclass
class SeriesResult:
    bars: Candles = field(default_factory=Candles.empty)
    """The closed bars fetched."""
    missing: list[int] = field(default_factory=list)
    """Planned open times that did not come back (after one more request for them)."""
    counters: RequestCounters = field(default_factory=RequestCounters)


def closed_candles(page: KlinesPage, tf_ms: int, server_now_ms: int, first: int, last: int) -> Candles:
    """The closed bars of an exchange's answer with ``first <= open_time <= last``."""
    c = page.closed(tf_ms, server_now_ms)
    t = c.open_time
    return c.take((t >= first) & (t <= last) & (t % tf_ms == 0))


def continuation(first: int, last: int, tf_ms: int, got: Collection[int]) -> tuple[int, int] | None:
    """The rest of window ``[first, last]`` to ask for when the answer (open times ``got``) was
    cut short at one end (a page smaller than documented, e.g. OKX history-candles serving 100
    rows), or ``None`` when the answer is complete, empty, or has gaps only inside (holes, not
    paging)."""
    if not len(got):
        return None
    expected = (last - first) // tf_ms + 1
    if len(got) >= expected:
        return None
    lo, hi = int(min(got)), int(max(got))
    if len(got) != (hi - lo) // tf_ms + 1:
        return None  # bars missing inside the answer: not a short page
    if lo > first:
        return first, lo - tf_ms  # newest-first exchanges cut the oldest bars
    if hi < last:
        return hi + tf_ms, last  # oldest-first exchanges cut the newest bars
    return None


async def fetch_windows(
    client: ExchangeClient, plan: SeriesPlan, windows: list[tuple[int, int]], counters: RequestCounters
) -> Candles:
    """Fetch each window (concurrently), following up on answers cut short at one end."""
    key = plan.key
    tf_ms = plan.tf_ms

    async def page(first: int, last: int) -> Candles:
        req = client.adapter.klines_request(key.symbol, key.timeframe, first, last, client.server_now_ms())
        body = await client.send(req, counters)
        parsed = client.adapter.parse_klines(body, key.timeframe)
        return closed_candles(parsed, tf_ms, client.server_now_ms(), first, last)

    async def one(first: int, last: int) -> Candles:
        out = await page(first, last)
        rest = continuation(first, last, tf_ms, out.open_time)
        while rest is not None:
            more = await page(*rest)
            if not np.isin(more.open_time, out.open_time, invert=True).any():
                break  # the exchange has nothing more there
            out = out.merge(more)
            rest = continuation(rest[0], rest[1], tf_ms, more.open_time)
        return out

    return concat(await asyncio.gather(*(one(a, b) for a, b in windows)))


async def fetch_series(
    client: ExchangeClient,
    plan: SeriesPlan,
    stored_open_times: Collection[int] = frozenset(),
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
    got = result.bars.open_time.tolist()
    missing = [
        t for t in missing_open_times(start, plan.last_open_ms, plan.tf_ms, got, skip) if t in in_windows
    ]
    if missing:
        retry_windows = windows_for(missing, plan.tf_ms, client.adapter.MAX_KLINES_PER_REQUEST, split_at)
        result.bars = result.bars.merge(await fetch_windows(client, plan, retry_windows, result.counters))
        have = set(result.bars.open_time.tolist())
        missing = [t for t in missing if t not in have]
    result.missing = missing
    return result
