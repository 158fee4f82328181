"""Benchmark of the client exchange adapters (p9cli/exchanges/).

Measures, in one run, on 1000-row kline bodies in each exchange's exact format (built from
recorded rows) and on the recorded WebSocket captures:

* ``parse_klines`` vs a plain baseline (stdlib ``json``, a tuple of the same fields per row,
  sorted), as a ratio;
* ``check_response`` on a success body (the compact fast path) vs a full parse;
* the live side, per exchange on one core: ``venue.decode(frame)`` + the book-sync machine on
  20,000 frames in the exchange's exact wire format (half book updates of 1-8 levels on a
  400-level book, half trades; OKX in its 2026 shape: checksum 0, seqId chain), against
  ``orjson.loads`` of the same frames alone (the floor of any JSON client), as a ratio;
* the recorded sessions: Binance spot diffs over the recorded REST snapshots, OKX 2022
  ``books`` with the legacy CRC32 verified.

Targets: a 1000-row page parses in < 2 ms (a full 165,000-candle fetch spends < 0.5 s parsing);
decode + book well above 100,000 msgs/s per core (the whole feed, with trades dedup and
candles, must reach 100,000 mixed msgs/s: scripts/bench_feeds.py).

    .venv/bin/python scripts/bench_exchange_adapters.py [--fixtures ../shared/fixtures/exchanges]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import orjson

from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import canonical_symbol
from p9cli.exchanges.venue import BookDelta, BookSnapshot, Trade, get_venue


def best_of(fn, repeat: int = 20) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def kline_bodies(fixtures: Path) -> dict[str, bytes]:
    b_row = json.loads(
        (fixtures / "binance/rest/spot_klines_BTCUSDT_1m_startTime_eq_endTime.json").read_text()
    )[0]
    y_row = json.loads(
        (fixtures / "bybit/spot_rest_v5_kline_BTCUSDT_1_unaligned_start_2023-05-08.json").read_text()
    )["result"]["list"][0]
    o_row = json.loads((fixtures / "okx/spot_rest_history_candles_BTC-USDT_1m_2023-05-02.json").read_text())[
        "data"
    ][0]
    t0 = 1_700_000_000_000 // 60_000 * 60_000
    b_rows = [[t0 + i * 60_000, *b_row[1:6], t0 + i * 60_000 + 59_999, *b_row[7:]] for i in range(1000)]
    y_rows = [[str(t0 + i * 60_000), *y_row[1:]] for i in reversed(range(1000))]
    o_rows = [[str(t0 + i * 60_000), *o_row[1:]] for i in reversed(range(1000))]
    return {
        "binance": orjson.dumps(b_rows),
        "bybit": orjson.dumps(
            {
                "retCode": 0,
                "retMsg": "OK",
                "result": {"category": "spot", "symbol": "BTCUSDT", "list": y_rows},
                "retExtInfo": {},
                "time": t0,
            }
        ),
        "okx": orjson.dumps({"code": "0", "msg": "", "data": o_rows}),
    }


def baseline_parse(name: str, body: bytes) -> list:
    """What a plain client does: stdlib json, one tuple per row with the same 8 fields, sorted."""
    obj = json.loads(body)
    rows = obj if name == "binance" else obj["result"]["list"] if name == "bybit" else obj["data"]
    q = 7 if name != "bybit" else 6
    out = [
        (
            int(r[0]),
            float(r[1]),
            float(r[2]),
            float(r[3]),
            float(r[4]),
            float(r[5]),
            float(r[q]),
            int(r[8]) if name == "binance" else None,
        )
        for r in rows
    ]
    out.sort()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--fixtures",
        default=os.environ.get(
            "P9_FIXTURES", str(Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "exchanges")
        ),
    )
    fixtures = Path(ap.parse_args().fixtures)
    adapters = {"binance": binance, "bybit": bybit, "okx": okx}

    print("klines page of 1000 rows            ours     baseline  ratio   check_response(fast / parse)")
    for name, body in kline_bodies(fixtures).items():
        ad = adapters[name]
        assert len(ad.parse_klines(body, "1m")) == 1000
        ours = best_of(lambda ad=ad, body=body: ad.parse_klines(body, "1m"))
        base = best_of(lambda name=name, body=body: baseline_parse(name, body))
        fast = best_of(lambda ad=ad, body=body: ad.check_response(200, {}, body), 200)
        full = best_of(lambda body=body: orjson.loads(body), 50)
        print(
            f"  {name:8s} ({len(body) / 1024:5.0f} KiB)         {ours * 1e3:6.2f} ms  {base * 1e3:6.2f} ms  {base / ours:4.1f}x   {fast * 1e6:6.1f} us / {full * 1e6:6.1f} us"
        )

    print()
    print("live feed, one core: decode(frame) + book machine (+ nothing else) per message")
    print("  stream                         msgs   decode+book     msgs/s   orjson.loads only   time ours/loads")
    for name, label, frames, snapshot in live_streams():
        run_live(name, label, frames, snapshot)
    recorded_replays(fixtures)


# --------------------------------------------------------------------------------------------
# Live side: decode + book sync throughput


MID_TICKS = 5_000_000  # mid price 50,000.00 in ticks of 0.01
SPREAD = 400  # levels per side the synthetic book moves within


def _px(ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}"


def _book_model(rnd: random.Random, n: int, levels_per_update: int):
    """``n`` updates of a book around a fixed mid: each changes a few levels near the top
    (absolute sizes, some deletions); never crossed. Yields (bids, asks) level lists."""
    for _ in range(n):
        bids, asks = [], []
        for _ in range(rnd.randint(1, levels_per_update)):
            depth = int(rnd.expovariate(1 / 20)) % SPREAD
            size = "0" if rnd.random() < 0.2 else f"{rnd.randint(1, 500_000) / 10_000:.4f}"
            if rnd.random() < 0.5:
                bids.append([_px(MID_TICKS - 1 - depth), size])
            else:
                asks.append([_px(MID_TICKS + 1 + depth), size])
        yield bids, asks


def _initial_levels() -> tuple[list, list]:
    bids = [[_px(MID_TICKS - 1 - d), "1.0000"] for d in range(SPREAD)]
    asks = [[_px(MID_TICKS + 1 + d), "1.0000"] for d in range(SPREAD)]
    return bids, asks


def live_streams(n: int = 20_000):
    """Per exchange: frames in the exchange's exact wire format (recorded shapes), half book
    updates and half trades, plus the frame or REST body that starts the book."""
    rnd = random.Random(9)
    bids0, asks0 = _initial_levels()
    t0 = 1_767_616_496_789
    out = []

    # Binance: combined stream, depthUpdate (U..u) + aggTrade; REST depth snapshot
    frames = []
    u = 1000
    for k, (b, a) in enumerate(_book_model(rnd, n // 2, 8)):
        frames.append(orjson.dumps({"stream": "btcusdt@depth@100ms", "data": {
            "e": "depthUpdate", "E": t0 + k, "s": "BTCUSDT", "U": u + 1, "u": u + 3, "b": b, "a": a}}))
        u += 3
        frames.append(orjson.dumps({"stream": "btcusdt@aggTrade", "data": {
            "e": "aggTrade", "E": t0 + k, "s": "BTCUSDT", "a": 500 + k, "p": _px(MID_TICKS + rnd.choice((-1, 1))),
            "q": "0.01230000", "f": 900 + k, "l": 900 + k, "T": t0 + k, "m": rnd.random() < 0.5, "M": True}}))
    snap = orjson.dumps({"lastUpdateId": 1000, "bids": bids0, "asks": asks0})
    out.append(("binance", "depthUpdate + aggTrade", frames, ("rest", snap)))

    # Bybit: orderbook.50 snapshot + deltas (u + 1), publicTrade
    frames = []
    b50, a50 = bids0[:50], asks0[:50]
    first = orjson.dumps({"topic": "orderbook.50.BTCUSDT", "ts": t0, "type": "snapshot",
                          "data": {"s": "BTCUSDT", "b": b50, "a": a50, "u": 1000, "seq": 7000}, "cts": t0})
    for k, (b, a) in enumerate(_book_model(rnd, n // 2, 8)):
        frames.append(orjson.dumps({"topic": "orderbook.50.BTCUSDT", "ts": t0 + k, "type": "delta",
                                    "data": {"s": "BTCUSDT", "b": b, "a": a, "u": 1001 + k, "seq": 7001 + k},
                                    "cts": t0 + k}))
        frames.append(orjson.dumps({"topic": "publicTrade.BTCUSDT", "ts": t0 + k, "type": "snapshot", "data": [
            {"i": str(2290000000090712222 + k), "T": t0 + k, "p": _px(MID_TICKS + 1), "v": "0.0026",
             "S": rnd.choice(("Buy", "Sell")), "s": "BTCUSDT", "BT": False, "RPI": False, "seq": 7001 + k}]}))
    out.append(("bybit", "orderbook.50 + publicTrade", frames, ("frame", first)))

    # OKX 2026: books (checksum 0, seqId/prevSeqId, 4-field levels) + trades (count/source/seqId)
    frames = []
    four = [lv + ["0", "1"] for lv in bids0], [lv + ["0", "1"] for lv in asks0]
    first = orjson.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "snapshot", "data": [
        {"asks": four[1], "bids": four[0], "ts": str(t0), "checksum": 0, "prevSeqId": -1, "seqId": 1000}]})
    for k, (b, a) in enumerate(_book_model(rnd, n // 2, 8)):
        b4 = [lv + ["0", "0" if lv[1] == "0" else "2"] for lv in b]
        a4 = [lv + ["0", "0" if lv[1] == "0" else "2"] for lv in a]
        frames.append(orjson.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update", "data": [
            {"asks": a4, "bids": b4, "ts": str(t0 + k), "checksum": 0, "prevSeqId": 1000 + k, "seqId": 1001 + k}]}))
        frames.append(orjson.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [
            {"instId": "BTC-USDT", "tradeId": str(1067468269 + k), "px": _px(MID_TICKS + 1), "sz": "0.000011",
             "side": rnd.choice(("buy", "sell")), "ts": str(t0 + k), "count": "1", "source": "0",
             "seqId": 82083114838 + k}]}))
    out.append(("okx", "books (2026) + trades", frames, ("frame", first)))
    return out


def run_live(name: str, label: str, frames: list[bytes], snapshot: tuple[str, bytes]) -> None:
    venue = get_venue(name)
    kind, body = snapshot

    def once() -> tuple[int, int, int]:
        decode = venue.decode
        book = venue.new_book("btc")
        on_event = book.on_event
        if kind == "frame":
            (ev,) = decode(body)
            on_event(ev)
        trades = applied = 0
        for frame in frames:
            for ev in decode(frame):
                if type(ev) is Trade:
                    trades += 1
                elif on_event(ev) == "applied":
                    applied += 1
            if kind == "rest" and book.wants_snapshot:
                on_event(venue.parse_snapshot(body, "btc"))
        assert book.valid and not book.resyncs, (name, book.cause)
        return trades, applied, book.update_id

    trades, applied, _ = once()
    assert trades == len(frames) // 2 and applied >= len(frames) // 2 - 1, (trades, applied)
    t = best_of(once, 5)
    base = best_of(lambda: [orjson.loads(f) for f in frames], 5)
    print(
        f"  {name:8s} {label:27s} {len(frames):6d}   {t * 1e3:8.1f} ms  {len(frames) / t:9,.0f}"
        f"   {len(frames) / base:10,.0f}/s   {t / base:4.1f}x"
    )


def recorded_replays(fixtures: Path) -> None:
    """The recorded sessions: Binance spot diffs over REST snapshots; OKX 2022 books with CRC32."""
    print()
    ws = fixtures / "binance/spot_ws_combined_depth100ms_bookTicker_kline1m_aggTrade_2021-10-12.capture.txt"
    rest = fixtures / "binance/spot_rest_depth_limit1000_snapshots_2021-10-12.capture.txt"
    snaps = {}
    for line in rest.read_text().splitlines():
        if line.strip():
            head, _, text = line.partition(": ")
            code = head.split("symbol=")[1].split("&")[0]
            sym = canonical_symbol(code) or code
            snaps[sym] = binance.parse_depth_snapshot(text.encode(), sym)
    frames = []
    for line in ws.read_text().splitlines():
        head, _, text = line.partition(": ")
        if text and " <-" not in head:
            frames.append(text.encode())

    def replay_binance() -> int:
        syncs = {s: binance.VENUE.new_book(s) for s in snaps}
        n = 0
        for frame in frames:
            for ev in binance.decode(frame):
                if type(ev) is BookDelta:
                    sync = syncs[ev.symbol]
                    n += sync.on_event(ev) == "applied"
                    if sync.wants_snapshot:
                        sync.on_event(snaps[ev.symbol])
        return n

    snapshot_levels = sum(len(s.bids) + len(s.asks) for s in snaps.values())
    t = best_of(replay_binance, 10)
    print(
        f"binance recorded: {len(frames)} frames (4 snapshots of {snapshot_levels} levels in all) decoded + "
        f"books in {t * 1e3:.2f} ms -> {len(frames) / t:,.0f} msgs/s"
    )
    okx_frames = []
    for line in (fixtures / "okx/public_ws_tickers_trades_books_2022-05-13.capture.txt").read_text().splitlines():
        head, _, text = line.partition(": ")
        if text and " <-" not in head:
            okx_frames.append(text.encode())

    def replay_okx() -> None:
        syncs: dict = {}
        for frame in okx_frames:
            for ev in okx.decode(frame):
                if isinstance(ev, (BookSnapshot, BookDelta)):
                    status = syncs.setdefault(ev.symbol, okx.VENUE.new_book(ev.symbol)).on_event(ev)
                    assert status in ("snapshot", "applied"), status

    t = best_of(replay_okx, 10)
    print(
        f"okx recorded 2022: {len(okx_frames)} frames (290 books with legacy CRC32 verified, 3 x 400-level "
        f"snapshots) in {t * 1e3:.2f} ms -> {len(okx_frames) / t:,.0f} msgs/s"
    )
    book = [ev for f in okx_frames for ev in okx.decode(f) if isinstance(ev, BookSnapshot)][0]
    ck = best_of(lambda: okx.checksum(book.bids, book.asks), 2000)
    print(f"okx legacy checksum of top 25 x 2: {ck * 1e6:.1f} us")


if __name__ == "__main__":
    main()
