"""Live candles of all 11 timeframes for one exchange and symbol, built from trades.

A pure state machine: no I/O, no clock of its own. The feed layer calls, per (exchange, symbol):

* ``on_trade(ts_ms, price, size, count=1)`` for every new trade (the hot path; returns ``None``
  or, when a candle closed, a list of events);
* ``on_clock(exchange_now_ms, seen_ms)`` a few times a second with the exchange's time as
  estimated (local clock + measured offset) and the newest exchange time the connection has
  delivered: candles close on the clock, not only when a later trade arrives;
* ``on_exchange_candle(candle)`` with the exchange's own kline/candle stream bars
  (:class:`p9cli.exchanges.venue.ExchangeCandle`) and ``on_rest_candles(timeframe, candles)``
  with its REST klines: cross-check of closed candles, completion of incomplete ones;
* ``mark_incomplete(from_ms, to_ms)`` when the feed missed trades it cannot replay (a trade gap,
  a blind reconnect window); ``suspect_from(ms)`` / ``resolve_suspect(to_ms | None)`` around a
  lost frame that may have held trades, until the next trade shows whether any are missing.

It returns events (lists, in order):

* :class:`LiveCandle` with ``closed=True``: a candle is final. Exactly one per interval and
  timeframe, in ``open_time`` order per timeframe, the first one being the candle right after
  the last stored one (``seed``). ``complete`` is False only for a candle that lacks part of
  its interval and could not be completed in time (see below): flagged, never silently wrong.
* :class:`CandleGap`: the stored history does not reach the first live candle (the history
  should be refreshed over REST first), or an interval nobody observed could not be completed.
* :class:`CompletionWanted`: an incomplete candle closed; fetch the exchange's closed candle
  for it (REST klines) and pass it to ``on_rest_candles``.
* :class:`CandleMismatch`: the exchange's closed candle disagrees with ours (also counted in
  :attr:`CandleBuilder.stats` and logged).

Rules
-----
* **Interval**: a trade lands in the candle whose interval contains its exchange timestamp
  (``open <= ts < open + length``; a trade exactly on a boundary opens the next candle).
  Intervals are aligned as the stored series are: ``open_time % length`` of the seed (UTC
  boundaries, offset 0, when nothing is stored; OKX 6h/12h/1d are stored UTC-aligned,
  ``6Hutc``/``12Hutc``/``1Dutc``).
* **Continuation**: ``seed`` maps each timeframe to the ``open_time`` of its last stored candle;
  the first live candle is the next one. Minutes before it never reach that timeframe (no
  overlap); when the first interval the feed observes starts later, one :class:`CandleGap`
  names the missing ones (no silent gap).
* **Seeding from stored minutes**: ``continuing`` keeps the stored 1m candles; when they reach
  the minute right before the live start (contiguous: the stored 1m candle of ``start - 1m``
  exists and, where empty minutes are stored, every minute of the bar is there), every higher
  timeframe's first (forming) bar is seeded with the stored minutes of its interval before the
  live start: open/high/low/close/volumes/trade count merged by the same rules as live minutes
  (only minutes that had trades, volumes as integer units). So the forming 5m..1d candle is the
  true one from the first second, apart from the live start minute's trades before the feed
  listened (that minute is never in the stored series), which is why the bar stays incomplete
  and is still completed from the exchange's own candle when it closes.
* **First partial candle**: the feed starts mid-interval (``start(listen_from_ms)``; by
  default the first trade's time), so every timeframe's first candle lacks the trades before
  that instant. It is built from the trades seen but marked incomplete; when it closes, the
  builder emits :class:`CompletionWanted` and holds it (later candles of that timeframe queue
  behind it) until the exchange's own closed candle for it arrives - over REST
  (:meth:`CandleBuilder.on_rest_candles`) or as a stream bar that carries the quote volume
  too (a bar without it cannot replace ours and is only cross-checked): then the exchange's
  values are handed on (``source="exchange"``, ``complete=True``). If none arrives within
  ``completion_wait_ms`` after its close, it is handed on with ``complete=False``. The same
  applies to candles overlapping a window passed to :meth:`CandleBuilder.mark_incomplete`.
* **Closing**: a candle closes when a trade of a later interval arrives, or on the clock:
  when the exchange's estimated time AND the newest exchange time the feed delivered
  (``seen_ms``, or the newest trade) are past its end by ``close_delay_ms`` - a lagging feed
  (backlog) cannot close a candle whose last trades are still queued - or, when the feed
  showed nothing for ``max_feed_lag_ms``, by the estimated time alone; a candle closed that
  way has no evidence that it saw every trade and is incomplete (a dead connection must not
  produce "complete" empty candles). A trade older than the current minute is counted in
  ``stats["late_trades"]`` and dropped.
* **Empty intervals** follow the exchange's REST candles (``empty``, from the venue):
  ``"previous_close"`` - a bar with no trades has open = high = low = close = the previous
  close, volume 0, 0 trades (Binance: "Kline always generate even if there is no trade",
  binance/binance-public-data#153; OKX docs: "when there is no transaction, the opening high
  and closing low default take the closing price of the previous cycle"; Bybit: not
  documented, assumed the same) - or ``"omit"`` (no bar at all).
* **Exactness**: high/low/open/close are the trades' own floats; volume and quote volume are
  summed as integers in units of ``10**-size_decimals`` and ``10**-(price_decimals +
  size_decimals)`` and divided once, so they equal the exchange's decimal strings parsed to
  float. Higher timeframes are merged from closed minutes (only minutes that had trades count,
  so open/high/low are those of the trades, never a filled price).
* **Cross-check**: a closed exchange candle is compared with ours when both are closed: open,
  high, low and close exactly, volume rounded to ``size_decimals``, and the trade count where
  both have one.

Cost: ``on_trade`` updates only the current minute (~0.4 µs per trade, see
``scripts/bench_live_candles.py``); the 11 timeframes are merged once per minute.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import msgspec
import numpy as np

from p9cli.candles import Candles
from p9cli.universe import MINUTE_MS, TIMEFRAME_MS, TIMEFRAMES

log = logging.getLogger(__name__)

#: Empty-interval rules (``CandleBuilder(empty=...)``, from the venue).
PREVIOUS_CLOSE = "previous_close"
OMIT = "omit"
EMPTY_RULES = (PREVIOUS_CLOSE, OMIT)

#: ``LiveCandle.source``
FROM_TRADES = "trades"
FROM_EXCHANGE = "exchange"

_NO_TS = -(2**62)
#: a trade this far ahead of the current minute has a broken timestamp (the clock closes
#: minutes continuously, so a real trade is never more than seconds ahead)
_MAX_AHEAD_MS = 2 * 24 * 3_600_000


class LiveCandle(msgspec.Struct, gc=False):
    """One candle of the live builder, forming (``closed=False``) or final (``closed=True``).

    ``candle`` is the project's one candle representation, :class:`p9cli.candles.Candles`, with
    exactly one row (append it to the in-memory history as it is). The properties read that
    row as Python numbers: ``open_time`` (epoch ms, the key of the stored history), ``open``
    ``high`` ``low`` ``close`` ``volume`` (base) ``quote_volume``, ``trades`` (``None`` where
    the exchange's candles carry no count, as stored). ``complete``: the builder saw every trade
    of the interval, or the values are the exchange's own closed candle (``source="exchange"``).
    """

    exchange: str
    symbol: str
    timeframe: str
    candle: Candles
    closed: bool
    complete: bool = True
    source: str = FROM_TRADES

    @property
    def open_time(self) -> int:
        return int(self.candle.open_time[0])

    @property
    def open(self) -> float:
        return float(self.candle.open[0])

    @property
    def high(self) -> float:
        return float(self.candle.high[0])

    @property
    def low(self) -> float:
        return float(self.candle.low[0])

    @property
    def close(self) -> float:
        return float(self.candle.close[0])

    @property
    def volume(self) -> float:
        return float(self.candle.volume[0])

    @property
    def quote_volume(self) -> float:
        return float(self.candle.quote_volume[0])

    @property
    def trades(self) -> int | None:
        return self.candle.trade_counts()[0]


class CandleGap(msgspec.Struct, gc=False):
    """Candles ``first_open..last_open`` (inclusive) of ``timeframe`` will not come from the
    builder: the stored history must be refreshed over REST to close the gap."""

    exchange: str
    symbol: str
    timeframe: str
    first_open: int
    last_open: int


class CompletionWanted(msgspec.Struct, gc=False):
    """The candle ``open_time`` of ``timeframe`` closed incomplete: pass the exchange's closed
    candle for it to :meth:`CandleBuilder.on_exchange_candle` (REST klines or the kline stream)."""

    exchange: str
    symbol: str
    timeframe: str
    open_time: int


class CandleMismatch(msgspec.Struct, gc=False):
    """Our closed candle and the exchange's closed candle disagree (``fields``: which ones)."""

    exchange: str
    symbol: str
    timeframe: str
    open_time: int
    fields: tuple[str, ...]
    ours: tuple[float, float, float, float, float]
    theirs: tuple[float, float, float, float, float]


class _RestBar(NamedTuple):
    timeframe: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trades: int | None
    closed: bool = True


def _is_full(bar) -> bool:
    """An exchange bar that can replace ours: it carries the quote volume too."""
    q = getattr(bar, "quote_volume", None)
    return q is not None and not math.isnan(q)


def _floor(ts: int, length: int, offset: int) -> int:
    return ts - (ts - offset) % length


class CandleBuilder:
    """Live candles of ``timeframes`` (default all 11) for one exchange and symbol.

    ``seed``: ``{timeframe: open_time of the last stored candle or None}``; ``last_close``: the
    close of the newest stored candle (the price an empty first interval is filled with).
    ``empty``: :data:`PREVIOUS_CLOSE` or :data:`OMIT`. ``counts_trades``: hand on trade counts
    (False: ``trades=None``, as the exchange's stored candles). ``price_decimals`` /
    ``size_decimals``: the most decimals a trade price / size has on this exchange (8 covers
    all three for the USDT pairs). ``close_delay_ms``: how long after its end the clock closes a
    candle; ``max_feed_lag_ms``: how far the feed may lag the estimated exchange clock before
    the clock alone closes candles (see :meth:`on_clock`); ``completion_wait_ms``: how long
    after its close an incomplete candle waits for the exchange's own candle.
    """

    __slots__ = (
        "exchange",
        "symbol",
        "timeframes",
        "empty",
        "counts_trades",
        "size_decimals",
        "close_delay_ms",
        "max_feed_lag_ms",
        "_seen_trade",
        "completion_wait_ms",
        "stats",
        "mismatches",
        "_ps",
        "_vs",
        "_qs",
        "_tfms",
        "_off",
        "_next",
        "_acc",
        "_queue",
        "_recent",
        "_xpending",
        "_blind",
        "suspect",
        "_started",
        "_last",
        "_mo",
        "_me",
        "_fe",
        "_o",
        "_h",
        "_l",
        "_c",
        "_ots",
        "_cts",
        "_v",
        "_q",
        "_n",
        "_longest",
        "_seed_minutes",
    )

    def __init__(
        self,
        exchange: str,
        symbol: str,
        *,
        seed: Mapping[str, int | None] | None = None,
        last_close: float | None = None,
        empty: str = PREVIOUS_CLOSE,
        counts_trades: bool = True,
        price_decimals: int = 8,
        size_decimals: int = 8,
        close_delay_ms: int = 1000,
        max_feed_lag_ms: int = 5000,
        completion_wait_ms: int = 180_000,
        timeframes: Iterable[str] = TIMEFRAMES,
        seed_minutes: Candles | None = None,
    ):
        if empty not in EMPTY_RULES:
            raise ValueError(f"empty must be one of {', '.join(EMPTY_RULES)}, not {empty!r}")
        seed = dict(seed or {})
        timeframes = set(timeframes)
        unknown = (set(seed) | timeframes) - set(TIMEFRAME_MS)
        if unknown or not timeframes:
            raise ValueError(f"unknown timeframe(s): {', '.join(sorted(unknown)) or 'none given'}")
        tfs = sorted(timeframes, key=lambda tf: TIMEFRAME_MS[tf])
        self.exchange = exchange
        self.symbol = symbol
        self.timeframes: tuple[str, ...] = tuple(tfs)
        self.empty = empty
        self.counts_trades = counts_trades
        self.size_decimals = size_decimals
        self.close_delay_ms = close_delay_ms
        self.max_feed_lag_ms = max_feed_lag_ms
        self._seen_trade = _NO_TS
        self.completion_wait_ms = completion_wait_ms
        self._ps = 10**price_decimals
        self._vs = 10**size_decimals
        self._qs = self._ps * self._vs
        self._tfms = [TIMEFRAME_MS[tf] for tf in tfs]
        self._longest = max(self._tfms)
        self._off: list[int] = []
        self._next: list[int | None] = []
        for tf, length in zip(tfs, self._tfms, strict=True):
            last = seed.get(tf)
            if last is None:
                self._off.append(0)
                self._next.append(None)
                continue
            off = last % length
            if off % MINUTE_MS:
                raise ValueError(f"{tf}: stored open time {last} is not on a minute boundary")
            self._off.append(off)
            self._next.append(last + length)
        n = len(tfs)
        #: per timeframe: the bar being merged from closed minutes
        #: ``[open_time, o, h, l, c, v, q, n]`` (``n == 0``: no trade yet) or None
        self._acc: list[list | None] = [None] * n
        #: per timeframe: closed candles waiting to be handed on, ``[open, candle, ready, deadline]``
        self._queue: list[deque] = [deque() for _ in range(n)]
        #: per timeframe: our recently closed candles by open time (for the cross-check)
        self._recent: list[dict[int, LiveCandle]] = [{} for _ in range(n)]
        #: per timeframe: exchange closed candles that came before ours closed
        self._xpending: list[dict[int, object]] = [{} for _ in range(n)]
        self._blind: list[tuple[int, int]] = []
        #: exchange time after which a lost frame may have held trades, until the next trade
        #: shows what was lost (:meth:`suspect_from`); None: nothing in doubt (read-only outside)
        self.suspect: int | None = None
        #: stored 1m candles that seed the higher timeframes' first bars at start (then dropped)
        self._seed_minutes = seed_minutes if seed_minutes is not None and len(seed_minutes) else None
        self._started = False
        self._last = last_close
        #: the current minute [_mo, _me); _fe == _me once it has a trade (fast path), else _mo
        self._mo = 0
        self._me = 0
        self._fe = 0
        self._o = self._h = self._l = self._c = 0.0
        self._ots = self._cts = 0
        self._v = self._q = self._n = 0
        self.stats: dict[str, int] = {
            "trades": 0,
            "late_trades": 0,
            "bad_time_trades": 0,
            "closed": 0,
            "completed": 0,
            "incomplete": 0,
            "gaps": 0,
            "checked": 0,
            "mismatches": 0,
            "exchange_unmatched": 0,
            "exchange_unusable": 0,
        }
        #: mismatches per timeframe
        self.mismatches: dict[str, int] = {tf: 0 for tf in tfs}

    @classmethod
    def continuing(
        cls, exchange: str, symbol: str, history: Mapping[str, Candles | None], **options
    ) -> CandleBuilder:
        """A builder that continues ``history`` (``{timeframe: stored Candles}``, e.g. from
        ``DataStore.read_series(...).candles``; a missing or empty series starts that timeframe
        at the feed's first interval): seeded with each series' last ``open_time`` and the close
        of the newest stored candle; the stored 1m candles seed the higher timeframes' first
        bars (see "Seeding" in the module doc). ``options`` as for the constructor (``empty``,
        ``counts_trades`` from the venue; ``timeframes`` defaults to all 11)."""
        seed: dict[str, int] = {}
        newest_end, last_close = None, None
        for tf, c in history.items():
            if c is None or not len(c):
                continue
            t = int(c.open_time[-1])
            seed[tf] = t
            end = t + TIMEFRAME_MS[tf]
            if newest_end is None or end > newest_end:
                newest_end, last_close = end, float(c.close[-1])
        options.setdefault("seed_minutes", history.get("1m"))
        return cls(exchange, symbol, seed=seed, last_close=last_close, **options)

    # ------------------------------------------------------------------------------ input

    def start(self, listen_from_ms: int) -> list:
        """The trade feed is complete from ``listen_from_ms`` (exchange time) on. Candles that
        begin earlier are incomplete; stored history that ends before the first one observed
        is reported as a :class:`CandleGap`. Called implicitly by the first trade."""
        if self._started:
            raise RuntimeError("start() called twice")
        self._started = True
        self._blind.append((_NO_TS, listen_from_ms))
        mo = _floor(listen_from_ms, MINUTE_MS, 0)
        self._mo, self._me, self._fe = mo, mo + MINUTE_MS, mo
        out: list = []
        for i, tf in enumerate(self.timeframes):
            length = self._tfms[i]
            first = _floor(mo, length, self._off[i])
            nxt = self._next[i]
            if nxt is None:
                self._next[i] = first
            elif nxt < first:
                out.append(CandleGap(self.exchange, self.symbol, tf, nxt, first - length))
                self.stats["gaps"] += 1
                self._next[i] = first
        self._seed_from_minutes(mo)
        return out

    def _seed_from_minutes(self, mo: int) -> None:
        """Seed each higher timeframe's first bar with the stored minutes of its interval
        before the live start minute ``mo`` (module doc, "Seeding")."""
        m, self._seed_minutes = self._seed_minutes, None
        if m is None:
            return
        ot = m.open_time
        j = int(np.searchsorted(ot, mo))  # stored minutes [.. j) are before the live start
        if j == 0 or int(ot[j - 1]) != mo - MINUTE_MS:
            return  # the stored minutes do not reach the live start: nothing exact to seed with
        vs, qs = self._vs, self._qs
        rows = None
        for i, length in enumerate(self._tfms):
            bo = _floor(mo, length, self._off[i])
            if bo == mo or bo < self._next[i] or int(ot[0]) > bo:
                continue  # no stored minute of this bar before the start / a stored bar / not covered
            k = int(np.searchsorted(ot, bo))
            if self.empty == PREVIOUS_CLOSE and j - k != (mo - bo) // MINUTE_MS:
                continue  # a minute of the bar is missing from the stored series
            if rows is None:
                rows = (
                    ot.tolist(),
                    m.open.tolist(),
                    m.high.tolist(),
                    m.low.tolist(),
                    m.close.tolist(),
                    m.volume.tolist(),
                    m.quote_volume.tolist(),
                    m.trades.tolist(),
                )
            acc = [bo, 0.0, 0.0, 0.0, 0.0, 0, 0, 0]
            for r in range(k, j):
                v = rows[5][r]
                if not v > 0:  # a minute without trades: open/high/low are the trades' own
                    continue
                o, h, lo, c = rows[1][r], rows[2][r], rows[3][r], rows[4][r]
                n = rows[7][r]
                n = int(n) if n == n and n > 0 else 1  # no stored count: 1 marks "had trades"
                if acc[7]:
                    acc[2] = max(acc[2], h)
                    acc[3] = min(acc[3], lo)
                    acc[4] = c
                else:
                    acc[1:5] = o, h, lo, c
                acc[5] += int(v * vs + 0.5)
                acc[6] += int(rows[6][r] * qs + 0.5)
                acc[7] += n
            self._acc[i] = acc

    def on_trade(self, ts_ms: int, price: float, size: float, count: int = 1) -> list | None:
        """One trade (exchange time, price, base size; ``count`` trades it aggregates, e.g.
        Binance aggTrade ``l - f + 1``). Returns ``None``, or the events when candles closed."""
        if self._mo <= ts_ms < self._fe:
            if price > self._h:
                self._h = price
            elif price < self._l:
                self._l = price
            if ts_ms >= self._cts:
                self._c = price
                self._cts = ts_ms
            elif ts_ms < self._ots:
                self._o = price
                self._ots = ts_ms
            vi = int(size * self._vs + 0.5)
            self._v += vi
            self._q += int(price * self._ps + 0.5) * vi
            self._n += count
            return None
        return self._trade_slow(ts_ms, price, size, count)

    def on_clock(self, now_ms: int, seen_ms: int | None = None) -> list:
        """The exchange's time now (estimated: local clock + measured offset) and, optionally,
        ``seen_ms``: the newest exchange timestamp the feed has delivered on the connection that
        carries this symbol's trades (book updates included). Closes the candles that ended at
        least ``close_delay_ms`` ago by BOTH clocks - so a feed that lags behind the exchange's
        clock (a backlog) does not close a candle whose last trades are still in flight - and
        by the estimated clock alone once the feed has shown nothing for ``max_feed_lag_ms``
        (those candles are incomplete: nothing proves the feed was alive). Hands on incomplete
        candles whose wait is over."""
        if not self._started:
            return []
        out: list = []
        seen = self._cts if self._fe == self._me else self._seen_trade
        if seen_ms is not None and seen_ms > seen:
            seen = seen_ms
        if seen >= now_ms - self.max_feed_lag_ms:
            limit = min(now_ms, seen) - self.close_delay_ms
        else:  # the feed has shown nothing for a while: close by the clock, but without evidence
            limit = now_ms - self.max_feed_lag_ms - self.close_delay_ms
            if limit > seen and self._me <= limit:
                self._add_blind(seen + 1, limit + 1)
        while self._me <= limit:
            self._close_minute(out)
        self._expire(now_ms, out)
        return out

    def on_exchange_candle(self, candle) -> list:
        """An exchange kline (:class:`~p9cli.exchanges.venue.ExchangeCandle` or anything with
        its fields; optional ``quote_volume``/``trades``). Forming bars are ignored; a closed
        bar completes our incomplete candle of that interval or is cross-checked with ours."""
        if not candle.closed:
            return []
        try:
            i = self.timeframes.index(candle.timeframe)
        except ValueError:
            return []
        t = candle.open_time
        out: list = []
        queue = self._queue[i]
        for entry in queue:
            if entry[0] == t:
                if entry[2]:  # ready, waiting behind an incomplete one: cross-check
                    self._check(i, entry[1], candle, out)
                    return out
                if not _is_full(candle):  # no quote volume (a stream bar): wait for REST
                    self.stats["exchange_unusable"] += 1
                    return out
                entry[1] = self._from_exchange(i, candle)
                entry[2] = True
                self.stats["completed"] += 1
                self._flush(i, out)
                return out
        ours = self._recent[i].get(t)
        if ours is not None:
            self._check(i, ours, candle, out)
            return out
        acc = self._acc[i]
        current = acc[0] if acc is not None else _floor(self._mo, self._tfms[i], self._off[i])
        if self._started and t >= current:
            pending = self._xpending[i]
            pending[t] = candle
            if len(pending) > 8:
                del pending[min(pending)]
            return out
        self.stats["exchange_unmatched"] += 1
        return out

    def on_rest_candles(self, timeframe: str, candles: Candles) -> list:
        """The exchange's own CLOSED candles of ``timeframe`` fetched over REST (e.g. for a
        :class:`CompletionWanted`), as :class:`p9cli.candles.Candles`: each one completes our
        incomplete candle of that interval or is cross-checked, like a closed stream bar."""
        out: list = []
        for t, (o, h, lo, c, v, q, n) in candles.rows().items():
            out += self.on_exchange_candle(_RestBar(timeframe, t, o, h, lo, c, v, q, n))
        return out

    def mark_incomplete(self, from_ms: int, to_ms: int) -> None:
        """The feed missed trades in ``[from_ms, to_ms)`` (exchange time) that it cannot
        replay: every candle overlapping that window that has not closed yet is incomplete."""
        if to_ms > from_ms:
            self._add_blind(from_ms, to_ms)

    def suspect_from(self, from_ms: int) -> None:
        """A frame that may have held trades was lost after ``from_ms`` (exchange time: the last
        trade seen): until :meth:`resolve_suspect`, no candle reaching past it is complete (the
        clock may close it meanwhile: it then waits for the exchange's own candle)."""
        if self.suspect is None:
            self.suspect = from_ms

    def resolve_suspect(self, to_ms: int | None) -> None:
        """The next trade arrived. ``to_ms``: trades may be missing up to there (a venue without
        trade numbers); None: none are (the numbering shows no hole, or its hole was marked)."""
        start = self.suspect
        self.suspect = None
        if start is not None and to_ms is not None:
            self.mark_incomplete(start, to_ms)

    def _add_blind(self, start: int, end: int) -> None:
        blind = self._blind
        if blind and blind[-1][0] <= start <= blind[-1][1]:
            blind[-1] = (blind[-1][0], max(end, blind[-1][1]))
        else:
            blind.append((start, end))

    # ------------------------------------------------------------------------------ output

    def forming(self, timeframe: str) -> LiveCandle | None:
        """The forming candle of ``timeframe`` now (``closed=False``), or None before the first
        trade when no price is known yet."""
        f = self._forming(self.timeframes.index(timeframe))
        if f is None:
            return None
        bo, o, h, lo, c, v, q, n, complete = f
        return self._candle(timeframe, bo, o, h, lo, c, v / self._vs, q / self._qs, n, False, complete)

    def forming_all(self) -> dict[str, LiveCandle | None]:
        return {tf: self.forming(tf) for tf in self.timeframes}

    def forming_rows(self) -> dict[str, tuple | None]:
        """The forming candles of every timeframe as plain tuples ``(open_time, open, high, low,
        close, volume, complete)`` (or None): what :meth:`forming` says, without building a
        :class:`LiveCandle` (a payload reads these a few times a second per pair)."""
        out: dict[str, tuple | None] = {}
        vs = self._vs
        for i, tf in enumerate(self.timeframes):
            f = self._forming(i)
            out[tf] = None if f is None else (f[0], f[1], f[2], f[3], f[4], f[5] / vs, f[8])
        return out

    def _forming(self, i: int) -> tuple | None:
        if not self._started:
            return None
        length, off = self._tfms[i], self._off[i]
        acc = self._acc[i]
        bo = _floor(self._mo, length, off)
        if bo < self._next[i]:  # this minute belongs to a stored candle
            return None
        if acc is not None and acc[7]:
            o, h, lo, c, v, q, n = acc[1:8]
            if self._fe == self._me:
                h, lo, c = max(h, self._h), min(lo, self._l), self._c
                v, q, n = v + self._v, q + self._q, n + self._n
        elif self._fe == self._me:
            o, h, lo, c, v, q, n = self._o, self._h, self._l, self._c, self._v, self._q, self._n
        elif self._last is not None:
            o = h = lo = c = self._last
            v = q = n = 0
        else:
            return None
        complete = not self._blind_overlaps(bo, bo + length)
        return bo, o, h, lo, c, v, q, n, complete

    # ------------------------------------------------------------------------------ internals

    def _trade_slow(self, ts: int, price: float, size: float, count: int) -> list | None:
        out: list = []
        if not self._started:
            out += self.start(ts)
        if ts < self._mo:
            self.stats["late_trades"] += 1
            return out or None
        if ts - self._me >= _MAX_AHEAD_MS:  # a nonsense timestamp: never close days of candles on it
            self.stats["bad_time_trades"] += 1
            log.warning("%s %s: trade time %d is days ahead of the current minute %d: dropped",
                        self.exchange, self.symbol, ts, self._mo)  # fmt: skip
            return out or None
        while ts >= self._me:
            self._close_minute(out)
        if self._fe == self._mo:  # first trade of the current minute
            self._o = self._h = self._l = self._c = price
            self._ots = self._cts = ts
            vi = int(size * self._vs + 0.5)
            self._v = vi
            self._q = int(price * self._ps + 0.5) * vi
            self._n = count
            self._fe = self._me
        else:  # unreachable: the fast path takes every trade of a minute that has one
            raise AssertionError("trade in the current minute reached the slow path")
        self._expire(ts, out)
        return out or None

    def _close_minute(self, out: list) -> None:
        mo, me = self._mo, self._me
        has = self._fe == me
        if has:
            o, h, lo, c, v, q, n = self._o, self._h, self._l, self._c, self._v, self._q, self._n
            self.stats["trades"] += n
        for i in range(len(self._tfms)):
            length = self._tfms[i]
            bo = mo - (mo - self._off[i]) % length
            if bo < self._next[i]:
                continue
            acc = self._acc[i]
            if acc is None:
                acc = self._acc[i] = [bo, 0.0, 0.0, 0.0, 0.0, 0, 0, 0]
            if has:
                if acc[7]:
                    if h > acc[2]:
                        acc[2] = h
                    if lo < acc[3]:
                        acc[3] = lo
                    acc[4] = c
                    acc[5] += v
                    acc[6] += q
                    acc[7] += n
                else:
                    acc[1:8] = o, h, lo, c, v, q, n
            if me == bo + length:
                self._acc[i] = None
                self._close_bar(i, acc, out)
        if has:
            self._last = c
            self._seen_trade = self._cts
        self._mo, self._me, self._fe = me, me + MINUTE_MS, me
        self._v = self._q = self._n = 0
        if self._blind and self._blind[0][1] < mo - 2 * self._longest:
            self._blind = [w for w in self._blind if w[1] >= mo - 2 * self._longest]

    def _close_bar(self, i: int, acc: list, out: list) -> None:
        tf, length = self.timeframes[i], self._tfms[i]
        bo = acc[0]
        self._next[i] = bo + length
        complete = not self._blind_overlaps(bo, bo + length)
        candle: LiveCandle | None
        if acc[7]:
            o, h, lo, c, v, q, n = acc[1:8]
            candle = self._candle(tf, bo, o, h, lo, c, v / self._vs, q / self._qs, n, True, complete)
        elif complete and self._last is not None:
            if self.empty == OMIT:
                self._xpending[i].pop(bo, None)
                return
            p = self._last
            candle = self._candle(tf, bo, p, p, p, p, 0.0, 0.0, 0, True, True)
        else:  # nothing observed, or no price to fill an empty interval with
            candle = None
            complete = False
        exchange_bar = self._xpending[i].pop(bo, None)
        queue = self._queue[i]
        if complete:
            self._remember(i, candle)
            if exchange_bar is not None:
                self._check(i, candle, exchange_bar, out)
            if queue:
                queue.append([bo, candle, True, 0])
            else:
                self.stats["closed"] += 1
                out.append(candle)
            return
        if exchange_bar is not None and _is_full(exchange_bar):
            queue.append([bo, self._from_exchange(i, exchange_bar), True, 0])
            self.stats["completed"] += 1
        else:
            queue.append([bo, candle, False, bo + length + self.close_delay_ms + self.completion_wait_ms])
            out.append(CompletionWanted(self.exchange, self.symbol, tf, bo))
        self._flush(i, out)

    def _flush(self, i: int, out: list) -> None:
        """Hand on the ready candles at the head of timeframe ``i``'s queue."""
        queue = self._queue[i]
        while queue and queue[0][2]:
            candle = queue.popleft()[1]
            self._remember(i, candle)
            self.stats["closed"] += 1
            out.append(candle)

    def _expire(self, now: int, out: list) -> None:
        for i, queue in enumerate(self._queue):
            while queue and not queue[0][2] and queue[0][3] <= now:
                bo, candle = queue.popleft()[:2]
                if candle is None:
                    tf = self.timeframes[i]
                    out.append(CandleGap(self.exchange, self.symbol, tf, bo, bo))
                    self.stats["gaps"] += 1
                else:
                    self.stats["incomplete"] += 1
                    self.stats["closed"] += 1
                    out.append(candle)
                    log.warning(
                        "%s %s %s candle %d handed on incomplete: no exchange candle within %d ms",
                        self.exchange, self.symbol, self.timeframes[i], bo, self.completion_wait_ms,
                    )  # fmt: skip
                self._flush(i, out)

    def _from_exchange(self, i: int, x) -> LiveCandle:
        n = getattr(x, "trades", None)
        if n is not None and n != n:  # NaN: no count
            n = None
        return self._candle(
            self.timeframes[i], x.open_time, x.open, x.high, x.low, x.close, x.volume, x.quote_volume, n,
            True, True, FROM_EXCHANGE,
        )  # fmt: skip

    def _candle(self, tf, t, o, h, lo, c, v, q, n, closed, complete, source=FROM_TRADES) -> LiveCandle:
        trades = [n if self.counts_trades else None]
        one = Candles.from_arrays([t], [o], [h], [lo], [c], [v], [q], trades)
        return LiveCandle(self.exchange, self.symbol, tf, one, closed, complete, source)

    def _remember(self, i: int, candle: LiveCandle) -> None:
        recent = self._recent[i]
        recent[candle.open_time] = candle
        if len(recent) > 4:
            del recent[min(recent)]

    def _check(self, i: int, ours: LiveCandle, x, out: list) -> None:
        if ours.source == FROM_EXCHANGE:
            return
        self.stats["checked"] += 1
        if not ours.complete:
            return
        d = self.size_decimals
        a = (ours.open, ours.high, ours.low, ours.close, ours.volume)
        b = (x.open, x.high, x.low, x.close, x.volume)
        bad = tuple(
            name for name, u, w in zip(("open", "high", "low", "close"), a, b, strict=False) if u != w
        )
        if round(a[4], d) != round(b[4], d):
            bad += ("volume",)
        theirs_n, ours_n = getattr(x, "trades", None), ours.trades
        if theirs_n is not None and theirs_n == theirs_n and ours_n is not None and ours_n != theirs_n:
            bad += ("trades",)
        if not bad:
            return
        tf = self.timeframes[i]
        self.stats["mismatches"] += 1
        self.mismatches[tf] += 1
        out.append(CandleMismatch(self.exchange, self.symbol, tf, ours.open_time, bad, a, b))
        log.warning(
            "%s %s %s candle %d differs from the exchange's in %s: ours %s, exchange %s",
            self.exchange, self.symbol, tf, ours.open_time, ",".join(bad), a, b,
        )  # fmt: skip

    def _blind_overlaps(self, start: int, end: int) -> bool:
        if self.suspect is not None and self.suspect < end:
            return True
        return any(a < end and start < b for a, b in self._blind)
