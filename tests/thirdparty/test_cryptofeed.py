"""cryptofeed's trade and L2 book feeds for Binance, Bybit and OKX against `p9 sim`.

One FeedHandler runs the three feeds (BTC-USDT, ETH-USDT and SOL-USDT, TRADES + L2_BOOK) for
:data:`RUN_SECONDS` wall seconds on a simulator running at :data:`SPEED` x (about 50 simulated
seconds: the market model has quiet spells of up to a minute without trades). The feeds are cryptofeed's own classes with only their
endpoint addresses rebased onto the simulator (see ``thirdparty_harness.cryptofeed_class``:
``wss://`` on the simulator's own TLS, ``p9 sim --tls``, its CA trusted through ``SSL_CERT_FILE``);
every feed runs with ``cross_check=True``. OKX runs in its 2026 mode (``checksum: 0`` on every
``books`` push), so ``checksum_validation`` is off as it must be for any cryptofeed user since
2026-06-23 (cryptofeed would compare its CRC32 with 0 and resubscribe forever); the fault test
below runs the simulator with ``--okx-legacy-checksum`` and validation on.

Checked afterwards:

* cryptofeed logged no warning or error (no exception, reconnect, "Missing book update
  detected", bad checksum, unhandled message) and every connection stayed up;
* books stayed in sync: one snapshot per symbol (no resync storm), every update continued the
  exchange's sequence (Binance ``U == prev u + 1``, Bybit ``u == prev u + 1``, OKX
  ``prevSeqId == prev seqId``), and sampled cryptofeed books equal the simulator's true book
  at the update id they were built from (top 20 levels a side);
* trades equal the simulator's trades one for one (id, time, price, size, taker side) over a
  window during which the feeds were surely subscribed, with no duplicate and nothing missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from thirdparty_harness import cryptofeed_class, running_sim_process

cryptofeed = importlib.import_module("cryptofeed")

from cryptofeed import FeedHandler  # noqa: E402
from cryptofeed.defines import L2_BOOK, TRADES  # noqa: E402

pytestmark = pytest.mark.timeout(180)

RUN_SECONDS = 7.0
SPEED = 7.0
SYMBOLS = {"BTC-USDT": "btc", "ETH-USDT": "eth", "SOL-USDT": "sol"}
EXCHANGES = ("binance", "bybit", "okx")
TOP = 20
SAMPLE_EVERY = 7  # book callbacks between two samples


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Recorder:
    """What one cryptofeed feed delivered, with the sequence ids read from the raw frames."""

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self.trades: dict[str, list[tuple]] = defaultdict(list)
        self.snapshots: Counter = Counter()
        self.updates: Counter = Counter()
        self.sequence_breaks: list[str] = []
        self.last_seq: dict[str, int] = {}
        self.samples: list[tuple[str, int, list, list]] = []
        self.book_calls: Counter = Counter()

    async def on_trade(self, trade: Any, receipt: float) -> None:
        raw = trade.raw
        sym = SYMBOLS[trade.symbol]
        if self.exchange == "binance":
            tid, t = str(raw["a"]), int(raw["T"])
        elif self.exchange == "bybit":
            tid, t = str(raw["i"]), int(raw["T"])
        else:
            tid, t = str(raw["tradeId"]), int(raw["ts"])
        side = "buy" if trade.side == "buy" else "sell"
        self.trades[sym].append((t, tid, Decimal(trade.price), Decimal(trade.amount), side))

    async def on_book(self, book: Any, receipt: float) -> None:
        sym = SYMBOLS[book.symbol]
        raw = book.raw
        is_snapshot, state_id = self._sequence(sym, raw)
        if is_snapshot:
            self.snapshots[sym] += 1
        else:
            self.updates[sym] += 1
        self.book_calls[sym] += 1
        if self.book_calls[sym] % SAMPLE_EVERY == 0:
            bids = book.book.bids.to_list()[:TOP]
            asks = book.book.asks.to_list()[:TOP]
            self.samples.append((sym, state_id, bids, asks))

    def _sequence(self, sym: str, raw: dict) -> tuple[bool, int]:
        """(is this a snapshot, the engine update id of the book state after it); records
        every break of the exchange's own sequence rule."""
        if self.exchange == "binance":
            if "lastUpdateId" in raw:  # the REST snapshot cryptofeed fetched
                self.last_seq[sym] = raw["lastUpdateId"]
                return True, raw["lastUpdateId"]
            prev = self.last_seq.get(sym)
            if prev is not None and not raw["U"] <= prev + 1 <= raw["u"]:
                self.sequence_breaks.append(f"{sym}: U={raw['U']} u={raw['u']} after {prev}")
            self.last_seq[sym] = raw["u"]
            return False, raw["u"]
        if self.exchange == "bybit":
            data = raw["data"]
            if raw["type"] == "snapshot":
                self.last_seq[sym] = data["u"]
                return True, data["seq"]
            prev = self.last_seq.get(sym)
            if prev is not None and data["u"] != prev + 1:
                self.sequence_breaks.append(f"{sym}: u={data['u']} after {prev}")
            self.last_seq[sym] = data["u"]
            return False, data["seq"]
        data = raw["data"][0]
        if raw["action"] == "snapshot":
            self.last_seq[sym] = data["seqId"]
            return True, data["seqId"]
        prev = self.last_seq.get(sym)
        if prev is not None and data["prevSeqId"] != prev:
            self.sequence_breaks.append(f"{sym}: prevSeqId={data['prevSeqId']} after seqId {prev}")
        self.last_seq[sym] = data["seqId"]
        return False, data["seqId"]


@contextlib.contextmanager
def trusting(sim):
    """The simulator's CA trusted the way a user does it: ``SSL_CERT_FILE`` (system CAs + the
    simulator's, so nothing else loses its trust)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSL_CERT_FILE", str(sim.bundle_file))
        yield


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with running_sim_process(seed=424242, speed=SPEED, tls=True, workdir=tmp_path_factory.mktemp("sim")) as s:
        yield s


async def run_feeds(
    sim,
    seconds: float,
    log_file: Path,
    exchanges: tuple[str, ...] = EXCHANGES,
    symbols: dict[str, str] = SYMBOLS,
    okx_checksum: bool = False,
) -> tuple[dict[str, Recorder], list[logging.LogRecord], tuple[int, int]]:
    """Run the three feeds for ``seconds`` wall seconds. Returns the recorders, the log records
    of the run and a window ``[start, end)`` of simulated ms during which every feed was
    subscribed (from 2 s after the start to 0.5 s before the stop, so in-flight frames land).
    cryptofeed's own log goes to ``log_file``."""
    log = logging.getLogger("feedhandler")
    handler = ListHandler()
    fh = FeedHandler(config={"uvloop": False, "log": {"filename": str(log_file), "level": "INFO"}})
    log.addHandler(handler)
    recorders: dict[str, Recorder] = {}
    try:
        for exchange in exchanges:
            rec = Recorder(exchange)
            recorders[exchange] = rec
            feed_cls = cryptofeed_class(exchange, sim)
            kwargs: dict[str, Any] = {
                "symbols": list(symbols),
                "channels": [TRADES, L2_BOOK],
                "callbacks": {TRADES: rec.on_trade, L2_BOOK: rec.on_book},
                "cross_check": True,
            }
            if exchange == "okx":
                kwargs["checksum_validation"] = okx_checksum
            fh.add_feed(feed_cls(**kwargs))
        fh.run(start_loop=False, install_signal_handlers=False)
        await asyncio.sleep(2.0)
        window_start = await asyncio.to_thread(sim.now_ms)
        await asyncio.sleep(seconds - 2.5)
        window_end = await asyncio.to_thread(sim.now_ms)
        await asyncio.sleep(0.5)
        running_records = list(handler.records)
    finally:
        await fh.stop_async()
        log.removeHandler(handler)
    return recorders, running_records, (window_start, window_end)


@pytest.fixture(scope="module")
def feed_run(sim, tmp_path_factory):
    with trusting(sim):
        return asyncio.run(run_feeds(sim, RUN_SECONDS, tmp_path_factory.mktemp("cryptofeed") / "feeds.log"))


def test_cryptofeed_logged_no_warning_or_error(feed_run):
    _, records, _ = feed_run
    bad = [f"{r.levelname}: {r.getMessage()}" for r in records if r.levelno >= logging.WARNING]
    assert bad == [], "\n".join(bad[:20])


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_books_stay_in_sync_without_resync(feed_run, exchange):
    recorders, _, _ = feed_run
    rec = recorders[exchange]
    for sym in SYMBOLS.values():
        assert rec.snapshots[sym] == 1, f"{exchange} {sym}: {rec.snapshots[sym]} snapshots (resync?)"
        assert rec.updates[sym] >= 20, (
            f"{exchange} {sym}: only {rec.updates[sym]} book updates in {RUN_SECONDS} s"
        )
    assert rec.sequence_breaks == [], rec.sequence_breaks[:10]


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_cryptofeed_books_equal_true_books(sim, feed_run, exchange):
    recorders, _, _ = feed_run
    rec = recorders[exchange]
    assert len(rec.samples) >= 10
    for sym, state_id, bids, asks in rec.samples:
        truth = sim.truth_book(exchange, sym, update_id=state_id, depth=TOP)
        assert bids == truth["bids"], f"{exchange} {sym} bids differ at update {state_id}"
        assert asks == truth["asks"], f"{exchange} {sym} asks differ at update {state_id}"


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_cryptofeed_trades_equal_true_trades(sim, feed_run, exchange):
    recorders, _, (start, end) = feed_run
    rec = recorders[exchange]
    total = sum(len(v) for v in rec.trades.values())
    assert total >= 5, f"{exchange}: only {total} trades in {RUN_SECONDS * SPEED:.0f} simulated s"
    compared = 0
    for sym in SYMBOLS.values():
        compared += sim.assert_trades_equal_truth(exchange, sym, rec.trades[sym], start, end)
    assert compared >= 3, f"{exchange}: only {compared} trades inside the window"


# ------------------------------------------------------------------ injected faults, seen by cryptofeed

FAULTS = [
    "--fault",
    "binance:depth_gap_every=40",
    "--okx-legacy-checksum",
    "--fault",
    "okx:okx_bad_checksum_every=40",
    "--fault",
    "bybit:bybit_reset_every_seconds=4",
]


@pytest.fixture(scope="module")
def faulty_sim(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faulty-sim")
    with running_sim_process(seed=99, extra_args=FAULTS, tls=True, workdir=workdir) as s:
        yield s


def test_cryptofeed_detects_injected_gaps_and_bad_checksums_then_resyncs(faulty_sim, tmp_path):
    """The simulator's book faults look to cryptofeed exactly like the real failures: a Binance
    diff whose U skips an id ("Missing book update detected" -> new REST snapshot), an OKX update
    whose CRC32 does not match (BadChecksum -> reconnect -> new snapshot), a Bybit service
    restart (a `u=1` snapshot -> the book is replaced). Every book cryptofeed hands out, before
    and after each resync, is a true book."""
    with trusting(faulty_sim):
        recorders, records, _ = asyncio.run(
            run_feeds(
                faulty_sim,
                8.0,  # two Bybit restarts (every 4 s), gaps/bad checksums every 40 book frames
                tmp_path / "feeds.log",
                exchanges=EXCHANGES,
                symbols={"BTC-USDT": "btc"},
                okx_checksum=True,
            )
        )
    gaps = [r for r in records if "Missing book update detected" in r.getMessage()]
    bad_checksums = [
        r
        for r in records
        if r.exc_info and r.exc_info[0] is not None and r.exc_info[0].__name__ == "BadChecksum"
    ]
    counters = faulty_sim.control("/state")["exchanges"]
    fired_gaps = counters["binance"]["counters"].get("fault.depth_gap_every", 0)
    fired_checksums = counters["okx"]["counters"].get("fault.okx_bad_checksum_every", 0)
    assert fired_gaps >= 1 and fired_checksums >= 1, (fired_gaps, fired_checksums)
    # each injected fault is noticed once (a gap inside frames older than a fresh snapshot is
    # rightly invisible, so at most as many as were injected)
    assert 1 <= len(gaps) <= fired_gaps, f"{len(gaps)} Binance gaps noticed, {fired_gaps} injected"
    assert 1 <= len(bad_checksums) <= fired_checksums, (
        f"{len(bad_checksums)} bad checksums noticed, {fired_checksums} injected"
    )
    assert recorders["binance"].snapshots["btc"] >= 2, "no Binance resync"
    assert recorders["okx"].snapshots["btc"] >= 2, "no OKX resubscribe"
    fired_resets = counters["bybit"]["counters"].get("fault.bybit_reset_every_seconds", 0)
    # the first snapshot plus one per restart (the last may still be in flight at the stop)
    assert fired_resets >= 1 and fired_resets <= recorders["bybit"].snapshots["btc"] <= 1 + fired_resets
    for exchange in EXCHANGES:
        samples = recorders[exchange].samples
        assert len(samples) >= 5
        for sym, state_id, bids, asks in samples:
            truth = faulty_sim.truth_book(exchange, sym, update_id=state_id, depth=TOP)
            assert (bids, asks) == (truth["bids"], truth["asks"]), (
                f"{exchange} handed out a wrong book at {state_id}"
            )
