"""The true order book of one (exchange, symbol): deterministic, integer, pure (no I/O).

A :class:`BookEngine` holds about :data:`TARGET_LEVELS` price levels a side (prices in ticks
of the instrument, quantities in its ``qty_unit``), with a tight spread of one to a few ticks
around the market model's last trade price and sizes that grow away from the touch. Time is
cut into slots of :data:`SLOT_MS` simulated milliseconds; :meth:`BookEngine.step` plays every
slot up to ``now_ms``. Each slot re-centres the book on ``model`` 's last trade price (the
book never crosses it: every bid ``< price <=`` every ask) and draws a few random changes
(size changes near the touch, levels appearing and vanishing), from a random generator
seeded by ``(seed, exchange, symbol)``. The book is therefore a function of the seed and the
slot times only, not of when or how often ``step`` is called.

Every *book change* is one :class:`BookEvent` with its own **update id**; ids are consecutive
integers (a change may touch several levels). The update id is the exchange's own book
sequence number, identical on every connection:

* **Binance** — the diff-depth ``u`` (an event covering ``[U, u]`` carries the net changes
  of update ids ``U..u``) and the REST ``lastUpdateId``;
* **Bybit** — the order-book ``seq`` (cross sequence; ``u`` is a per-topic message counter
  kept by the feed, not by the engine);
* **OKX** — the ``books`` ``seqId`` (``prevSeqId`` is the ``seqId`` of the previous push).

The first id of an engine grows with its anchor time (:data:`ID_STEPS_PER_SLOT` per slot since
:data:`ID_EPOCH_MS`), twice as fast as events can use ids (at most :data:`EVENTS_PER_SLOT` a
slot), so a simulator restarted later starts above every id an earlier run published as long
as that run lived at least ``2 * ANCHOR_MS`` (20 s), however fast the restart: an engine
anchored at ``A`` and stepped to ``T`` used ids below ``8A + 4(T - A)`` (in slots), and the
restarted one starts at ``8A'`` with ``A' > T - ANCHOR_MS``. Its book is rebuilt at the new
anchor: a client resyncs as after an exchange restart, and ids keep moving forward.

:meth:`BookEngine.book_at` rebuilds the true book as it was right after a given update id,
from a bounded log of the last :data:`LOG_EVENTS` events (``None`` when older).
"""

from __future__ import annotations

import bisect
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

SLOT_MS = 25  # simulated ms between two book slots
TARGET_LEVELS = 1000  # levels per side the book keeps (within +-TAIL_SLACK)
TAIL_SLACK = 40
MAX_SPREAD_TICKS = 3  # the touch is re-filled when the spread grows wider than this
LOG_EVENTS = 50_000  # events kept for book_at / changes_since
ANCHOR_MS = 10_000  # a new engine builds its book at the last multiple of this and plays to now
MAX_CATCHUP_MS = 10_000  # a clock jump longer than this skips slots (the book re-centres at once)
REFILL_LEVELS = 60  # at most this many levels are re-filled between the old touch and a new price
EVENTS_PER_SLOT = 4  # a slot emits at most 1 (follow the price) + 3 (random changes) events
ID_STEPS_PER_SLOT = 2 * EVENTS_PER_SLOT  # first id = base + slots since ID_EPOCH_MS * this
ID_EPOCH_MS = 946_684_800_000  # 2000-01-01

BID = 0
ASK = 1

Level = tuple[int, int]  # (price_ticks, qty_units)


@dataclass(frozen=True, slots=True)
class BookEvent:
    """One book change. ``changes`` = ((side, price, old_qty, new_qty), ...); qty 0 = no level."""

    update_id: int
    time_ms: int
    changes: tuple[tuple[int, int, int, int], ...]


def stable_seed(*parts: Any) -> int:
    """A seed that is the same in every process (``hash()`` of str is not)."""
    return zlib.crc32(":".join(str(p) for p in parts).encode())


class BookEngine:
    """The true book of one (exchange, symbol); see the module docstring."""

    def __init__(
        self, exchange: str, symbol: str, instrument: Any, model: Any, seed: int, now_ms: int | None = None
    ):
        self.exchange = exchange
        self.symbol = symbol
        self.instrument = instrument
        self.model = model
        self._rng = random.Random(stable_seed("book", seed, exchange, symbol))
        if now_ms is None:
            now_ms = model.clock.now_ms() if hasattr(model, "clock") else 0
        # the book is born at a fixed anchor (a multiple of ANCHOR_MS) and played forward to
        # now, so two simulators with the same seed and start time have the same book
        anchor = now_ms - now_ms % ANCHOR_MS
        self._next_slot_ms = anchor + SLOT_MS
        self._price_until_ms = anchor + 1
        self.last_price = int(model.last_trade_price(exchange, symbol, anchor))
        self.time_ms = anchor
        # size scale: a level near the touch is worth about `_base_notional` quote units
        tick = float(getattr(instrument, "tick", 0.01))
        qty_unit = float(getattr(instrument, "qty_unit", 1e-6))
        price_quote = max(self.last_price * tick, 1e-12)
        base_notional = 1500.0 + self._rng.random() * 1500.0
        self._base_units = max(1, int(base_notional / (price_quote * qty_unit)))
        # prices: ascending lists (bids: best = last, asks: best = first) + qty dicts
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bid_px: list[int] = []
        self._ask_px: list[int] = []
        base_ids = {"binance": 3_000_000_000, "bybit": 40_000_000_000, "okx": 10_000_000_000}
        # the first id grows with the anchor time twice as fast as a book can use ids, so a
        # restarted simulator starts above what an earlier run published (module docstring)
        slots = (anchor - ID_EPOCH_MS) // SLOT_MS
        self.update_id = (
            base_ids.get(exchange, 1_000_000) + self._rng.randrange(1_000_000_000) + slots * ID_STEPS_PER_SLOT
        )
        self._log: list[BookEvent] = []
        self._log_first = self.update_id + 1  # update id of self._log[0]
        self._build_initial()
        self.step(now_ms)

    # ------------------------------------------------------------------ reading
    @property
    def oldest_update_id(self) -> int:
        """The oldest update id :meth:`book_at` can rebuild."""
        return self._log_first - 1

    def best_bid(self) -> int | None:
        return self._bid_px[-1] if self._bid_px else None

    def best_ask(self) -> int | None:
        return self._ask_px[0] if self._ask_px else None

    @staticmethod
    def orders_at(price: int, qty: int) -> int:
        """Number of orders at a level (OKX publishes it): a deterministic 1..8."""
        return 1 + (price * 7 + qty) % 8

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """Best ``depth`` levels a side: bids descending, asks ascending."""
        bids, asks = self.bids, self.asks
        bpx = self._bid_px[-depth:] if depth < len(self._bid_px) else self._bid_px
        apx = self._ask_px[:depth]
        return [(p, bids[p]) for p in reversed(bpx)], [(p, asks[p]) for p in apx]

    def snapshot(self, depth: int) -> tuple[int, list[Level], list[Level]]:
        """``(update_id, bids desc, asks asc)`` of the current book, ``depth`` levels a side."""
        bids, asks = self.top(depth)
        return self.update_id, bids, asks

    def book_at(self, update_id: int) -> tuple[list[Level], list[Level]] | None:
        """The full true book right after ``update_id`` (see the module docstring for what the
        id means per exchange); ``None`` when older than the log or in the future."""
        if update_id > self.update_id or update_id < self._log_first - 1:
            return None
        bids = dict(self.bids)
        asks = dict(self.asks)
        for ev in reversed(self._log[update_id - self._log_first + 1 :]):
            for side, price, old, _new in reversed(ev.changes):
                book = bids if side == BID else asks
                if old:
                    book[price] = old
                else:
                    book.pop(price, None)
        return (
            sorted(bids.items(), reverse=True),
            sorted(asks.items()),
        )

    def events_since(self, update_id: int) -> list[BookEvent] | None:
        """Events with ids ``> update_id`` (``None`` when part of them left the log)."""
        if update_id < self._log_first - 1:
            return None
        return self._log[max(0, update_id - self._log_first + 1) :]

    def changes_since(self, update_id: int) -> tuple[dict[int, int], dict[int, int]] | None:
        """Net level changes after ``update_id``: (bids {price: qty}, asks {price: qty}),
        qty 0 = removed. ``None`` when part of them left the log."""
        events = self.events_since(update_id)
        if events is None:
            return None
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for ev in events:
            for side, price, _old, new in ev.changes:
                (bids if side == BID else asks)[price] = new
        return bids, asks

    # ------------------------------------------------------------------ evolution
    def step(self, now_ms: int) -> list[BookEvent]:
        """Play every slot with time ``<= now_ms``; return the new events (oldest first)."""
        if now_ms < self._next_slot_ms:
            return []
        if now_ms - self._next_slot_ms > MAX_CATCHUP_MS:
            skip_to = now_ms - MAX_CATCHUP_MS
            self._next_slot_ms = (skip_to // SLOT_MS) * SLOT_MS
            self._price_until_ms = max(self._price_until_ms, self._next_slot_ms)
        last_slot = (now_ms // SLOT_MS) * SLOT_MS
        trades = self.model.trades(self.exchange, self.symbol, self._price_until_ms, last_slot + 1)
        times = trades.time
        prices = trades.price
        n_trades = len(times)
        self._price_until_ms = last_slot + 1
        new_events: list[BookEvent] = []
        t = self._next_slot_ms
        idx = 0
        price = self.last_price
        while t <= last_slot:
            if n_trades:
                while idx < n_trades and times[idx] <= t:
                    idx += 1
                if idx:
                    price = int(prices[idx - 1])
            self._play_slot(t, price, new_events)
            t += SLOT_MS
        self._next_slot_ms = t
        self.last_price = price
        self.time_ms = last_slot
        self._trim_log()
        return new_events

    # ------------------------------------------------------------------ internals
    def _size(self, distance: int) -> int:
        """A level size for the ``distance``-th level from the touch."""
        r = self._rng.random()
        grow = 1.0 + distance * 0.004
        return max(1, int(self._base_units * grow * (0.15 + 1.7 * r * r)))

    def _gap(self) -> int:
        r = self._rng.random()
        return 1 if r < 0.7 else (2 if r < 0.9 else 3)

    def _set(self, side: int, price: int, qty: int, changes: list) -> None:
        book = self.bids if side == BID else self.asks
        old = book.get(price, 0)
        if old == qty:
            return
        pxs = self._bid_px if side == BID else self._ask_px
        if qty:
            book[price] = qty
            if not old:
                bisect.insort(pxs, price)
        else:
            del book[price]
            del pxs[bisect.bisect_left(pxs, price)]
        changes.append((side, price, old, qty))

    def _build_initial(self) -> None:
        changes: list = []
        self._fill_empty_side(BID, self.last_price, changes)
        self._fill_empty_side(ASK, self.last_price, changes)
        # the initial book is not an event: it is the state before the first update id

    def _fill_empty_side(self, side: int, price: int, changes: list) -> None:
        if side == BID:
            p = price - 1 - self._rng.randrange(MAX_SPREAD_TICKS)
            for i in range(TARGET_LEVELS):
                if p <= 0:
                    break
                self._set(BID, p, self._size(i), changes)
                p -= self._gap()
        else:
            p = price + self._rng.randrange(MAX_SPREAD_TICKS)
            for i in range(TARGET_LEVELS):
                self._set(ASK, p, self._size(i), changes)
                p += self._gap()

    def _emit(self, t: int, changes: list, out: list[BookEvent]) -> None:
        if not changes:
            return
        self.update_id += 1
        ev = BookEvent(self.update_id, t, tuple(changes))
        self._log.append(ev)
        out.append(ev)

    def _play_slot(self, t: int, price: int, out: list[BookEvent]) -> None:
        rng = self._rng
        # 1. follow the last trade price (one event; may touch several levels)
        changes: list = []
        if price != self.last_price or not self._bid_px or not self._ask_px:
            self._follow(price, changes)
            self.last_price = price
        self._keep_spread(price, changes)
        self._emit(t, changes, out)
        # 2. random changes: 0..3 events
        r = rng.random()
        n = 0 if r < 0.2 else (1 if r < 0.55 else (2 if r < 0.85 else 3))
        for _ in range(n):
            changes = []
            side = BID if rng.random() < 0.5 else ASK
            pxs = self._bid_px if side == BID else self._ask_px
            if not pxs:
                continue
            depth = min(len(pxs) - 1, int(rng.expovariate(1 / 12.0)))
            price_at = pxs[-1 - depth] if side == BID else pxs[depth]
            kind = rng.random()
            if kind < 0.6:
                self._set(side, price_at, self._size(depth), changes)
            elif kind < 0.8 and depth > 0:
                self._set(side, price_at, 0, changes)
            else:
                # a new level next to the chosen one, on the far side of it (never crossing)
                new_px = price_at - 1 if side == BID else price_at + 1
                book = self.bids if side == BID else self.asks
                if new_px > 0 and new_px not in book:
                    self._set(side, new_px, self._size(depth + 1), changes)
            self._keep_tail(side, changes)
            self._emit(t, changes, out)

    def _follow(self, price: int, changes: list) -> None:
        """Remove levels on the wrong side of ``price``; re-fill towards it."""
        # asks must be >= price, bids < price
        while self._ask_px and self._ask_px[0] < price:
            self._set(ASK, self._ask_px[0], 0, changes)
        while self._bid_px and self._bid_px[-1] >= price:
            self._set(BID, self._bid_px[-1], 0, changes)
        if not self._bid_px:
            self._fill_empty_side(BID, price, changes)
        if not self._ask_px:
            self._fill_empty_side(ASK, price, changes)
        # re-fill the hole between the old touch and the new price (at most REFILL_LEVELS)
        best_bid = self._bid_px[-1]
        p = price - 1 - self._rng.randrange(MAX_SPREAD_TICKS)
        i = 0
        while p > best_bid and i < REFILL_LEVELS:
            self._set(BID, p, self._size(i), changes)
            p -= self._gap()
            i += 1
        best_ask = self._ask_px[0]
        p = price + self._rng.randrange(MAX_SPREAD_TICKS)
        i = 0
        while p < best_ask and i < REFILL_LEVELS:
            self._set(ASK, p, self._size(i), changes)
            p += self._gap()
            i += 1
        self._keep_tail(BID, changes)
        self._keep_tail(ASK, changes)

    def _keep_spread(self, price: int, changes: list) -> None:
        if self._bid_px and self._bid_px[-1] < price - MAX_SPREAD_TICKS:
            self._set(BID, price - 1 - self._rng.randrange(2), self._size(0), changes)
        if self._ask_px and self._ask_px[0] > price + MAX_SPREAD_TICKS:
            self._set(ASK, price + self._rng.randrange(2), self._size(0), changes)

    def _keep_tail(self, side: int, changes: list) -> None:
        pxs = self._bid_px if side == BID else self._ask_px
        n = len(pxs)
        if n > TARGET_LEVELS + TAIL_SLACK:
            for _ in range(n - TARGET_LEVELS):
                self._set(side, pxs[0] if side == BID else pxs[-1], 0, changes)
        elif n < TARGET_LEVELS - TAIL_SLACK:
            if side == BID:
                p = pxs[0] - self._gap()
                for i in range(TARGET_LEVELS - n):
                    if p <= 0:
                        break
                    self._set(BID, p, self._size(n + i), changes)
                    p -= self._gap()
            else:
                p = pxs[-1] + self._gap()
                for i in range(TARGET_LEVELS - n):
                    self._set(ASK, p, self._size(n + i), changes)
                    p += self._gap()

    def _trim_log(self) -> None:
        extra = len(self._log) - LOG_EVENTS
        if extra > LOG_EVENTS // 4:
            del self._log[:extra]
            self._log_first += extra


MINUTE_MS = 60_000


def trade_tuples(tr: Any) -> Iterator[tuple[int, int, int, int, bool]]:
    """``(id, time ms, price ticks, qty units, taker_buy)`` of each trade of a model batch."""
    return zip(
        tr.id.tolist(),
        tr.time.tolist(),
        tr.price.tolist(),
        tr.qty.tolist(),
        tr.taker_buy.tolist(),
        strict=True,
    )


class TradeCache:
    """``model.trades`` served from whole-minute batches: the same rows, far fewer model calls.

    The model's trades are a pure function of (seed, exchange, symbol, time) and a minute
    generated alone equals the same minute inside any larger request, so slicing a cached
    minute gives exactly ``model.trades(exchange, symbol, start, end)``. Intervals longer than
    :attr:`max_minutes` minutes go to the model directly. ``last_trade_price`` passes through.
    """

    def __init__(self, model: Any, max_minutes: int = 3, keep: int = 64):
        self.model = model
        self.max_minutes = max_minutes
        self.keep = keep
        self._minutes: dict[tuple[str, str, int], Any] = {}

    def last_trade_price(self, exchange: str, symbol: str, now_ms: int) -> int:
        return self.model.last_trade_price(exchange, symbol, now_ms)

    def _minute(self, exchange: str, symbol: str, minute: int) -> Any:
        key = (exchange, symbol, minute)
        got = self._minutes.get(key)
        if got is None:
            got = self.model.trades(exchange, symbol, minute, minute + MINUTE_MS)
            if len(self._minutes) >= self.keep:
                # drop the oldest minutes (insertion order is time order per key, roughly)
                for old in list(self._minutes)[: self.keep // 2]:
                    del self._minutes[old]
            self._minutes[key] = got
        return got

    def trades(self, exchange: str, symbol: str, start_ms: int, end_ms: int) -> Any:
        if end_ms <= start_ms:
            return self.model.trades(exchange, symbol, start_ms, start_ms)
        m_first = start_ms - start_ms % MINUTE_MS
        m_last = (end_ms - 1) - (end_ms - 1) % MINUTE_MS
        if (m_last - m_first) // MINUTE_MS >= self.max_minutes:
            return self.model.trades(exchange, symbol, start_ms, end_ms)
        parts = []
        for minute in range(m_first, m_last + 1, MINUTE_MS):
            tr = self._minute(exchange, symbol, minute)
            times = tr.time
            a = int(times.searchsorted(start_ms, "left")) if minute == m_first else 0
            b = int(times.searchsorted(end_ms, "left")) if minute == m_last else len(times)
            if a == 0 and b == len(times):
                parts.append(tr)
            else:
                parts.append(
                    type(tr)(tr.id[a:b], tr.time[a:b], tr.price[a:b], tr.qty[a:b], tr.taker_buy[a:b])
                )
        if len(parts) == 1:
            return parts[0]
        cls = type(parts[0])
        return cls(
            np.concatenate([p.id for p in parts]),
            np.concatenate([p.time for p in parts]),
            np.concatenate([p.price for p in parts]),
            np.concatenate([p.qty for p in parts]),
            np.concatenate([p.taker_buy for p in parts]),
        )
