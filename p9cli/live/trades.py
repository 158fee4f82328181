"""Trade de-duplication across reconnects and overlapping connections, and gap accounting.

Pure logic, one :class:`TradeTape` per (exchange, symbol).

* Every trade is admitted at most once, by its exchange trade id: the ids seen recently are
  remembered (bounded), so a trade delivered by both the old and the replacement connection
  during a switch-over, or replayed after a reconnect, is handed on once.
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
        "holes",
        "missing",
        "duplicates",
        "accepted",
        "blind_intervals",
    )

    def __init__(self, remember: int = 20_000, settle_s: float = 3.0):
        self.remember = remember
        self.settle_s = settle_s
        self._ids: set[str] = set()
        self._order: deque[str] = deque()
        #: highest sequence number admitted (contiguous venues)
        self.last_seq: int | None = None
        #: open holes ``[first, last, opened_at]`` (ascending)
        self.holes: list[list] = []
        self.missing = 0
        self.duplicates = 0
        self.accepted = 0
        self.blind_intervals = 0

    def admit(self, trade_id: str, first: int | None, last: int | None, now: float) -> bool:
        """True when the trade is new (hand it on); False for a duplicate."""
        if trade_id in self._ids:
            self.duplicates += 1
            return False
        if last is not None:
            ls = self.last_seq
            if ls is not None and last <= ls and not self._fills_hole(first, last):
                # older than everything admitted and not inside an open hole: seen before
                # (and forgotten by the bounded memory) or replayed twice
                self.duplicates += 1
                return False
            if ls is None or first > ls:
                if ls is not None and first > ls + 1:
                    self.holes.append([ls + 1, first - 1, now])
                self.last_seq = last
        ids, order = self._ids, self._order
        ids.add(trade_id)
        order.append(trade_id)
        if len(order) > self.remember:
            ids.discard(order.popleft())
        self.accepted += 1
        return True

    def _fills_hole(self, first: int | None, last: int) -> bool:
        """Remove ``first..last`` from the open holes; True when it lay inside one."""
        if first is None:
            first = last
        for i, hole in enumerate(self.holes):
            a, b, t = hole
            if first >= a and last <= b:
                parts = []
                if a < first:
                    parts.append([a, first - 1, t])
                if last < b:
                    parts.append([last + 1, b, t])
                self.holes[i : i + 1] = parts
                return True
        return False

    def open_holes(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b, _ in self.holes]

    def settle(self, now: float) -> int:
        """Close the holes older than ``settle_s``; returns how many trades they lost."""
        lost = 0
        keep = []
        for hole in self.holes:
            if now - hole[2] >= self.settle_s:
                lost += hole[1] - hole[0] + 1
            else:
                keep.append(hole)
        if lost:
            self.holes = keep
            self.missing += lost
        return lost
