#!/usr/bin/env python3
"""Try well-known third-party clients against `p9 sim`, as a new user would.

Starts `p9 sim` (a child process on free ports), points each client at it the one documented
way the client offers (only base URLs change), makes the calls a market-data user makes and
checks what came back against the simulator's ground truth (control API ``/truth/...``).
Prints one table: client | call | result | consistency.

    .venv/bin/python scripts/try_third_party_clients.py [--seconds 10] [--seed 9] [--only ccxt,cryptofeed,...]

Exit status 0 when every call worked and was consistent, 1 otherwise. Clients that are not
installed are listed as "not installed" (pip install -e '.[test]' installs them all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "thirdparty"))

from thirdparty_harness import (  # noqa: E402
    CCXT_SYMBOL,
    EXCHANGE_CODE,
    SYMBOLS,
    TF_MS,
    SimProcess,
    ccxt_client,
    cryptofeed_class,
)

EXCHANGES = ("binance", "bybit", "okx")
Row = tuple[str, str, str, str]  # client, call, result, consistency


class Trials:
    def __init__(self, sim: SimProcess, seconds: float, workdir: Path):
        self.sim = sim
        self.seconds = seconds
        self.workdir = workdir
        self.rows: list[Row] = []
        self.failures = 0

    def run(self, client: str, call: str, fn: Callable[[], tuple[str, str]]) -> None:
        """``fn`` returns (result, consistency); an AssertionError is an inconsistency, any
        other exception a failed call."""
        try:
            result, consistency = fn()
        except ModuleNotFoundError as exc:
            result, consistency = f"not installed ({exc.name})", "-"
        except AssertionError as exc:
            self.failures += 1
            result, consistency = "answered", f"MISMATCH: {str(exc).splitlines()[0][:160]}"
        except Exception as exc:  # noqa: BLE001 - reported in the table
            self.failures += 1
            detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
            result, consistency = f"ERROR {detail}", "-"
            if "--traceback" in sys.argv:
                traceback.print_exc()
        self.rows.append((client, call, result, consistency))
        print(f"  {client:<18} {call:<44} {result[:50]:<50} {consistency[:60]}", flush=True)

    # -- helpers ---------------------------------------------------------------------------
    def candles_vs_truth(
        self, exchange: str, symbol: str, timeframe: str, candles: list[list], closed_by: int
    ) -> str:
        """Candles of bars closed by ``closed_by`` (sim time read before the call) equal the truth."""
        tf = TF_MS[timeframe]
        opens = [c[0] for c in candles]
        assert all(b - a == tf for a, b in zip(opens, opens[1:], strict=False)), "gap or duplicate"
        truth = {r[0]: r for r in self.sim.truth_candles(exchange, symbol, timeframe, opens[0], opens[-1])}
        closed = [c for c in candles if c[0] + tf <= closed_by]
        for c in closed:
            got = tuple(Decimal(repr(x)) for x in c[1:6])
            assert got == truth[c[0]][1:6], f"{c[0]}: {got} != {truth[c[0]][1:6]}"
        return f"{len(closed)} closed candles equal truth"

    def rows_vs_truth(
        self, exchange: str, symbol: str, timeframe: str, rows: list[list], closed_by: int
    ) -> str:
        """Raw rows of bars closed by ``closed_by`` are byte-equal to the exchange rows of the truth."""
        tf = TF_MS[timeframe]
        opens = [int(r[0]) for r in rows]
        truth = {
            r["open_time"]: r["row"]
            for r in self.sim.truth_candle_rows(exchange, symbol, timeframe, min(opens), max(opens))
        }
        n = 0
        for row in rows:
            if int(row[0]) + tf <= closed_by:
                assert list(row) == truth[int(row[0])], f"row {row[0]} differs from truth"
                n += 1
        assert n >= len(rows) - 1, "rows are not closed true bars"
        return f"{n} closed rows byte-equal truth"

    def book_vs_truth(
        self, exchange: str, symbol: str, bids, asks, update_id: int | None, before: int, after: int
    ) -> str:
        bids = [(Decimal(str(b[0])), Decimal(str(b[1]))) for b in bids]
        asks = [(Decimal(str(a[0])), Decimal(str(a[1]))) for a in asks]
        if update_id is None:
            update_id = self.sim.book_state_between(exchange, symbol, bids, asks, before, after)
            assert update_id is not None, "book equals no true state of the call's time"
        truth = self.sim.truth_book(exchange, symbol, update_id=update_id, depth=max(len(bids), len(asks)))
        assert bids == truth["bids"][: len(bids)] and asks == truth["asks"][: len(asks)], (
            f"differs at {update_id}"
        )
        return f"{len(bids)}+{len(asks)} levels equal true book @{update_id}"

    def trades_vs_truth(self, exchange: str, symbol: str, got: list[tuple], window: tuple[int, int]) -> str:
        n = self.sim.assert_trades_equal_truth(exchange, symbol, got, *window)
        span = (window[1] - window[0]) / 1000
        if n == 0:
            return f"{symbol}: no trade in {span:.0f} simulated s (quiet market), none missing"
        return f"{symbol}: {n} trades in {span:.0f} simulated s equal truth"

    def listen(self) -> tuple[int, int]:
        """Wall-clock wait of --seconds; returns the simulated window [start, end) in which the
        client was surely subscribed (1 s settling before, 0.5 s for frames in flight after)."""
        time.sleep(1.0)
        start = self.sim.now_ms()
        time.sleep(self.seconds)
        end = self.sim.now_ms()
        time.sleep(0.5)
        return start, end

    async def alisten(self) -> tuple[int, int]:
        await asyncio.sleep(1.0)
        start = await asyncio.to_thread(self.sim.now_ms)
        await asyncio.sleep(self.seconds)
        end = await asyncio.to_thread(self.sim.now_ms)
        await asyncio.sleep(0.5)
        return start, end

    # -- ccxt ------------------------------------------------------------------------------
    def ccxt(self) -> None:
        for ex in EXCHANGES:

            def defaults(ex=ex):
                client = ccxt_client(ex, self.sim, spot_only=False)
                markets = client.load_markets()
                kinds = sorted({m["type"] for m in markets.values()})
                return f"{len(markets)} markets ({', '.join(kinds)})", "ccxt default market types load"

            self.run(f"ccxt {ex}", "load_markets(), ccxt default types", defaults)
            client = ccxt_client(ex, self.sim)

            def markets(client=client, ex=ex):
                m = client.load_markets()
                for s in SYMBOLS:
                    assert m[CCXT_SYMBOL[s]]["id"] == EXCHANGE_CODE[ex][s], f"{s} id"
                    assert m[CCXT_SYMBOL[s]]["active"], f"{s} inactive"
                return f"{len(m)} spot markets", "5/5 symbols, ids, active"

            self.run(f"ccxt {ex}", "load_markets(), spot only", markets)

            def latest(client=client, ex=ex):
                now = self.sim.now_ms()
                c = client.fetch_ohlcv("BTC/USDT", "1h", limit=50)
                return f"{len(c)} candles", self.candles_vs_truth(ex, "btc", "1h", c, now)

            self.run(f"ccxt {ex}", "fetch_ohlcv(BTC/USDT, 1h, limit=50)", latest)

            def paging(client=client, ex=ex):
                tf = TF_MS["1m"]
                now = self.sim.now_ms()
                since = (now // tf - 2000) * tf
                got, cursor = [], since
                for _ in range(3):
                    page = client.fetch_ohlcv("ETH/USDT", "1m", since=cursor, limit=300)
                    assert page, f"empty page at since={cursor}"
                    got += page
                    cursor = page[-1][0] + tf
                assert got[0][0] == since, (
                    f"first candle {got[0][0]} != since {since} (+{(got[0][0] - since) // tf} bars)"
                )
                return f"3 pages, {len(got)} candles", self.candles_vs_truth(ex, "eth", "1m", got, now)

            self.run(f"ccxt {ex}", "fetch_ohlcv(ETH/USDT, 1m, since, 300) x3", paging)

            def book(client=client, ex=ex):
                client.enableLastJsonResponse = True
                before = self.sim.truth_book(ex, "btc", depth=1)["update_id"]
                ob = client.fetch_order_book("BTC/USDT", limit=50)
                after = self.sim.truth_book(ex, "btc", depth=1)["update_id"]
                raw = client.last_json_response
                uid = (
                    raw.get("lastUpdateId")
                    if ex == "binance"
                    else raw["result"]["seq"]
                    if ex == "bybit"
                    else None
                )
                return f"{len(ob['bids'])} bids / {len(ob['asks'])} asks", self.book_vs_truth(
                    ex, "btc", ob["bids"], ob["asks"], uid, before, after
                )

            self.run(f"ccxt {ex}", "fetch_order_book(BTC/USDT, 50)", book)

    # -- cryptofeed ------------------------------------------------------------------------
    def cryptofeed(self) -> None:
        import logging

        from cryptofeed import FeedHandler
        from cryptofeed.defines import L2_BOOK, TRADES

        symbols = {"BTC-USDT": "btc", "ETH-USDT": "eth"}
        trades = {ex: {s: [] for s in symbols.values()} for ex in EXCHANGES}
        books = {ex: {"snapshots": 0, "updates": 0, "last": {}} for ex in EXCHANGES}
        problems: list[str] = []

        class Catch(logging.Handler):
            def emit(self, record):
                if record.levelno >= logging.WARNING:
                    problems.append(f"{record.levelname}: {record.getMessage()[:120]}")

        def on_trade(ex):
            async def cb(t, receipt):
                raw = t.raw
                tid, ts = {
                    "binance": (str(raw.get("a")), raw.get("T")),
                    "bybit": (str(raw.get("i")), raw.get("T")),
                    "okx": (str(raw.get("tradeId")), int(raw.get("ts", 0))),
                }[ex]
                trades[ex][symbols[t.symbol]].append(
                    (int(ts), tid, Decimal(t.price), Decimal(t.amount), t.side)
                )

            return cb

        def on_book(ex):
            async def cb(book, receipt):
                raw = book.raw
                if ex == "binance":
                    snap, uid = "lastUpdateId" in raw, raw.get("lastUpdateId", raw.get("u"))
                elif ex == "bybit":
                    snap, uid = raw["type"] == "snapshot", raw["data"]["seq"]
                else:
                    snap, uid = raw["action"] == "snapshot", raw["data"][0]["seqId"]
                books[ex]["snapshots" if snap else "updates"] += 1
                books[ex]["last"][symbols[book.symbol]] = (
                    uid,
                    book.book.bids.to_list()[:20],
                    book.book.asks.to_list()[:20],
                )

            return cb

        async def main():
            log = logging.getLogger("feedhandler")
            fh = FeedHandler(
                config={
                    "uvloop": False,
                    "log": {"filename": str(self.workdir / "cryptofeed.log"), "level": "WARNING"},
                }
            )
            catch = Catch()
            log.addHandler(catch)
            for ex in EXCHANGES:
                cls = cryptofeed_class(ex, self.sim)
                # OKX sends checksum 0 since 2026-06-23: cryptofeed's validation would fail every update
                kw = {"checksum_validation": False} if ex == "okx" else {}
                fh.add_feed(
                    cls(
                        symbols=list(symbols),
                        channels=[TRADES, L2_BOOK],
                        callbacks={TRADES: on_trade(ex), L2_BOOK: on_book(ex)},
                        cross_check=True,
                        **kw,
                    )
                )
            fh.run(start_loop=False, install_signal_handlers=False)
            window.extend(await self.alisten())
            await fh.stop_async()
            log.removeHandler(catch)

        window: list[int] = []

        def feed():
            asyncio.run(main())
            assert not problems, problems[0]
            return "3 feeds ran", "no warning or error logged"

        self.run("cryptofeed", f"FeedHandler, 3 feeds, {self.seconds:.0f} s", feed)
        for ex in EXCHANGES:

            def check_trades(ex=ex):
                n = sum(len(v) for v in trades[ex].values())
                parts = [self.trades_vs_truth(ex, s, got, tuple(window)) for s, got in trades[ex].items()]
                return f"{n} trades", "; ".join(parts) or "no trades"

            self.run(f"cryptofeed {ex}", "TRADES BTC-USDT, ETH-USDT", check_trades)

            def check_books(ex=ex):
                b = books[ex]
                assert b["snapshots"] == len(symbols), (
                    f"{b['snapshots']} snapshots for {len(symbols)} books (resync?)"
                )
                out = []
                for sym, (uid, bids, asks) in b["last"].items():
                    truth = self.sim.truth_book(ex, sym, update_id=uid, depth=20)
                    assert bids == truth["bids"] and asks == truth["asks"], f"{sym} book differs at {uid}"
                    out.append(f"{sym}@{uid}")
                return (
                    f"{b['snapshots']} snapshots, {b['updates']} updates",
                    "final books equal truth: " + ", ".join(out),
                )

            self.run(f"cryptofeed {ex}", "L2_BOOK BTC-USDT, ETH-USDT", check_books)

    # -- SDKs ------------------------------------------------------------------------------
    def binance_sdks(self) -> None:
        def sdk_rest():
            from binance_common.configuration import ConfigurationRestAPI
            from binance_sdk_spot.rest_api.models import KlinesIntervalEnum
            from binance_sdk_spot.spot import Spot

            client = Spot(config_rest_api=ConfigurationRestAPI(base_path=self.sim.rest_url("binance")))
            now = self.sim.now_ms()
            rows = client.rest_api.klines(
                symbol="BTCUSDT", interval=KlinesIntervalEnum.INTERVAL_4h, limit=30
            ).data()
            book = client.rest_api.depth(symbol="BTCUSDT", limit=100).data()
            c = self.rows_vs_truth("binance", "btc", "4h", rows, now)
            b = self.book_vs_truth("binance", "btc", book.bids, book.asks, book.last_update_id, 0, 0)
            return f"{len(rows)} klines, depth 100", f"{c}; {b}"

        self.run("binance-sdk-spot", "rest_api.klines / depth", sdk_rest)

        def sdk_ws():
            from binance_common.configuration import ConfigurationWebSocketStreams
            from binance_sdk_spot.spot import Spot

            events: list = []
            window: list[int] = []

            async def main():
                client = Spot(
                    config_ws_streams=ConfigurationWebSocketStreams(stream_url=self.sim.ws_url("binance"))
                )
                conn = await client.websocket_streams.create_connection()
                try:
                    stream = await conn.trade(symbol="btcusdt")
                    stream.on("message", events.append)
                    window.extend(await self.alisten())
                finally:
                    await conn.close_connection(close_session=True)

            asyncio.run(main())
            got = []
            for ev in events:
                d = ev.model_dump() if hasattr(ev, "model_dump") else ev
                got.append(
                    (d["T"], str(d["t"]), Decimal(d["p"]), Decimal(d["q"]), "sell" if d["m"] else "buy")
                )
            return f"{len(got)} trade events", self.trades_vs_truth("binance", "btc", got, tuple(window))

        self.run("binance-sdk-spot", "websocket_streams.trade(btcusdt)", sdk_ws)

        def connector_rest():
            from binance.spot import Spot

            client = Spot(base_url=self.sim.rest_url("binance"))
            now = self.sim.now_ms()
            rows = client.klines("ETHUSDT", "1d", limit=30)
            book = client.depth("ETHUSDT", limit=50)
            c = self.rows_vs_truth("binance", "eth", "1d", rows, now)
            b = self.book_vs_truth("binance", "eth", book["bids"], book["asks"], book["lastUpdateId"], 0, 0)
            return f"{len(rows)} klines, depth 50", f"{c}; {b}"

        self.run("binance-connector", "Spot.klines / depth", connector_rest)

        def connector_ws():
            from binance.websocket.spot.websocket_stream import SpotWebsocketStreamClient

            msgs: list[str] = []
            client = SpotWebsocketStreamClient(
                stream_url=self.sim.ws_url("binance"), on_message=lambda _c, m: msgs.append(m)
            )
            try:
                client.agg_trade(symbol="btcusdt", id=1)
                window = self.listen()
            finally:
                client.stop()
            frames = [json.loads(m) for m in msgs]
            assert frames and frames[0] == {"result": None, "id": 1}, f"ack {frames[:1]}"
            got = [
                (e["T"], str(e["a"]), Decimal(e["p"]), Decimal(e["q"]), "sell" if e["m"] else "buy")
                for e in frames[1:]
            ]
            return f"{len(got)} aggTrade events", self.trades_vs_truth("binance", "btc", got, tuple(window))

        self.run("binance-connector", "SpotWebsocketStreamClient.agg_trade", connector_ws)

    def pybit(self) -> None:
        def http():
            from pybit.unified_trading import HTTP

            session = HTTP(testnet=False)
            session.endpoint = self.sim.rest_url("bybit")
            now = self.sim.now_ms()
            rows = session.get_kline(category="spot", symbol="SOLUSDT", interval="D", limit=30)["result"][
                "list"
            ]
            ob = session.get_orderbook(category="spot", symbol="SOLUSDT", limit=50)["result"]
            c = self.rows_vs_truth("bybit", "sol", "1d", rows, now)
            b = self.book_vs_truth("bybit", "sol", ob["b"], ob["a"], ob["seq"], 0, 0)
            return f"{len(rows)} klines, orderbook 50", f"{c}; {b}"

        self.run("pybit", "HTTP.get_kline / get_orderbook", http)

        def ws():
            import pybit.unified_trading as unified

            trades: list = []
            saved = unified.PUBLIC_WSS
            unified.PUBLIC_WSS = self.sim.ws_url("bybit") + "/v5/public/{CHANNEL_TYPE}"
            try:  # the simulator's default reply delay keeps pybit's ack race away (docs/sim.md)
                client = unified.WebSocket(testnet=False, channel_type="spot")
                client.trade_stream(symbol="BTCUSDT", callback=lambda m: trades.extend(m["data"]))
                window = self.listen()
                closer = threading.Thread(target=client.exit, daemon=True)
                closer.start()
                closer.join(10)
            finally:
                unified.PUBLIC_WSS = saved
            got = [(t["T"], t["i"], Decimal(t["p"]), Decimal(t["v"]), t["S"].lower()) for t in trades]
            return f"{len(got)} trades", self.trades_vs_truth("bybit", "btc", got, window)

        self.run("pybit", "WebSocket.trade_stream(BTCUSDT)", ws)

    def python_okx(self) -> None:
        def rest():
            from okx.MarketData import MarketAPI

            api = MarketAPI(flag="0", domain=self.sim.rest_url("okx"))
            now = self.sim.now_ms()
            rows = api.get_candlesticks(instId="XRP-USDT", bar="6Hutc", limit="30")["data"]
            before = self.sim.truth_book("okx", "xrp", depth=1)["update_id"]
            book = api.get_orderbook(instId="XRP-USDT", sz="50")["data"][0]
            after = self.sim.truth_book("okx", "xrp", depth=1)["update_id"]
            c = self.rows_vs_truth("okx", "xrp", "6h", rows, now)
            b = self.book_vs_truth("okx", "xrp", book["bids"], book["asks"], None, before, after)
            return f"{len(rows)} candles, books 50", f"{c}; {b}"

        self.run("python-okx", "MarketAPI.get_candlesticks / get_orderbook", rest)

        def ws():
            from okx.websocket.WsPublicAsync import WsPublicAsync

            frames: list[dict] = []
            window: list[int] = []

            async def main():
                client = WsPublicAsync(url=self.sim.wss_url("okx") + "/ws/v5/public")
                await client.start()
                assert client.websocket is not None, "could not connect"
                try:
                    await client.subscribe(
                        [{"channel": "trades", "instId": "BTC-USDT"}],
                        callback=lambda m: frames.append(json.loads(m)),
                    )
                    window.extend(await self.alisten())
                finally:
                    await client.stop()

            asyncio.run(main())  # SSL_CERT_FILE names the simulator's CA bundle (see main())
            data = [d for f in frames if "data" in f for d in f["data"]]
            got = [(int(d["ts"]), d["tradeId"], Decimal(d["px"]), Decimal(d["sz"]), d["side"]) for d in data]
            return f"{len(got)} trades (via p9 sim --tls)", self.trades_vs_truth(
                "okx", "btc", got, tuple(window)
            )

        self.run("python-okx", "WsPublicAsync trades (wss)", ws)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each WebSocket client listens")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument(
        "--speed",
        type=float,
        default=4.0,
        help="simulator speed (the model has quiet spells of up to a simulated minute)",
    )
    parser.add_argument("--only", default="ccxt,cryptofeed,binance,pybit,okx", help="comma-separated subset")
    parser.add_argument("--traceback", action="store_true", help="print tracebacks of failed calls")
    args = parser.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    workdir = Path(tempfile.mkdtemp(prefix="p9-try-clients-"))
    sim = SimProcess(seed=args.seed, speed=args.speed, tls=True, workdir=workdir)
    print("starting p9 sim --tls ...", flush=True)
    try:
        sim.start()
    except Exception as exc:  # noqa: BLE001
        print(f"try_third_party_clients: cannot start p9 sim: {exc}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
        return 1
    # trust the simulator's CA the way a user does (the bundle keeps the system CAs)
    os.environ["SSL_CERT_FILE"] = str(sim.bundle_file)
    print(
        f"p9 sim on {sim.control_url} (binance {sim.port('binance')}, bybit {sim.port('bybit')}, "
        f"okx {sim.port('okx')}; http/ws and https/wss on the same ports)"
    )
    trials = Trials(sim, args.seconds, workdir)
    try:
        if "ccxt" in only:
            trials.ccxt()
        if "cryptofeed" in only:
            trials.cryptofeed()
        if "binance" in only:
            trials.binance_sdks()
        if "pybit" in only:
            trials.pybit()
        if "okx" in only:
            trials.python_okx()
    finally:
        sim.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(trials.rows)
    bad = trials.failures
    print(
        f"{len(trials.rows) - bad} of {len(trials.rows)} calls worked and were consistent"
        + (f"; {bad} did not" if bad else "")
    )
    return 1 if bad else 0


def print_table(rows: list[Row]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        for r in rows:
            print(" | ".join(r))
        return
    table = Table(title="third-party clients against p9 sim", show_lines=False)
    for col in ("client", "call", "result", "consistency"):
        table.add_column(col, overflow="fold")
    for client, call, result, consistency in rows:
        style = "red" if consistency.startswith("MISMATCH") or result.startswith("ERROR") else None
        table.add_row(client, call, result, consistency, style=style)
    Console(width=200).print(table)


if __name__ == "__main__":
    sys.exit(main())
