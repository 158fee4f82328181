"""The venue interface against the simulator: one small connect-decode-book loop, the same for
every exchange (the real connection layer is ``p9cli.live``; this loop only drives a Venue).

Every book state the machines hand out (``valid``) is compared with the simulator's true book
at the update id it reports; injected gaps, bad checksums, ``u=1`` resets, malformed frames and
OKX's 2026 snapshot-less mode are caught and resynced by the machine's own wishes
(``wants_snapshot`` -> the venue's REST snapshot, ``wants_resubscribe`` -> the venue's
resubscribe messages).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest
import websockets

from p9cli.exchanges.book import INVALID
from p9cli.exchanges.venue import (
    BOOKS,
    PONG,
    RECONNECT_SOON,
    BookDelta,
    BookSnapshot,
    ExchangeCandle,
    Malformed,
    Notice,
    Trade,
    Venue,
    get_venue,
)
from p9cli.sim.testing import SimThread

START_MS = 1_767_616_496_789
LISTEN_S = 1.5
TOP = 20  # levels per side compared with the truth


@pytest.fixture
def sim_with():
    threads = []

    def make(faults=None, limits=None):
        thread = SimThread(
            seed=9, start_ms=START_MS, speed=1.0, warm_up=False, faults=faults or {}, limits=limits or {}
        )
        handle = thread.start()
        threads.append(thread)
        return handle

    yield make
    for t in threads:
        t.stop()


@dataclass
class Run:
    venue: Venue
    books: dict
    trades: list = field(default_factory=list)
    candles: list = field(default_factory=list)
    notices: list = field(default_factory=list)
    malformed: int = 0
    statuses: Counter = field(default_factory=Counter)
    causes: Counter = field(default_factory=Counter)
    handed_out: list = field(default_factory=list)  # (symbol, update_id, seq, bids, asks)
    snapshots_requested: int = 0
    resubscribes: int = 0


async def run_venue(handle, name: str, symbols=("btc",), seconds: float = LISTEN_S) -> Run:
    """Open the venue's planned connections, decode every frame, keep books, ask for what the
    machines want, and record every valid book state with its update id."""
    venue = get_venue(name)
    run = Run(venue, {s: venue.new_book(s) for s in symbols})
    plans = venue.connection_plan(handle.ws_url(name), list(symbols), candles=True)
    pending: dict[str, asyncio.Task] = {}
    deadline = time.monotonic() + seconds

    async def snapshot(http, symbol):
        req = venue.snapshot_request(symbol)
        resp = await http.get(handle.rest_url(name) + req.path, params=list(req.params))
        assert resp.status_code == 200, resp.text
        return venue.parse_snapshot(resp.content, symbol)

    def on_book(ev, ws):
        book = run.books[ev.symbol]
        status = book.on_event(ev)
        run.statuses[status] += 1
        if status == INVALID:
            run.causes[book.cause] += 1
            if book.wants_resubscribe and venue.book_resubscribe is not None:
                run.resubscribes += 1
                return [*venue.book_resubscribe(ev.symbol)]
        if book.valid:
            bids, asks = book.top(TOP)
            run.handed_out.append((ev.symbol, book.update_id, book.seq, bids, asks))
        return []

    async def connection(plan, http):
        async with websockets.connect(plan.url, max_size=2**22) as ws:
            for msg in plan.subscribe:
                await ws.send(msg)
                await asyncio.sleep(venue.send_interval_s)
            if venue.keepalive.ping_text is not None:
                await ws.send(venue.keepalive.ping_text)
            while (left := deadline - time.monotonic()) > 0:
                try:
                    frame = await asyncio.wait_for(ws.recv(), min(left, 0.2))
                except TimeoutError:
                    frame = None
                to_send = []
                for ev in venue.decode(frame) if frame is not None else ():
                    kind = type(ev)
                    if kind is Trade:
                        run.trades.append(ev)
                    elif kind is BookSnapshot or kind is BookDelta:
                        to_send += on_book(ev, ws)
                    elif kind is ExchangeCandle:
                        run.candles.append(ev)
                    elif kind is Notice:
                        run.notices.append(ev)
                    elif kind is Malformed:
                        run.malformed += 1
                for msg in to_send:
                    await ws.send(msg)
                if BOOKS not in plan.carries:
                    continue
                for sym in plan.symbols:  # REST snapshots the machines ask for, one in flight each
                    book, task = run.books[sym], pending.get(sym)
                    if task is not None and task.done():
                        del pending[sym]
                        on_book(task.result(), ws)
                    elif task is None and book.wants_snapshot and venue.snapshot_request is not None:
                        run.snapshots_requested += 1
                        pending[sym] = asyncio.ensure_future(snapshot(http, sym))

    async with httpx.AsyncClient(timeout=10) as http:
        tasks = []
        for plan in plans:
            tasks.append(asyncio.ensure_future(connection(plan, http)))
            await asyncio.sleep(venue.connect_interval_s)
        await asyncio.gather(*tasks)
        for task in pending.values():
            task.cancel()
    return run


async def assert_handed_out_books_are_true(handle, run: Run):
    """Every valid state the machine handed out equals the simulator's book at its update id
    (Bybit: at its cross sequence ``seq``, the id the simulator's engine keys its book by; ``u``
    counts per topic)."""
    assert run.handed_out, "no valid book state was ever handed out"
    async with httpx.AsyncClient(timeout=10) as http:
        for symbol, update_id, seq, bids, asks in run.handed_out:
            r = await http.get(
                handle.control_url + "/truth/book",
                params={"exchange": run.venue.name, "symbol": symbol, "update_id": seq or update_id},
            )
            assert r.status_code == 200, r.text
            truth = r.json()
            assert [list(b) for b in bids] == truth["bids"][:TOP], (symbol, update_id)
            assert [list(a) for a in asks] == truth["asks"][:TOP], (symbol, update_id)


def assert_clean(run: Run):
    assert run.malformed == 0 and not run.causes, (run.causes, run.statuses)
    assert run.trades and all(t.symbol in run.books and t.side in ("buy", "sell") and t.price > 0 for t in run.trades)
    # exchange-time order holds per symbol only: trades of different symbols come on different
    # topics/streams, which neither the exchanges nor the simulator order against each other
    for symbol in {t.symbol for t in run.trades}:
        times = [t.ts_ms for t in run.trades if t.symbol == symbol]
        assert times == sorted(times), symbol
    assert all(book.valid and book.update_id is not None for book in run.books.values())
    if run.venue.keepalive.ping_text is not None:
        assert any(n.kind == PONG for n in run.notices), run.notices


@pytest.mark.parametrize("name", ["binance", "bybit", "okx"])
async def test_clean_streams_hand_out_only_true_books(sim_with, name):
    handle = sim_with()
    run = await run_venue(handle, name, ("btc", "eth"))
    assert_clean(run)
    assert {s for s, *_ in run.handed_out} == {"btc", "eth"}
    await assert_handed_out_books_are_true(handle, run)
    if name == "binance":
        assert run.snapshots_requested == 2  # one REST snapshot per symbol, no more
        ids = [t.id_first for t in run.trades if t.symbol == "btc"]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous aggregate ids


@pytest.mark.parametrize("name", ["binance", "bybit", "okx"])
async def test_injected_gaps_are_caught_resynced_and_never_handed_out(sim_with, name):
    handle = sim_with(faults={name: {"depth_gap_every": 6}})
    run = await run_venue(handle, name, seconds=2.0)
    book = run.books["btc"]
    assert run.causes["gap"] >= 1, run.statuses
    assert run.statuses["snapshot"] >= 2  # resynced after a gap
    if name == "bybit":
        assert run.resubscribes >= 1
    else:
        assert run.snapshots_requested >= 2
    assert book.resyncs["gap"] == run.causes["gap"]
    await assert_handed_out_books_are_true(handle, run)


async def test_okx_2026_mode_without_inband_snapshot_bridges_from_rest(sim_with):
    handle = sim_with(limits={"okx": {"okx_books_snapshot": False}})
    run = await run_venue(handle, "okx", ("btc", "eth"))
    assert_clean(run)
    assert run.snapshots_requested == 2 and run.statuses["buffered"] >= 2
    assert all(ev[1] > 0 for ev in run.handed_out)
    await assert_handed_out_books_are_true(handle, run)


async def test_okx_legacy_checksums_verified_and_a_bad_one_resyncs(sim_with):
    handle = sim_with(limits={"okx": {"okx_legacy_checksum": True}})
    run = await run_venue(handle, "okx")
    assert_clean(run)  # real CRC32s all verified
    await assert_handed_out_books_are_true(handle, run)
    handle = sim_with(faults={"okx": {"okx_bad_checksum_every": 5}}, limits={"okx": {"okx_legacy_checksum": True}})
    run = await run_venue(handle, "okx", seconds=2.0)
    assert run.causes["checksum"] >= 1 and run.statuses["snapshot"] >= 2
    await assert_handed_out_books_are_true(handle, run)


async def test_bybit_u1_reset_reloads_the_book(sim_with):
    handle = sim_with(faults={"bybit": {"bybit_reset_every_seconds": 0.7}})
    run = await run_venue(handle, "bybit")
    assert run.books["btc"].resyncs.get("reset", 0) >= 1
    assert run.books["btc"].valid and not run.causes
    await assert_handed_out_books_are_true(handle, run)


@pytest.mark.parametrize("name", ["binance", "bybit", "okx"])
async def test_malformed_frames_are_counted_and_skipped(sim_with, name):
    handle = sim_with(faults={name: {"ws_malformed_every": 7}})
    run = await run_venue(handle, name)
    assert run.malformed >= 2
    assert run.trades and run.handed_out  # the connection carried on
    await assert_handed_out_books_are_true(handle, run)


async def test_announced_shutdowns_decode_to_reconnect_soon(sim_with):
    handle = sim_with(
        faults={
            "binance": {"binance_server_shutdown_every_seconds": 0.5},
            "okx": {"okx_notice_every_seconds": 0.5},
        }
    )
    runs = await asyncio.gather(run_venue(handle, "binance", seconds=1.5), run_venue(handle, "okx", seconds=1.5))
    for run in runs:
        soon = [n for n in run.notices if n.kind == RECONNECT_SOON]
        assert soon, run.notices
        assert run.handed_out  # data keeps flowing during the grace period
