"""Fetch planning: which bar open times a series needs and how to split them into requests.

Pure functions over plain data. All timeframes are UTC aligned (``open_time % tf_ms == 0``),
so the wanted bars of a series are exactly the last closed bar and the ``candles - 1`` before
it. A plan lists inclusive windows ``(first_open_ms, last_open_ms)`` that each hold at most
``max_bars`` bars, covering every wanted open time that is not already stored and not known
to be missing at the exchange.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: Bars kept away from an exchange's recent-bars boundary (``RECENT_CANDLES_BARS`` of an
#: exchange module, e.g. OKX ``/market/candles`` serving only the newest 1,440 bars) so that a
#: window planned just before a bar closes does not slip out of the recent range by the time
#: it is sent.
BOUNDARY_MARGIN_BARS = 3


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    exchange: str
    symbol: str
    timeframe: str

    def __str__(self) -> str:
        return f"{self.exchange}/{self.symbol}/{self.timeframe}"


@dataclass(slots=True)
class SeriesPlan:
    """What to fetch for one series."""

    key: SeriesKey
    tf_ms: int
    first_open_ms: int
    """Oldest wanted open time (the series keeps ``[first_open_ms, last_open_ms]``)."""
    last_open_ms: int
    """Open time of the last closed bar at planning time."""
    windows: list[tuple[int, int]] = field(default_factory=list)
    known_holes: frozenset[int] = frozenset()
    """Open times inside the range that the exchange was found to lack on an earlier run."""

    @property
    def wanted_count(self) -> int:
        return (self.last_open_ms - self.first_open_ms) // self.tf_ms + 1


def last_closed_open(server_now_ms: int, tf_ms: int) -> int:
    """Open time of the newest bar that is closed at ``server_now_ms`` (open + tf <= now)."""
    return (server_now_ms // tf_ms - 1) * tf_ms


def wanted_range(server_now_ms: int, tf_ms: int, candles: int) -> tuple[int, int]:
    """``(first, last)`` open times of the ``candles`` newest closed bars."""
    last = last_closed_open(server_now_ms, tf_ms)
    return last - (candles - 1) * tf_ms, last


def missing_open_times(
    first_ms: int, last_ms: int, tf_ms: int, have: Iterable[int], skip: Iterable[int] = ()
) -> list[int]:
    """Open times in ``[first_ms, last_ms]`` (step ``tf_ms``) not in ``have`` nor in ``skip``."""
    present = set(have)
    present.update(skip)
    return [t for t in range(first_ms, last_ms + 1, tf_ms) if t not in present]


def windows_for(
    missing: list[int], tf_ms: int, max_bars: int, split_at: int | None = None
) -> list[tuple[int, int]]:
    """Cover the sorted open times ``missing`` with the fewest windows of at most ``max_bars``
    bars each (a window may span bars already stored; they are simply fetched again).

    ``split_at``: an open time where windows must break (a window never holds bars on both
    sides of it; bars ``< split_at`` and bars ``>= split_at`` go to different windows): an
    exchange's recent/history endpoint boundary (:func:`recent_boundary`).
    """
    if max_bars < 1:
        raise ValueError("max_bars must be >= 1")
    out: list[tuple[int, int]] = []
    start = prev = None
    for t in missing:
        if start is None:
            start = prev = t
            continue
        too_long = (t - start) // tf_ms + 1 > max_bars
        crosses = split_at is not None and start < split_at <= t
        if too_long or crosses:
            out.append((start, prev))
            start = t
        prev = t
    if start is not None:
        out.append((start, prev))
    return out


def recent_boundary(server_now_ms: int, tf_ms: int, recent_bars: int | None) -> int | None:
    """Where windows must split for an exchange whose recent endpoint serves only the newest
    ``recent_bars`` bars (the exchange module's ``RECENT_CANDLES_BARS``; None: no such split):
    the oldest open time that endpoint still serves comfortably (with a margin)."""
    if recent_bars is None:
        return None
    newest_open = (server_now_ms // tf_ms) * tf_ms  # the forming bar counts as the newest
    return newest_open - (recent_bars - 1 - BOUNDARY_MARGIN_BARS) * tf_ms


def plan_series(
    key: SeriesKey,
    tf_ms: int,
    server_now_ms: int,
    candles: int,
    max_bars: int,
    stored_open_times: Iterable[int] = (),
    known_holes: Iterable[int] = (),
    history_starts_ms: int | None = None,
    split_at: int | None = None,
) -> SeriesPlan:
    """Plan one series. ``stored_open_times`` are the bars already on disk (empty for a full
    fetch); ``known_holes`` open times the exchange lacked before (not asked again);
    ``history_starts_ms`` the exchange's first bar when an earlier run found none before it."""
    first, last = wanted_range(server_now_ms, tf_ms, candles)
    holes = frozenset(t for t in known_holes if first <= t <= last)
    ask_from = first if history_starts_ms is None else max(first, history_starts_ms)
    missing = missing_open_times(ask_from, last, tf_ms, stored_open_times, holes) if ask_from <= last else []
    windows = windows_for(missing, tf_ms, max_bars, split_at)
    return SeriesPlan(key, tf_ms, first, last, windows, holes)


def split_gaps(
    missing: list[int], got_first: int | None, got_last: int | None
) -> tuple[list[int], list[int], list[int]]:
    """Classify still-missing open times against the bars the series does hold:
    ``(leading, inner, trailing)`` = before the first held bar, between held bars, after the
    last held bar. With no bar held, everything is leading."""
    if got_first is None or got_last is None:
        return list(missing), [], []
    lead = [t for t in missing if t < got_first]
    inner = [t for t in missing if got_first < t < got_last]
    trail = [t for t in missing if t > got_last]
    return lead, inner, trail


def rate_floor_seconds(request_costs: dict[str, int], buckets: Iterable) -> float:
    """Least wall time needed to send requests of total cost ``request_costs[bucket]`` through
    buckets of ``capacity`` per ``window_s`` (an empty bucket at start): the last window that
    must open is ``ceil(cost / capacity) - 1`` windows after the first. Buckets of one exchange
    run in parallel, so the floor is the slowest bucket's."""
    floor = 0.0
    by_name = {b.name: b for b in buckets}
    for name, cost in request_costs.items():
        b = by_name.get(name)
        if b is None or cost <= 0:
            continue
        windows = -(-cost // b.capacity)
        floor = max(floor, (windows - 1) * b.window_s)
    return floor
