"""Local order books and the per-exchange rules that keep them provably in sync.

Pure state machines, no I/O: the live layer feeds them :class:`~p9cli.exchanges.base.BookMsg`
values (from the exchange modules' parsers) and acts on the status each call returns.

Levels are keyed by the exact price strings the exchange sent (OKX checksums depend on them);
a sorted list of float keys per side gives best-first order without re-sorting.

Statuses returned by ``on_message`` (module constants):

================ ======================================================================
``SNAPSHOT``      the book was (re)loaded from a snapshot and is in sync
``APPLIED``       a delta was applied; the book is in sync
``BUFFERED``      (Binance) a diff was kept until the REST snapshot arrives
``STALE``         an old or duplicate update was ignored; still in sync
``WAITING``       no snapshot yet (Bybit/OKX): the delta was dropped
``GAP``           an update is missing: the book was dropped; resync (Binance: new REST
                  snapshot; Bybit/OKX: resubscribe)
``BAD_CHECKSUM``  (OKX) the book does not match the exchange's CRC32: dropped; resubscribe
``TOO_OLD``       (Binance) the REST snapshot predates the buffered diffs: fetch another
``MALFORMED``     a level could not be read: dropped; resync
================ ======================================================================
"""

from __future__ import annotations

from bisect import bisect_left, insort

from p9cli.exchanges.base import BookMsg
from p9cli.exchanges.okx import checksum as okx_checksum

SNAPSHOT = "snapshot"
APPLIED = "applied"
BUFFERED = "buffered"
STALE = "stale"
WAITING = "waiting"
GAP = "gap"
BAD_CHECKSUM = "bad_checksum"
TOO_OLD = "snapshot_too_old"
MALFORMED = "malformed"

#: Statuses after which the book is in sync and may be published.
IN_SYNC_STATUSES = frozenset({SNAPSHOT, APPLIED, STALE})


class BookSide:
    """One side of a book: ``levels`` maps exact price string -> exact quantity string."""

    __slots__ = ("descending", "levels", "_keys", "_by_key")

    def __init__(self, descending: bool):
        self.descending = descending
        self.levels: dict[str, str] = {}
        self._keys: list[float] = []  # sort keys, best first (bids store -price)
        self._by_key: dict[float, str] = {}  # sort key -> the price string stored

    def __len__(self) -> int:
        return len(self.levels)

    def clear(self) -> None:
        self.levels.clear()
        self._keys.clear()
        self._by_key.clear()

    def set(self, price: str, qty: str) -> None:
        """Insert, replace or (quantity zero) delete one level."""
        levels = self.levels
        if qty == "0" or float(qty) == 0.0:  # float() also rejects a non-number
            key = -float(price) if self.descending else float(price)
            old = self._by_key.pop(key, None)
            if old is not None:
                del levels[old]
                keys = self._keys
                del keys[bisect_left(keys, key)]
            return
        if price in levels:  # the common case: a known level changes size
            levels[price] = qty
            return
        key = -float(price) if self.descending else float(price)
        old = self._by_key.get(key)
        if old is not None:  # same value written differently ("1.5" vs "1.50"): one level
            del levels[old]
        else:
            insort(self._keys, key)
        self._by_key[key] = price
        levels[price] = qty

    def load(self, levels: list) -> None:
        """Replace the side with ``levels`` (a snapshot, any order; zero quantities skipped)."""
        self.clear()
        by_key, stored = self._by_key, self.levels
        sign = -1.0 if self.descending else 1.0
        for level in levels:
            price, qty = level[0], level[1]
            if qty == "0" or float(qty) == 0.0:
                continue
            key = sign * float(price)
            old = by_key.get(key)
            if old is not None:
                del stored[old]
            by_key[key] = price
            stored[price] = qty
        self._keys = sorted(by_key)

    def top(self, n: int) -> list[tuple[str, str]]:
        """The best ``n`` levels as ``(price, qty)`` strings, best first."""
        by_key, levels = self._by_key, self.levels
        out = []
        for key in self._keys[:n]:
            price = by_key[key]
            out.append((price, levels[price]))
        return out

    def best(self) -> tuple[str, str] | None:
        if not self._keys:
            return None
        price = self._by_key[self._keys[0]]
        return price, self.levels[price]


class OrderBook:
    """Bids (best = highest) and asks (best = lowest)."""

    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def load(self, bids: list, asks: list) -> None:
        self.bids.load(bids)
        self.asks.load(asks)

    def apply(self, bids: list, asks: list) -> None:
        set_bid, set_ask = self.bids.set, self.asks.set
        for level in bids:
            set_bid(level[0], level[1])
        for level in asks:
            set_ask(level[0], level[1])

    def best_bid(self) -> tuple[str, str] | None:
        return self.bids.best()

    def best_ask(self) -> tuple[str, str] | None:
        return self.asks.best()

    def is_crossed(self) -> bool:
        b, a = self.bids.best(), self.asks.best()
        return b is not None and a is not None and float(b[0]) >= float(a[0])


class BookSync:
    """Common state of the per-exchange machines: the book, the last update id, counters."""

    exchange = ""

    def __init__(self) -> None:
        self.book = OrderBook()
        self.in_sync = False
        self.last_id: int | None = None
        self.stats = {"snapshots": 0, "applied": 0, "stale": 0, "gaps": 0, "bad_checksums": 0, "malformed": 0}

    def _drop(self, status: str) -> str:
        self.book.clear()
        self.in_sync = False
        self.last_id = None
        key = {GAP: "gaps", BAD_CHECKSUM: "bad_checksums", MALFORMED: "malformed"}.get(status)
        if key:
            self.stats[key] += 1
        return status

    def _load(self, msg: BookMsg) -> bool:
        try:
            self.book.load(msg.bids, msg.asks)
        except (TypeError, ValueError, IndexError):
            self._drop(MALFORMED)
            return False
        self.last_id = msg.last_id
        self.in_sync = True
        self.stats["snapshots"] += 1
        return True

    def _apply(self, msg: BookMsg) -> bool:
        try:
            self.book.apply(msg.bids, msg.asks)
        except (TypeError, ValueError, IndexError):
            self._drop(MALFORMED)
            return False
        self.last_id = msg.last_id
        self.stats["applied"] += 1
        return True

    def on_message(self, msg: BookMsg) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class BinanceBookSync(BookSync):
    """Binance REST snapshot + diff stream (doc section 2.6; USD-M futures variant with ``pu``).

    Feed every ``depthUpdate`` (kind ``delta``) and the REST snapshot (kind ``snapshot``) in
    arrival order. Until a snapshot is loaded, diffs are buffered. Spot: a diff with
    ``u <= last`` is stale, ``U > last + 1`` is a gap, otherwise applied. Futures
    (``futures=True``): after the snapshot, diffs with ``u < lastUpdateId`` are stale, the first
    applied one must have ``U <= lastUpdateId <= u``, then every ``pu`` must equal the previous
    ``u``. After a gap the book is dropped and the offending diff starts a new buffer: fetch a
    new snapshot.
    """

    exchange = "binance"

    def __init__(self, futures: bool = False, max_buffer: int = 10_000):
        super().__init__()
        self.futures = futures
        self.max_buffer = max_buffer
        self.buffer: list[BookMsg] = []
        self._first_pending = False

    def on_message(self, msg: BookMsg) -> str:
        if msg.kind == SNAPSHOT:
            return self._on_snapshot(msg)
        if not self.in_sync:
            self.buffer.append(msg)
            if len(self.buffer) > self.max_buffer:
                del self.buffer[0]
            return BUFFERED
        return self._on_diff(msg)

    def _on_snapshot(self, msg: BookMsg) -> str:
        snap_id = msg.last_id
        if snap_id is None:
            return self._drop(MALFORMED)
        if self.buffer and snap_id < self.buffer[0].first_id - (0 if self.futures else 1):
            # spot: snapshot older than the first buffered event (lastUpdateId + 1 < U)
            return TOO_OLD
        if not self._load(msg):
            return MALFORMED
        self._first_pending = True
        pending, self.buffer = self.buffer, []
        for i, diff in enumerate(pending):
            status = self._on_diff(diff)
            if status in (GAP, MALFORMED):
                self.buffer = pending[i:]
                return status
        return SNAPSHOT

    def _on_diff(self, msg: BookMsg) -> str:
        last = self.last_id
        first_id, last_id = msg.first_id, msg.last_id
        if self.futures:
            if self._first_pending:
                if last_id < last:
                    self.stats["stale"] += 1
                    return STALE
                if not first_id <= last <= last_id:
                    return self._gap(msg)
                self._first_pending = False
            elif msg.prev_id != last:
                if last_id <= last:
                    self.stats["stale"] += 1
                    return STALE
                return self._gap(msg)
        else:
            if last_id <= last:
                self.stats["stale"] += 1
                return STALE
            if first_id > last + 1:
                return self._gap(msg)
            self._first_pending = False
        return APPLIED if self._apply(msg) else MALFORMED

    def _gap(self, msg: BookMsg) -> str:
        self._drop(GAP)
        self.buffer = [msg]
        return GAP


class BybitBookSync(BookSync):
    """Bybit ``orderbook.{depth}.{symbol}``: a snapshot (or ``u == 1``) resets the book; each
    delta must carry ``u == last u + 1`` (an older or equal ``u`` is stale, a jump is a gap)."""

    exchange = "bybit"

    def on_message(self, msg: BookMsg) -> str:
        if msg.kind == SNAPSHOT or msg.last_id == 1:
            return SNAPSHOT if self._load(msg) else MALFORMED
        if not self.in_sync:
            return WAITING
        if msg.last_id == self.last_id + 1:
            return APPLIED if self._apply(msg) else MALFORMED
        if msg.last_id <= self.last_id:
            self.stats["stale"] += 1
            return STALE
        return self._drop(GAP)


class OkxBookSync(BookSync):
    """OKX ``books``: snapshot then updates chained by ``prevSeqId == previous seqId`` (a
    keep-alive update has ``seqId == prevSeqId``; after maintenance ``seqId`` may go down), and
    the CRC32 of the top 25 levels checked after every message. Frames without ``seqId`` (before
    2023) are checked by the checksum alone."""

    exchange = "okx"

    def __init__(self, verify_checksum: bool = True):
        super().__init__()
        self.verify_checksum = verify_checksum

    def on_message(self, msg: BookMsg) -> str:
        if msg.kind == SNAPSHOT:
            if not self._load(msg):
                return MALFORMED
            return self._check(msg, SNAPSHOT)
        if not self.in_sync:
            return WAITING
        if msg.prev_id is not None and self.last_id is not None and msg.prev_id != self.last_id:
            return self._drop(GAP)
        if not self._apply(msg):
            return MALFORMED
        return self._check(msg, APPLIED)

    def _check(self, msg: BookMsg, status: str) -> str:
        if (
            self.verify_checksum
            and msg.checksum is not None
            and okx_checksum(self.book.bids.top(25), self.book.asks.top(25)) != msg.checksum
        ):
            return self._drop(BAD_CHECKSUM)
        return status


def book_sync_for(exchange: str, futures: bool = False) -> BookSync:
    """A fresh sync machine for ``exchange`` (``binance`` / ``bybit`` / ``okx``)."""
    if exchange == "binance":
        return BinanceBookSync(futures=futures)
    if exchange == "bybit":
        return BybitBookSync()
    if exchange == "okx":
        return OkxBookSync()
    raise ValueError(f"unknown exchange {exchange!r}")
