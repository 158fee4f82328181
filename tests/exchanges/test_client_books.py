"""Order-book parsing and sync rules on the recorded captures (and targeted broken sequences)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from exchange_fixture_files import FIXTURES, capture_frames, jsonl_frames

from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import BookMsg
from p9cli.exchanges.book import (
    APPLIED,
    BAD_CHECKSUM,
    BUFFERED,
    GAP,
    MALFORMED,
    SNAPSHOT,
    STALE,
    TOO_OLD,
    WAITING,
    BinanceBookSync,
    BookSide,
    BybitBookSync,
    OkxBookSync,
    OrderBook,
    book_sync_for,
)

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


def test_order_book_best_and_crossed():
    book = OrderBook()
    book.load([["100", "1"], ["99", "2"]], [["101", "1"], ["102", "5"]])
    assert book.best_bid() == ("100", "1") and book.best_ask() == ("101", "1")
    assert not book.is_crossed()
    book.apply([["101.5", "1"]], [])
    assert book.is_crossed()


def _naive_apply(book: dict[str, dict[str, Decimal]], bids, asks):
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


def _binance_session(kind: str):
    """Depth diffs and REST snapshots of one recorded session, in receive-time order."""
    ws, rest = BINANCE_PAIRS[kind]
    events = []
    for line in (FIXTURES / ws).read_text().splitlines():
        head, _, text = line.partition(": ")
        if not text or " <-" in head:
            continue
        stream, event = binance.unwrap(binance.decode_frame(text))
        msg = binance.parse_depth(event, stream)
        if msg is not None:
            events.append((float(head), msg))
    for url, text in capture_frames(rest):
        symbol = url.split("symbol=")[1].split("&")[0]
        stamp = 0.0
        for line in (FIXTURES / rest).read_text().splitlines():
            if line.startswith(url + " -> "):
                stamp = float(line.split(" -> ")[1].split(": ")[0])
        events.append((stamp, binance.parse_depth_snapshot(text.encode(), symbol)))
    events.sort(key=lambda e: e[0])
    return [m for _, m in events]


@pytest.mark.parametrize("kind", ["spot", "usdm"])
def test_binance_snapshot_plus_diffs_stay_in_sync(kind):
    session = _binance_session(kind)
    syncs = defaultdict(lambda: BinanceBookSync(futures=kind == "usdm"))
    reference: dict[str, dict] = {}
    statuses: dict[str, Counter] = defaultdict(Counter)
    for msg in session:
        sync = syncs[msg.symbol]
        status = sync.on_message(msg)
        statuses[msg.symbol][status] += 1
        if msg.kind == "snapshot":
            assert status == SNAPSHOT
            reference[msg.symbol] = {"b": {}, "a": {}}
            _naive_apply(reference[msg.symbol], msg.bids, msg.asks)
            snap_id = msg.last_id
            # diffs buffered before the snapshot and newer than it were replayed
            for earlier in session[: session.index(msg)]:
                if earlier.symbol == msg.symbol and earlier.kind == "delta" and earlier.last_id > snap_id:
                    _naive_apply(reference[msg.symbol], earlier.bids, earlier.asks)
        elif status == APPLIED:
            _naive_apply(reference[msg.symbol], msg.bids, msg.asks)
        assert status in (BUFFERED, SNAPSHOT, APPLIED, STALE), (msg.symbol, status)
    assert len(syncs) == 4
    for symbol, sync in syncs.items():
        assert sync.in_sync and sync.stats["gaps"] == 0 and sync.stats["snapshots"] == 1
        assert _as_decimal_book(sync) == reference[symbol]
        assert not sync.book.is_crossed()
    if kind == "spot":
        assert syncs["NKNUSDT"].stats["applied"] == 149  # the figure of the protocol doc
        assert syncs["NKNUSDT"].last_id == max(m.last_id for m in session if m.symbol == "NKNUSDT")


def test_binance_spot_missing_diff_is_a_gap_then_resync():
    session = [m for m in _binance_session("spot") if m.symbol == "NKNUSDT"]
    snap_at = next(i for i, m in enumerate(session) if m.kind == "snapshot")
    sync = BinanceBookSync()
    for m in session[: snap_at + 5]:
        sync.on_message(m)
    assert sync.in_sync
    missing = session[snap_at + 5]
    after = session[snap_at + 6]
    assert sync.on_message(after) == GAP  # `missing` never arrived
    assert not sync.in_sync and sync.stats["gaps"] == 1 and sync.book.bids.levels == {}
    assert sync.buffer == [after]
    assert sync.on_message(session[snap_at + 7]) == BUFFERED
    # a snapshot older than the buffered diffs is refused, the buffer kept
    old = BookMsg("binance", "NKNUSDT", "snapshot", [], [], last_id=missing.first_id - 1)
    assert sync.on_message(old) == TOO_OLD and len(sync.buffer) == 2
    # a snapshot that covers the missing diff resyncs and replays the buffer
    fresh = BookMsg("binance", "NKNUSDT", "snapshot", [["0.3", "1"]], [["0.4", "1"]], last_id=missing.last_id)
    assert sync.on_message(fresh) == SNAPSHOT
    assert sync.in_sync and sync.last_id == session[snap_at + 7].last_id and sync.buffer == []


def test_binance_futures_pu_break_is_a_gap():
    session = [m for m in _binance_session("usdm") if m.symbol == "SUSHIUSDT"]
    sync = BinanceBookSync(futures=True)
    i = 0
    while sync.stats["applied"] < 2:  # snapshot loaded and the chain started
        sync.on_message(session[i])
        i += 1
    assert sync.in_sync
    nxt = session[i]
    assert nxt.prev_id == sync.last_id  # the recorded chain: pu == previous u
    broken = BookMsg(
        "binance", nxt.symbol, "delta", nxt.bids, nxt.asks, nxt.first_id, nxt.last_id, nxt.prev_id - 1
    )
    assert sync.on_message(broken) == GAP and not sync.in_sync


def test_binance_partial_depth_stream_snapshot():
    event = binance.decode_frame(
        b'{"stream":"bnbbtc@depth20@100ms","data":{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}}'
    )
    stream, data = binance.unwrap(event)
    assert binance.frame_kind(data) == "depth"
    msg = binance.parse_depth(data, stream)
    assert (msg.symbol, msg.kind, msg.last_id, msg.bids, msg.asks) == (
        "BNBBTC",
        "snapshot",
        160,
        [["0.0024", "10"]],
        [["0.0026", "100"]],
    )


def test_binance_rest_depth_fixture_and_request():
    path = "binance/rest/usdm_depth_BTCUSDT_limit5.json"
    raw = json.loads((FIXTURES / path).read_text())
    msg = binance.parse_depth_snapshot((FIXTURES / path).read_bytes(), "BTCUSDT")
    assert (msg.last_id, msg.bids, msg.asks, msg.time_ms) == (
        raw["lastUpdateId"],
        raw["bids"],
        raw["asks"],
        raw["T"],
    )
    req = binance.depth_request("btc", 1000)
    assert (req.target, req.cost) == ("/api/v3/depth?symbol=BTCUSDT&limit=1000", 50)
    assert binance.depth_request("btc", 100).cost == 5 and binance.depth_request("btc", 5000).cost == 250


# ---------------------------------------------------------------------------- Bybit


@pytest.mark.parametrize(
    "path,depth",
    [
        ("bybit/spot_ws_v5_orderbook200_publicTrade_2023-12-24.jsonl", 200),
        ("bybit/spot_ws_v5_orderbook50_snapshot_delta_2024-11-08.jsonl", 50),
    ],
)
def test_bybit_snapshot_then_delta(path, depth):
    frames = [bybit.decode_frame(t) for t in jsonl_frames(path)]
    books = [bybit.parse_book(f) for f in frames if bybit.frame_kind(f) == "book"]
    assert [b.kind for b in books] == ["snapshot", "delta"]
    snap, delta = books
    assert len(snap.bids) == len(snap.asks) == depth
    assert delta.last_id == snap.last_id + 1 and delta.seq > snap.seq
    sync = BybitBookSync()
    assert sync.on_message(delta) == WAITING  # nothing before the snapshot
    assert sync.on_message(snap) == SNAPSHOT
    reference = {"b": {}, "a": {}}
    _naive_apply(reference, snap.bids, snap.asks)
    assert sync.book.bids.top(1)[0] == tuple(snap.bids[0]) and sync.book.asks.top(1)[0] == tuple(snap.asks[0])
    assert sync.on_message(delta) == APPLIED
    _naive_apply(reference, delta.bids, delta.asks)
    assert _as_decimal_book(sync) == reference
    deleted = [lv[0] for lv in delta.bids + delta.asks if Decimal(lv[1]) == 0]
    assert deleted and not any(p in sync.book.bids.levels or p in sync.book.asks.levels for p in deleted)
    assert sync.on_message(delta) == STALE  # a duplicate
    jump = BookMsg("bybit", "BTCUSDT", "delta", [], [], delta.last_id + 2, delta.last_id + 2)
    assert sync.on_message(jump) == GAP and not sync.in_sync
    restart = BookMsg("bybit", "BTCUSDT", "delta", [["1", "1"]], [["2", "1"]], 1, 1)
    assert sync.on_message(restart) == SNAPSHOT and sync.book.bids.levels == {"1": "1"}


def test_bybit_rest_orderbook():
    msg = bybit.parse_rest_orderbook(
        (FIXTURES / "bybit/testnet_spot_rest_v5_orderbook_2023-12-23.json").read_bytes()
    )
    assert (msg.symbol, msg.kind, msg.last_id, msg.time_ms) == ("BTCUSDT", "snapshot", 1458765, 1703314210368)
    assert msg.bids[0] == ["29714.9", "0.0008"] and msg.asks[0] == ["29727.05", "0.000069"]
    assert (
        bybit.orderbook_request("btc", 200).target
        == "/v5/market/orderbook?category=spot&symbol=BTCUSDT&limit=200"
    )


# ---------------------------------------------------------------------------- OKX


def test_okx_checksum_doc_vector():
    bids = [("3366.1", "7"), ("3366", "6")]
    asks = [("3366.8", "9"), ("3368", "8")]
    assert okx.checksum_text(bids, asks) == "3366.1:7:3366.8:9:3366:6:3368:8"
    assert okx.checksum(bids, asks) == -1881014294
    assert okx.checksum_text([("1", "2")], [("3", "4"), ("5", "6")]) == "1:2:3:4:5:6"


def test_okx_checksum_of_recorded_btc_usdt_snapshot():
    line = (FIXTURES / OKX_2022).read_text().splitlines()[30]  # line 31
    msg = okx.parse_book(okx.decode_frame(line.partition(": ")[2]))
    assert (msg.symbol, msg.kind, msg.checksum) == ("BTC-USDT", "snapshot", 47640993)
    assert msg.bids[0][:2] == ["30243.4", "0.0012029"] and msg.asks[0][:2] == ["30243.5", "1.44679"]
    assert okx.checksum(msg.bids, msg.asks) == 47640993  # snapshot levels arrive best first


def test_okx_every_recorded_books_frame_checks_out():
    syncs: dict[str, OkxBookSync] = defaultdict(OkxBookSync)
    statuses = Counter()
    for _url, text in capture_frames(OKX_2022):
        obj = okx.decode_frame(text)
        if okx.frame_kind(obj) != "book":
            continue
        msg = okx.parse_book(obj)
        assert msg.checksum is not None and msg.last_id is None  # 2022: no seqId yet
        status = syncs[msg.symbol].on_message(msg)
        statuses[status] += 1
        sync = syncs[msg.symbol]
        assert okx.checksum(sync.book.bids.top(25), sync.book.asks.top(25)) == msg.checksum
    assert statuses == {SNAPSHOT: 3, APPLIED: 287}
    assert sum(s.stats["bad_checksums"] for s in syncs.values()) == 0
    assert set(syncs) == {"BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527"}


def test_okx_bad_checksum_drops_the_book():
    frames = [okx.decode_frame(t) for _u, t in capture_frames(OKX_2022)]
    books = [okx.parse_book(f) for f in frames if okx.frame_kind(f) == "book"]
    btc = [b for b in books if b.symbol == "BTC-USDT"]
    sync = OkxBookSync()
    assert sync.on_message(btc[0]) == SNAPSHOT
    tampered = btc[1]
    level = tampered.asks[0]
    tampered.asks[0] = [level[0], str(Decimal(level[1]) + 1), *level[2:]]
    assert sync.on_message(tampered) == BAD_CHECKSUM
    assert not sync.in_sync and sync.stats["bad_checksums"] == 1
    assert sync.on_message(btc[2]) == WAITING


def _okx_frame(action, seq, prev, bids, asks, ck=None):
    item = {"asks": asks, "bids": bids, "ts": "1597026383085", "prevSeqId": prev, "seqId": seq}
    if ck is not None:
        item["checksum"] = ck
    return {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action, "data": [item]}


def test_okx_seq_chain_keepalive_reset_and_gap():
    sync = book_sync_for("okx")
    bids, asks = [["100", "1", "0", "1"]], [["101", "2", "0", "1"]]
    ck = okx.checksum(bids, asks)
    assert sync.on_message(okx.parse_book(_okx_frame("snapshot", 10, -1, bids, asks, ck))) == SNAPSHOT
    upd = okx.parse_book(_okx_frame("update", 11, 10, [["100", "3", "0", "2"]], []))
    assert upd.prev_id == 10 and sync.on_message(upd) == APPLIED
    keepalive = okx.parse_book(_okx_frame("update", 11, 11, [], []))
    assert sync.on_message(keepalive) == APPLIED and sync.last_id == 11
    after_maintenance = okx.parse_book(_okx_frame("update", 3, 11, [], [["101", "0", "0", "0"]]))
    assert sync.on_message(after_maintenance) == APPLIED and sync.last_id == 3  # seqId went down: still valid
    assert sync.book.asks.levels == {}
    gap = okx.parse_book(_okx_frame("update", 9, 7, [], []))
    assert sync.on_message(gap) == GAP and not sync.in_sync


def test_okx_books5_and_malformed_levels():
    obj = {
        "arg": {"channel": "books5", "instId": "BCH-USDT-SWAP"},
        "data": [
            {
                "asks": [["1", "2", "0", "1"]],
                "bids": [],
                "instId": "BCH-USDT-SWAP",
                "ts": "1",
                "seqId": 363996337,
            }
        ],
    }
    msg = okx.parse_book(obj)
    assert (msg.kind, msg.symbol, msg.last_id, msg.checksum) == ("snapshot", "BCH-USDT-SWAP", 363996337, None)
    sync = OkxBookSync()
    bad = BookMsg("okx", "BTC-USDT", "snapshot", [["100", "x"]], [], last_id=1)
    assert sync.on_message(bad) == MALFORMED and not sync.in_sync
    assert sync.stats["malformed"] == 1
