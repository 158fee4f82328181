"""The same checks over every venue module: what the live layer relies on without knowing which
exchange it drives (``p9cli.live`` never branches on an exchange's name)."""

from __future__ import annotations

import inspect
import random

import orjson
import pytest
from exchange_fixture_files import capture_frames, jsonl_frames

from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import RestRequest, canonical_symbol
from p9cli.exchanges.book import INVALID, VALID_STATUSES, BookSync
from p9cli.exchanges.venue import (
    ACK,
    BOOKS,
    CANDLES,
    ERROR,
    INFO,
    PONG,
    RECONNECT_SOON,
    SUBSCRIBE_FAILED,
    TRADES,
    VENUE_NAMES,
    BookDelta,
    BookSnapshot,
    ConnectionPlan,
    ExchangeCandle,
    Malformed,
    Notice,
    Trade,
    Venue,
    get_venue,
    venues,
)
from p9cli.universe import EXCHANGES, SYMBOLS, exchange_symbol

MODULES = {"binance": binance, "bybit": bybit, "okx": okx}
EVENT_TYPES = (Trade, BookSnapshot, BookDelta, ExchangeCandle, Notice, Malformed)
NOTICE_KINDS = {ACK, PONG, ERROR, SUBSCRIBE_FAILED, RECONNECT_SOON, INFO}

#: per venue: recorded frames (fixtures), the pong the exchange answers a keepalive ping with
SAMPLES = {
    "binance": {
        "frames": [
            t
            for _u, t in capture_frames(
                "binance/spot_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-10-12.capture.txt"
            )
        ],
        "pong": None,  # protocol-level pings and pongs: the WebSocket library's business
        "rest_snapshots": "binance/spot_rest_depth_limit1000_snapshots_2021-10-12.capture.txt",
    },
    "bybit": {
        "frames": jsonl_frames("bybit/spot_ws_v5_orderbook200_publicTrade_2023-12-24.jsonl")
        + jsonl_frames("bybit/spot_ws_v5_orderbook50_snapshot_delta_2024-11-08.jsonl"),
        "pong": b'{"success":true,"ret_msg":"pong","conn_id":"0970e817","op":"ping"}',
    },
    "okx": {
        "frames": [t for _u, t in capture_frames("okx/public_ws_tickers_trades_books_2022-05-13.capture.txt")]
        + jsonl_frames("okx/spot_ws_trades_BTC-USDT_2025-02-24.jsonl"),
        "pong": b"pong",
    },
}

pytestmark = pytest.mark.parametrize("name", VENUE_NAMES)


def test_registry(name):
    venue = get_venue(name)
    assert isinstance(venue, Venue) and venue is MODULES[name].VENUE
    assert venue.name == name == MODULES[name].NAME
    assert set(VENUE_NAMES) == set(EXCHANGES) and [v.name for v in venues()] == list(VENUE_NAMES)


def test_unknown_venue_is_a_clear_error(name):
    with pytest.raises(ValueError, match="unknown exchange 'kraken'"):
        get_venue("kraken")


@pytest.mark.parametrize("candles", [True, False])
def test_connection_plan_covers_every_symbol_once(name, candles):
    venue = get_venue(name)
    base = "wss://example.test:443/"
    plans = venue.connection_plan(base, list(SYMBOLS), candles=candles)
    assert plans and all(isinstance(p, ConnectionPlan) for p in plans)
    for what in (TRADES, BOOKS) + ((CANDLES,) if candles else ()):
        carried = [s for p in plans if what in p.carries for s in p.symbols]
        assert sorted(carried) == sorted(SYMBOLS), what  # each symbol on exactly one connection
    if not candles:
        assert all(CANDLES not in p.carries for p in plans)
    for p in plans:
        assert p.url.startswith("wss://example.test:443/") and "//" not in p.url[len("wss://") :]
        assert 0 < len(p.streams) <= venue.streams_per_connection
        for msg in p.subscribe:
            assert isinstance(msg, str) and isinstance(orjson.loads(msg), dict)
        names_in_plan = p.url + "".join(p.subscribe)
        for sym in p.symbols:  # the exchange's own code for the symbol is named somewhere
            code = exchange_symbol(name, sym)
            assert code in names_in_plan or code.lower() in names_in_plan


def test_connection_plan_respects_streams_per_connection(name):
    venue = get_venue(name)
    many = [f"coin{i}" for i in range(400)]
    plans = venue.connection_plan("ws://127.0.0.1:1", many, candles=True)
    assert all(len(p.streams) <= venue.streams_per_connection for p in plans)
    assert sorted(s for p in plans if BOOKS in p.carries for s in p.symbols) == sorted(many)


def test_keepalive_rule_is_consistent(name):
    venue = get_venue(name)
    k = venue.keepalive
    if k.ping_text is None:  # the server pings (protocol frames): nothing to schedule
        assert k.ping_every_s is None and k.ping_when_idle_s is None
        assert SAMPLES[name]["pong"] is None
        return
    assert (k.ping_every_s is None) != (k.ping_when_idle_s is None), "exactly one ping schedule"
    interval = k.ping_every_s or k.ping_when_idle_s
    assert 0 < interval < venue.silence_timeout_s
    assert k.pong_timeout_s is not None and k.pong_timeout_s > 0
    (pong,) = venue.decode(SAMPLES[name]["pong"])
    assert type(pong) is Notice and pong.kind == PONG


def test_pacing_and_lifetime_are_positive(name):
    venue = get_venue(name)
    assert venue.send_interval_s > 0 and venue.connect_interval_s > 0 and venue.silence_timeout_s > 0
    assert venue.max_connection_age_s is None or venue.max_connection_age_s >= 3600
    assert venue.candle_timeframe == "1m" and venue.empty_candle in ("previous_close", "omit")
    assert isinstance(venue.candle_trade_counts, bool)


def test_rest_hooks_come_in_pairs(name):
    venue = get_venue(name)
    assert (venue.snapshot_request is None) == (venue.parse_snapshot is None)
    assert (venue.trade_replay_request is None) == (venue.parse_trade_replay is None)
    if venue.snapshot_request is not None:
        req = venue.snapshot_request("btc")
        assert isinstance(req, RestRequest) and req.bucket in {b.name for b in MODULES[name].RATE_BUCKETS}
    if venue.trade_replay_request is not None:
        buckets = {b.name for b in MODULES[name].RATE_BUCKETS}
        for page in (0, 1, 5):
            req = venue.trade_replay_request("btc", 123, 456, page)
            assert isinstance(req, RestRequest) and req.bucket in buckets
            # from the bottom of the span on (Binance fromId); OKX: the newest trades first
            # (market/trades has no id bound), then down from the top (history-trades after=457)
            if name == "okx":
                assert ("after=457" in req.query) == (page > 0)
            else:
                assert "fromId=123" in req.query
    # a book that cannot be bridged by REST must be resubscribable, and the other way round
    assert venue.snapshot_request is not None or venue.book_resubscribe is not None
    if venue.book_resubscribe is not None:
        unsub, sub = venue.book_resubscribe("btc")
        assert orjson.loads(unsub) != orjson.loads(sub)


def test_new_book_speaks_the_machine_interface(name):
    venue = get_venue(name)
    book = venue.new_book("btc")
    assert isinstance(book, BookSync) and book.symbol == "btc" and book.exchange == name
    assert not book.valid and book.update_id is None and book.cause is None
    assert not book.wants_snapshot and not book.wants_resubscribe
    assert book.top(5) == ([], []) and book.best_bid() is None and book.best_ask() is None
    assert venue.new_book("btc") is not book


def _rest_snapshots(name) -> list[BookSnapshot]:
    """The venue's REST snapshots recorded in the same session as its frames (if it needs them)."""
    path = SAMPLES[name].get("rest_snapshots")
    if path is None:
        return []
    venue = get_venue(name)
    out = []
    for url, body in capture_frames(path):
        code = url.split("symbol=")[1].split("&")[0]
        out.append(venue.parse_snapshot(body.encode(), canonical_symbol(code) or code))
    return out


def test_recorded_frames_decode_to_normalized_events(name):
    venue = get_venue(name)
    kinds = set()
    for frame in SAMPLES[name]["frames"]:
        events = venue.decode(frame)
        assert isinstance(events, list)
        for ev in events:
            assert type(ev) in EVENT_TYPES and type(ev) is not Malformed
            assert ev.exchange == name
            kinds.add(type(ev))
            if type(ev) is Trade:
                assert ev.side in ("buy", "sell") and ev.price > 0 and ev.size > 0 and ev.ts_ms > 1e12
                assert type(ev.trade_id) is str
                assert (ev.id_first is None) == (ev.id_last is None)
            elif type(ev) is Notice:
                assert ev.kind in NOTICE_KINDS
            elif type(ev) in (BookSnapshot, BookDelta):
                for level in ev.bids + ev.asks:
                    assert all(type(x) is str for x in level)
    assert {Trade, BookDelta} <= kinds
    assert BookSnapshot in kinds or _rest_snapshots(name)


def test_book_events_feed_the_machine(name):
    venue = get_venue(name)
    books: dict[str, BookSync] = {}
    statuses = set()
    events = [ev for frame in SAMPLES[name]["frames"] for ev in venue.decode(frame)]
    book_events = [ev for ev in events if isinstance(ev, (BookSnapshot, BookDelta))]
    # REST snapshots (recorded in the same session) go in once their symbol's first diff has
    # been buffered, as a live caller would send them
    rest = {snap.symbol: snap for snap in _rest_snapshots(name)}
    for ev in book_events:
        book = books.setdefault(ev.symbol, venue.new_book(ev.symbol))
        statuses.add(book.on_event(ev))
        if book.wants_snapshot and ev.symbol in rest:
            statuses.add(book.on_event(rest.pop(ev.symbol)))
    assert INVALID not in statuses and statuses & VALID_STATUSES
    assert books and all(book.valid for book in books.values())


def test_decode_never_raises_on_garbage(name):
    """Truncations and byte flips of recorded frames, random bytes: a list, at worst Malformed."""
    venue = get_venue(name)
    rnd = random.Random(7)
    frames = [f.encode() if isinstance(f, str) else f for f in SAMPLES[name]["frames"][:40]]
    garbage = [b"", b"\x00", b"\xff\xfe", b"null", b"[]", b"1e999", b'"text"', b"{" * 10_000]
    for f in frames:
        garbage.append(f[: rnd.randrange(len(f))])
        flipped = bytearray(f)
        for _ in range(3):
            flipped[rnd.randrange(len(flipped))] = rnd.randrange(256)
        garbage.append(bytes(flipped))
    garbage += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))) for _ in range(100)]
    malformed = 0
    for g in garbage:
        events = venue.decode(g)
        assert isinstance(events, list) and all(type(e) in EVENT_TYPES for e in events)
        malformed += sum(type(e) is Malformed for e in events)
    assert malformed >= 100


def test_decode_is_a_plain_function_of_the_frame(name):
    venue = get_venue(name)
    assert list(inspect.signature(venue.decode).parameters) == ["frame"]
    frame = SAMPLES[name]["frames"][1]
    assert venue.decode(frame) == venue.decode(frame)  # no hidden state between calls
