"""Trade de-duplication across reconnects and overlapping connections, and gap accounting.

Pure logic, one :class:`TradeTape` per (exchange, symbol).

* Every trade is admitted at most once, by its exchange trade id: the ids seen recently are
  remembered (bounded) with their exchange time, so a trade delivered by both the old and the
  replacement connection during a switch-over, or replayed after a reconnect, is handed on
  once. An id seen before but at another time, or a number already passed at a time newer
  than any trade seen, is not a duplicate: the exchange renumbered its trades (a restart;
  counted in ``renumbered``), and its trades keep flowing.
* Where the exchange numbers its trades contiguously (the venue gives each trade the span of
  sequence numbers ``first..last`` it covers: Binance aggregate id ``a``, OKX
  ``tradeId - count + 1 .. tradeId``), missing numbers become *holes*. A hole may still fill
  (the other connection of a switch-over, a REST replay); one still open ``settle_s`` after it
  appeared is final: its size is added to ``missing`` (trades the exchange did not deliver and
  that could not be replayed).
* Where ids are not contiguous, nothing can be said about single trades; the feed layer
  counts the disconnected intervals instead (:attr:`blind_intervals`).
"""

from __future__ import annotations

from collections import deque


class TradeTape:
    __slots__ = (
        "remember",
        "settle_s",
        "_ids",
        "_order",
        "last_seq",
        "last_ts",
        "holes",
        "missing",
        "duplicates",
        "accepted",
        "blind_intervals",
        "renumbered",
    )

    def __init__(self, remember: int = 20_000, settle_s: float = 3.0):
        self.remember = remember
        self.settle_s = settle_s
        self._ids: dict[str, int] = {}  # trade id -> exchange time
        self._order: deque[str] = deque()
        #: highest sequence number admitted (contiguous venues)
        self.last_seq: int | None = None
        #: newest exchange time of an admitted trade
        self.last_ts = 0
        #: open holes ``[first, last, opened_at, ts_before, ts_after]`` (ascending; the times
        #: are those of the trades on either side)
        self.holes: list[list] = []
        self.missing = 0
        self.duplicates = 0
        self.accepted = 0
        self.blind_intervals = 0
        self.renumbered = 0

    def admit(self, trade_id: str, first: int | None, last: int | None, now: float, ts_ms: int = 0) -> bool:
        """True when the trade is new (hand it on); False for a duplicate. ``ts_ms`` (the
        trade's exchange time) bounds the time span of a hole it opens."""
        ids = self._ids
        seen_ts = ids.get(trade_id)
        if seen_ts == ts_ms:  # the same id at the same time: the same trade
            self.duplicates += 1
            return False
        if last is not None:
            ls = self.last_seq
            if ls is not None and last <= ls:
                if self._fills_hole(first, last):
                    pass
                elif seen_ts is None and ts_ms > self.last_ts:
                    # a number already passed, at a time never seen: the exchange renumbered
                    # its trades (a restart). Holes of the old numbering can never fill now.
                    self.renumbered += 1
                    for hole in self.holes:
                        hole[2] = float("-inf")
                    self.last_seq = last
                else:  # seen before (perhaps forgotten by the bounded memory) or replayed twice
                    self.duplicates += 1
                    return False
            else:
                if ls is not None and first is not None and first > ls + 1:
                    self.holes.append([ls + 1, first - 1, now, self.last_ts, ts_ms])
                self.last_seq = last
        if ts_ms > self.last_ts:
            self.last_ts = ts_ms
        order = self._order
        if seen_ts is None:
            order.append(trade_id)
        ids[trade_id] = ts_ms
        if len(order) > self.remember:
            ids.pop(order.popleft(), None)
        self.accepted += 1
        return True

    def _fills_hole(self, first: int | None, last: int) -> bool:
        """Remove ``first..last`` from the open holes; True when it lay inside one."""
        if first is None:
            first = last
        for i, hole in enumerate(self.holes):
            a, b = hole[0], hole[1]
            if first >= a and last <= b:
                parts = []
                if a < first:
                    parts.append([a, first - 1, *hole[2:]])
                if last < b:
                    parts.append([last + 1, b, *hole[2:]])
                self.holes[i : i + 1] = parts
                return True
        return False

    def open_holes(self) -> list[tuple[int, int]]:
        return [(h[0], h[1]) for h in self.holes]

    def settle(self, now: float, hold_s: float = 0.0) -> int:
        """Close the holes older than ``settle_s`` (+ ``hold_s``: while a replay of them is still
        being tried); returns how many trades they lost."""
        lost = 0
        keep = []
        after = self.settle_s + hold_s
        for hole in self.holes:
            if now - hole[2] >= after:
                lost += hole[1] - hole[0] + 1
            else:
                keep.append(hole)
        if lost:
            self.holes = keep
            self.missing += lost
        return lost
