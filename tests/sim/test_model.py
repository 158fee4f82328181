"""The simulator's market model: determinism, exact aggregation, trades, realism.

Every check compares two independent computations of the same thing (a bar from the
15-minute store vs. the sum of its minutes; a live candle vs. the aggregate of the trades
the feed would send; two models started at different times) - no hard-coded results.
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from p9cli.sim.instruments import DAY_MS, INSTRUMENTS, INTERVALS
from p9cli.sim.model import ANCHOR_DAY, Bars, MarketModel
from p9cli.sim.state import SimClock
from p9cli.universe import EXCHANGES, MINUTE_MS, SYMBOLS

HOUR_MS = 60 * MINUTE_MS
#: A fixed start: 2026-09-10 13:47:23.456 UTC (not on a minute, not on a day).
START = 20_706 * DAY_MS + 13 * HOUR_MS + 47 * MINUTE_MS + 23_456
SEED = 20260910
FIELDS = ("open", "high", "low", "close", "volume", "quote", "trades", "taker_buy_volume", "taker_buy_quote")


def new_model(start_ms: int = START, seed: int = SEED) -> MarketModel:
    return MarketModel(seed, SimClock(start_ms=start_ms, speed=1.0))


@pytest.fixture(scope="module")
def model() -> MarketModel:
    return new_model()


def minutes(m: MarketModel, ex: str, sym: str, first: int, last: int, now: int) -> Bars:
    return m.bars(ex, sym, MINUTE_MS, 0, first, last, now)


def aggregate(b: Bars, lo: int, hi: int) -> tuple[int, ...]:
    """Aggregate of 1m bars with lo <= open_time < hi."""
    sel = (b.open_time >= lo) & (b.open_time < hi)
    assert sel.any()
    return (
        int(b.open[sel][0]),
        int(b.high[sel].max()),
        int(b.low[sel].min()),
        int(b.close[sel][-1]),
        int(b.volume[sel].sum()),
        int(b.quote[sel].sum()),
        int(b.trades[sel].sum()),
        int(b.taker_buy_volume[sel].sum()),
        int(b.taker_buy_quote[sel].sum()),
    )


def row(b: Bars, i: int) -> tuple[int, ...]:
    return tuple(int(getattr(b, f)[i]) for f in FIELDS)


def trades_aggregate(t, open_price: int) -> tuple[int, ...]:
    if len(t) == 0:
        return (open_price, open_price, open_price, open_price, 0, 0, 0, 0, 0)
    pq = t.price * t.qty
    return (
        int(t.price[0]),
        int(t.price.max()),
        int(t.price.min()),
        int(t.price[-1]),
        int(t.qty.sum()),
        int(pq.sum()),
        len(t),
        int(t.qty[t.taker_buy].sum()),
        int(pq[t.taker_buy].sum()),
    )


# ------------------------------------------------------------------------------ basics


def test_start_and_history_bounds(model):
    assert model.live_start_ms == START - START % MINUTE_MS
    assert model.history_start_ms % DAY_MS == 0
    assert START - model.history_start_ms >= 1100 * DAY_MS
    now = START + 5 * MINUTE_MS
    b = model.bars("binance", "btc", DAY_MS, 0, 0, now, now)
    assert b.open_time[0] == model.history_start_ms
    assert b.open_time[-1] == now - now % DAY_MS and not b.closed[-1] and b.closed[:-1].all()
    assert np.all(np.diff(b.open_time) == DAY_MS)
    # a weekly bar that would start before the history start is left out
    tf, off = INTERVALS["binance"]["1w"]
    w = model.bars("binance", "btc", tf, off, 0, now, now)
    assert w.open_time[0] >= model.history_start_ms and w.open_time[0] - tf < model.history_start_ms
    assert np.all(w.open_time % tf == off)
    # OKX Hong Kong day: first bar opens 16:00 UTC of the first history day
    tf, off = INTERVALS["okx"]["1D"]
    hk = model.bars("okx", "eth", tf, off, 0, now, now)
    assert hk.open_time[0] == model.history_start_ms + 16 * HOUR_MS
    # nothing before the history start, nothing after now
    assert len(model.bars("bybit", "sol", MINUTE_MS, 0, 0, model.history_start_ms - 1, now)) == 0
    after = model.bars("bybit", "sol", MINUTE_MS, 0, now - 10 * MINUTE_MS, now + DAY_MS, now)
    assert after.open_time[-1] == now - now % MINUTE_MS and len(after) == 10  # first rounds up
    assert len(model.bars("okx", "xrp", MINUTE_MS, 0, now + MINUTE_MS, now + DAY_MS, now)) == 0


def test_candle_invariants_and_continuity(model):
    now = START + 2 * HOUR_MS
    for ex in EXCHANGES:
        for sym in SYMBOLS:
            # two days of history across a midnight, plus the live part
            b = minutes(model, ex, sym, START - 2 * DAY_MS, now, now)
            assert len(b) == 2 * 1440 + 120  # the unaligned first minute is not included
            for f in FIELDS:
                assert getattr(b, f).dtype == np.int64
            assert b.closed.dtype == bool
            full = b.closed
            assert np.all(b.open[1:] == b.close[:-1])  # open = previous close, across days too
            assert np.all(b.high >= np.maximum(b.open, b.close)) and np.all(
                b.low <= np.minimum(b.open, b.close)
            )
            assert np.all(b.low >= 1)
            assert np.all(b.trades[full] >= 4) and np.all(b.volume[full] >= b.trades[full])
            hist = b.open_time < model.live_start_ms
            mean_price = (b.open + b.high + b.low + b.close + 2) // 4
            assert np.array_equal(b.quote[hist], (b.volume * mean_price)[hist])
            assert np.array_equal(b.taker_buy_quote[hist], (b.taker_buy_volume * mean_price)[hist])
            assert np.all(b.taker_buy_volume >= 0) and np.all(b.taker_buy_volume <= b.volume)
            assert np.all(b.taker_buy_quote >= 0) and np.all(b.taker_buy_quote <= b.quote)
            share = b.taker_buy_volume.sum() / b.volume.sum()
            assert 0.35 < share < 0.65
            up, down = b.close > b.open, b.close < b.open  # buyers lean with the move
            assert (b.taker_buy_volume[up] / b.volume[up]).mean() > (
                b.taker_buy_volume[down] / b.volume[down]
            ).mean()


# ------------------------------------------------------------------------------ determinism


def test_same_seed_same_market(model):
    other = new_model()
    now = START + 3 * HOUR_MS + 12_345
    for ex, sym, tf in (("binance", "btc", MINUTE_MS), ("okx", "sol", 4 * HOUR_MS), ("bybit", "xrp", DAY_MS)):
        a = model.bars(ex, sym, tf, 0, START - 150 * tf, now, now)
        b = other.bars(ex, sym, tf, 0, START - 150 * tf, now, now)
        for f in ("open_time", *FIELDS, "closed"):
            assert np.array_equal(getattr(a, f), getattr(b, f)), (ex, sym, tf, f)
    ta = model.trades("bybit", "eth", START, START + 10 * MINUTE_MS)
    tb = other.trades("bybit", "eth", START, START + 10 * MINUTE_MS)
    for f in ("id", "time", "price", "qty", "taker_buy"):
        assert np.array_equal(getattr(ta, f), getattr(tb, f))


def test_history_does_not_depend_on_start_time(model):
    later = new_model(START + 3 * DAY_MS + 17 * MINUTE_MS + 5)
    # minutes historical for both models: identical, quote included
    lo, hi = START - 2 * DAY_MS - 300 * MINUTE_MS, model.live_start_ms - MINUTE_MS
    for ex, sym in (("binance", "eth"), ("okx", "btc"), ("bybit", "bnb")):
        a = minutes(model, ex, sym, lo, hi, START)
        b = minutes(later, ex, sym, lo, hi, START + 3 * DAY_MS)
        for f in ("open_time", *FIELDS):
            assert np.array_equal(getattr(a, f), getattr(b, f)), (ex, sym, f)
        # daily bars before both starts
        da = model.bars(ex, sym, DAY_MS, 0, START - 300 * DAY_MS, START - DAY_MS, START)
        db = later.bars(ex, sym, DAY_MS, 0, START - 300 * DAY_MS, START - DAY_MS, START + 3 * DAY_MS)
        for f in FIELDS:
            assert np.array_equal(getattr(da, f), getattr(db, f))
    # minutes live for the first model and historical for the second: same path and volume
    now = START + 2 * HOUR_MS
    a = minutes(model, "binance", "btc", model.live_start_ms, now - MINUTE_MS, now)
    b = minutes(later, "binance", "btc", model.live_start_ms, now - MINUTE_MS, later.live_start_ms)
    for f in ("open", "high", "low", "close", "volume", "trades"):
        assert np.array_equal(getattr(a, f), getattr(b, f))


def test_other_seed_other_market(model):
    other = new_model(seed=SEED + 1)
    a = model.bars("binance", "btc", HOUR_MS, 0, START - 100 * HOUR_MS, START, START)
    b = other.bars("binance", "btc", HOUR_MS, 0, START - 100 * HOUR_MS, START, START)
    assert not np.array_equal(a.close, b.close)


# ------------------------------------------------------------------------------ aggregation


def test_every_interval_is_the_aggregate_of_its_minutes(model):
    rnd = random.Random(7)
    now = START + 5 * HOUR_MS + 31 * MINUTE_MS + 7_777
    for ex in EXCHANGES:
        for code, (tf, off) in INTERVALS[ex].items():
            sym = rnd.choice(SYMBOLS)
            nbars = max(2, min(12, (4 * DAY_MS) // tf))
            for kind in ("history", "live"):
                if kind == "history":
                    last = model.history_start_ms + rnd.randrange(2 * tf, 1000 * DAY_MS)
                else:
                    last = now
                first = last - nbars * tf + rnd.randrange(0, tf)  # unaligned start: rounds up
                b = model.bars(ex, sym, tf, off, first, last, now)
                if len(b) == 0:
                    continue
                assert np.all(b.open_time % tf == off) and np.all(b.open_time >= first)
                assert np.all(b.open_time <= min(last, now))
                span_end = min(int(b.open_time[-1]) + tf, now - now % MINUTE_MS + MINUTE_MS)
                mins = minutes(model, ex, sym, int(b.open_time[0]), span_end - 1, now)
                for i, t in enumerate(b.open_time):
                    assert row(b, i) == aggregate(mins, int(t), int(t) + tf), (ex, code, kind, i)
                    assert bool(b.closed[i]) == (int(t) + tf <= now)


def test_daily_candle_equals_its_1440_minutes(model):
    for ex, sym in (("binance", "btc"), ("okx", "xrp")):
        day = START - START % DAY_MS - 500 * DAY_MS
        d = model.bars(ex, sym, DAY_MS, 0, day, day, START)
        mins = minutes(model, ex, sym, day, day + DAY_MS - 1, START)
        assert len(d) == 1 and len(mins) == 1440
        assert row(d, 0) == aggregate(mins, day, day + DAY_MS)
        # the OKX Hong Kong day spans two UTC days
        tf, off = INTERVALS["okx"]["1D"]
        hk = model.bars("okx", sym, tf, off, day, day + DAY_MS, START)
        hk_mins = minutes(model, "okx", sym, int(hk.open_time[0]), int(hk.open_time[0]) + DAY_MS - 1, START)
        assert len(hk_mins) == 1440 and row(hk, 0) == aggregate(
            hk_mins, int(hk.open_time[0]), int(hk.open_time[0]) + DAY_MS
        )


def test_bars_before_warm_up_equal_bars_after(model):
    fresh = new_model()
    now = START + HOUR_MS
    before = fresh.bars("okx", "bnb", 2 * HOUR_MS, 0, START - 50 * DAY_MS, now, now)
    thread = threading.Thread(target=fresh.warm_up)
    thread.start()
    during = fresh.bars("okx", "bnb", 15 * MINUTE_MS, 0, START - 3 * DAY_MS, now, now)
    thread.join()
    after = fresh.bars("okx", "bnb", 2 * HOUR_MS, 0, START - 50 * DAY_MS, now, now)
    ref = model.bars("okx", "bnb", 15 * MINUTE_MS, 0, START - 3 * DAY_MS, now, now)
    for f in FIELDS:
        assert np.array_equal(getattr(before, f), getattr(after, f))
        assert np.array_equal(getattr(during, f), getattr(ref, f))
    # the stores filled by warm_up equal the ones filled on demand (the fixture's)
    for ex, sym in (("binance", "xrp"), ("okx", "btc")):
        a = fresh.bars(ex, sym, DAY_MS, 0, 0, START, START)
        b = model.bars(ex, sym, DAY_MS, 0, 0, START, START)
        for f in FIELDS:
            assert np.array_equal(getattr(a, f), getattr(b, f)), (ex, sym, f)


def test_bars_are_stable_as_time_passes(model):
    t1 = START + HOUR_MS + 29 * MINUTE_MS + 4_321
    t2 = t1 + 3 * HOUR_MS + 7 * MINUTE_MS
    for tf in (MINUTE_MS, 15 * MINUTE_MS, HOUR_MS, DAY_MS):
        early = model.bars("bybit", "eth", tf, 0, START - 20 * tf, t2, t1)
        late = model.bars("bybit", "eth", tf, 0, START - 20 * tf, t2, t2)
        k = len(early)
        assert late.open_time[:k].tolist() == early.open_time.tolist()
        for f in FIELDS:  # closed bars never change
            assert np.array_equal(getattr(late, f)[: k - 1], getattr(early, f)[: k - 1])
        # the forming bar only grows
        assert late.open[k - 1] == early.open[k - 1]
        assert late.high[k - 1] >= early.high[k - 1] and late.low[k - 1] <= early.low[k - 1]
        for f in ("volume", "quote", "trades", "taker_buy_volume", "taker_buy_quote"):
            assert getattr(late, f)[k - 1] >= getattr(early, f)[k - 1]


# ------------------------------------------------------------------------------ trades


def test_live_minutes_are_the_aggregate_of_their_trades(model):
    now = START + 3 * HOUR_MS
    rnd = random.Random(3)
    for ex in EXCHANGES:
        for sym in SYMBOLS:
            b = minutes(model, ex, sym, model.live_start_ms, now - MINUTE_MS, now)
            for i in rnd.sample(range(len(b)), 4):
                t0 = int(b.open_time[i])
                tr = model.trades(ex, sym, t0, t0 + MINUTE_MS)
                assert trades_aggregate(tr, int(b.open[i])) == row(b, i)
                assert np.all(tr.time > t0) and np.all(tr.time < t0 + MINUTE_MS)  # strictly inside
                assert np.all(np.diff(tr.time) >= 0) and np.all(np.diff(tr.id) == 1)
                assert np.all(tr.qty > 0) and tr.taker_buy.dtype == bool
                assert tr.taker_buy.any() or len(tr) < 8


def test_forming_bar_is_the_aggregate_of_trades_up_to_now(model):
    for offset in (0, 1, 17_003, 59_999):
        now = START + 2 * HOUR_MS + 13 * MINUTE_MS + offset
        minute = now - now % MINUTE_MS
        for ex, sym in (("binance", "sol"), ("bybit", "btc"), ("okx", "eth")):
            upto = model.trades(ex, sym, minute, now + 1)
            prev_close = int(minutes(model, ex, sym, minute - MINUTE_MS, minute - MINUTE_MS, now).close[0])
            one = minutes(model, ex, sym, minute, minute, now)
            assert not one.closed[0]
            assert row(one, 0) == trades_aggregate(upto, prev_close)
            for tf in (5 * MINUTE_MS, HOUR_MS, DAY_MS):
                b = model.bars(ex, sym, tf, 0, now - 3 * tf, now, now)
                assert not b.closed[-1] and b.closed[:-1].all()
                t = int(b.open_time[-1])
                mins = minutes(model, ex, sym, t, now, now)
                assert row(b, len(b) - 1) == aggregate(mins, t, now + 1)
            assert model.last_trade_price(ex, sym, now) == (int(upto.price[-1]) if len(upto) else prev_close)


def test_trade_ids_are_consecutive_across_calls_and_days():
    start = (START // DAY_MS + 1) * DAY_MS - 30 * MINUTE_MS + 5_000  # half an hour before midnight
    m = new_model(start)
    end = start + 70 * MINUTE_MS
    whole = m.trades("binance", "xrp", start - HOUR_MS, end)
    assert whole.time[0] > m.live_start_ms and whole.time[-1] < end
    assert np.all(np.diff(whole.id) == 1)
    assert whole.id[0] == m.first_trade_id("binance", "xrp")
    pieces = [
        m.trades("binance", "xrp", a, a + 7 * MINUTE_MS + 333)
        for a in range(start - HOUR_MS, end, 7 * MINUTE_MS + 333)
    ]
    joined = np.concatenate([p.id for p in pieces])
    assert np.array_equal(joined[joined < whole.id[-1] + 1], whole.id)
    # a fresh model asked directly for a trade after midnight gives the same ids
    again = new_model(start).trades("binance", "xrp", end - 5 * MINUTE_MS, end)
    sel = whole.time >= end - 5 * MINUTE_MS
    assert np.array_equal(again.id, whole.id[sel]) and np.array_equal(again.price, whole.price[sel])
    assert len(m.trades("binance", "xrp", 0, m.live_start_ms)) == 0


def test_trade_ids_do_not_depend_on_when_the_simulator_started():
    """A simulator restarted later (same seed) gives every trade the id it had before, so
    clients that deduplicate by trade id resume; across a Monday 00:00 UTC the ids jump up
    (a new week's stride), never back, in one run and in a restarted one alike."""
    week_start = (START // DAY_MS - (START // DAY_MS - 10_959) % 7) * DAY_MS  # Monday 00:00 UTC
    first = new_model(week_start + 6 * DAY_MS + 23 * HOUR_MS + 17_000)  # Sunday 23:00
    monday = week_start + 7 * DAY_MS
    for restart in (monday - 20 * MINUTE_MS, monday + 3 * MINUTE_MS + 500, monday + 2 * DAY_MS):
        later = new_model(restart)
        a, b = later.live_start_ms, later.live_start_ms + 4 * MINUTE_MS
        for ex, sym in (("binance", "btc"), ("bybit", "eth"), ("okx", "sol")):
            want = first.trades(ex, sym, a, b)
            got = later.trades(ex, sym, a, b)
            assert len(got) > 0 and np.array_equal(got.id, want.id) and np.array_equal(got.time, want.time)
            assert later.first_trade_id(ex, sym) == int(got.id[0])
    span = first.trades("okx", "btc", monday - MINUTE_MS, monday + MINUTE_MS)
    steps = np.diff(span.id)
    assert (steps >= 1).all() and (steps == 1).sum() == len(steps) - 1, "one jump, at Monday 00:00"
    k = int(np.argmax(steps))
    assert span.time[k] < monday <= span.time[k + 1]
    assert first.trade_minute("okx", "btc", int(span.id[k]) + 1) == monday  # an unused id


# ------------------------------------------------------------------------------ realism


def log_returns(b: Bars) -> np.ndarray:
    return np.diff(np.log(b.close.astype(float)))


def test_exchanges_agree_within_a_few_bps_and_move_together(model):
    now = START
    for sym in SYMBOLS:
        closes = {}
        for ex in EXCHANGES:
            inst = INSTRUMENTS[(ex, sym)]
            b = model.bars(ex, sym, HOUR_MS, 0, START - 60 * DAY_MS, now, now)
            closes[ex] = b.close.astype(float) * float(inst.tick)
        for ex in ("bybit", "okx"):
            gap = np.abs(closes[ex] / closes["binance"] - 1)
            assert np.median(gap) < 4e-4 and gap.max() < 1.5e-3, (sym, ex)
            r = np.corrcoef(np.diff(np.log(closes[ex])), np.diff(np.log(closes["binance"])))[0, 1]
            assert r > 0.95, (sym, ex, r)


def test_symbols_are_correlated_and_prices_realistic(model):
    b = {s: model.bars("binance", s, DAY_MS, 0, 0, START, START) for s in SYMBOLS}
    r = {s: log_returns(b[s]) for s in SYMBOLS}
    for s in SYMBOLS[1:]:
        c = np.corrcoef(r["btc"], r[s])[0, 1]
        assert 0.3 < c < 0.95, (s, c)
    for s in SYMBOLS:
        inst = INSTRUMENTS[("binance", s)]
        prices = b[s].close * float(inst.tick)
        assert prices.min() > float(inst.ref_price) / 6 and prices.max() < float(inst.ref_price) * 6
        vol = np.std(r[s])
        assert 0.01 < vol < 0.08, (s, vol)
    # the reference day closes at the reference price, up to the exchange basis
    for (ex, sym), inst in INSTRUMENTS.items():
        d = model.bars(ex, sym, DAY_MS, 0, ANCHOR_DAY * DAY_MS, ANCHOR_DAY * DAY_MS, START)
        assert abs(int(d.close[0]) / inst.ref_ticks - 1) < 1e-3


def test_volume_fits_int64_and_has_an_intraday_pattern(model):
    for (ex, sym), _ in INSTRUMENTS.items():
        d = model.bars(ex, sym, DAY_MS, 0, 0, START, START)
        assert int(d.quote.max()) < 2**63 // 128, (ex, sym)  # a day: two orders of magnitude to spare
        w = model.bars(ex, sym, 7 * DAY_MS, 4 * DAY_MS, 0, START, START)
        assert int(w.quote.max()) < 2**63 // 16, (ex, sym)
    h = model.bars("binance", "btc", HOUR_MS, 0, START - 200 * DAY_MS, START - DAY_MS, START)
    hours = (h.open_time % DAY_MS) // HOUR_MS
    by_hour = np.array([h.volume[hours == k].mean() for k in range(24)])
    assert by_hour[14] > 1.3 * by_hour[4]  # US session busier than the European night


def test_trades_from_id_finds_the_minute_directly():
    start = (START // DAY_MS + 1) * DAY_MS - 20 * MINUTE_MS + 5_000  # live day turns after 20 minutes
    m = new_model(start)
    end = start + 90 * MINUTE_MS
    for ex, sym in (("binance", "btc"), ("okx", "sol")):
        whole = m.trades(ex, sym, m.live_start_ms, end)  # the live start minute has trades before start
        first = m.first_trade_id(ex, sym)
        assert whole.id[0] == first
        rnd = random.Random(11)
        for i in [0, 1, len(whole) - 1, *rnd.sample(range(len(whole)), 6)]:
            tid = int(whole.id[i])
            assert m.trade_minute(ex, sym, tid) == int(whole.time[i]) - int(whole.time[i]) % MINUTE_MS
            got = m.trades_from_id(ex, sym, tid, 700, end)
            want = slice(i, min(i + 700, len(whole)))
            for f in ("id", "time", "price", "qty", "taker_buy"):
                assert np.array_equal(getattr(got, f), getattr(whole, f)[want]), (ex, i, f)
        before = m.trades_from_id(ex, sym, first - 1000, 5, end)
        assert before.id.tolist() == list(range(first, first + 5))
        assert len(m.trades_from_id(ex, sym, int(whole.id[-1]) + 1, 5, end)) == 0


def test_trades_newest_equals_a_filter_of_all_trades():
    """``trades_newest`` (OKX history-trades) against a brute-force filter of every trade,
    across a day boundary, with id bounds, time bounds and both."""
    start = (START // DAY_MS + 1) * DAY_MS - 20 * MINUTE_MS + 5_000  # live day turns after 20 minutes
    m = new_model(start)
    end = start + 60 * MINUTE_MS
    for ex, sym in (("okx", "btc"), ("okx", "bnb"), ("binance", "xrp")):
        whole = m.trades(ex, sym, m.live_start_ms, end)
        first, last = int(whole.id[0]), int(whole.id[-1])
        rnd = random.Random(5)
        cases = [(end, None, None), (end, first + 1, None), (end, first, None), (end, last + 10**9, None)]
        cases += [
            (end, None, last - 3),
            (end, None, last),
            (whole.time[0], None, None),
            (m.live_start_ms, None, None),
        ]
        for _ in range(12):
            below = rnd.randint(first - 5, last + 5)
            above = rnd.choice([None, below - rnd.randint(-3, 600)])
            t_end = rnd.choice([end, int(whole.time[rnd.randrange(len(whole))]) + rnd.randint(0, 1)])
            cases.append((t_end, rnd.choice([None, below]), above))
        for t_end, below, above in cases:
            for limit in (1, 100, 1000):
                keep = whole.time < t_end
                if below is not None:
                    keep &= whole.id < below
                if above is not None:
                    keep &= whole.id > above
                want = np.flatnonzero(keep)[-limit:]
                got = m.trades_newest(ex, sym, int(t_end), limit, below, above)
                for f in ("id", "time", "price", "qty", "taker_buy"):
                    assert np.array_equal(getattr(got, f), getattr(whole, f)[want]), (
                        ex,
                        sym,
                        t_end,
                        below,
                        above,
                        f,
                    )


def test_same_market_in_another_process(model):
    """Nothing depends on process state (hash seeds, import order): a fresh interpreter
    computes the same bars and trades for the same seed and start."""
    import hashlib
    import subprocess
    import sys

    code = f"""
import hashlib, numpy as np
from p9cli.sim.model import MarketModel
from p9cli.sim.state import SimClock
m = MarketModel({SEED}, SimClock(start_ms={START}))
now = {START + 2 * HOUR_MS}
h = hashlib.sha256()
for ex, sym, tf in (("okx", "btc", 5 * 60_000), ("binance", "xrp", 3_600_000)):
    b = m.bars(ex, sym, tf, 0, now - 300 * tf, now, now)
    for a in (b.open_time, b.open, b.high, b.low, b.close, b.volume, b.quote, b.trades, b.taker_buy_volume):
        h.update(np.ascontiguousarray(a).tobytes())
t = m.trades("bybit", "sol", now - 600_000, now)
for a in (t.id, t.time, t.price, t.qty, t.taker_buy):
    h.update(np.ascontiguousarray(a).tobytes())
print(h.hexdigest())
"""
    env = {"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    now = START + 2 * HOUR_MS
    h = hashlib.sha256()
    for ex, sym, tf in (("okx", "btc", 5 * MINUTE_MS), ("binance", "xrp", HOUR_MS)):
        b = model.bars(ex, sym, tf, 0, now - 300 * tf, now, now)
        for a in (
            b.open_time,
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.quote,
            b.trades,
            b.taker_buy_volume,
        ):
            h.update(np.ascontiguousarray(a).tobytes())
    t = model.trades("bybit", "sol", now - 10 * MINUTE_MS, now)
    for a in (t.id, t.time, t.price, t.qty, t.taker_buy):
        h.update(np.ascontiguousarray(a).tobytes())
    assert out.stdout.strip() == h.hexdigest()


# ------------------------------------------------------------------------------ the live tape


@pytest.fixture(scope="module")
def tape(model):
    """Two live hours of every series, US session (START is 13:47 UTC)."""
    a = model.live_start_ms + MINUTE_MS
    return a, {(ex, sym): model.trades(ex, sym, a, a + 2 * HOUR_MS) for ex in EXCHANGES for sym in SYMBOLS}


def test_tape_is_busy_and_never_silent(model, tape):
    a, trades = tape
    per_min = {}
    for (ex, sym), t in trades.items():
        # never quiet for long: the gaps between trades, the first and the last included
        edges = np.concatenate(([a], t.time, [a + 2 * HOUR_MS]))
        assert np.diff(edges).max() < 6_000, (ex, sym)
        minute = (t.time - a) // MINUTE_MS
        counts = np.bincount(minute, minlength=120)
        assert counts.min() >= 40, (ex, sym)
        per_min[(ex, sym)] = counts.mean()
        # the counts are the candles' counts
        b = minutes(model, ex, sym, a, a + 2 * HOUR_MS - 1, a + 3 * HOUR_MS)
        assert np.array_equal(b.trades, counts)
    # Binance BTC: hundreds to thousands a minute; Binance busier than Bybit, Bybit than OKX
    assert 300 < per_min[("binance", "btc")] < 10_000
    for sym in SYMBOLS:
        assert per_min[("binance", sym)] > per_min[("bybit", sym)] > per_min[("okx", sym)], sym
        assert per_min[("okx", sym)] > 60, sym  # more than one a second everywhere
    # and busier than before the change: every series prints more than 1/s on average
    for key, t in trades.items():
        assert len(t) > 2 * 3600, key


def test_arrivals_cluster(tape):
    a, trades = tape
    t = trades[("binance", "btc")]
    per_s = np.bincount((t.time - a) // 1000)
    # Poisson arrivals would have variance == mean; a real tape is far more bursty
    assert per_s.var() > 5 * per_s.mean()
    # several fills of one taker order share a millisecond; their ids stay consecutive
    same = np.diff(t.time) == 0
    assert 0.1 < same.mean() < 0.6
    assert np.all(np.diff(t.id) == 1)
    # but the time stamps are spread: most seconds of the hour hold a trade
    assert (per_s > 0).mean() > 0.98


def test_tape_prices_and_sizes_look_real(model, tape):
    a, trades = tape
    for (ex, sym), t in trades.items():
        minute = (t.time - a) // MINUTE_MS
        first = np.r_[True, minute[1:] != minute[:-1]]
        dp = np.abs(np.diff(t.price))[~first[1:]]  # price changes within a minute
        assert (dp == 0).mean() > 0.25, (ex, sym)  # prices repeat
        b = minutes(model, ex, sym, a, a + 2 * HOUR_MS - 1, a + 3 * HOUR_MS)
        rng = (b.high - b.low)[minute][1:][~first[1:]]
        moving = rng > 20
        # steps are small against the minute's range: the price walks, it does not jump around
        assert np.median(dp[moving] / rng[moving]) < 0.05, (ex, sym)
        # sizes: many small, a few large (heavy tail)
        q = t.qty.astype(float)
        assert np.median(q) < 0.5 * q.mean(), (ex, sym)
        assert np.percentile(q, 99.9) > 20 * np.median(q), (ex, sym)


def test_trade_count_follows_the_move_and_the_session(model):
    h = minutes(model, "binance", "eth", START - 20 * DAY_MS, START - DAY_MS, START)
    move = np.abs(np.log(h.close / h.open))
    # busier minutes are the ones that moved more
    c = np.corrcoef(np.log(h.trades), np.log(move + 1e-6))[0, 1]
    assert c > 0.1
    hour = (h.open_time % DAY_MS) // HOUR_MS
    by_hour = np.array([h.trades[hour == k].mean() for k in range(24)])
    assert by_hour[14] > 1.5 * by_hour[4]


def test_one_minute_alone_equals_the_same_minute_in_a_batch(model):
    a = model.live_start_ms + 5 * HOUR_MS
    whole = model.trades("okx", "btc", a - 30 * MINUTE_MS, a + 30 * MINUTE_MS)
    fresh = new_model()
    one = fresh.trades("okx", "btc", a, a + MINUTE_MS)
    sel = (whole.time >= a) & (whole.time < a + MINUTE_MS)
    for f in ("id", "time", "price", "qty", "taker_buy"):
        assert np.array_equal(getattr(one, f), getattr(whole, f)[sel]), f


def test_extreme_minutes_stay_exact_in_int64():
    """Huge volumes and counts (the int64 guard of the size split) and tiny counts."""
    from p9cli.sim.model import _generate_trades

    minute_ms = np.array([START - START % MINUTE_MS + k * MINUTE_MS for k in range(4)], dtype=np.int64)
    o = np.array([10**9, 50, 7_000_000, 123], dtype=np.int64)
    h = o + np.array([10**6, 0, 5, 1_000], dtype=np.int64)
    lo = o - np.array([10**6, 49, 0, 3], dtype=np.int64)
    c = np.array([10**9 + 17, 1, 7_000_003, 123], dtype=np.int64)
    v = np.array([2**44, 4, 10**12, 40], dtype=np.int64)
    n = np.array([20_000, 4, 9_000, 40], dtype=np.int64)
    time, price, qty, buy, starts = _generate_trades(123, 456, minute_ms, o, h, lo, c, v, n)
    assert len(time) == int(n.sum())
    for i in range(4):
        s = slice(int(starts[i]), int(starts[i] + n[i]))
        assert int(qty[s].sum()) == int(v[i]) and qty[s].min() > 0
        assert price[s][0] == o[i] and price[s][-1] == c[i]
        assert price[s].max() == h[i] and price[s].min() == lo[i]
        assert np.all(np.diff(time[s]) >= 0)
        assert time[s].min() > minute_ms[i] and time[s].max() < minute_ms[i] + MINUTE_MS
    assert buy.dtype == bool
