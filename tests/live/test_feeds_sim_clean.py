"""The feed layer against an undisturbed simulator: all three exchanges in sync, every book
state handed on equals the true book at its update id, every trade exactly once."""

from __future__ import annotations

from feedutil import all_live, check_books_against_truth, check_trades_exactly_once, run_feeds

from p9cli.universe import EXCHANGES


async def test_three_exchanges_books_equal_truth_and_trades_exactly_once(live_sim):
    sim = live_sim(speed=2.0)
    rec, stats = await run_feeds(sim, 3.0, symbols=("btc", "eth"), until=all_live)
    for ex in EXCHANGES:
        s = stats[ex]
        assert s["state"] == "live", s
        assert s["books_valid"] == s["books_total"] == 2
        assert s["malformed"] == 0 and s["reconnects"] == 0 and s["book_resyncs"] == {}, s
        assert s["trades"] > 0 and s["book_states"] > 0
    assert await check_books_against_truth(sim.control_url, rec.books) >= 12
    for ex in EXCHANGES:
        for sym in ("btc", "eth"):
            await check_trades_exactly_once(sim.control_url, rec.trades, ex, sym, missing=0)
