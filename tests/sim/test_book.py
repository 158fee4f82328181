"""The true order book (BookEngine): shape, price following, determinism, truth by update id.

Pure tests over the real market model (no network): the engine is stepped with explicit
simulated times.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from p9cli.sim.book import (
    LOG_EVENTS,
    MAX_SPREAD_TICKS,
    SLOT_MS,
    TAIL_SLACK,
    TARGET_LEVELS,
    BookEngine,
    TradeCache,
)
from p9cli.sim.instruments import INSTRUMENTS
from p9cli.sim.model import MarketModel
from p9cli.sim.state import SimClock

SEED = 9
START_MS = 1_767_616_496_789  # 2026-01-05 12:34:56.789 UTC


@pytest.fixture(scope="module")
def model():
    return MarketModel(SEED, SimClock(start_ms=START_MS, speed=1e-9))


def engine(model, exchange="binance", symbol="btc", seed=SEED, cached=True):
    market = TradeCache(model) if cached else model
    return BookEngine(exchange, symbol, INSTRUMENTS[(exchange, symbol)], market, seed, now_ms=START_MS)


def full_book(e: BookEngine):
    return sorted(e.bids.items(), reverse=True), sorted(e.asks.items())


@pytest.mark.parametrize(("exchange", "symbol"), [("binance", "btc"), ("bybit", "xrp"), ("okx", "eth")])
def test_shape_and_price_following(model, exchange, symbol):
    e = engine(model, exchange, symbol)
    near, far, spreads = [], [], []
    for k in range(1, 2401):  # one simulated minute in 25 ms slots
        now = START_MS + k * SLOT_MS
        e.step(now)
        bb, ba = e.best_bid(), e.best_ask()
        assert bb < ba, "the book never crosses"
        assert TARGET_LEVELS - TAIL_SLACK - 5 <= len(e.bids) <= TARGET_LEVELS + TAIL_SLACK
        assert TARGET_LEVELS - TAIL_SLACK - 5 <= len(e.asks) <= TARGET_LEVELS + TAIL_SLACK
        # every level is positive and the sorted index matches the dict
        if k % 400 == 0:
            assert e._bid_px == sorted(e.bids) and e._ask_px == sorted(e.asks)
            assert min(e.bids.values()) > 0 and min(e.asks.values()) > 0
            bids, asks = e.top(TARGET_LEVELS)
            near += [q for _, q in bids[:20]] + [q for _, q in asks[:20]]
            far += [q for _, q in bids[-200:]] + [q for _, q in asks[-200:]]
        # after each slot the book is centred on the last trade price at the slot time
        last = model.last_trade_price(exchange, symbol, now - now % SLOT_MS)
        assert e.last_price == last
        assert bb < last <= ba
        spreads.append(ba - bb)
    assert np.median(spreads) <= 2 * MAX_SPREAD_TICKS, "a tight spread most of the time"
    assert np.mean(far) > 1.5 * np.mean(near), "sizes grow away from the touch"


def test_engine_follows_model_at_slot_times(model):
    e = engine(model)
    for k in range(1, 200):
        now = START_MS + k * 100
        e.step(now)
        slot = now - now % SLOT_MS
        assert e.last_price == model.last_trade_price("binance", "btc", slot)
        assert e.best_bid() < e.last_price <= e.best_ask()


def test_update_ids_are_consecutive_and_events_are_exact(model):
    e = engine(model)
    before = full_book(e)
    first_id = e.update_id
    events = []
    for k in range(1, 400):
        events += e.step(START_MS + k * SLOT_MS)
    assert [ev.update_id for ev in events] == list(range(first_id + 1, e.update_id + 1))
    assert all(ev.changes for ev in events)
    # replaying the events on the initial book gives the current book
    bids, asks = dict(before[0]), dict(before[1])
    for ev in events:
        for side, price, old, new in ev.changes:
            book = bids if side == 0 else asks
            assert book.get(price, 0) == old
            if new:
                book[price] = new
            else:
                del book[price]
    assert (sorted(bids.items(), reverse=True), sorted(asks.items())) == full_book(e)


def test_deterministic_whatever_the_step_cadence(model):
    a = engine(model)
    b = engine(model, cached=False)
    end = START_MS + 30_000
    for k in range(1, 1201):
        a.step(START_MS + k * SLOT_MS)
    rng = random.Random(5)
    t = START_MS
    while t < end:
        t = min(end, t + rng.randrange(1, 700))
        b.step(t)
    assert a.update_id == b.update_id
    assert full_book(a) == full_book(b)
    other = engine(model, seed=SEED + 1)
    other.step(end)
    assert full_book(other) != full_book(a)


def test_book_at_rebuilds_every_recent_state(model):
    e = engine(model)
    states = {e.update_id: full_book(e)}
    for k in range(1, 600):
        e.step(START_MS + k * SLOT_MS)
        states[e.update_id] = full_book(e)
    for uid, state in random.Random(1).sample(sorted(states.items()), 40):
        assert e.book_at(uid) == state
    assert e.book_at(e.update_id) == full_book(e)
    assert e.book_at(e.update_id + 1) is None
    assert e.book_at(e.oldest_update_id - 1) is None


def test_changes_since_gives_the_net_diff(model):
    e = engine(model)
    for k in range(1, 200):
        e.step(START_MS + k * SLOT_MS)
    a = e.update_id
    for k in range(200, 300):
        e.step(START_MS + k * SLOT_MS)
    bids, asks = (dict(side) for side in e.book_at(a))
    bid_changes, ask_changes = e.changes_since(a)
    for book, changes in ((bids, bid_changes), (asks, ask_changes)):
        for price, qty in changes.items():
            if qty:
                book[price] = qty
            else:
                book.pop(price, None)
    assert (sorted(bids.items(), reverse=True), sorted(asks.items())) == full_book(e)


def test_snapshot_order_and_depth(model):
    e = engine(model, "okx", "btc")
    e.step(START_MS + 5_000)
    uid, bids, asks = e.snapshot(400)
    assert uid == e.update_id
    assert len(bids) == len(asks) == 400
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)
    assert bids[0][0] == e.best_bid() and asks[0][0] == e.best_ask()
    _, b1, a1 = e.snapshot(1)
    assert b1 == bids[:1] and a1 == asks[:1]
    _, ball, _ = e.snapshot(5000)
    assert len(ball) == len(e.bids)


def test_log_is_bounded_and_clock_jumps_are_cheap(model):
    e = engine(model)
    e.step(START_MS + 3_600_000)  # an hour later: slots beyond the catch-up window are skipped
    assert len(e._log) <= LOG_EVENTS + LOG_EVENTS // 4
    assert e.best_bid() < e.best_ask()
    assert e.last_price == model.last_trade_price(
        "binance", "btc", (START_MS + 3_600_000) // SLOT_MS * SLOT_MS
    )


def test_trade_cache_equals_the_model(model):
    cache = TradeCache(model)
    rng = random.Random(3)
    for _ in range(60):
        a = START_MS + rng.randrange(0, 240_000)
        b = a + rng.choice([0, 1, 10, 999, 25_000, 61_000, 130_000])
        want = model.trades("bybit", "sol", a, b)
        got = cache.trades("bybit", "sol", a, b)
        for col in ("id", "time", "price", "qty", "taker_buy"):
            assert np.array_equal(getattr(want, col), getattr(got, col)), (a, b, col)


def test_orders_at_is_small_and_deterministic():
    assert {BookEngine.orders_at(p, q) for p in range(50) for q in range(1, 50)} <= set(range(1, 9))
    assert BookEngine.orders_at(123, 45) == BookEngine.orders_at(123, 45)


def test_same_book_whenever_the_engine_was_created(model):
    """Engines born at different moments of the same anchor window agree from then on."""
    a = BookEngine("bybit", "eth", INSTRUMENTS[("bybit", "eth")], TradeCache(model), SEED, now_ms=START_MS)
    b = BookEngine(
        "bybit", "eth", INSTRUMENTS[("bybit", "eth")], TradeCache(model), SEED, now_ms=START_MS + 2_345
    )
    later = START_MS + 4_000
    a.step(later)
    b.step(later)
    assert a.update_id == b.update_id
    assert full_book(a) == full_book(b)


def test_update_ids_move_forward_across_a_restart(model):
    """A simulator killed at T and restarted (a new engine, anchored at most 10 s before its
    start) starts above every id the first run used, however fast the restart, once the first
    run lived 20 s (2 anchor periods); ids are what clients compare across a reconnect."""
    for lived_ms in (20_000, 21_234, 47_500, 300_000):
        first = engine(model, "okx", "eth")
        killed = START_MS + lived_ms
        first.step(killed)
        for restart_after_ms in (1, 50, 700, 9_999):
            again = BookEngine(
                "okx", "eth", INSTRUMENTS[("okx", "eth")], TradeCache(model), SEED, now_ms=killed + restart_after_ms
            )
            assert again.oldest_update_id > first.update_id, (lived_ms, restart_after_ms)
