"""Client-side rate limiting: admit a request only when its bucket has room.

Each exchange publishes its limits as :class:`~p9cli.exchanges.base.RateBucket` values. A
:class:`Bucket` keeps one ``Slot`` per admitted request and counts it against the limit in the
safest way that costs nothing in speed:

* ``sliding`` (Bybit, OKX: "N requests per T seconds"): a request counts from the moment it
  is sent until ``window_s`` after its answer arrived. The server saw it somewhere in between,
  so when the count drops below capacity, any window the server can measure holds at most
  ``capacity`` requests — whatever the network latency.
* ``fixed`` (Binance weight per UTC minute): windows are aligned on the *server's* clock; a
  request counts in every window its flight ``[sent, answered]`` touches, and the server's own
  figure (``X-MBX-USED-WEIGHT-1M``) raises the count when other clients share the IP.

``pause(seconds)`` stops the bucket for everybody (``Retry-After`` is absolute: the whole
bucket waits, not only the request that was told).

One :class:`ExchangeLimiter` per exchange host and process (see :mod:`p9cli.rest.hosts`);
:meth:`ExchangeLimiter.export_state` / :meth:`ExchangeLimiter.import_state` hand the recent
requests over to the next process. Every slot carries an id, so importing a state that this
process wrote itself counts nothing twice.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

_SLOT_IDS = itertools.count(1)
_PROCESS_TAG = f"{os.getpid()}-{time.time_ns()}"


def _new_slot_id() -> str:
    return f"{_PROCESS_TAG}-{next(_SLOT_IDS)}"


@dataclass(slots=True)
class Slot:
    cost: int
    sent: float  # monotonic seconds
    done: float | None = None
    id: str = field(default_factory=_new_slot_id)


class Bucket:
    """One rate-limit bucket. Times are monotonic seconds from ``clock``; ``server_ms`` maps a
    monotonic time to the exchange's clock in ms (used to align ``fixed`` windows)."""

    def __init__(
        self,
        name: str,
        capacity: int,
        window_s: float,
        kind: str = "sliding",
        *,
        reserve: int = 0,
        clock: Callable[[], float] = time.monotonic,
        server_ms: Callable[[float], float] | None = None,
    ):
        if kind not in ("sliding", "fixed"):
            raise ValueError(f"unknown bucket kind {kind!r}")
        if capacity < 1 or window_s <= 0:
            raise ValueError("capacity must be >= 1 and window_s > 0")
        self.name = name
        self.capacity = capacity
        self.window_s = window_s
        self.kind = kind
        self.limit = max(1, capacity - reserve)
        self.clock = clock
        self.server_ms = server_ms or (lambda mono: (time.time() + (mono - time.monotonic())) * 1000.0)
        self.slots: list[Slot] = []
        self.paused_until = 0.0
        self.reported: dict[int, int] = {}  # fixed: window index -> usage the server reported
        self.reported_sliding: list[Slot] = []  # sliding: phantom usage the server reported
        #: futures of the acquirers waiting for a change (plain futures, no lock: the check
        #: and the take in :meth:`acquire` run without an ``await`` between them)
        self._waiters: set[asyncio.Future] = set()
        self.admitted = 0
        self.waited_s = 0.0

    # -- accounting ------------------------------------------------------------------------

    def _window_index(self, mono: float) -> int:
        return int(self.server_ms(mono) // (self.window_s * 1000.0))

    def _window_end_mono(self, index: int) -> float:
        """Monotonic time at which the server's window ``index`` ends."""
        end_server_ms = (index + 1) * self.window_s * 1000.0
        now = self.clock()
        return now + (end_server_ms - self.server_ms(now)) / 1000.0

    def _prune(self, now: float) -> None:
        keep_after = now - self.window_s * (2 if self.kind == "fixed" else 1)
        self.slots = [s for s in self.slots if s.done is None or s.done > keep_after]
        self.reported_sliding = [s for s in self.reported_sliding if s.done > now - self.window_s]
        if self.kind == "fixed" and self.reported:
            current = self._window_index(now)
            self.reported = {w: n for w, n in self.reported.items() if w >= current - 1}

    def usage(self, now: float | None = None) -> int:
        """Units counted against the limit right now."""
        now = self.clock() if now is None else now
        self._prune(now)
        if self.kind == "sliding":
            local = sum(s.cost for s in self.slots if s.done is None or s.done + self.window_s > now)
            return local + sum(s.cost for s in self.reported_sliding)
        w = self._window_index(now)
        local = 0
        in_flight = 0
        for s in self.slots:
            if s.done is None:
                in_flight += s.cost
                local += s.cost
            elif self._window_index(s.done) >= w:
                local += s.cost
        reported = self.reported.get(w)
        if reported is None:
            return local
        return max(local, reported + in_flight)

    def _next_change(self, now: float) -> float | None:
        """Seconds until the usage may drop without any answer arriving (None: only an answer
        can free room)."""
        if self.kind == "sliding":
            ends = [s.done + self.window_s for s in self.slots if s.done is not None]
            ends += [s.done + self.window_s for s in self.reported_sliding]
            ends = [e for e in ends if e > now]
            return (min(ends) - now) if ends else None
        end = self._window_end_mono(self._window_index(now))
        return max(0.0, end - now) + 0.001

    # -- public API -----------------------------------------------------------------------

    async def acquire(self, cost: int = 1) -> Slot:
        """Wait until ``cost`` units fit, then take them. Release with :meth:`release`."""
        if cost > self.limit:
            cost = self.limit  # a single oversized call still has to go through, alone
        t0 = self.clock()
        while True:
            now = self.clock()
            if now < self.paused_until:
                await self._wait(self.paused_until - now)
                continue
            if self.usage(now) + cost <= self.limit:
                slot = Slot(cost, now)
                self.slots.append(slot)
                self.admitted += 1
                self.waited_s += now - t0
                return slot
            await self._wait(self._next_change(now))

    async def _wait(self, timeout: float | None) -> None:
        """Until :meth:`_notify` or ``timeout`` seconds. A bare future and a timer: cancelling
        the waiter leaves nothing behind (``wait_for`` over ``Condition.wait`` could leave an
        inner task holding the condition's lock on Ctrl-C, and every other waiter hung)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters.add(fut)
        timer = loop.call_later(timeout, _wake, fut) if timeout is not None else None
        try:
            await fut
        finally:
            self._waiters.discard(fut)
            if timer is not None:
                timer.cancel()

    def _notify(self) -> None:
        for fut in self._waiters:
            _wake(fut)

    async def release(self, slot: Slot, hold_s: float = 0.0) -> None:
        """The answer (or the failure) arrived: start the slot's cool-down. ``hold_s``: the
        server may still count the request that long from now (a request that timed out on
        our side can sit in the server's queue), so the cool-down starts that much later."""
        slot.done = self.clock() + max(0.0, hold_s)
        self._notify()

    def give_back(self, slot: Slot) -> None:
        """Un-take a slot that was never used (nothing was sent): the room is free at once."""
        self.slots.remove(slot)
        self._notify()

    async def observe(self, used: int) -> None:
        """The server says ``used`` units are taken in its current window."""
        now = self.clock()
        if self.kind == "fixed":
            w = self._window_index(now)
            self.reported[w] = max(self.reported.get(w, 0), int(used))
        else:
            local = self.usage(now)
            extra = int(used) - local
            if extra > 0:
                self.reported_sliding.append(Slot(extra, now, now))
        self._notify()

    # -- hand-over between runs -------------------------------------------------------------

    def export_state(self, wall_minus_mono: float) -> dict:
        """The slots that still count (and the pause), in wall-clock seconds, for the next run."""
        now = self.clock()
        self._prune(now)
        keep = self.window_s * (2 if self.kind == "fixed" else 1)
        slots = [
            [s.cost, s.sent + wall_minus_mono, None if s.done is None else s.done + wall_minus_mono, s.id]
            for s in (*self.slots, *self.reported_sliding)
            if s.done is None or s.done + keep > now
        ]
        paused = self.paused_until + wall_minus_mono if self.paused_until > now else None
        return {"slots": slots, "paused_until": paused}

    def import_state(self, state: dict, wall_minus_mono: float, in_flight_grace_s: float) -> None:
        """Count an earlier run's requests. Those it had in flight (it may have been killed)
        are taken as answered ``in_flight_grace_s`` from now: the server may still see them.
        A slot this bucket already holds (same id: this process wrote the state) is skipped."""
        now = self.clock()
        known = {s.id for s in self.slots} | {s.id for s in self.reported_sliding}
        for cost, sent_wall, done_wall, *rest in state.get("slots", ()):
            slot_id = str(rest[0]) if rest else _new_slot_id()
            if slot_id in known:
                continue
            sent = float(sent_wall) - wall_minus_mono
            done = now + in_flight_grace_s if done_wall is None else float(done_wall) - wall_minus_mono
            self.slots.append(Slot(int(cost), min(sent, now), done, slot_id))
            known.add(slot_id)
        paused = state.get("paused_until")
        if paused is not None:
            self.paused_until = max(self.paused_until, float(paused) - wall_minus_mono)
        self._prune(now)

    async def pause(self, seconds: float) -> None:
        """Admit nothing for ``seconds`` (from now). Never shortens an earlier pause."""
        until = self.clock() + max(0.0, seconds)
        if until > self.paused_until:
            self.paused_until = until
        self._notify()


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class ExchangeLimiter:
    """The buckets of one exchange. Unknown bucket names get no limit (only the pause)."""

    def __init__(
        self,
        buckets: Iterable,
        *,
        clock: Callable[[], float] = time.monotonic,
        server_ms: Callable[[float], float] | None = None,
        fixed_reserve_fraction: float = 0.02,
    ):
        self.clock = clock
        self.buckets: dict[str, Bucket] = {}
        for b in buckets:
            reserve = math.ceil(b.capacity * fixed_reserve_fraction) if b.kind == "fixed" else 0
            self.buckets[b.name] = Bucket(
                b.name, b.capacity, b.window_s, b.kind, reserve=reserve, clock=clock, server_ms=server_ms
            )
        self.paused_until = 0.0

    def bucket(self, name: str) -> Bucket | None:
        return self.buckets.get(name)

    async def acquire(self, name: str, cost: int = 1) -> Slot | None:
        while True:
            now = self.clock()
            if now < self.paused_until:
                await asyncio.sleep(self.paused_until - now)
                continue
            b = self.buckets.get(name)
            if b is None:
                return None
            slot = await b.acquire(cost)
            if self.clock() < self.paused_until:  # paused while we waited: give the slot back
                b.give_back(slot)
                continue
            return slot

    async def release(self, name: str, slot: Slot | None, hold_s: float = 0.0) -> None:
        b = self.buckets.get(name)
        if b is not None and slot is not None:
            await b.release(slot, hold_s)

    async def observe(self, used: dict[str, int]) -> None:
        for name, n in used.items():
            b = self.buckets.get(name)
            if b is not None:
                await b.observe(n)

    def export_state(self) -> dict:
        """What the next run must still count: per bucket the recent slots and any pause."""
        offset = time.time() - time.monotonic()
        return {name: b.export_state(offset) for name, b in self.buckets.items()}

    def import_state(self, state: dict, in_flight_grace_s: float = 1.0) -> None:
        """Count the requests of an earlier run (of this or another process) still in the window."""
        offset = time.time() - time.monotonic()
        for name, bucket_state in (state or {}).items():
            b = self.buckets.get(name)
            if b is not None and isinstance(bucket_state, dict):
                b.import_state(bucket_state, offset, in_flight_grace_s)

    async def pause(self, seconds: float, name: str | None = None) -> None:
        """Pause one bucket, or (``name=None``) the whole exchange."""
        if name is not None and name in self.buckets:
            await self.buckets[name].pause(seconds)
            return
        until = self.clock() + max(0.0, seconds)
        self.paused_until = max(self.paused_until, until)
        for b in self.buckets.values():
            await b.pause(seconds)
