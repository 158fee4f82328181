"""Client-side limiter: never more than capacity per window as the server can measure it,
and no slower than needed (real time, with small windows so the tests stay fast)."""

from __future__ import annotations

import asyncio
import time

from p9cli.exchanges.base import RateBucket
from p9cli.rest.ratelimit import Bucket, ExchangeLimiter


def max_in_any_window(events: list[tuple[float, float]], window: float) -> int:
    """Largest number of requests a server could count in one sliding window, when each
    request reached it at some unknown instant in [sent, done]: the worst case puts every
    request at the instant that crowds a window most. Window starting at each 'done'."""
    worst = 0
    for _, start in events:
        # a request can be counted in [start, start+window) iff its flight touches it
        n = sum(1 for s, d in events if d >= start and s < start + window)
        worst = max(worst, n)
    return worst


async def _run(bucket: Bucket, n: int, service_s: float) -> list[tuple[float, float]]:
    events = []

    async def one():
        slot = await bucket.acquire(1)
        sent = time.monotonic()
        await asyncio.sleep(service_s)
        done = time.monotonic()  # the answer came: before release, which stamps it at least this late
        await bucket.release(slot)
        events.append((sent, done))

    await asyncio.gather(*(one() for _ in range(n)))
    return events


async def test_sliding_bucket_never_exceeds_capacity_and_runs_at_the_floor():
    bucket = Bucket("t", 5, 0.3, "sliding")
    t0 = time.monotonic()
    events = await _run(bucket, 20, 0.0)
    elapsed = time.monotonic() - t0
    # strictly: any two requests in the same server window were sent after the previous
    # window's requests were answered + window
    sent = sorted(s for s, _ in events)
    dones = sorted(d for _, d in events)
    for i in range(5, 20):
        assert sent[i] >= dones[i - 5] + 0.3 - 1e-6
    # 4 windows: 3 waits of 0.3 s; not a window more each time (loose: the machine may be busy)
    assert 0.9 - 0.01 <= elapsed < 1.6


async def test_sliding_bucket_counts_requests_in_flight():
    bucket = Bucket("t", 2, 0.2, "sliding")
    a = await bucket.acquire()
    b = await bucket.acquire()
    third = asyncio.ensure_future(bucket.acquire())
    await asyncio.sleep(0.3)  # longer than the window: still blocked, a and b are in flight
    assert not third.done()
    t_release = time.monotonic()
    await bucket.release(a)
    slot = await asyncio.wait_for(third, 1)
    assert slot.sent - t_release >= 0.2 - 1e-3  # a's cool-down runs from its answer
    await bucket.release(b)
    await bucket.release(slot)


async def test_latency_is_covered_by_counting_from_the_answer():
    bucket = Bucket("t", 4, 0.2, "sliding")
    events = await _run(bucket, 12, 0.05)
    # with 50 ms in flight the server may see a request anywhere in [sent, done]
    assert max_in_any_window(events, 0.2) <= 4


async def test_pause_stops_the_bucket_for_everybody():
    bucket = Bucket("t", 100, 1.0, "sliding")
    await bucket.pause(0.25)
    t0 = time.monotonic()
    await asyncio.gather(*(bucket.acquire() for _ in range(3)))
    assert time.monotonic() - t0 >= 0.24
    # a shorter pause never shortens a longer one
    await bucket.pause(0.3)
    await bucket.pause(0.01)
    t0 = time.monotonic()
    await bucket.acquire()
    assert time.monotonic() - t0 >= 0.28


async def test_fixed_window_resets_at_the_servers_boundary():
    # the server's clock is 0.35 s before the end of a 4-second window (a long window, so that
    # "the rest of this window" and "a whole window" stay far apart on a busy machine)
    mono0 = time.monotonic()
    server_ms = lambda mono: 10_003_650.0 + (mono - mono0) * 1000.0  # noqa: E731
    bucket = Bucket("w", 10, 4.0, "fixed", server_ms=server_ms)
    slots = [await bucket.acquire(2) for _ in range(5)]  # 10 units: full
    for s in slots:
        await bucket.release(s)
    t0 = time.monotonic()
    slot = await bucket.acquire(2)
    waited = time.monotonic() - t0
    assert 0.3 <= waited <= 2.5  # until the next server window (0.35 s), not a whole one (4 s)
    assert server_ms(slot.sent) >= 10_004_000


async def test_fixed_window_follows_the_servers_used_weight_header():
    mono0 = time.monotonic()
    server_ms = lambda mono: 20_003_700.0 + (mono - mono0) * 1000.0  # noqa: E731
    bucket = Bucket("w", 100, 4.0, "fixed", server_ms=server_ms)
    await bucket.observe(99)  # somebody else on this IP used 99 of 100
    t0 = time.monotonic()
    await bucket.acquire(2)
    assert 0.25 <= time.monotonic() - t0 <= 2.5  # the rest of this server window, not a whole one


async def test_sliding_window_follows_reported_usage():
    bucket = Bucket("s", 10, 0.3, "sliding")
    await bucket.observe(10)
    t0 = time.monotonic()
    await bucket.acquire()
    assert time.monotonic() - t0 >= 0.29


async def test_exchange_limiter_pause_all_and_unknown_bucket():
    lim = ExchangeLimiter([RateBucket("a", 5, 1.0, "sliding"), RateBucket("b", 6000, 60.0, "fixed")])
    assert lim.bucket("b").limit == 6000 - 120  # a 2 % reserve on fixed windows
    assert await lim.acquire("nope") is None  # unknown bucket: no limit
    await lim.pause(0.2)
    t0 = time.monotonic()
    slot = await lim.acquire("a")
    assert time.monotonic() - t0 >= 0.19
    await lim.release("a", slot)
    await lim.observe({"b": 17, "unknown": 3})
    assert lim.bucket("b").usage() >= 17


async def test_state_hands_over_to_the_next_run_including_in_flight_and_pauses():
    first = ExchangeLimiter([RateBucket("s", 3, 0.4, "sliding"), RateBucket("p", 10, 1.0, "sliding")])
    done = [await first.acquire("s") for _ in range(2)]
    for slot in done:
        await first.release("s", slot)
    await first.acquire("s")  # still in flight when the process "dies"
    await first.pause(0.3, "p")  # told to wait (Retry-After)
    state = first.export_state()

    second = ExchangeLimiter([RateBucket("s", 3, 0.4, "sliding"), RateBucket("p", 10, 1.0, "sliding")])
    second.import_state(state, in_flight_grace_s=0.2)
    assert second.bucket("s").usage() == 3
    t0 = time.monotonic()
    await second.acquire("p")  # the pause carries over
    assert time.monotonic() - t0 >= 0.2
    await second.acquire("s")  # waits for the first run's answered requests to leave the window
    assert time.monotonic() - t0 >= 0.35
    # garbage in a state file is not fatal for the caller that guards it, and unknown buckets are ignored
    second.import_state({"unknown": {"slots": [[1, 0.0, None]]}})


async def test_a_slot_given_back_during_an_exchange_pause_frees_the_room_at_once():
    """An exchange-wide pause set while a request waited for its bucket: the request gives
    its unused slot back, and a request waiting for room in that bucket gets it at once
    (not only when some answer arrives)."""
    lim = ExchangeLimiter([RateBucket("a", 2, 5.0, "sliding"), RateBucket("b", 1, 5.0, "sliding")])
    bucket = lim.bucket("a")
    in_flight = await lim.acquire("a")  # stays in flight for the whole test
    second = await bucket.acquire()
    assert bucket.usage() == 2
    waiting = asyncio.ensure_future(bucket.acquire())  # no room until an answer arrives
    await asyncio.sleep(0.05)
    assert not waiting.done()
    bucket.give_back(second)  # what ExchangeLimiter.acquire does when a pause came meanwhile
    slot = await asyncio.wait_for(waiting, 1.0)
    assert bucket.usage() == 2 and slot is not in_flight


async def test_importing_a_state_this_limiter_wrote_counts_nothing_twice():
    """One limiter per exchange host and process: a run that re-reads the state file it (or an
    earlier run in this process) saved must not count its own requests again."""
    lim = ExchangeLimiter([RateBucket("s", 10, 5.0, "sliding")])
    answered = await lim.acquire("s")
    await lim.release("s", answered)
    await lim.acquire("s")  # in flight
    state = lim.export_state()
    assert lim.bucket("s").usage() == 2
    lim.import_state(state)
    lim.import_state(state)
    assert lim.bucket("s").usage() == 2
    other = ExchangeLimiter([RateBucket("s", 10, 5.0, "sliding")])  # another process
    other.import_state(state)
    other.import_state(state)
    assert other.bucket("s").usage() == 2
    # state files written before slots had ids still count (once per import)
    legacy = {"s": {"slots": [s[:3] for s in state["s"]["slots"]], "paused_until": None}}
    fresh = ExchangeLimiter([RateBucket("s", 10, 5.0, "sliding")])
    fresh.import_state(legacy)
    assert fresh.bucket("s").usage() == 2
