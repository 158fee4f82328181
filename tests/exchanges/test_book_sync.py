"""The book-sync machines on the recorded depth captures and on targeted broken sequences:
gaps, bad checksums, crossed books, resets, snapshots too old, OKX's two snapshot modes and
bounded memory."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from exchange_fixture_files import FIXTURES, capture_frames, jsonl_frames
from test_venue_decode import okx_books_frame

from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import canonical_symbol
from p9cli.exchanges.book import (
    APPLIED,
    BUFFERED,
    CHECKSUM,
    CROSSED,
    GAP,
    INVALID,
    MALFORMED,
    RESET,
    SNAPSHOT,
    SNAPSHOT_TOO_OLD,
    STALE,
    WAITING,
    BinanceBookSync,
    BookSide,
    BybitBookSync,
    OkxBookSync,
    OrderBook,
)
from p9cli.exchanges.venue import BookDelta, BookSnapshot

OKX_2022 = "okx/public_ws_tickers_trades_books_2022-05-13.capture.txt"
BINANCE_PAIRS = {
    "spot": (
        "binance/spot_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-10-12.capture.txt",
        "binance/spot_rest_depth_limit1000_snapshots_2021-10-12.capture.txt",
    ),
    "usdm": (
        "binance/usdm_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-07-22.capture.txt",
        "binance/usdm_rest_depth_limit1000_snapshots_2021-07-22.capture.txt",
    ),
}


# ---------------------------------------------------------------------------- the book itself


def test_book_side_order_replace_delete():
    bids = BookSide(descending=True)
    for px, qty in [("10", "1"), ("9.5", "2"), ("11", "3"), ("10.25", "4")]:
        bids.set(px, qty)
    assert bids.top(10) == [("11", "3"), ("10.25", "4"), ("10", "1"), ("9.5", "2")]
    bids.set("10", "7")
    bids.set("11", "0.00000000")
    bids.set("12", "0")  # deleting an unknown level is a no-op
    assert bids.top(2) == [("10.25", "4"), ("10", "7")] and len(bids) == 3
    asks = BookSide(descending=False)
    asks.set("1.50", "1")
    asks.set("1.5", "2")  # the same price written differently stays one level, newest spelling
    asks.set("1.4", "1")
    assert asks.top(5) == [("1.4", "1"), ("1.5", "2")]
    asks.set("1.500", "0")
    assert asks.top(5) == [("1.4", "1")]
    with pytest.raises(ValueError):
        asks.set("1.3", "lots")
    assert asks.top(5) == [("1.4", "1")]


def test_book_side_is_bounded_and_keeps_the_best_levels():
    asks = BookSide(descending=False, max_levels=100)
    for i in range(1000, 0, -1):
        asks.set(str(i), "1")
    assert len(asks) == 100 == len(asks._keys) == len(asks._by_key)
    assert asks.top(3) == [("1", "1"), ("2", "1"), ("3", "1")] and asks.top(200)[-1] == ("100", "1")
    asks.load([[str(i), "1"] for i in range(500, 0, -1)])
    assert len(asks) == 100 and asks.best() == ("1", "1")


def test_order_book_crossed():
    book = OrderBook()
    book.load([["100", "1"], ["99", "2"]], [["101", "1"], ["102", "5"]])
    assert not book.is_crossed()
    book.apply([["101.5", "1"]], [])
    assert book.is_crossed()


def _naive_apply(book: dict[str, dict], bids, asks):
    """An independent reference: dicts keyed by Decimal price, zero deletes."""
    for side, levels in (("b", bids), ("a", asks)):
        for level in levels:
            px, qty = Decimal(level[0]), Decimal(level[1])
            if qty == 0:
                book[side].pop(px, None)
            else:
                book[side][px] = qty


def _as_decimal_book(sync) -> dict[str, dict[Decimal, Decimal]]:
    return {
        "b": {Decimal(p): Decimal(q) for p, q in sync.book.bids.levels.items()},
        "a": {Decimal(p): Decimal(q) for p, q in sync.book.asks.levels.items()},
    }


# ---------------------------------------------------------------------------- Binance


def _binance_session(kind: str) -> list:
    """Depth diffs (decoded) and REST snapshots (parsed) of one recorded session, by receive time."""
    ws, rest = BINANCE_PAIRS[kind]
    events = []
    for line in (FIXTURES / ws).read_text().splitlines():
        head, _, text = line.partition(": ")
        if not text or " <-" in head:
            continue
        events += [(float(head), e) for e in binance.decode(text) if isinstance(e, BookDelta)]
    for line in (FIXTURES / rest).read_text().splitlines():
        if not line.strip():
            continue
        head, _, text = line.partition(": ")
        url, _, stamp = head.partition(" -> ")
        code = url.split("symbol=")[1].split("&")[0]
        symbol = canonical_symbol(code) or code
        events.append((float(stamp), binance.VENUE.parse_snapshot(text.encode(), symbol)))
    events.sort(key=lambda e: e[0])
    return [e for _, e in events]


@pytest.mark.parametrize("kind", ["spot", "usdm"])
def test_binance_snapshot_plus_diffs_stay_in_sync(kind):
    session = _binance_session(kind)
    syncs = {}
    reference: dict[str, dict] = {}
    for i, ev in enumerate(session):
        sync = syncs.setdefault(ev.symbol, BinanceBookSync(ev.symbol, futures=kind == "usdm"))
        status = sync.on_event(ev)
        if type(ev) is BookSnapshot:
            assert status == SNAPSHOT
            reference[ev.symbol] = {"b": {}, "a": {}}
            _naive_apply(reference[ev.symbol], ev.bids, ev.asks)
            # diffs buffered before the snapshot and newer than it were replayed
            for earlier in session[:i]:
                if earlier.symbol == ev.symbol and earlier.update_id > ev.update_id:
                    _naive_apply(reference[ev.symbol], earlier.bids, earlier.asks)
        elif status == APPLIED:
            _naive_apply(reference[ev.symbol], ev.bids, ev.asks)
        assert status in (BUFFERED, SNAPSHOT, APPLIED, STALE), (ev.symbol, status)
        if sync.valid:
            assert sync.update_id == max(e.update_id for e in session[: i + 1] if e.symbol == ev.symbol)
    assert len(syncs) == 4
    for symbol, sync in syncs.items():
        assert sync.valid and sync.resyncs == {} and sync.stats["snapshots"] == 1
        assert _as_decimal_book(sync) == reference[symbol]
        assert sync.best_bid() == sync.book.bids.best() and sync.top(1)[1] == [sync.best_ask()]
    if kind == "spot":
        nkn = syncs["nkn"]
        assert nkn.stats["applied"] == 149  # the figure of the protocol reference (2.6)
        assert nkn.update_id == max(e.update_id for e in session if e.symbol == "nkn")


def test_binance_spot_missing_diff_is_a_gap_then_resync():
    session = [e for e in _binance_session("spot") if e.symbol == "nkn"]
    snap_at = next(i for i, e in enumerate(session) if type(e) is BookSnapshot)
    sync = BinanceBookSync("nkn")
    assert not sync.wants_snapshot
    assert sync.on_event(session[0]) == BUFFERED and sync.wants_snapshot
    for e in session[1 : snap_at + 5]:
        sync.on_event(e)
    assert sync.valid and not sync.wants_snapshot
    missing, after = session[snap_at + 5], session[snap_at + 6]
    assert sync.on_event(after) == INVALID  # `missing` never arrived
    assert (sync.valid, sync.cause, sync.resyncs, sync.wants_snapshot) == (False, GAP, {GAP: 1}, True)
    assert sync.book.bids.levels == {} and sync.top(5) == ([], []) and sync.best_bid() is None
    assert list(sync.buffer) == [after]
    assert sync.on_event(session[snap_at + 7]) == BUFFERED
    # a snapshot older than the buffered diffs is refused, the buffer kept
    old = BookSnapshot("binance", "nkn", missing.first_id - 1, [], [], from_rest=True)
    assert sync.on_event(old) == SNAPSHOT_TOO_OLD and len(sync.buffer) == 2 and sync.wants_snapshot
    # a snapshot that covers the missing diff resyncs and replays the buffer
    fresh = BookSnapshot("binance", "nkn", missing.update_id, [["0.3", "1"]], [["0.4", "1"]], from_rest=True)
    assert sync.on_event(fresh) == SNAPSHOT
    assert sync.valid and sync.update_id == session[snap_at + 7].update_id and not sync.buffer
    assert sync.on_event(fresh) == STALE  # a late duplicate answer changes nothing


def test_binance_snapshot_at_u_minus_1_is_continuous():
    sync = BinanceBookSync("btc")
    sync.on_event(BookDelta("binance", "btc", 11, 12, [["100", "1"]], []))
    assert sync.on_event(BookSnapshot("binance", "btc", 10, [["99", "1"]], [["101", "1"]], from_rest=True)) == SNAPSHOT
    assert sync.update_id == 12 and sync.best_bid() == ("100", "1")


def test_binance_futures_pu_break_is_a_gap():
    session = [e for e in _binance_session("usdm") if e.symbol == "sushi"]
    sync = BinanceBookSync("sushi", futures=True)
    i = 0
    while sync.stats["applied"] < 2:  # snapshot loaded and the chain started
        sync.on_event(session[i])
        i += 1
    nxt = session[i]
    assert sync.valid and nxt.prev_id == sync.update_id  # the recorded chain: pu == previous u
    broken = BookDelta("binance", "sushi", nxt.first_id, nxt.update_id, nxt.bids, nxt.asks, nxt.prev_id - 1)
    assert sync.on_event(broken) == INVALID and sync.cause == GAP


def test_crossed_book_is_invalid_at_once():
    sync = BinanceBookSync("btc")
    sync.on_event(BookDelta("binance", "btc", 11, 11, [], []))
    sync.on_event(BookSnapshot("binance", "btc", 10, [["99", "1"]], [["101", "1"]], from_rest=True))
    assert sync.valid
    assert sync.on_event(BookDelta("binance", "btc", 12, 12, [["101", "2"]], [])) == INVALID
    assert (sync.cause, sync.valid, sync.best_bid(), sync.wants_snapshot) == (CROSSED, False, None, True)
    crossed_snapshot = BookSnapshot("bybit", "btc", 5, [["102", "1"]], [["101", "1"]])
    bybit_sync = BybitBookSync("btc")
    assert bybit_sync.on_event(crossed_snapshot) == INVALID and bybit_sync.cause == CROSSED


def test_binance_buffer_is_bounded():
    sync = BinanceBookSync("btc", max_buffer=50)
    for i in range(1, 1001):
        assert sync.on_event(BookDelta("binance", "btc", i, i, [["1", "1"]], [])) == BUFFERED
    assert len(sync.buffer) == 50 and sync.stats["buffer_dropped"] == 950
    # the snapshot must now be newer than the oldest diff kept
    assert sync.on_event(BookSnapshot("binance", "btc", 500, [], [], from_rest=True)) == SNAPSHOT_TOO_OLD
    assert sync.on_event(BookSnapshot("binance", "btc", 990, [], [["2", "1"]], from_rest=True)) == SNAPSHOT
    assert sync.update_id == 1000


# ---------------------------------------------------------------------------- Bybit


@pytest.mark.parametrize(
    "path,depth",
    [
        ("bybit/spot_ws_v5_orderbook200_publicTrade_2023-12-24.jsonl", 200),
        ("bybit/spot_ws_v5_orderbook50_snapshot_delta_2024-11-08.jsonl", 50),
    ],
)
def test_bybit_snapshot_then_delta(path, depth):
    events = [e for t in jsonl_frames(path) for e in bybit.decode(t) if isinstance(e, (BookSnapshot, BookDelta))]
    snap, delta = events
    assert type(snap) is BookSnapshot and type(delta) is BookDelta
    assert len(snap.bids) == len(snap.asks) == depth
    assert delta.update_id == snap.update_id + 1 and delta.seq > snap.seq
    sync = bybit.VENUE.new_book("btc")
    assert sync.on_event(delta) == WAITING  # nothing before the snapshot
    assert sync.on_event(snap) == SNAPSHOT and sync.update_id == snap.update_id
    reference = {"b": {}, "a": {}}
    _naive_apply(reference, snap.bids, snap.asks)
    assert sync.best_bid() == tuple(snap.bids[0]) and sync.best_ask() == tuple(snap.asks[0])
    assert sync.on_event(delta) == APPLIED and sync.update_id == delta.update_id
    _naive_apply(reference, delta.bids, delta.asks)
    assert _as_decimal_book(sync) == reference
    deleted = [lv[0] for lv in delta.bids + delta.asks if Decimal(lv[1]) == 0]
    assert deleted and not any(p in sync.book.bids.levels or p in sync.book.asks.levels for p in deleted)
    assert sync.on_event(delta) == STALE  # a duplicate
    jump = BookDelta("bybit", "btc", delta.update_id + 2, delta.update_id + 2, [], [])
    assert sync.on_event(jump) == INVALID and (sync.cause, sync.wants_resubscribe) == (GAP, True)
    assert sync.on_event(delta) == WAITING
    assert sync.on_event(snap) == SNAPSHOT and not sync.wants_resubscribe


def test_bybit_u1_reset_reloads_at_once_and_is_counted():
    sync = BybitBookSync("btc")
    sync.on_event(BookSnapshot("bybit", "btc", 500, [["10", "1"]], [["11", "1"]]))
    sync.on_event(BookDelta("bybit", "btc", 501, 501, [["10", "2"]], []))
    restart = BookSnapshot("bybit", "btc", 1, [["1", "1"]], [["2", "1"]])
    assert sync.on_event(restart) == SNAPSHOT and sync.valid and sync.update_id == 1
    assert sync.book.bids.levels == {"1": "1"} and sync.resyncs == {RESET: 1}
    assert sync.on_event(BookDelta("bybit", "btc", 2, 2, [], [["2", "3"]])) == APPLIED
    # a u=1 sent as a delta is a fresh snapshot too (reference 3.5)
    assert sync.on_event(BookDelta("bybit", "btc", 1, 1, [["5", "1"]], [["6", "1"]])) == SNAPSHOT
    assert sync.book.bids.levels == {"5": "1"} and sync.resyncs == {RESET: 2}


# ---------------------------------------------------------------------------- OKX


def test_okx_checksum_doc_vector():
    bids = [("3366.1", "7"), ("3366", "6")]
    asks = [("3366.8", "9"), ("3368", "8")]
    assert okx.checksum_text(bids, asks) == "3366.1:7:3366.8:9:3366:6:3368:8"
    assert okx.checksum(bids, asks) == -1881014294
    assert okx.checksum_text([("1", "2")], [("3", "4"), ("5", "6")]) == "1:2:3:4:5:6"


def _okx_2022_books() -> list:
    return [e for _u, t in capture_frames(OKX_2022) for e in okx.decode(t) if isinstance(e, (BookSnapshot, BookDelta))]


def test_okx_every_recorded_books_frame_checks_out():
    syncs = defaultdict(lambda: None)
    statuses = Counter()
    for ev in _okx_2022_books():
        assert ev.checksum and ev.update_id is None  # 2022: real checksums, no seqId yet
        sync = syncs[ev.symbol] = syncs[ev.symbol] or okx.VENUE.new_book(ev.symbol)
        statuses[sync.on_event(ev)] += 1
        assert okx.checksum(sync.book.bids.top(25), sync.book.asks.top(25)) == ev.checksum
    assert statuses == {SNAPSHOT: 3, APPLIED: 287}
    assert all(s.valid and s.resyncs == {} for s in syncs.values())
    assert set(syncs) == {"btc", "UNI-USD-SWAP", "BTC-USD-220527"}


def test_okx_bad_nonzero_checksum_invalidates_the_book():
    btc = [e for e in _okx_2022_books() if e.symbol == "btc"]
    sync = okx.VENUE.new_book("btc")
    assert sync.on_event(btc[0]) == SNAPSHOT
    tampered = btc[1]
    level = tampered.asks[0]
    tampered.asks[0] = [level[0], str(Decimal(level[1]) + 1), *level[2:]]
    assert sync.on_event(tampered) == INVALID
    assert (sync.valid, sync.cause, sync.resyncs, sync.wants_snapshot) == (False, CHECKSUM, {CHECKSUM: 1}, True)
    assert sync.on_event(btc[2]) == BUFFERED  # kept for the REST bridge


def test_okx_zero_or_absent_checksum_is_skipped():
    """Production since 2026-06-23 sends checksum 0: never a reason to drop the book."""
    sync = okx.VENUE.new_book("btc")
    bids, asks = [["100", "1", "0", "1"]], [["101", "2", "0", "1"]]
    assert sync.on_event(okx.decode(okx_books_frame("snapshot", 10, -1, bids, asks, 0))[0]) == SNAPSHOT
    upd = okx.decode(okx_books_frame("update", 11, 10, [["100", "3", "0", "2"]], [], 0))[0]
    assert sync.on_event(upd) == APPLIED
    no_field = okx.decode(okx_books_frame("update", 12, 11, [["99", "3", "0", "2"]], [], None))[0]
    assert no_field.checksum is None and sync.on_event(no_field) == APPLIED
    assert sync.valid and sync.update_id == 12 and sync.resyncs == {}


def test_okx_seq_chain_keepalive_maintenance_and_gap():
    sync = okx.VENUE.new_book("btc")
    bids, asks = [["100", "1", "0", "1"]], [["101", "2", "0", "1"]]
    ck = okx.checksum(bids, asks)
    assert sync.on_event(okx.decode(okx_books_frame("snapshot", 10, -1, bids, asks, ck))[0]) == SNAPSHOT
    assert sync.on_event(okx.decode(okx_books_frame("update", 11, 10, [["100", "3", "0", "2"]], []))[0]) == APPLIED
    keepalive = okx.decode(okx_books_frame("update", 11, 11, [], []))[0]
    assert sync.on_event(keepalive) == APPLIED and sync.update_id == 11
    after_maintenance = okx.decode(okx_books_frame("update", 3, 11, [["99", "1", "0", "1"]], []))[0]
    assert sync.on_event(after_maintenance) == APPLIED and sync.update_id == 3  # seqId went down: valid
    gap = okx.decode(okx_books_frame("update", 9, 7, [], []))[0]
    assert sync.on_event(gap) == INVALID and (sync.cause, sync.wants_snapshot) == (GAP, True)
    assert list(sync.buffer) == [gap]


def _upd(seq, prev, bids=(), asks=()):
    """A 2026 ``books`` update as OKX sends it (checksum 0, 4-field levels), decoded."""
    four = [[*lv, "0", "1"] for lv in bids], [[*lv, "0", "1"] for lv in asks]
    (ev,) = okx.decode(okx_books_frame("update", seq, prev, four[0], four[1], 0))
    return ev


def _rest(seq, bids, asks):
    """A REST ``/api/v5/market/books`` body with ``seqId``, parsed by the venue."""
    item = {"asks": [[*lv, "0", "1"] for lv in asks], "bids": [[*lv, "0", "1"] for lv in bids], "ts": "1", "seqId": seq}
    return okx.VENUE.parse_snapshot(json.dumps({"code": "0", "msg": "", "data": [item]}).encode(), "btc")


def test_okx_without_inband_snapshot_bridges_from_rest():
    """The announced mode: updates only; the REST snapshot (with seqId) bridges the buffer."""
    sync = okx.VENUE.new_book("btc")
    assert not sync.wants_snapshot
    assert sync.on_event(_upd(105, 100, [["100", "2"]])) == BUFFERED and sync.wants_snapshot
    assert sync.on_event(_upd(110, 105, [], [["102", "1"]])) == BUFFERED
    assert sync.on_event(_upd(120, 110, [["99", "1"]])) == BUFFERED
    # older than the first buffered update's prevSeqId: too old, fetch again
    too_old = _rest(90, [["100", "1"]], [["101", "1"]])
    assert sync.on_event(too_old) == SNAPSHOT_TOO_OLD and sync.wants_snapshot and len(sync.buffer) == 3
    # seqId 110: 105 and 110 are already in it, 120 (prevSeqId 110 <= 110 < 120) bridges
    snap = _rest(110, [["100", "2"]], [["101", "1"], ["102", "1"]])
    assert sync.on_event(snap) == SNAPSHOT
    assert sync.valid and sync.update_id == 120 and not sync.wants_snapshot and not sync.buffer
    assert sync.top(5) == ([("100", "2"), ("99", "1")], [("101", "1"), ("102", "1")])
    assert sync.resyncs == {}
    assert sync.on_event(_upd(130, 120)) == APPLIED
    assert sync.on_event(snap) == STALE  # a late REST answer changes nothing


def test_okx_rest_snapshot_between_two_updates_bridges():
    """REST is refreshed every 50 ms, the stream every 100 ms: S may fall inside (prevSeqId, seqId)."""
    sync = okx.VENUE.new_book("btc")
    sync.on_event(_upd(120, 110, [["99", "1"]]))
    snap = _rest(115, [["100", "1"]], [["101", "1"]])
    assert sync.on_event(snap) == SNAPSHOT and sync.update_id == 120
    sync2 = okx.VENUE.new_book("btc")
    sync2.on_event(_upd(120, 118))
    sync2.on_event(_upd(130, 125))  # 120 -> 125 missing in the buffer: the bridge fails on it
    assert sync2.on_event(_rest(119, [], [])) == INVALID
    assert sync2.cause == GAP and sync2.wants_snapshot


def test_okx_inband_snapshot_wins_over_a_pending_bridge():
    sync = okx.VENUE.new_book("btc")
    sync.on_event(_upd(105, 100))
    assert sync.wants_snapshot
    inband = okx.decode(okx_books_frame("snapshot", 200, -1, [["1", "1", "0", "1"]], [["2", "1", "0", "1"]]))[0]
    assert sync.on_event(inband) == SNAPSHOT and sync.update_id == 200 and not sync.buffer
    assert not sync.wants_snapshot
    assert sync.on_event(_rest(150, [], [])) == STALE and sync.update_id == 200


def test_malformed_levels_invalidate():
    sync = OkxBookSync("btc")
    assert sync.on_event(BookSnapshot("okx", "btc", 1, [["100", "x"]], [])) == INVALID
    assert sync.cause == MALFORMED and sync.resyncs == {MALFORMED: 1}
    sync = BybitBookSync("btc")
    sync.on_event(BookSnapshot("bybit", "btc", 1, [["100", "1"]], []))
    assert sync.on_event(BookDelta("bybit", "btc", 2, 2, [["oops"]], [])) == INVALID and sync.cause == MALFORMED


def test_invalidate_by_the_caller():
    sync = BybitBookSync("btc")
    sync.on_event(BookSnapshot("bybit", "btc", 5, [["1", "1"]], [["2", "1"]]))
    sync.invalidate("disconnected")
    assert (sync.valid, sync.cause, sync.resyncs, sync.wants_resubscribe) == (False, "disconnected", {"disconnected": 1}, False)
    b = BinanceBookSync("btc")
    b.on_event(BookDelta("binance", "btc", 1, 1, [], []))
    b.invalidate("disconnected")
    assert not b.buffer and not b.wants_snapshot  # a new connection buffers again first
    o = okx.VENUE.new_book("btc")
    o.on_event(_upd(105, 100))
    assert o.wants_snapshot
    o.invalidate("disconnected")
    assert not o.buffer and not o.wants_snapshot and o.resyncs == {"disconnected": 1}


def test_recorded_frames_as_json_roundtrip_sanity():
    # the decoded levels are the exchange's own lists (exact strings, order kept)
    line = (FIXTURES / OKX_2022).read_text().splitlines()[30]  # line 31: BTC-USDT snapshot
    raw = json.loads(line.partition(": ")[2])
    (snap,) = okx.decode(line.partition(": ")[2])
    assert snap.bids == raw["data"][0]["bids"] and snap.checksum == 47640993
    assert okx.checksum(snap.bids, snap.asks) == 47640993
