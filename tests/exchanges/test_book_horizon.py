"""Binance: levels beyond the REST snapshot's depth are unknown until they change (protocol
reference 2.6 step 7). Regression of the chaos finding "published book differs from the truth at
its update id" (book-witness, session 14): the snapshot (limit 1000) ended at ask 57411.26, the
price rose ~10 USD in 2.4 s, and the published top-200 reached past that edge, where the local
book lacked every level that had not changed since the snapshot (12 true asks missing, deeper
ones shown instead; a bid-side move also showed a wrong best bid).

The machine is fed a constructed sequence against a true book kept alongside (the simulator's
behaviour: a truncated snapshot, diffs carrying only changed levels), and every state it hands
on must equal the truth over the levels it claims (``top``), best levels included."""

from __future__ import annotations

from p9cli.exchanges.book import APPLIED, SNAPSHOT, BinanceBookSync
from p9cli.exchanges.venue import BookDelta, BookSnapshot

LIMIT = 10  # the REST snapshot depth in this test (p9 asks Binance for 1000)


def _p(x: int) -> str:
    return f"{x}.00000000"


def _snapshot(truth_bids: dict, truth_asks: dict, uid: int) -> BookSnapshot:
    bids = [[_p(p), truth_bids[p]] for p in sorted(truth_bids, reverse=True)[:LIMIT]]
    asks = [[_p(p), truth_asks[p]] for p in sorted(truth_asks)[:LIMIT]]
    return BookSnapshot("binance", "btc", uid, bids, asks, None, True)


def _diff(uid: int, bids: dict, asks: dict) -> BookDelta:
    return BookDelta(
        "binance", "btc", uid, uid, [[_p(p), q] for p, q in bids.items()], [[_p(p), q] for p, q in asks.items()]
    )


def _apply(truth: dict, changes: dict) -> None:
    for p, q in changes.items():
        if q == "0":
            truth.pop(p, None)
        else:
            truth[p] = q


def _assert_matches_truth(sync: BinanceBookSync, truth_bids: dict, truth_asks: dict) -> None:
    bids, asks = sync.top(1000)
    assert bids and asks, "a valid book hands on at least the best level of each side"
    want_b = [(_p(p), truth_bids[p]) for p in sorted(truth_bids, reverse=True)[: len(bids)]]
    want_a = [(_p(p), truth_asks[p]) for p in sorted(truth_asks)[: len(asks)]]
    assert bids == want_b, (sync.update_id, bids, want_b)
    assert asks == want_a, (sync.update_id, asks, want_a)
    assert sync.best_bid() == want_b[0] and sync.best_ask() == want_a[0]


def test_levels_beyond_the_snapshot_depth_are_never_handed_on_and_the_book_is_refreshed():
    # 40 true levels a side around 100; the snapshot carries 10 of each
    truth_bids = {p: "1" for p in range(60, 100)}
    truth_asks = {p: "2" for p in range(100, 140)}
    sync = BinanceBookSync("btc", snapshot_limit=LIMIT, min_known=4)
    uid = 1000
    assert sync.on_event(_diff(uid + 1, {}, {})) == "buffered" and sync.wants_snapshot
    assert sync.on_event(_snapshot(truth_bids, truth_asks, uid)) == SNAPSHOT
    uid += 1
    _assert_matches_truth(sync, truth_bids, truth_asks)
    # the price rises: the best asks are taken one by one, and a level far beyond the
    # snapshot's last ask (109) changes size (it is sent: now known, but 110..124 are not)
    for step, p in enumerate(range(100, 106)):
        uid += 1
        changes = {p: "0"}
        if step == 0:
            changes[125] = "7"
        _apply(truth_asks, changes)
        assert sync.on_event(_diff(uid, {}, changes)) == APPLIED
        assert sync.valid
        _assert_matches_truth(sync, truth_bids, truth_asks)
    # 4 known asks (106..109) left = min_known: the machine asks for a fresh snapshot while the
    # book stays valid and keeps being handed on
    uid += 1
    _apply(truth_asks, {106: "0"})
    assert sync.on_event(_diff(uid, {}, {106: "0"})) == APPLIED
    assert sync.valid and sync.wants_snapshot
    _assert_matches_truth(sync, truth_bids, truth_asks)
    snap = _snapshot(truth_bids, truth_asks, uid)  # taken now; answered after two more diffs
    for p in (107, 108):
        uid += 1
        _apply(truth_asks, {p: "0"})
        assert sync.on_event(_diff(uid, {}, {p: "0"})) == APPLIED
        _assert_matches_truth(sync, truth_bids, truth_asks)
    # the refresh snapshot bridges the diffs received meanwhile: the book is deep again
    assert sync.on_event(snap) == SNAPSHOT
    assert sync.valid and not sync.wants_snapshot and sync.update_id == uid
    _assert_matches_truth(sync, truth_bids, truth_asks)
    bids, asks = sync.top(1000)
    assert len(asks) == LIMIT - 2 and asks[0] == (_p(109), "2")  # 107..116 sent; 107, 108 bridged away
    assert sync.resyncs == {}  # never invalid: a refresh, not a resync
    # and it keeps following the stream
    uid += 1
    _apply(truth_asks, {109: "0", 110: "3"})
    assert sync.on_event(_diff(uid, {}, {109: "0", 110: "3"})) == APPLIED
    _assert_matches_truth(sync, truth_bids, truth_asks)


def test_a_side_moved_entirely_past_the_snapshot_edge_is_invalid_not_wrong():
    # the price falls through every known bid at once: the true best bid (an unchanged level
    # beyond the snapshot) is unknown, so the book must not be handed on (chaos: best bid
    # 57079.09 published, truth 57079.11)
    truth_bids = {p: "1" for p in range(60, 100)}
    truth_asks = {p: "2" for p in range(100, 140)}
    sync = BinanceBookSync("btc", snapshot_limit=LIMIT, min_known=4)
    sync.on_event(_diff(501, {}, {}))
    assert sync.on_event(_snapshot(truth_bids, truth_asks, 500)) == SNAPSHOT
    changes = {p: "0" for p in range(90, 100)}
    changes[85] = "5"  # a known level beyond the edge (89 and 86..88 are not known)
    _apply(truth_bids, changes)
    status = sync.on_event(_diff(502, changes, {}))
    assert status == "invalid" and not sync.valid and sync.cause == "horizon"
    assert sync.wants_snapshot and sync.top(5) == ([], [])
