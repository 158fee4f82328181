"""Announced disconnects (Binance serverShutdown, OKX notice 64008) and the connection age
limit: the replacement connection is opened first and takes over once its books are in sync,
so no book goes invalid and no trade is lost or handed on twice."""

from __future__ import annotations

from feedutil import check_books_against_truth, check_trades_exactly_once, run_feeds

from p9cli.live import FeedOptions

OPTS = FeedOptions(backoff_base_s=0.05, backoff_cap_s=0.5, snapshot_rate_per_s=20)


def _switched(n):
    def until(feeds, rec):
        return all(s["switchovers"] >= n and s["state"] == "live" for s in feeds.stats().values())

    return until


async def _check_seamless(sim, rec, stats, exchanges):
    for ex in exchanges:
        s = stats[ex]
        assert s["switchovers"] >= 2 and s["reconnects"] == 0, s
        assert s["book_resyncs"] == {}, s
        assert not rec.kinds(ex, "book_invalid"), rec.kinds(ex, "book_invalid")
        assert rec.kinds(ex, "switchover")
        await check_trades_exactly_once(sim.control_url, rec.trades, ex, "btc", missing=0)
    assert await check_books_against_truth(sim.control_url, rec.books) >= 3 * len(exchanges)


async def test_binance_server_shutdown_and_okx_notice_switch_over_seamlessly(live_sim):
    sim = live_sim(
        speed=3.0,
        faults={
            "binance": {
                "binance_server_shutdown_every_seconds": 1.0,
                "binance_server_shutdown_grace_seconds": 4.0,
            },
            "okx": {"okx_notice_every_seconds": 1.0, "okx_notice_grace_seconds": 4.0},
        },
    )
    rec, stats = await run_feeds(sim, 3.0, exchanges=("binance", "okx"), options=OPTS, until=_switched(2))
    for ex in ("binance", "okx"):
        assert stats[ex]["notices"] >= 2, stats[ex]
    await _check_seamless(sim, rec, stats, ("binance", "okx"))


async def test_connection_age_limit_switches_over_before_the_exchange_cuts(live_sim, monkeypatch):
    from p9cli.sim import ws_binance

    monkeypatch.setattr(ws_binance.SETTINGS, "lifetime", 1.8)  # Binance's 24 h, shortened
    sim = live_sim(speed=3.0)
    opts = FeedOptions(
        max_connection_age_s=1.0, backoff_base_s=0.05, backoff_cap_s=0.5, snapshot_rate_per_s=20
    )
    rec, stats = await run_feeds(sim, 3.0, exchanges=("binance", "bybit"), options=opts, until=_switched(2))
    await _check_seamless(sim, rec, stats, ("binance", "bybit"))
