"""The feed layer under the simulator's injected faults: after each one the book is back in
sync and equals the true book at the update id it reports (every state handed on is checked
at spread-out points and right after every resync, so an invalid book handed on in between
would show), trades are handed on once, and each fault is counted under its cause."""

from __future__ import annotations

from feedutil import (
    check_books_against_truth,
    check_trades_exactly_once,
    run_feeds,
)

from p9cli.live import FeedOptions
from p9cli.universe import EXCHANGES

FAST = FeedOptions(backoff_base_s=0.05, backoff_cap_s=0.5, trade_settle_s=1.5, snapshot_rate_per_s=20)


def _live_and(pred):
    def until(feeds, rec):
        stats = feeds.stats()
        return all(s["state"] == "live" and pred(s) for s in stats.values())

    return until


async def test_forced_reconnects_every_sent_trade_exactly_once(live_sim):
    # the simulator closes every connection 1.2 s after it opened (between two feed ticks)
    sim = live_sim(speed=3.0, faults={"all": {"ws_drop_every_seconds": 1.2}})
    rec, stats = await run_feeds(sim, 4.0, options=FAST, until=_live_and(lambda s: s["reconnects"] >= 2))
    for ex in EXCHANGES:
        assert stats[ex]["reconnects"] >= 2, stats[ex]
        assert stats[ex]["book_resyncs"].get("disconnect", 0) >= 1, stats[ex]
    for ex in EXCHANGES:
        await check_trades_exactly_once(sim.control_url, rec.trades, ex, "btc", missing=0)
    assert await check_books_against_truth(sim.control_url, rec.books) >= 9
    # every resync was reported before the book came back
    for ex in EXCHANGES:
        assert rec.kinds(ex, "book_invalid", "disconnect") and rec.kinds(ex, "book_synced")


async def test_drops_malformed_frames_and_depth_gaps(live_sim):
    sim = live_sim(
        speed=3.0,
        faults={"all": {"ws_drop_every_messages": 150, "ws_malformed_every": 25, "depth_gap_every": 20}},
    )
    rec, stats = await run_feeds(
        sim,
        3.0,
        options=FAST,
        until=_live_and(
            lambda s: s["reconnects"] >= 1 and s["malformed"] >= 1 and s["book_resyncs"].get("gap", 0) >= 1
        ),
    )
    for ex in EXCHANGES:
        s = stats[ex]
        assert s["malformed"] >= 1 and s["book_resyncs"].get("gap", 0) >= 1 and s["reconnects"] >= 1, s
        # a malformed frame is never a reason to reconnect: far fewer reconnects than bad frames
        assert s["reconnects"] < s["malformed"] + s["book_resyncs"]["gap"], s
    assert await check_books_against_truth(sim.control_url, rec.books) >= 9
    # Binance (aggTrades fromId) and OKX (market/trades, then history-trades) replay a trade-id hole
    # over REST and count what they cannot replay; Bybit has no trade numbering: only "no
    # duplicate, every trade true" can be checked there
    assert stats["binance"]["trades_replayed"] >= 1, stats["binance"]  # holes refilled over REST
    assert stats["okx"]["trades_replayed"] >= 1, stats["okx"]
    for ex in ("binance", "okx"):
        unreplayed = stats[ex]["trade_ids_missing"] + stats[ex]["trade_ids_pending"]
        await check_trades_exactly_once(sim.control_url, rec.trades, ex, "btc", unreplayed)
    await check_trades_exactly_once(sim.control_url, rec.trades, "bybit", "btc", missing=10**9)


async def test_stalled_connection_is_replaced_by_the_watchdog(live_sim):
    sim = live_sim(speed=3.0, faults={"all": {"ws_stall_after_messages": 80}})
    opts = FeedOptions(silence_s=0.8, backoff_base_s=0.05, backoff_cap_s=0.5, snapshot_rate_per_s=20)
    rec, stats = await run_feeds(sim, 2.0, options=opts, until=_live_and(lambda s: s["reconnects"] >= 1))
    for ex in EXCHANGES:
        assert stats[ex]["reconnects"] >= 1, stats[ex]
        assert any(e.cause == "silence" for e in rec.kinds(ex, "disconnected")), ex
    assert await check_books_against_truth(sim.control_url, rec.books) >= 9


async def test_okx_legacy_bad_checksum_bybit_u1_reset_and_malformed_frames(live_sim):
    sim = live_sim(
        speed=3.0,
        faults={
            "okx": {"okx_bad_checksum_every": 12, "ws_malformed_every": 20},
            "bybit": {"bybit_reset_every_seconds": 1.0},
        },
        limits={"okx": {"okx_legacy_checksum": True}},
    )
    rec, stats = await run_feeds(
        sim,
        2.5,
        exchanges=("bybit", "okx"),
        options=FAST,
        until=_live_and(lambda s: sum(s["book_resyncs"].get(c, 0) for c in ("checksum", "reset")) >= 2),
    )
    assert stats["okx"]["book_resyncs"].get("checksum", 0) >= 2, stats["okx"]
    assert stats["bybit"]["book_resyncs"].get("reset", 0) >= 2, stats["bybit"]
    assert rec.kinds("okx", "book_invalid", "checksum")
    # neither a bad checksum, a reset nor a malformed frame is a reason to reconnect
    assert stats["okx"]["reconnects"] == 0 and stats["okx"]["malformed"] >= 1, stats["okx"]
    assert stats["bybit"]["reconnects"] == 0, stats["bybit"]
    assert await check_books_against_truth(sim.control_url, rec.books) >= 6


async def test_okx_2026_mode_without_in_band_snapshot(live_sim):
    sim = live_sim(
        speed=3.0, faults={"okx": {"depth_gap_every": 15}}, limits={"okx": {"okx_books_snapshot": False}}
    )
    rec, stats = await run_feeds(
        sim,
        2.5,
        exchanges=("okx",),
        symbols=("btc", "eth"),
        options=FAST,
        until=_live_and(lambda s: s["book_resyncs"].get("gap", 0) >= 2),
    )
    s = stats["okx"]
    assert s["state"] == "live" and s["books_valid"] == 2, s
    assert s["snapshot_requests"] >= 4 and s["book_resyncs"].get("gap", 0) >= 2, s  # REST bridge every time
    assert await check_books_against_truth(sim.control_url, rec.books) >= 4
    await check_trades_exactly_once(sim.control_url, rec.trades, "okx", "btc", missing=0)


async def test_okx_seq_id_reset_after_maintenance_is_not_a_gap(live_sim):
    # OKX: after maintenance seqId may restart lower; prevSeqId still chains (protocol ref 4.6)
    sim = live_sim(speed=3.0, faults={"okx": {"okx_seq_reset_every_seconds": 0.7}})
    rec, stats = await run_feeds(sim, 2.5, exchanges=("okx",), options=FAST)
    s = stats["okx"]
    assert s["state"] == "live" and s["book_resyncs"] == {} and s["reconnects"] == 0, s
    ids = [b.update_id for b in rec.books]
    assert any(b < a for a, b in zip(ids, ids[1:], strict=False)), "no reset seen"
    assert await check_books_against_truth(sim.control_url, rec.books) >= 3


async def test_rest_geo_block_is_reported_and_retried_without_a_storm(live_sim):
    sim = live_sim(speed=3.0, faults={"binance": {"rest_geo_block": True}})
    rec, stats = await run_feeds(sim, 2.5, exchanges=("binance",), symbols=("btc", "eth"))
    s = stats["binance"]
    failed = rec.kinds("binance", "notice", "snapshot_failed")
    assert failed and "451" in failed[0].detail, failed[:1]
    assert not rec.books and s["books_valid"] == 0 and s["state"] == "syncing", (
        s
    )  # never a book without its snapshot
    assert s["trades"] > 0 and s["reconnects"] == 0, s  # the trades keep flowing
    assert 2 <= s["snapshot_failures"] <= 16, s  # retried per book with a growing back-off, not hammered
