"""Level events of the live price: break, retest and rejection (a small pure state machine).

Fed at every fusion tick with the price range traded since the previous tick (``low``, ``high``)
and the last price, and with the key levels of the structure document. Distances are in price
units the caller derives from ATR (see :data:`BUFFER_ATR` and :data:`REACTION_ATR`):

* ``buffer`` = max(0.1 x ATR(1h), 2 ticks): how far beyond a level price must trade for a
  **break**, and how close it must come for a **touch**;
* ``reaction`` = 0.5 x ATR(1h): how far price must move away after a touch for the touch to
  count as a **rejection** (the level held) or, after a break, as a **retest** (price came back
  to the broken level and moved away on the new side: the level flipped).

Per level the machine keeps which side of it price is on and whether the level was touched
(or, after a break, retested) and not yet resolved:

============ ========================================== =================================
event        when                                       ``direction``
============ ========================================== =================================
break        price trades ``buffer`` beyond the level     ``up`` / ``down``: the move's side
             from the side it was on
rejection    touched from one side, then the last price   ``up`` from support, ``down`` from
             is ``reaction`` away on the same side        resistance
retest       after a break, price came back within        ``up`` (old resistance held as
             ``buffer`` and then moved ``reaction`` away    support), ``down`` (the reverse)
             on the new side
============ ========================================== =================================

A level that leaves the document (structure recomputed) is forgotten; a new one starts from the
side the price is on. Events carry the level's price and the exchange time of the tick.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

BUFFER_ATR = 0.1
BUFFER_TICKS = 2
REACTION_ATR = 0.5
KEEP_EVENTS = 20


@dataclass(slots=True)
class _LevelState:
    above: bool  # price is above the level
    touched: bool = False  # within buffer since the last resolution
    broken: bool = False  # the last resolution was a break (a retest may follow)


class LevelEvents:
    """Break/retest/rejection detection over a changing set of levels (see module docstring)."""

    __slots__ = ("events", "states")

    def __init__(self) -> None:
        self.states: dict[float, _LevelState] = {}
        self.events: deque[dict] = deque(maxlen=KEEP_EVENTS)

    def update(
        self,
        levels: list[dict],
        low: float,
        high: float,
        last: float,
        buffer: float,
        reaction: float,
        ts_ms: int,
    ) -> list[dict]:
        """Advance by one tick; returns the events of this tick (also kept in ``events``).

        ``levels``: dicts with at least ``price`` (others, e.g. ``kind``/``strength``, are
        copied into the events). ``low``/``high``: the range traded since the previous tick
        (both equal to ``last`` when nothing traded)."""
        seen: dict[float, _LevelState] = {}
        out: list[dict] = []
        for level in levels:
            price = level.get("price")
            if price is None:
                continue
            st = self.states.get(price)
            if st is None:
                st = _LevelState(above=last >= price)
            seen[price] = st
            kind = self._step(st, price, low, high, last, buffer, reaction)
            if kind is not None:
                name, direction = kind
                ev = {"type": name, "direction": direction, "level": price, "event_ts": ts_ms}
                for key in ("kind", "strength", "timeframes"):
                    if key in level:
                        ev[key] = level[key]
                out.append(ev)
                self.events.append(ev)
        self.states = seen
        return out

    @staticmethod
    def _step(
        st: _LevelState, level: float, low: float, high: float, last: float, buffer: float, reaction: float
    ) -> tuple[str, str] | None:
        if st.above:
            if low <= level - buffer:  # traded through the level downwards
                st.above, st.touched, st.broken = False, False, True
                return "break", "down"
            if low <= level + buffer:
                st.touched = True
            if st.touched and last >= level + reaction:
                st.touched = False
                if st.broken:  # came back to the broken level from above and held: retest
                    st.broken = False
                    return "retest", "up"
                return "rejection", "up"
        else:
            if high >= level + buffer:
                st.above, st.touched, st.broken = True, False, True
                return "break", "up"
            if high >= level - buffer:
                st.touched = True
            if st.touched and last <= level - reaction:
                st.touched = False
                if st.broken:
                    st.broken = False
                    return "retest", "down"
                return "rejection", "down"
        return None

    def recent(self, n: int = 5) -> list[dict]:
        """The newest ``n`` events, newest first."""
        return list(reversed(self.events))[:n]


def distances(atr_1h: float | None, tick: float | None) -> tuple[float, float] | None:
    """``(buffer, reaction)`` in price units from ATR(1h) and the tick (None without an ATR)."""
    if not atr_1h or atr_1h <= 0:
        return None
    buffer = max(BUFFER_ATR * atr_1h, BUFFER_TICKS * (tick or 0.0))
    return buffer, REACTION_ATR * atr_1h
