"""Local order books and the book-sync state machines that keep them provably in sync.

Pure, no I/O: the live layer feeds a machine every :class:`~p9cli.exchanges.venue.BookSnapshot`
and :class:`~p9cli.exchanges.venue.BookDelta` of its symbol (from ``venue.decode`` and
``venue.parse_snapshot``) in arrival order and acts on what the machine says:

* ``on_event(event)`` returns a status (module constants below). ``INVALID`` is returned once,
  on the transition from a valid book (or a pending bridge) to no book; ``cause`` says why.
* ``valid``: the book is provably in sync with the exchange at ``update_id``; only then may it
  be handed on (``best_bid()``, ``best_ask()``, ``top(n)``, ``update_id``; ``seq`` too: Bybit's
  cross sequence of the state, ``None`` elsewhere).
* ``wants_snapshot``: send ``venue.snapshot_request(symbol)`` and feed the parsed snapshot back
  (Binance after any diff is buffered; OKX when updates arrive without an in-band snapshot).
  Keep at most one request in flight per book; a snapshot that is too old answers
  ``SNAPSHOT_TOO_OLD`` and ``wants_snapshot`` stays set.
* ``wants_resubscribe``: the stream must send a fresh in-band snapshot (Bybit after a gap):
  resubscribe the book once on the ``INVALID`` transition.
* ``invalidate(cause)``: the caller drops the book itself (connection lost, resubscribed, ...).

Statuses: ``SNAPSHOT`` (book (re)loaded, valid), ``APPLIED`` (delta applied, valid),
``STALE`` (old or duplicate update ignored, still valid), ``BUFFERED`` (kept until a snapshot
bridges it), ``WAITING`` (no book and nothing to keep: dropped), ``SNAPSHOT_TOO_OLD`` (fetch
another), ``INVALID``.

Causes (``cause``, counted in ``resyncs``): ``gap``, ``checksum``, ``crossed``, ``reset``
(Bybit ``u=1`` service restart: the book is reloaded at once, counted, never invalid),
``malformed`` (a level that cannot be read), ``overflow`` (the delta buffer hit its bound and
lost updates), or whatever the caller passes to ``invalidate``.

Levels are keyed by the exact price strings the exchange sent (OKX checksums depend on them);
a sorted list of float keys per side gives best-first order without re-sorting. Memory is
bounded: at most ``max_buffer`` buffered deltas and ``max_levels`` levels per side (the
farthest levels are dropped; the top of the book is unaffected).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable

from p9cli.exchanges.venue import BookDelta, BookSnapshot

SNAPSHOT = "snapshot"
APPLIED = "applied"
STALE = "stale"
BUFFERED = "buffered"
WAITING = "waiting"
SNAPSHOT_TOO_OLD = "snapshot_too_old"
INVALID = "invalid"

GAP = "gap"
CHECKSUM = "checksum"
CROSSED = "crossed"
RESET = "reset"
MALFORMED = "malformed"
OVERFLOW = "overflow"
HORIZON = "horizon"

#: Statuses after which the book is valid and may be handed on.
VALID_STATUSES = frozenset({SNAPSHOT, APPLIED, STALE})

DEFAULT_MAX_BUFFER = 2_000
DEFAULT_MAX_LEVELS = 5_000


class BookSide:
    """One side of a book: ``levels`` maps exact price string -> exact size string."""

    __slots__ = ("descending", "levels", "_keys", "_by_key", "max_levels", "horizon")

    def __init__(self, descending: bool, max_levels: int = DEFAULT_MAX_LEVELS):
        self.descending = descending
        self.max_levels = max_levels
        self.levels: dict[str, str] = {}
        self._keys: list[float] = []  # sort keys, best first (bids store -price)
        self._by_key: dict[float, str] = {}  # sort key -> the price string stored
        #: sort key of the farthest level known to be complete up to (``None``: all of it).
        #: Levels beyond it were never seen (beyond a snapshot's depth, or trimmed) except the
        #: ones a delta set since: a gap-free view stops here (``top``, ``best``).
        self.horizon: float | None = None

    def __len__(self) -> int:
        return len(self.levels)

    def clear(self) -> None:
        self.levels.clear()
        self._keys.clear()
        self._by_key.clear()
        self.horizon = None

    def known(self) -> int:
        """How many levels lie within the horizon (all of them without one)."""
        h = self.horizon
        return len(self._keys) if h is None else bisect_right(self._keys, h)

    def set(self, price: str, size: str) -> None:
        """Insert, replace or (size zero) delete one level."""
        levels = self.levels
        if price in levels:  # the common case: a known level changes size or goes
            if size == "0" or float(size) == 0.0:
                key = -float(price) if self.descending else float(price)
                del levels[price]
                del self._by_key[key]
                keys = self._keys
                del keys[bisect_left(keys, key)]
            else:
                levels[price] = size
            return
        key = -float(price) if self.descending else float(price)
        if size == "0" or float(size) == 0.0:  # float() also rejects a non-number
            old = self._by_key.pop(key, None)  # the same price written differently
            if old is not None:
                del levels[old]
                keys = self._keys
                del keys[bisect_left(keys, key)]
            return
        old = self._by_key.get(key)
        if old is not None:  # same value written differently ("1.5" vs "1.50"): one level
            del levels[old]
        else:
            insort(self._keys, key)
            if len(self._keys) > self.max_levels:
                self._trim()
        self._by_key[key] = price
        levels[price] = size

    def _trim(self) -> None:
        keys = self._keys
        while len(keys) > self.max_levels:
            worst = keys.pop()
            price = self._by_key.pop(worst)
            if price in self.levels:
                del self.levels[price]
        # what lies beyond the last level kept is unknown from now on
        if keys and (self.horizon is None or keys[-1] < self.horizon):
            self.horizon = keys[-1]

    def load(self, levels: list, limit: int | None = None) -> None:
        """Replace the side with ``levels`` (a snapshot, any order; zero sizes skipped). A
        snapshot cut at ``limit`` levels (it sent that many) is known only up to its farthest
        level: that becomes the horizon."""
        self.clear()
        by_key, stored = self._by_key, self.levels
        sign = -1.0 if self.descending else 1.0
        for level in levels:
            price, size = level[0], level[1]
            if size == "0" or float(size) == 0.0:
                continue
            key = sign * float(price)
            old = by_key.get(key)
            if old is not None:
                del stored[old]
            by_key[key] = price
            stored[price] = size
        self._keys = sorted(by_key)
        if limit is not None and len(levels) >= limit and self._keys:
            self.horizon = self._keys[-1]
        if len(self._keys) > self.max_levels:
            self._trim()

    def top(self, n: int) -> list[tuple[str, str]]:
        """The best ``n`` levels as ``(price, size)`` strings, best first."""
        by_key, levels = self._by_key, self.levels
        keys = self._keys
        h = self.horizon
        end = min(n, len(keys)) if h is None else bisect_right(keys, h, 0, min(n, len(keys)))
        out = []
        for key in keys[:end]:
            price = by_key[key]
            out.append((price, levels[price]))
        return out

    def best(self) -> tuple[str, str] | None:
        keys = self._keys
        if not keys or (self.horizon is not None and keys[0] > self.horizon):
            return None
        price = self._by_key[keys[0]]
        return price, self.levels[price]

    def best_key(self) -> float | None:
        return self._keys[0] if self._keys else None


class OrderBook:
    """Bids (best = highest) and asks (best = lowest)."""

    __slots__ = ("bids", "asks")

    def __init__(self, max_levels: int = DEFAULT_MAX_LEVELS) -> None:
        self.bids = BookSide(descending=True, max_levels=max_levels)
        self.asks = BookSide(descending=False, max_levels=max_levels)

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def load(self, bids: list, asks: list, limit: int | None = None) -> None:
        self.bids.load(bids, limit)
        self.asks.load(asks, limit)

    def apply(self, bids: list, asks: list) -> None:
        set_bid, set_ask = self.bids.set, self.asks.set
        for level in bids:
            set_bid(level[0], level[1])
        for level in asks:
            set_ask(level[0], level[1])

    def is_crossed(self) -> bool:
        b, a = self.bids._keys, self.asks._keys
        return bool(b) and bool(a) and -b[0] >= a[0]


class BookSync:
    """What every exchange's machine shares: the book, validity, update id, wishes, counters."""

    exchange = ""

    def __init__(self, symbol: str, max_buffer: int = DEFAULT_MAX_BUFFER, max_levels: int = DEFAULT_MAX_LEVELS):
        self.symbol = symbol
        self.book = OrderBook(max_levels)
        self.valid = False
        self.update_id: int | None = None
        #: Bybit's cross sequence ``seq`` of the state (matching-engine order, comparable across
        #: depths); ``None`` on the other exchanges.
        self.seq: int | None = None
        self.cause: str | None = None
        self.wants_snapshot = False
        self.wants_resubscribe = False
        self.max_buffer = max_buffer
        self.buffer: deque = deque()
        self.stats = {"snapshots": 0, "applied": 0, "stale": 0, "buffered": 0, "buffer_dropped": 0}
        self.resyncs: dict[str, int] = {}

    # -- reading a valid book ------------------------------------------------------------

    def best_bid(self) -> tuple[str, str] | None:
        return self.book.bids.best() if self.valid else None

    def best_ask(self) -> tuple[str, str] | None:
        return self.book.asks.best() if self.valid else None

    def top(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The best ``n`` bids and asks as ``(price, size)`` strings (empty when not valid)."""
        if not self.valid:
            return [], []
        return self.book.bids.top(n), self.book.asks.top(n)

    # -- caller actions ------------------------------------------------------------------

    def invalidate(self, cause: str) -> None:
        """Drop the book (e.g. the connection was lost); counted under ``cause``. Nothing is
        wanted until new events arrive (a new connection subscribes afresh)."""
        self._invalid(cause)
        self.buffer.clear()
        self.wants_snapshot = False
        self.wants_resubscribe = False

    def on_event(self, event: BookSnapshot | BookDelta) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- shared steps --------------------------------------------------------------------

    def _invalid(self, cause: str) -> str:
        self.book.clear()
        self.valid = False
        self.update_id = None
        self.seq = None
        self.cause = cause
        self.resyncs[cause] = self.resyncs.get(cause, 0) + 1
        return INVALID

    def _keep(self, event: BookDelta) -> str:
        buf = self.buffer
        buf.append(event)
        self.stats["buffered"] += 1
        if len(buf) > self.max_buffer:
            buf.popleft()
            self.stats["buffer_dropped"] += 1
        return BUFFERED

    def _load(self, event: BookSnapshot, limit: int | None = None) -> bool:
        try:
            self.book.load(event.bids, event.asks, limit)
        except (TypeError, ValueError, IndexError):
            self._invalid(MALFORMED)
            return False
        if self.book.is_crossed():
            self._invalid(CROSSED)
            return False
        self.update_id = event.update_id
        self.seq = event.seq
        self.valid = True
        self.cause = None
        self.wants_snapshot = False
        self.wants_resubscribe = False
        self.stats["snapshots"] += 1
        return True

    def _apply(self, event: BookDelta) -> bool:
        book = self.book
        try:
            book.apply(event.bids, event.asks)
        except (TypeError, ValueError, IndexError):
            self._invalid(MALFORMED)
            return False
        b, a = book.bids._keys, book.asks._keys
        if b and a and -b[0] >= a[0]:
            self._invalid(CROSSED)
            return False
        self.update_id = event.update_id
        self.seq = event.seq
        self.stats["applied"] += 1
        return True


class BinanceBookSync(BookSync):
    """Binance diff depth + REST snapshot (reference §2.6; USD-M futures variant with ``pu``).

    Diffs are buffered until a REST snapshot (``from_rest``) bridges them; ``wants_snapshot`` is
    set as soon as one diff is buffered. Snapshot ``lastUpdateId + 1 < U`` of the first buffered
    diff: too old. Spot: a diff with ``u <= book id`` is stale, ``U > book id + 1`` is a gap
    (``lastUpdateId == U - 1`` is continuous: seen on the recorded NKNUSDT session), otherwise
    applied. Futures (``futures=True``): after the snapshot, diffs with ``u < lastUpdateId`` are
    stale, the first applied one must have ``U <= lastUpdateId <= u``, then each ``pu`` must equal
    the previous ``u``. After a gap the offending diff starts a new buffer.

    **Snapshot depth.** The REST snapshot carries ``snapshot_limit`` levels a side; levels beyond
    its farthest one are unknown until they change (reference 2.6 step 7), so each side is known
    only up to that price (its *horizon*): ``top``/``best`` never reach past it. As the price
    moves the known part of a side shrinks; when it holds fewer than ``min_known`` levels a fresh
    snapshot is wanted while the book stays valid (``stats["refreshes"]``): a shadow machine
    buffers the same diffs, is bridged by the snapshot like a first sync, and its book replaces
    this one once both stand at the same update id. A side with no known level left is invalid
    (cause ``horizon``): its best level is unknown.
    """

    exchange = "binance"

    def __init__(
        self, symbol: str, futures: bool = False, snapshot_limit: int | None = 1000, min_known: int = 200, **kw
    ):
        super().__init__(symbol, **kw)
        self.futures = futures
        self.snapshot_limit = snapshot_limit
        self.min_known = min_known
        self.stats["refreshes"] = 0
        self._first_pending = False
        self._refresh: BinanceBookSync | None = None

    def on_event(self, event: BookSnapshot | BookDelta) -> str:
        if type(event) is BookSnapshot:
            if self.valid and self._refresh is not None:
                return self._on_refresh_snapshot(event)
            return self._on_snapshot(event)
        if not self.valid:
            self.wants_snapshot = True
            return self._keep(event)
        shadow = self._refresh
        if shadow is not None:
            shadow.on_event(event)
        status = self._on_diff(event)
        if status == APPLIED:
            if shadow is not None and self._refresh is shadow:
                self._adopt_if_level()
            else:
                status = self._check_horizon(status)
        return status

    def _invalid(self, cause: str) -> str:
        self._refresh = None
        return super()._invalid(cause)

    def _check_horizon(self, status: str) -> str:
        """After a change of a valid book: still a best level on each side? deep enough?"""
        bids, asks = self.book.bids, self.book.asks
        if bids.horizon is None and asks.horizon is None:
            return status
        nb, na = bids.known(), asks.known()
        if (nb == 0 and bids.horizon is not None) or (na == 0 and asks.horizon is not None):
            self._invalid(HORIZON)
            self.buffer.clear()
            self.wants_snapshot = True
            return INVALID
        if self._refresh is None and min(
            nb if bids.horizon is not None else self.min_known, na if asks.horizon is not None else self.min_known
        ) < self.min_known:
            self._refresh = BinanceBookSync(
                self.symbol,
                self.futures,
                self.snapshot_limit,
                min_known=0,
                max_buffer=self.max_buffer,
                max_levels=self.book.bids.max_levels,
            )
            self.wants_snapshot = True
            self.stats["refreshes"] += 1
        return status

    def _on_refresh_snapshot(self, snap: BookSnapshot) -> str:
        shadow = self._refresh
        status = shadow.on_event(snap)
        if shadow.valid:
            self.wants_snapshot = False
            if self._adopt_if_level():
                return SNAPSHOT
            return STALE  # the snapshot is ahead of the diffs received: adopted when they catch up
        self.wants_snapshot = shadow.wants_snapshot
        return SNAPSHOT_TOO_OLD if status == SNAPSHOT_TOO_OLD else STALE

    def _adopt_if_level(self) -> bool:
        """Take the refreshed book once the shadow stands where this one does."""
        shadow = self._refresh
        if shadow is None or not shadow.valid or shadow.update_id != self.update_id:
            return False
        self.book = shadow.book
        self._refresh = None
        self.wants_snapshot = False
        self.stats["snapshots"] += 1
        return True

    def _on_snapshot(self, snap: BookSnapshot) -> str:
        snap_id = snap.update_id
        if snap_id is None:
            return SNAPSHOT_TOO_OLD if not self.valid else STALE
        buf = self.buffer
        if self.valid:
            return STALE  # a late answer; the book is already in sync
        if buf and snap_id < buf[0].first_id - (0 if self.futures else 1):
            self.wants_snapshot = True
            return SNAPSHOT_TOO_OLD
        if not self._load(snap, self.snapshot_limit):
            self.wants_snapshot = True
            return INVALID
        self._first_pending = True
        pending = list(buf)
        buf.clear()
        for i, diff in enumerate(pending):
            status = self._on_diff(diff)
            if status == INVALID:
                buf.extend(pending[i + 1 :])
                return INVALID
        if self._check_horizon(SNAPSHOT) == INVALID:
            return INVALID
        return SNAPSHOT

    def _on_diff(self, diff: BookDelta) -> str:
        last = self.update_id
        first_id, last_id = diff.first_id, diff.update_id
        if self.futures:
            if self._first_pending:
                if last_id < last:
                    self.stats["stale"] += 1
                    return STALE
                if not first_id <= last <= last_id:
                    return self._gap(diff)
                self._first_pending = False
            elif diff.prev_id != last:
                if last_id <= last:
                    self.stats["stale"] += 1
                    return STALE
                return self._gap(diff)
        else:
            if last_id <= last:
                self.stats["stale"] += 1
                return STALE
            if first_id > last + 1:
                return self._gap(diff)
            self._first_pending = False
        if self._apply(diff):
            return APPLIED
        self.wants_snapshot = True
        return INVALID

    def _gap(self, diff: BookDelta) -> str:
        self._invalid(GAP)
        self.buffer.clear()
        self.buffer.append(diff)
        self.wants_snapshot = True
        return INVALID


class BybitBookSync(BookSync):
    """Bybit ``orderbook.{depth}.{symbol}``: a snapshot at any time replaces the book (``u == 1``,
    the service restarted, is a fresh snapshot too: counted as ``reset``); each delta must carry
    ``u == previous u + 1`` (older or equal: stale; a jump: gap -> resubscribe)."""

    exchange = "bybit"

    def on_event(self, event: BookSnapshot | BookDelta) -> str:
        if type(event) is BookSnapshot or event.update_id == 1:
            if event.update_id == 1 and self.update_id is not None:
                self.resyncs[RESET] = self.resyncs.get(RESET, 0) + 1
            if self._load(event):
                return SNAPSHOT
            self.wants_resubscribe = True
            return INVALID
        if not self.valid:
            return WAITING
        u = event.update_id
        last = self.update_id
        if u == last + 1:
            if self._apply(event):
                return APPLIED
            self.wants_resubscribe = True
            return INVALID
        if u <= last:
            self.stats["stale"] += 1
            return STALE
        self._invalid(GAP)
        self.wants_resubscribe = True
        return INVALID


class OkxBookSync(BookSync):
    """OKX ``books`` by ``seqId``/``prevSeqId``, both snapshot modes chosen by what arrives.

    * In-band snapshot (``action: snapshot``): the book is loaded at its ``seqId``.
    * Updates without a book: buffered, ``wants_snapshot`` set; the REST snapshot (``seqId`` S)
      bridges them: ``S < prevSeqId`` of the first buffered update is too old; buffered updates
      with ``seqId <= S`` are dropped; the first remaining one needs ``prevSeqId <= S < seqId``.
    * Then each update needs ``prevSeqId == previous seqId`` (a keep-alive has ``seqId ==
      prevSeqId``; after maintenance ``seqId`` may go down); otherwise a gap.
    * A NON-ZERO ``checksum`` (legacy signed CRC32 of the top 25 levels, exact strings) is
      verified after every snapshot/update; ``0`` (production since 2026-06-23) or absent is
      skipped. Pre-2023 frames have no ``seqId``: the checksum alone chains them.

    After a gap or a bad checksum the offending update starts a new buffer and a REST snapshot
    is wanted (an in-band snapshot arriving first wins).
    """

    exchange = "okx"

    def __init__(self, symbol: str, checksum: Callable[[list, list], int] | None = None, **kw):
        super().__init__(symbol, **kw)
        self.checksum = checksum
        self._bridge = False

    def on_event(self, event: BookSnapshot | BookDelta) -> str:
        if type(event) is BookSnapshot:
            if event.from_rest:
                return self._on_rest_snapshot(event)
            self.buffer.clear()
            self._bridge = False
            if not self._load(event):
                return INVALID
            return self._verify(event, SNAPSHOT)
        if not self.valid:
            self.wants_snapshot = True
            return self._keep(event)
        return self._on_update(event)

    def _on_update(self, upd: BookDelta) -> str:
        last = self.update_id
        prev = upd.prev_id
        if self._bridge:
            seq = upd.update_id
            if seq is not None and last is not None:
                if seq <= last:
                    self.stats["stale"] += 1
                    return STALE
                if prev is not None and prev > last:
                    return self._gap(upd)
            self._bridge = False
        elif prev is not None and last is not None and prev != last:
            return self._gap(upd)
        if not self._apply(upd):
            self.wants_snapshot = True
            return INVALID
        return self._verify(upd, APPLIED)

    def _on_rest_snapshot(self, snap: BookSnapshot) -> str:
        if self.valid:
            return STALE  # the stream's own snapshot came first
        buf = self.buffer
        s = snap.update_id
        if s is None:
            return SNAPSHOT_TOO_OLD
        first_prev = buf[0].prev_id if buf else None
        if first_prev is not None and first_prev >= 0 and s < first_prev:
            self.wants_snapshot = True
            return SNAPSHOT_TOO_OLD
        if not self._load(snap):
            self.wants_snapshot = True
            return INVALID
        self._bridge = True
        pending = list(buf)
        buf.clear()
        for i, upd in enumerate(pending):
            status = self._on_update(upd)
            if status == INVALID:
                buf.extend(pending[i + 1 :])
                return INVALID
        return SNAPSHOT

    def _verify(self, event: BookSnapshot | BookDelta, status: str) -> str:
        ck = event.checksum
        if ck and self.checksum is not None and self.checksum(self.book.bids.top(25), self.book.asks.top(25)) != ck:
            self._invalid(CHECKSUM)
            self.buffer.clear()
            self.wants_snapshot = True
            return INVALID
        return status

    def _gap(self, upd: BookDelta) -> str:
        self._invalid(GAP)
        self._bridge = False
        self.buffer.clear()
        self.buffer.append(upd)
        self.wants_snapshot = True
        return INVALID
